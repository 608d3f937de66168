"""Time per epoch of head-only training: the frozen-feature fast path vs SentenceTransformerTrainer, same run.

Both paths train the same freshly built head (same seed, data, loss, batch size, learning rate) on MiniLM with the
base frozen; the anchor is SentenceTransformerTrainer, which runs the frozen base at every step. The fast path pays one
feature pass over the train and dev texts first; its epochs then only run the head. Printed: seconds per epoch of
training steps (dev evaluation and checkpointing excluded on both sides), the one-time feature pass, the ratio, and
each path's dev cosine Spearman after every epoch. Writes benchmarks/results/training.json.

    .venv/bin/python benchmarks/bench_training.py [--pooling latent_attention] [--train-rows 1024] [--epochs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

from st_pooling import build_model  # noqa: E402
from st_pooling.data import shared_data_dir  # noqa: E402
from st_pooling.training import TrainConfig, stsb_scored_pairs, train_model  # noqa: E402


def load_average() -> list[float]:
    """The machine's 1, 5 and 15 minute load averages: other work shares the CPUs and slows both paths."""
    return [round(load, 2) for load in os.getloadavg()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pooling", default="latent_attention")
    parser.add_argument("--train-rows", type=int, default=1024)
    parser.add_argument("--dev-rows", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--cache-dtype", default="float16")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for both paths (default: torch's)")
    parser.add_argument("--output", default="benchmarks/results/training.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    folder = (shared_data_dir() or Path("../shared/data")) / "stsbenchmark"
    train = stsb_scored_pairs(folder, "train").subset(args.train_rows, seed=0)
    dev = stsb_scored_pairs(folder, "dev").subset(args.dev_rows, seed=0)
    runs, load_before = {}, load_average()
    with tempfile.TemporaryDirectory() as scratch:
        for name, fast in (("trainer", False), ("fast_path", True)):
            torch.manual_seed(0)  # the same initial head on both paths
            model = build_model("minilm", args.pooling, max_seq_length=args.max_seq_length, device="cpu")
            config = TrainConfig(mode="head", epochs=args.epochs, batch_size=args.batch_size, fast_path=fast,
                                 cache_dtype=args.cache_dtype, show_progress_bar=False)
            started = time.perf_counter()
            result = train_model(model, train, Path(scratch) / name, dev=dev, config=config)
            runs[name] = {"wall_seconds": time.perf_counter() - started, "cache_seconds": result.cache_seconds,
                          "epoch_seconds": [r.seconds for r in result.history],
                          "dev_spearman": [r.dev_score for r in result.history],
                          "history": [asdict(r) for r in result.history]}
    slow, fast = runs["trainer"], runs["fast_path"]
    slow_epoch = sum(slow["epoch_seconds"]) / len(slow["epoch_seconds"])
    fast_epoch = sum(fast["epoch_seconds"]) / len(fast["epoch_seconds"])
    summary = {
        "benchmark": "head-only training epoch: fast path vs SentenceTransformerTrainer (base frozen)",
        "pooling": args.pooling, "train_rows": len(train), "dev_rows": len(dev), "epochs": args.epochs,
        "batch_size": args.batch_size, "max_seq_length": args.max_seq_length, "cache_dtype": args.cache_dtype,
        "trainer_seconds_per_epoch": slow_epoch, "fast_path_seconds_per_epoch": fast_epoch,
        "speedup_per_epoch": slow_epoch / fast_epoch, "fast_path_feature_pass_seconds": fast["cache_seconds"],
        "trainer_final_dev_spearman": slow["dev_spearman"][-1],
        "fast_path_final_dev_spearman": fast["dev_spearman"][-1],
        "dev_spearman_difference": fast["dev_spearman"][-1] - slow["dev_spearman"][-1],
        "runs": runs, "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(),
                                  "cpus": os.cpu_count(), "torch": torch.__version__,
                                  "load_average_1_5_15min": {"before": load_before, "after": load_average()}},
    }
    print(f"{args.pooling} on MiniLM, {len(train)} STS-B train pairs, batch {args.batch_size}, CoSENT, base frozen")
    print(f"seconds per epoch: trainer {slow_epoch:.2f} | fast path {fast_epoch:.2f} | "
          f"ratio {slow_epoch / fast_epoch:.1f}x (one-time feature pass {fast['cache_seconds']:.2f} s)")
    print(f"dev cosine Spearman per epoch: trainer {[round(s, 4) for s in slow['dev_spearman']]} | "
          f"fast path {[round(s, 4) for s in fast['dev_spearman']]}")
    print(f"load average (1, 5, 15 min) before {load_before} after {load_average()} on {os.cpu_count()} CPUs")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
