"""One forward pass of the base model for many poolings, fed to mteb through a proper encoder wrapper.

The base transformer is the expensive part, the pooling the cheap one. :class:`SharedForwardEmbedder` runs the
transformer once per distinct text and applies every requested pooling to that one set of states, keeping only the
resulting sentence embeddings (``poolings x dim`` floats per text) in a cache bounded in bytes. Each pooling is then
presented to mteb as its own encoder (:class:`PoolingEncoder`), so mteb still does all the scoring and writes its
results per configuration, while K poolings cost about one forward pass.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from mteb.models import ModelMeta
from mteb.models.abs_encoder import AbsEncoder
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Transformer

from st_pooling.forward import PoolingsTogether, encode_pool, forward_batches
from st_pooling.modules.base import PoolingModule

if TYPE_CHECKING:
    from mteb.abstasks.task_metadata import TaskMetadata
    from mteb.types import BatchedInput, EncodeKwargs, PromptType
    from torch.utils.data import DataLoader
    from typing_extensions import Unpack

DEFAULT_CACHE_BYTES = 2 * 1024**3


@dataclass(frozen=True)
class ModelEntry:
    """A whole model to compare beside pooling specs: a saved folder (``ModelEntry.load``) or one in memory.

    It must be a base transformer, one pooling module (st-pooling's or sentence-transformers' ``Pooling``) and
    optionally ``Normalize``. Models whose base is the same (same weights and settings, e.g. heads trained on the
    frozen base at the same max_seq_length) share one forward pass with each other and with the pooling specs.
    """

    label: str
    model: SentenceTransformer

    @classmethod
    def load(cls, path: str | Path, label: str | None = None) -> ModelEntry:
        folder = Path(path)
        if not (folder / "modules.json").is_file():
            raise FileNotFoundError(f"{folder} is not a saved sentence-transformers model (no modules.json): give a "
                                    "pooling spec such as gem:initial_p=2, or the folder a model was saved to")
        return cls(label or folder.name, SentenceTransformer(str(folder), device="cpu"))

    def parts(self) -> tuple[Transformer, torch.nn.Module]:
        """The base and the pooling, or a ValueError naming what the model holds instead."""
        modules = list(self.model)
        if modules and isinstance(modules[-1], Normalize):
            modules = modules[:-1]
        if len(modules) != 2 or not isinstance(modules[0], Transformer):
            raise ValueError(f"{self.label}: compare reads models made of a Transformer, one pooling and optionally "
                             f"Normalize; this one has {[type(module).__name__ for module in self.model]}")
        return modules[0], modules[1]


def transformer_signature(transformer: Transformer) -> tuple[Any, ...]:
    """What decides a Transformer's token states: class, settings that change its output, and its weights' digest.
    Two Transformers with equal signatures can share one forward pass (hidden-state output only adds outputs)."""
    digest = hashlib.blake2b(digest_size=16)
    for name, tensor in sorted(transformer.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    settings = {key: getattr(transformer, key, None) for key in ("max_seq_length", "attention_mode", "append_eos")}
    return type(transformer).__name__, tuple(sorted(settings.items())), digest.hexdigest()


class EmbeddingCache:
    """Sentence embeddings of every pooling, per text, least recently used first out past ``max_bytes``."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._rows: OrderedDict[str, np.ndarray] = OrderedDict()  # text -> (poolings, dim) float32
        self.nbytes = 0

    def __contains__(self, text: str) -> bool:
        return text in self._rows

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, text: str) -> np.ndarray:
        self._rows.move_to_end(text)
        return self._rows[text]

    def put(self, text: str, row: np.ndarray) -> None:
        if text in self._rows:
            return
        self._rows[text] = row
        self.nbytes += row.nbytes
        while self.nbytes > self.max_bytes and len(self._rows) > 1:
            _, evicted = self._rows.popitem(last=False)
            self.nbytes -= evicted.nbytes


