"""The frozen-feature cache: what a pooling head reads from a frozen base, computed once per text.

With the base frozen, a head's input for a text never changes, so the fast path runs the transformer once over every
training and dev text and keeps only what the head needs:

* token-level heads (mean, weighted sum, GeM, latent attention, NV-Embed, ...): the last layer's token states, stored
  flat as ``(total_tokens, dim)`` with per-text offsets (no padding stored);
* multi-layer trainable pooling (MLTP): the per-layer summaries ``(texts, layers, dim)`` the head's own
  ``layer_summary`` ('mean' or 'last_token') makes of its chosen ``layers`` (with a native start, one more row: the
  native pooling of the last layer, see ``MultiLayerTrainablePooling.extract``).

Which of the two a head reads, it declares (``PoolingModule.reads``); the cache stores what the head's own
``extract`` gives and trains its ``head`` on it, so cached and live pooling agree for every pooling.

Storage is float16 by default (half the memory; the head computes in float32) or float32 for exactness, in memory
within ``max_bytes`` (checked before the forward pass, from the token counts), and optionally saved to / memory-mapped
from a folder on disk.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from sentence_transformers.sentence_transformer.modules import Transformer
from torch import Tensor

from st_pooling import functional as F
from st_pooling.forward import forward_batches, length_batches, tokenized_batches
from st_pooling.modules.base import LAYER_STACK, TOKEN_STATES, PoolingModule
from st_pooling.training.distributed import Ranks

STORAGE_DTYPES = {"float16": np.float16, "float32": np.float32}
DEFAULT_MAX_BYTES = 4 * 1024**3


def _human(n_bytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n_bytes < 1024 or unit == "GiB":
            return f"{n_bytes:.1f} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.1f} GiB"


def cache_kind(head: PoolingModule) -> tuple[str, dict[str, Any]]:
    """What ``head`` reads from the base (``TOKEN_STATES`` or ``LAYER_STACK``) and the options that shape it."""
    return head.reads, head.extraction()


@dataclass
class FeatureCache:
    """Cached head inputs of a set of texts.

    ``values`` is ``(total_tokens, dim)`` for token states (rows of text i are ``offsets[i]:offsets[i+1]``) or
    ``(texts, layers, dim)`` for a layer stack; ``index`` maps each text to its row.
    """

    kind: str
    values: np.ndarray
    offsets: np.ndarray | None
    index: dict[str, int]
    meta: dict[str, Any]

    @property
    def nbytes(self) -> int:
        return int(self.values.nbytes + (0 if self.offsets is None else self.offsets.nbytes))

    def __len__(self) -> int:
        return len(self.index)

    def __contains__(self, text: str) -> bool:
        return text in self.index

    def rows(self, texts: Sequence[str]) -> list[int]:
        try:
            return [self.index[text] for text in texts]
        except KeyError as error:
            raise KeyError(f"text not in the feature cache: {error.args[0][:80]!r}; build the cache over every "
                           "training and dev text") from None

    def token_batch(self, texts: Sequence[str]) -> tuple[Tensor, Tensor]:
        """Right-padded float32 states ``(batch, max_len, dim)`` and mask ``(batch, max_len)`` of ``texts``."""
        offsets = self.offsets
        if offsets is None:
            raise ValueError(f"token_batch reads a {TOKEN_STATES} cache, this one holds {self.kind}")
        return F.pad_token_rows([
            torch.from_numpy(np.asarray(self.values[offsets[r]:offsets[r + 1]], dtype=np.float32))
            for r in self.rows(texts)])

    def stack_batch(self, texts: Sequence[str]) -> Tensor:
        """float32 per-layer summaries ``(batch, layers, dim)`` of ``texts``."""
        return torch.from_numpy(np.asarray(self.values[self.rows(texts)], dtype=np.float32))

    def pool(self, head: PoolingModule, texts: Sequence[str], device: torch.device | str = "cpu") -> Tensor:
        """The head's embeddings ``(batch, dim)`` of ``texts``, through the head's own :meth:`~PoolingModule.head`
        (so options such as ``exclude_first_token`` apply exactly as in the live pipeline)."""
        if self.kind == LAYER_STACK:
            return head.head({"layer_stack": self.stack_batch(texts).to(device)})
        states, mask = self.token_batch(texts)
        return head.head({"token_embeddings": states.to(device), "attention_mask": mask.to(device)})

    def check_fits(self, head: PoolingModule) -> None:
        kind, options = cache_kind(head)
        if kind != self.kind or any(self.meta.get(key) != value for key, value in options.items()):
            raise ValueError(f"this feature cache holds {self.kind} {self._options()}, but {type(head).__name__} "
                             f"needs {kind} {options}: build a cache for this head")
        if self.meta["dim"] != head.get_embedding_dimension():
            raise ValueError(f"the cache holds {self.meta['dim']}-dimensional features, the head expects "
                             f"{head.get_embedding_dimension()}")

    def _options(self) -> dict[str, Any]:
        return {key: self.meta[key] for key in ("layers", "layer_summary", "exclude_first_token", "native")
                if key in self.meta}

    def save(self, folder: str | Path) -> Path:
        """Write the cache to ``folder`` (values.npy, offsets.npy, texts.json, meta.json)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "values.npy", self.values)
        if self.offsets is not None:
            np.save(folder / "offsets.npy", self.offsets)
        texts = sorted(self.index, key=self.index.__getitem__)
        (folder / "texts.json").write_text(json.dumps(texts, ensure_ascii=False), encoding="utf-8")
        (folder / "meta.json").write_text(json.dumps({**self.meta, "kind": self.kind}, indent=2), encoding="utf-8")
        return folder

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> FeatureCache:
        """Read a saved cache; with ``mmap`` the values stay on disk and are read batch by batch."""
        folder = Path(folder)
        meta = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        texts = json.loads((folder / "texts.json").read_text(encoding="utf-8"))
        values = _load_array(folder / "values.npy", mmap_mode="r" if mmap else None)
        offsets = _load_array(folder / "offsets.npy") if (folder / "offsets.npy").is_file() else None
        kind = meta.pop("kind")
        return cls(kind, values, offsets, {text: row for row, text in enumerate(texts)}, meta)


