"""Encode time of each pooling exported to ONNX (onnxruntime, CPU) relative to the same model in PyTorch.

The packaged MiniLM with every pooling, the same texts and batch size, both on one thread each (this machine's CPUs
are shared), timed in alternation; the ratio is the median of the per-round ratios (below 1: ONNX is faster).
Tokenization is included on both sides. Also prints the largest absolute difference of the embeddings. Writes
benchmarks/results/onnx.json.

    .venv/bin/python benchmarks/bench_onnx.py [--texts 256] [--rounds 5] [--batch-size 32]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from st_pooling import POOLINGS, build_model  # noqa: E402
from st_pooling.publish.onnx import OnnxEncoder, export_onnx  # noqa: E402

from bench_encode import benchmark_texts  # noqa: E402


def time_once(function) -> float:
    started = time.perf_counter()
    function()
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    texts = benchmark_texts(args.texts)
    rows = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name in POOLINGS:
            torch.manual_seed(0)
            model = build_model("minilm", name, device="cpu").eval()
            export_onnx(model, Path(scratch) / name)
            onnx = OnnxEncoder(Path(scratch) / name, threads=1)
            torch_out = model.encode(texts, batch_size=args.batch_size, convert_to_numpy=True)
            onnx_out = onnx.encode(texts, batch_size=args.batch_size)
            ratios = []
            for _ in range(args.rounds):
                pytorch = time_once(lambda: model.encode(texts, batch_size=args.batch_size))
                runtime = time_once(lambda: onnx.encode(texts, batch_size=args.batch_size))
                ratios.append(runtime / pytorch)
            rows[name] = {"ratio": statistics.median(ratios), "max_abs_diff": float(np.abs(onnx_out - torch_out).max())}
            print(f"{name:<18} onnx/pytorch {rows[name]['ratio']:.3f}  max |diff| {rows[name]['max_abs_diff']:.1e}",
                  flush=True)
    out = Path(__file__).parent / "results" / "onnx.json"
    out.write_text(json.dumps({"texts": len(texts), "batch_size": args.batch_size, "rounds": args.rounds,
                               "threads": 1, "poolings": rows}, indent=2), encoding="utf-8")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