class SharedForwardEmbedder:
    """Runs ``transformer`` once per distinct text and applies every pooling in ``poolings`` to its states.

    ``devices`` (e.g. ``["cuda:0", "cuda:1"]`` or ``["cpu"] * 4``) spreads the forward pass over that many processes
    with sentence-transformers' multi-process pool (:func:`st_pooling.forward.encode_pool`), started at the first
    texts and stopped by :meth:`close`."""

    def __init__(self, transformer: Transformer, poolings: Mapping[str, torch.nn.Module], *, normalize: bool = True,
                 batch_size: int = 32, cache_bytes: int = DEFAULT_CACHE_BYTES, show_progress_bar: bool = True,
                 device: str | None = None, devices: Sequence[str] | None = None) -> None:
        if not poolings:
            raise ValueError("give at least one pooling to compare")
        self.devices = list(devices) if devices else None
        self._pool_stack = ExitStack()
        self._pool: tuple[Any, Any] | None = None
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.transformer = transformer.to(self.device).eval()
        self.poolings = {label: module.to(self.device).eval() for label, module in poolings.items()}
        self.labels = list(self.poolings)
        self.normalize = normalize
        self.batch_size = batch_size
        self.cache = EmbeddingCache(cache_bytes)
        self.show_progress_bar = show_progress_bar
        self.forward_texts = 0  # how many texts went through the transformer, for benchmarks and tests

    def embeddings(self, texts: Sequence[str], label: str) -> np.ndarray:
        """(len(texts), dim) float32 sentence embeddings of ``texts`` under the pooling ``label``."""
        if label not in self.poolings:
            raise KeyError(f"no pooling labelled {label!r}; known: {self.labels}")
        index = self.labels.index(label)
        self.ensure(texts)
        out = np.empty((len(texts), self.transformer.get_embedding_dimension()), dtype=np.float32)  # as _forward
        missing = []
        for row, text in enumerate(texts):
            if text in self.cache:
                out[row] = self.cache.get(text)[index]
            else:  # evicted while filling a request larger than the cache
                missing.append(row)
        if missing:
            out[missing] = self._forward([texts[row] for row in missing], store=False)[:, index]
        return out

    def ensure(self, texts: Iterable[str]) -> None:
        """Compute and cache every pooling's embedding of each text not cached yet."""
        todo = list(dict.fromkeys(text for text in texts if text not in self.cache))
        if todo:
            self._forward(todo, store=True)

    def close(self) -> None:
        """Stop the encode processes, if any were started."""
        self._pool = None
        self._pool_stack.close()

    def _forward(self, texts: list[str], store: bool) -> np.ndarray:
        result = self._forward_in_processes(texts) if self.devices else self._forward_here(texts)
        self.forward_texts += len(texts)
        if store:
            for i, text in enumerate(texts):
                self.cache.put(text, result[i])
        return result

    def _forward_here(self, texts: list[str]) -> np.ndarray:
        result = np.empty((len(texts), len(self.labels), self.transformer.get_embedding_dimension()), np.float32)
        for rows, features in forward_batches(self.transformer, texts, batch_size=self.batch_size,
                                              device=self.device, desc="shared forward",
                                              show_progress_bar=self.show_progress_bar):
            for position, label in enumerate(self.labels):
                pooled = self.poolings[label](dict(features))["sentence_embedding"].float()
                if self.normalize:
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                result[rows, position] = pooled.cpu().numpy()
        return result

    def _forward_in_processes(self, texts: list[str]) -> np.ndarray:
        assert self.devices  # only called with devices
        if self._pool is None:
            together = SentenceTransformer(modules=[self.transformer, PoolingsTogether(
                [self.poolings[label] for label in self.labels], self.normalize)], device="cpu")
            self._pool = self._pool_stack.enter_context(encode_pool(together, self.devices))
        pool_model, pool = self._pool
        flat = pool_model.encode(texts, pool=pool, batch_size=self.batch_size, convert_to_numpy=True,
                                 show_progress_bar=False)  # (texts, poolings x dim)
        return np.asarray(flat, dtype=np.float32).reshape(len(texts), len(self.labels), -1)


def _batch_texts(batch: Mapping[str, Any]) -> list[str]:
    texts = batch.get("text")
    if texts is None:
        raise ValueError(f"st-pooling encodes text only; this mteb batch has the columns {sorted(batch)}")
    return list(texts)


class PoolingEncoder(AbsEncoder):
    """One pooling of a :class:`SharedForwardEmbedder`, as an mteb encoder (cosine similarity)."""

    mteb_model_meta: ModelMeta  # always set here (AbsEncoder allows None, which mteb's EncoderProtocol does not)

    def __init__(self, embedder: SharedForwardEmbedder, label: str, meta: ModelMeta) -> None:
        self.model = embedder
        self.label = label
        self.mteb_model_meta = meta

    def encode(self, inputs: DataLoader[BatchedInput], *, task_metadata: TaskMetadata, hf_split: str, hf_subset: str,
               prompt_type: PromptType | None = None, **kwargs: Unpack[EncodeKwargs]) -> np.ndarray:
        texts = [text for batch in inputs for text in _batch_texts(batch)]
        return self.model.embeddings(texts, self.label)
