"""ONNX export of a saved st-pooling model (transformer + pooling [+ Normalize]), run with onnxruntime.

sentence-transformers' own ONNX backend (optimum) does not install beside transformers 5, so this exports the whole
``SentenceTransformer`` forward (token ids and mask in, ``sentence_embedding`` out) with ``torch.onnx.export``'s
TorchScript exporter, batch and sequence axes dynamic. The TorchScript tracer records Python-level decisions as
taken for the example input; the poolings take only decisions whose two branches compute the same values, and the
parity tests run every pooling at other batch sizes and lengths than the example. Tokenization stays in Python:
:class:`OnnxEncoder` tokenizes with the saved tokenizer and runs the graph.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from torch import Tensor

ONNX_FILE = "model.onnx"
INFO_FILE = "onnx_inputs.json"
OPSET = 17
EXAMPLE_TEXTS = ["An example sentence to trace the graph with.", "A second, shorter one."]


def _onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("ONNX export runs with onnxruntime: pip install 'st-pooling[onnx]' "
                          "(onnx and onnxruntime)") from None
    return onnxruntime


class _SentenceEmbeddingGraph:
    """The model's forward from tensors to the sentence embedding (what the ONNX graph computes)."""

    @staticmethod
    def build(model: SentenceTransformer, input_names: list[str]):
        import torch

        class Graph(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.model = model

            def forward(self, *tensors: Tensor) -> Tensor:
                return self.model(dict(zip(input_names, tensors, strict=True)))["sentence_embedding"]

        return Graph().eval()


def export_onnx(model_or_path: str | Path | SentenceTransformer, output_dir: str | Path, *,
                overwrite: bool = False) -> Path:
    """Write ``output_dir/model.onnx`` (inputs: the tokenizer's tensors, ``batch`` x ``sequence``; output:
    ``sentence_embedding``, ``batch`` x dim) and ``onnx_inputs.json``; the tokenizer is saved beside them.

    Args:
        model_or_path: a saved st-pooling model folder or a loaded SentenceTransformer.
        output_dir: created if missing; a non-empty folder is refused unless ``overwrite``.
    Returns the ``model.onnx`` path.
    """
    import torch
    from sentence_transformers import SentenceTransformer

    _onnxruntime()
    model = model_or_path if isinstance(model_or_path, SentenceTransformer) else _load(model_or_path)
    model = model.to("cpu").eval()
    output = Path(output_dir)
    if output.exists() and any(output.iterdir()) and not overwrite:
        raise FileExistsError(f"{output} is not empty: pass overwrite=True (--overwrite) or another folder")
    output.mkdir(parents=True, exist_ok=True)
    features = model.tokenize(EXAMPLE_TEXTS)
    input_names = [name for name in ("input_ids", "attention_mask", "token_type_ids") if name in features]
    graph = _SentenceEmbeddingGraph.build(model, input_names)
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names} | {"sentence_embedding": {0: "batch"}}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer warnings about Python-level decisions (see the module docstring)
        torch.onnx.export(graph, tuple(features[name] for name in input_names), str(output / ONNX_FILE),
                          input_names=input_names, output_names=["sentence_embedding"], dynamic_axes=axes,
                          opset_version=OPSET, dynamo=False)
    model.tokenizer.save_pretrained(str(output))
    info = {"input_names": input_names, "max_seq_length": model.max_seq_length,
            "embedding_dimension": model.get_embedding_dimension()}
    (output / INFO_FILE).write_text(json.dumps(info, indent=2), encoding="utf-8")
    return output / ONNX_FILE


def _load(path: str | Path) -> SentenceTransformer:
    import st_pooling  # noqa: F401 -- registers the pooling classes
    from sentence_transformers import SentenceTransformer

    folder = Path(path)
    if not (folder / "modules.json").is_file():
        raise ValueError(f"{folder} is not a saved SentenceTransformer folder (no modules.json): save the model "
                         "with model.save(folder) first")
    return SentenceTransformer(str(folder), device="cpu")


class OnnxEncoder:
    """Sentence embeddings from an exported folder with onnxruntime (CPU), tokenized by the saved tokenizer."""

    def __init__(self, folder: str | Path, *, threads: int | None = None) -> None:
        ort = _onnxruntime()
        from transformers import AutoTokenizer

        folder = Path(folder)
        if not (folder / ONNX_FILE).is_file() or not (folder / INFO_FILE).is_file():
            raise FileNotFoundError(f"{folder} holds no ONNX export ({ONNX_FILE}, {INFO_FILE}): run "
                                    "`st-pooling export-onnx --model <saved model> --output <folder>` first")
        self.info = json.loads((folder / INFO_FILE).read_text(encoding="utf-8"))
        self.tokenizer = AutoTokenizer.from_pretrained(str(folder))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / ONNX_FILE), options, providers=["CPUExecutionProvider"])

    def run_features(self, features: dict[str, np.ndarray]) -> np.ndarray:
        """Embeddings of already tokenized inputs (arrays named as ``info['input_names']``)."""
        return self.session.run(None, {name: np.asarray(features[name], dtype=np.int64)
                                       for name in self.info["input_names"]})[0]

    def encode(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string")
        batches = []
        for start in range(0, len(texts), batch_size):
            tokens = self.tokenizer(list(texts[start:start + batch_size]), padding=True, truncation=True,
                                    max_length=self.info["max_seq_length"], return_tensors="np")
            batches.append(self.run_features(tokens))
        if not batches:
            return np.zeros((0, self.info["embedding_dimension"]), dtype=np.float32)
        return np.concatenate(batches)
