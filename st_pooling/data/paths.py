"""Where the package finds benchmark data: the shared data folder and gensim's bundled test data."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

DATA_DIR_ENV_VAR = "ST_POOLING_DATA_DIR"


def shared_data_dir() -> Path | None:
    """The folder holding the real benchmark datasets (stsbenchmark/, sick/, sst2/, ...), or None.

    Looked up in this order:
    1. the environment variable ``ST_POOLING_DATA_DIR`` (returned as given, even if it does not
       exist, so that a mistyped path fails loudly in the loader instead of silently skipping);
    2. ``<repository root>/../shared/data`` next to a source checkout of this package;
    3. otherwise ``None``.
    """
    from_env = os.environ.get(DATA_DIR_ENV_VAR, "").strip()
    if from_env:
        return Path(from_env).expanduser()
    repo_root = Path(__file__).resolve().parents[2]
    beside_checkout = repo_root.parent / "shared" / "data"
    if beside_checkout.is_dir():
        return beside_checkout
    return None


def gensim_test_data_dir() -> Path:
    """``gensim/test/test_data`` inside the installed gensim (the embedded default data sets).

    gensim is located without importing it (importing gensim is slow and not needed to read files).

    Raises:
        ImportError: gensim is not installed.
        FileNotFoundError: gensim is installed but ships no ``test/test_data`` folder.
    """
    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            "The embedded default data sets (Lee documents, Pang-Lee polarity, mini 20 Newsgroups) are read "
            "from the files gensim ships. Install it with `pip install gensim` or "
            "`pip install st-pooling[embedded]`."
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data"
    if not folder.is_dir():
        raise FileNotFoundError(
            f"gensim is installed but has no test data folder at {folder}. Reinstall it with "
            "`pip install --force-reinstall gensim` (wheels from PyPI include gensim/test/test_data)."
        )
    return folder
