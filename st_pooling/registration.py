"""Loading saved st-pooling models with plain ``SentenceTransformer(path)``, without importing anything heavy early.

sentence-transformers 6 refuses to import a module class outside its own namespace unless the caller passes
``trust_remote_code=True``: the class named in ``modules.json`` could be any code. st-pooling's classes are installed
code the user already chose to run by importing ``st_pooling``, so ``import st_pooling`` makes them known classes;
afterwards ``SentenceTransformer(path)`` loads a saved st-pooling model without ``trust_remote_code``, and the gate
stays closed for every other class.

The import itself stays light (``st-pooling --help`` does not load torch): the known classes become
:class:`StPoolingModuleClasses`, which resolves st-pooling's classes only when sentence-transformers asks for one,
and it is installed as soon as sentence-transformers is imported: at once if it already is, else right after its
import completes (:class:`AfterImport`). sentence-transformers has no public hook for this: it reads the private
class attribute ``BaseModel._module_classes`` (the one its own trainer uses to reload checkpoints);
``tests/test_modules.py`` fails if a release changes it.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import sys
from collections.abc import Callable, Iterator, Mapping
from types import ModuleType
from typing import Any

SENTENCE_TRANSFORMERS = "sentence_transformers"


def class_ref(cls: type) -> str:
    """The ``type`` string sentence-transformers writes to ``modules.json`` for ``cls``."""
    return f"{cls.__module__}.{cls.__name__}"


class StPoolingModuleClasses(Mapping[str, type]):
    """sentence-transformers' known module classes plus st-pooling's (every registered pooling and the
    ``DecoderTransformer``), which are imported the first time one is asked for."""

    def __init__(self, known: Mapping[str, type]) -> None:
        self.known = dict(known)

    @staticmethod
    def ours() -> dict[str, type]:
        from st_pooling.decoders.transformer import DecoderTransformer
        from st_pooling.modules import POOLINGS

        classes: list[type] = [*POOLINGS.values(), DecoderTransformer]
        return {class_ref(cls): cls for cls in classes}

    def __getitem__(self, key: str) -> type:
        if key in self.known:
            return self.known[key]
        if key.startswith("st_pooling."):
            ours = self.ours()
            if key in ours:
                return ours[key]
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter({**self.known, **self.ours()})

    def __len__(self) -> int:
        return len({**self.known, **self.ours()})


def install() -> None:
    """Make st-pooling's classes known to sentence-transformers (idempotent)."""
    from sentence_transformers.base.model import BaseModel

    if not isinstance(BaseModel._module_classes, StPoolingModuleClasses):
        BaseModel._module_classes = StPoolingModuleClasses(BaseModel._module_classes)


class AfterImport(importlib.abc.MetaPathFinder):
    """Runs ``callback`` once, right after the package ``name`` has been imported (by whoever imports it)."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name, self.callback = name, callback

    def find_spec(self, fullname: str, path: Any = None, target: ModuleType | None = None) -> Any:
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)  # find the real spec with the other finders, once
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _CallbackLoader(spec.loader, self.callback)
        return spec


class _CallbackLoader(importlib.abc.Loader):
    """The package's own loader, with ``callback`` run after the module has executed."""

    def __init__(self, loader: Any, callback: Callable[[], None]) -> None:
        self.loader, self.callback = loader, callback

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.loader.exec_module(module)
        if module.__spec__ is not None:  # always set by the import system before exec_module
            module.__spec__.loader = self.loader  # from now on the package looks as if imported plainly
        module.__loader__ = self.loader
        self.callback()

    def __getattr__(self, name: str) -> Any:  # resources, source and other loader services
        return getattr(self.loader, name)


def install_when_sentence_transformers_is_imported() -> None:
    """:func:`install` now if sentence-transformers is imported already, else right after it is."""
    if SENTENCE_TRANSFORMERS in sys.modules:
        install()
    elif not any(isinstance(finder, AfterImport) for finder in sys.meta_path):
        sys.meta_path.insert(0, AfterImport(SENTENCE_TRANSFORMERS, install))
