"""Past one process: the fast path's epoch on 2 ranks vs 1 (same data, same global batch), and `compare` with 2 encode
processes vs 1, measured in one run.

Fast path: ``torchrun --nproc_per_node=R`` runs this script's worker (``--worker``), which trains the same freshly
built head with ``st_pooling.training.train_model(..., fast_path=True)``; rank 0 reports the seconds of each epoch's
training steps (dev evaluation excluded), the one-time feature pass (split across the ranks) and the trained head's
dev score. Three launches: 1 rank x 1 thread (the anchor: the same per-rank resources), 1 rank x T threads (one process
given every core the ranks use together) and R ranks x 1 thread. The ratios are the anchors' epoch seconds over the
ranks' epoch seconds.

compare: ``compare_poolings`` on the embedded default tasks, one process (torch's own threads: every core) vs
``devices=["cpu"] * R`` (sentence-transformers' multi-process pool, cores / R threads each); wall seconds of the
whole comparison (mteb's scoring and the statistics, which stay in one process, included) and the largest score
difference between the two. Writes benchmarks/results/distributed.json.

    .venv/bin/python benchmarks/bench_distributed.py [--ranks 2] [--pooling latent_attention] [--train-rows 1024]
        [--batch-sizes 32 128]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

RESULTS = Path(__file__).parent / "results" / "distributed.json"


def load_average() -> list[float]:
    return [round(load, 2) for load in os.getloadavg()]


def worker(args: argparse.Namespace) -> None:
    """One rank of a fast-path run (under torchrun); rank 0 writes the report."""
    import torch

    torch.set_num_threads(args.threads)
    from st_pooling import build_model
    from st_pooling.data import shared_data_dir
    from st_pooling.training import TrainConfig, stsb_scored_pairs, train_model

    folder = (shared_data_dir() or Path("../shared/data")) / "stsbenchmark"
    train = stsb_scored_pairs(folder, "train").subset(args.train_rows, seed=0)
    dev = stsb_scored_pairs(folder, "dev").subset(args.dev_rows, seed=0)
    torch.manual_seed(0)  # the same initial head in every run
    model = build_model("minilm", args.pooling, max_seq_length=args.max_seq_length, device="cpu")
    config = TrainConfig(mode="head", fast_path=True, epochs=args.epochs, batch_size=args.batch_size,
                         cache_dtype="float32", show_progress_bar=False)
    result = train_model(model, train, None, dev=dev, config=config)
    if int(os.environ.get("RANK", "0")) == 0:
        Path(args.worker).write_text(json.dumps({
            "epoch_seconds": [record.seconds for record in result.history],
            "dev_scores": [record.dev_score for record in result.history],
            "step_losses": [loss for record in result.history for loss in record.step_losses],
            "cache_seconds": result.cache_seconds}), encoding="utf-8")


def fast_path_run(args: argparse.Namespace, ranks: int, threads: int) -> dict:
    with tempfile.TemporaryDirectory() as scratch, socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        report = Path(scratch) / "report.json"
        command = [str(Path(sys.executable).parent / "torchrun"), f"--nproc_per_node={ranks}", f"--master_port={port}",
                   __file__, "--worker", str(report), "--threads", str(threads), "--pooling", args.pooling,
                   "--train-rows", str(args.train_rows), "--dev-rows", str(args.dev_rows), "--epochs",
                   str(args.epochs), "--batch-size", str(args.batch_size), "--max-seq-length",
                   str(args.max_seq_length)]
        probe.close()
        env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
        subprocess.run(command, check=True, env=env, capture_output=True, text=True)
        outcome = json.loads(report.read_text(encoding="utf-8"))
    outcome.update(ranks=ranks, threads_per_rank=threads, mean_epoch_s=sum(outcome["epoch_seconds"]) /
                   len(outcome["epoch_seconds"]))
    print(f"fast path, {ranks} rank(s) x {threads} thread(s): epochs {[round(s, 2) for s in outcome['epoch_seconds']]}"
          f" s, feature pass {outcome['cache_seconds']:.1f} s, dev {[round(d, 4) for d in outcome['dev_scores']]}",
          flush=True)
    return outcome


def compare_run(processes: int, max_items: int | None) -> dict:
    from st_pooling.evaluation.compare import compare_poolings
    from st_pooling.evaluation.tasks import EMBEDDED_DEFAULT_TASKS, get_tasks
    from st_pooling.modules.spec import PoolingSpec

    specs = [PoolingSpec.parse(text) for text in ("mean", "max", "cls", "last_token", "weighted_mean", "gem")]
    tasks = get_tasks(EMBEDDED_DEFAULT_TASKS, max_items=max_items)
    with tempfile.TemporaryDirectory() as scratch:
        started = time.perf_counter()
        comparison = compare_poolings("minilm", specs, tasks, scratch, show_progress_bar=False, device="cpu",
                                      devices=["cpu"] * processes if processes > 1 else None)
        seconds = time.perf_counter() - started
    print(f"compare, {processes} encode process(es): {seconds:.1f} s", flush=True)
    return {"processes": processes, "seconds": seconds, "scores": comparison.scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--pooling", default="latent_attention")
    parser.add_argument("--train-rows", type=int, default=1024)
    parser.add_argument("--dev-rows", type=int, default=200)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32, help=argparse.SUPPRESS)  # the worker's
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128], help="global batches to measure")
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--max-items", type=int, default=None, help="compare: a subset of each task")
    parser.add_argument("--skip-compare", action="store_true")
    parser.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    load_before = load_average()
    result: dict = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                                "load_average_before": load_before}, "fast_path": {}}
    for batch_size in args.batch_sizes:
        args.batch_size = batch_size
        anchor = fast_path_run(args, 1, 1)
        whole_machine = fast_path_run(args, 1, args.ranks)
        ranks = fast_path_run(args, args.ranks, 1)
        fast = {"pooling": args.pooling, "train_rows": args.train_rows, "dev_rows": args.dev_rows,
                "global_batch": batch_size, "epochs": args.epochs, "max_seq_length": args.max_seq_length,
                "one_rank_one_thread": anchor, f"one_rank_{args.ranks}_threads": whole_machine,
                f"{args.ranks}_ranks_one_thread": ranks,
                "speedup_vs_one_rank_one_thread": anchor["mean_epoch_s"] / ranks["mean_epoch_s"],
                f"speedup_vs_one_rank_{args.ranks}_threads": whole_machine["mean_epoch_s"] / ranks["mean_epoch_s"],
                "feature_pass_speedup": anchor["cache_seconds"] / ranks["cache_seconds"],
                "max_step_loss_difference": max(abs(a - b) for a, b in zip(anchor["step_losses"],
                                                                            ranks["step_losses"]))}
        result["fast_path"][f"batch_{batch_size}"] = fast
        print(f"fast path epoch, global batch {batch_size}: {args.ranks} ranks "
              f"{fast['speedup_vs_one_rank_one_thread']:.2f}x one rank x 1 thread, "
              f"{fast[f'speedup_vs_one_rank_{args.ranks}_threads']:.2f}x one rank x {args.ranks} threads; feature "
              f"pass {fast['feature_pass_speedup']:.2f}x; largest step-loss difference "
              f"{fast['max_step_loss_difference']:.2e}", flush=True)
    if not args.skip_compare:
        one, several = compare_run(1, args.max_items), compare_run(args.ranks, args.max_items)
        difference = max(abs(one["scores"][label][task] - several["scores"][label][task])
                         for label in one["scores"] for task in one["scores"][label])
        result["compare"] = {"max_items": args.max_items, "one_process_s": one["seconds"],
                             f"{args.ranks}_processes_s": several["seconds"],
                             "speedup": one["seconds"] / several["seconds"], "max_score_difference": difference}
        print(f"compare: {args.ranks} encode processes {result['compare']['speedup']:.2f}x one process "
              f"({several['seconds']:.1f} s vs {one['seconds']:.1f} s); largest score difference {difference:.2e}")
    result["machine"]["load_average_after"] = load_average()
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2), encoding="utf-8")
    print(f"wrote {args.output}; load average before {load_before}, after {result['machine']['load_average_after']}")


if __name__ == "__main__":
    main()