def _load_array(path: Path, mmap_mode: Literal["r+", "r", "w+", "c"] | None = None) -> np.ndarray:
    """A numeric array, never a pickle: an object array (which np.load could only unpickle) is refused."""
    try:
        return np.load(path, mmap_mode=mmap_mode, allow_pickle=False)
    except ValueError as error:
        raise ValueError(f"{path} is not a feature array st-pooling wrote ({error}): delete the cache folder and "
                         "build it again") from None


def build_feature_cache(transformer: Transformer, head: PoolingModule, texts: Sequence[str], *,
                        dtype: str = "float16", max_bytes: int = DEFAULT_MAX_BYTES, batch_size: int = 64,
                        device: str | torch.device | None = None, show_progress_bar: bool = True,
                        ranks: Ranks | None = None) -> FeatureCache:
    """Run the frozen ``transformer`` once over the distinct ``texts`` and keep what ``head`` reads.

    The budget is checked before the forward pass from the token counts: a cache larger than ``max_bytes`` raises a
    ValueError that gives its size. float16 storage that would overflow (|x| > 65504) raises too: use float32.

    Under several processes (``ranks``) each rank runs the base over its share of the texts and every rank then holds
    the whole cache (the shares are exchanged as bytes): the base runs once per text in the whole job.
    """
    if ranks is not None and ranks.distributed:
        return _build_across_ranks(transformer, head, texts, ranks, dtype=dtype, max_bytes=max_bytes,
                                   batch_size=batch_size, device=device or ranks.device,
                                   show_progress_bar=show_progress_bar)
    if dtype not in STORAGE_DTYPES:
        raise ValueError(f"cache dtype must be one of {', '.join(STORAGE_DTYPES)}, got {dtype!r}")
    kind, options = cache_kind(head)
    texts = list(dict.fromkeys(texts))
    if not texts:
        raise ValueError("no texts to cache")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dim = head.get_embedding_dimension()
    storage = STORAGE_DTYPES[dtype]
    itemsize = np.dtype(storage).itemsize
    batches = length_batches(texts, batch_size)
    inputs = tokenized_batches(transformer, texts, batches)  # once: for the token counts and for the forward pass
    lengths = np.zeros(len(texts), dtype=np.int64)
    for rows, features in zip(batches, inputs):
        lengths[rows] = features["attention_mask"].sum(dim=1).numpy()
    rows_per_text = len(options["layers"]) + (options["native"] is not None) if kind == LAYER_STACK else 1
    width = dim * rows_per_text
    needed = (len(texts) if kind == LAYER_STACK else int(lengths.sum())) * width * itemsize
    if needed > max_bytes:
        raise ValueError(f"the feature cache would take {_human(needed)} ({kind}, {dtype}, {len(texts)} texts, "
                         f"{int(lengths.sum())} tokens) but the budget is {_human(max_bytes)}: raise max_bytes, "
                         "store float16, train on fewer texts or a shorter max_seq_length, or use the trainer path")
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum(lengths)
    shape = (len(texts), rows_per_text, dim) if kind == LAYER_STACK else (int(offsets[-1]), dim)
    values = np.empty(shape, dtype=storage)
    for rows, output in forward_batches(transformer, texts, batch_size=batch_size, device=device,
                                        desc="caching features", show_progress_bar=show_progress_bar,
                                        batches=batches, inputs=inputs):
        extracted = head.extract(output)  # what the live head reads
        if kind == LAYER_STACK:
            _store(values, rows, extracted["layer_stack"].float().cpu().numpy(), dtype)  # (batch, layers, dim)
            continue
        states, mask = extracted["token_embeddings"], extracted["attention_mask"]
        for position, row in enumerate(rows):
            real = states[position][mask[position].bool()].float().cpu().numpy()  # (tokens, dim)
            _store(values, slice(offsets[row], offsets[row + 1]), real, dtype)
    meta = {"dim": dim, "dtype": dtype, "texts": len(texts), **options,
            "max_seq_length": getattr(transformer, "max_seq_length", None)}
    return FeatureCache(kind, values, offsets if kind == TOKEN_STATES else None,
                        {text: row for row, text in enumerate(texts)}, meta)


