"""Encode time of every st-pooling module relative to sentence-transformers' own mean Pooling.

Same model (the packaged MiniLM), same texts, same batch size, same run; anchor and candidate are timed in
alternation and the ratio is the median of the per-round ratios. Prints a table and writes
benchmarks/results/encode.json.

    .venv/bin/python benchmarks/bench_encode.py [--texts 512] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from sentence_transformers import SentenceTransformer  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Pooling  # noqa: E402

from st_pooling import POOLINGS, build_model  # noqa: E402
from st_pooling.models import build_transformer  # noqa: E402

TARGETS = {"reduction": 1.03, "attention": 1.15}
ATTENTION_HEADS = {"latent_attention", "mltp", "nv_embed"}


def benchmark_texts(n: int) -> list[str]:
    """Real sentences of varied length: the STS Benchmark test set when present, else gensim's Lee corpus."""
    from st_pooling.data.paths import shared_data_dir

    data = shared_data_dir()
    if data is not None and (data / "stsbenchmark" / "sts-test.csv").exists():
        from st_pooling.data import load_stsbenchmark

        sts = load_stsbenchmark(data / "stsbenchmark", split="test")
        texts = sts.sentences1 + sts.sentences2
    else:
        from st_pooling.data import load_lee_sts

        lee = load_lee_sts()
        texts = sorted(set(lee.sentences1 + lee.sentences2))
    return (texts * (n // len(texts) + 1))[:n]


def time_encode(model: SentenceTransformer, texts: list[str], batch_size: int) -> float:
    start = time.perf_counter()
    model.encode(texts, batch_size=batch_size)
    return time.perf_counter() - start


def paired_timings(ours: SentenceTransformer, anchor: SentenceTransformer, texts: list[str], batch_size: int,
                   repeats: int) -> tuple[float, float, float]:
    """Alternate anchor and ours ``repeats`` times (after a warm-up of each): median seconds of each and the median
    of the per-round ratios, so that a slow moment of the machine hits both sides of a round alike."""
    for model in (anchor, ours):
        model.encode(texts[:batch_size], batch_size=batch_size)
    rounds = []
    for _ in range(repeats):
        anchor_s = time_encode(anchor, texts, batch_size)
        ours_s = time_encode(ours, texts, batch_size)
        rounds.append((ours_s, anchor_s, ours_s / anchor_s))
    return tuple(statistics.median(values) for values in zip(*rounds))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "encode.json"))
    args = parser.parse_args()
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    texts = benchmark_texts(args.texts)
    rows = []
    print(f"{'pooling':<18}{'params':>10}{'ours s':>10}{'anchor s':>10}{'ratio':>8}{'target':>8}")
    for name in sorted(POOLINGS):
        ours = build_model("minilm", name, device="cpu").eval()
        anchor_transformer = build_transformer("minilm", POOLINGS[name].base_needs_for({}))
        anchor = SentenceTransformer(modules=[anchor_transformer, Pooling(384, pooling_mode="mean")], device="cpu")
        ours_s, anchor_s, ratio = paired_timings(ours, anchor, texts, args.batch_size, args.repeats)
        target = TARGETS["attention" if name in ATTENTION_HEADS else "reduction"]
        params = ours[1].num_parameters()
        rows.append({"pooling": name, "parameters": params, "seconds": ours_s, "anchor_seconds": anchor_s,
                     "ratio": ratio, "target": target, "meets_target": ratio <= target})
        print(f"{name:<18}{params:>10,}{ours_s:>10.3f}{anchor_s:>10.3f}{ratio:>8.3f}{target:>8.2f}")
    result = {"model": "minilm (all-MiniLM-L6-v2)", "texts": len(texts), "batch_size": args.batch_size,
              "repeats": args.repeats, "threads": torch.get_num_threads(), "rows": rows,
              "anchor": "sentence-transformers Pooling(mean) on the same Transformer settings"}
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
