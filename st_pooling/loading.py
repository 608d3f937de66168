"""Loading saved st-pooling models, with one clear line when a name is neither a folder nor on the Hub.

(``import st_pooling`` is what lets plain ``SentenceTransformer(path)`` load them: see
:mod:`st_pooling.registration`.)
"""

from __future__ import annotations

import os
from typing import Any

from sentence_transformers import SentenceTransformer


PACKAGED_NAMES = ("minilm", "smollm2")


class ModelNotFoundError(FileNotFoundError):
    """A model name that is neither a local folder nor loadable from the Hugging Face Hub (offline, or unknown)."""


def model_not_found(name: str, error: BaseException, what: str = "model") -> ModelNotFoundError:
    """One line for ``error`` (an OSError or huggingface_hub error) raised loading ``name`` (a ``what``): what was
    asked, why it failed, what to do. The full error is kept as ``__cause__`` by the callers."""
    text = str(error)
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")
    if os.path.isabs(name) or name.startswith((".", "~")):  # a path, not a Hub name
        why = "there is no such folder"
    elif offline or "connect" in text.lower() or "offline" in text.lower():
        why = ("not a local folder, and the Hugging Face Hub is unreachable (offline or no network) with no copy in "
               "the local cache")
    elif text.strip():
        why = "not a local folder, and the Hugging Face Hub has no such model (" + text.strip().splitlines()[0] + ")"
    else:
        why = "not a local folder, and the Hugging Face Hub has no such model"
    return ModelNotFoundError(f"cannot load the {what} {name!r}: {why}. Give a model folder, or a packaged short "
                              f"name: {', '.join(PACKAGED_NAMES)}")


def load_model(path: str, **kwargs: Any) -> SentenceTransformer:
    """Load a saved st-pooling model (a convenience for ``import st_pooling; SentenceTransformer(path)``).

    Raises :class:`ModelNotFoundError` (a ``FileNotFoundError``) with one line when ``path`` is not a local folder
    and the Hub cannot provide it."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        return SentenceTransformer(path, **kwargs)
    except (OSError, HfHubHTTPError) as error:
        if os.path.exists(path):  # a local folder: its own error, not a Hub one
            raise
        raise model_not_found(str(path), error) from error