def _build_across_ranks(transformer: Transformer, head: PoolingModule, texts: Sequence[str], ranks: Ranks, *,
                        dtype: str, max_bytes: int, batch_size: int, device: str | torch.device,
                        show_progress_bar: bool) -> FeatureCache:
    """:func:`build_feature_cache` split across ``ranks``: each builds its share, then all exchange them."""
    texts = list(dict.fromkeys(texts))
    share = texts[ranks.share(len(texts))]
    if not texts:
        raise ValueError("no texts to cache")
    local = build_feature_cache(transformer, head, share or texts[:1], dtype=dtype, max_bytes=max_bytes,
                                batch_size=batch_size, device=device, show_progress_bar=show_progress_bar and ranks.is_main)
    if not share:  # more ranks than texts: this one contributes nothing
        local = FeatureCache(local.kind, local.values[:0], None if local.offsets is None else local.offsets[:1], {},
                             local.meta)
    total = sum(ranks.all_gather_json(local.nbytes))
    if total > max_bytes:
        raise ValueError(f"the feature cache would take {_human(total)} ({local.kind}, {dtype}, {len(texts)} texts) but "
                         f"the budget is {_human(max_bytes)}: raise max_bytes, store float16, train on fewer texts or "
                         "a shorter max_seq_length, or use the trainer path")
    parts = [np.frombuffer(part, dtype=local.values.dtype).reshape(-1, *local.values.shape[1:])
             for part in ranks.all_gather_bytes(np.ascontiguousarray(local.values).tobytes())]
    values = np.concatenate(parts)
    offsets = None
    if local.offsets is not None:
        lengths = [np.diff(np.frombuffer(part, dtype=np.int64))
                   for part in ranks.all_gather_bytes(local.offsets.tobytes())]
        offsets = np.concatenate([[0], np.cumsum(np.concatenate(lengths))]).astype(np.int64)
    return FeatureCache(local.kind, values, offsets, {text: row for row, text in enumerate(texts)},
                        {**local.meta, "texts": len(texts)})


def _store(values: np.ndarray, where: Any, block: np.ndarray, dtype: str) -> None:
    if dtype == "float16" and block.size and float(np.abs(block).max()) > np.finfo(np.float16).max:
        raise ValueError(f"a feature of magnitude {float(np.abs(block).max()):.3g} overflows float16 storage "
                         "(decoder attention sinks do this): build the cache with dtype='float32'")
    values[where] = block


def cache_bytes_estimate(n_tokens: int, dim: int, dtype: str = "float16") -> int:
    """Bytes of a token-state cache of ``n_tokens`` tokens."""
    return int(math.prod((n_tokens, dim)) * np.dtype(STORAGE_DTYPES[dtype]).itemsize)
