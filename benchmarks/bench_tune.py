"""Benchmark of `st-pooling tune`: the tuned head against the native pooling on the local test tasks.

Runs ``st-pooling tune`` (its own defaults, or the tune options given after the benchmark's own) and prints, per
local test task, both mteb main scores, the paired-bootstrap difference with its 95% CI, the Holm-corrected p-value
and the verdict. If tune kept the native pooling, it says so (there is then nothing to test).

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false .venv/bin/python benchmarks/bench_tune.py
    # SmolLM2, head-only on a CPU, against its best built-in pooling (weighted mean; docs/results.md, section 4):
    ... benchmarks/bench_tune.py --results benchmarks/results/tune_smollm2.json -- --base smollm2 \\
        --native weighted_mean --max-train 200 --max-items 300

Writes the results JSON (default benchmarks/results/tune.json) and the tune output folder (default runs/bench_tune).
"""

from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import time
from pathlib import Path

import torch

from st_pooling.cli import main as st_pooling_main

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="runs/bench_tune", help="tune's output folder")
    parser.add_argument("--results", default=str(RESULTS / "tune.json"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("tune_options", nargs=argparse.REMAINDER, help="after --: options of st-pooling tune")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    options = [option for option in args.tune_options if option != "--"]
    tune_argv = ["tune", "--output", args.output, "--overwrite", *options]
    started = time.perf_counter()
    status = st_pooling_main(tune_argv)
    seconds = time.perf_counter() - started
    if status:
        return status
    payload = json.loads((Path(args.output) / "tune.json").read_text(encoding="utf-8"))
    print()
    winner = payload["winner"]
    if payload["kept"] == "native":
        print(f"tune kept the native pooling ({payload['native']}): no head qualified on the dev suite")
    else:
        print(f"tune kept {winner['label']} at step {winner['step']} (overall dev {winner['overall']:.4f} vs native "
              f"{payload['native_dev_overall']:.4f})")
        print(f"{'task':<32} {'native':>8} {'tuned':>8} {'diff':>8}  {'95% CI':<20} {'p_holm':>7}  verdict")
        for task, row in payload["test"].items():
            ci = f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]" if "ci_low" in row else "n/a"
            p = f"{row['p_holm']:.3f}" if row.get("p_holm") is not None else "-"
            print(f"{task:<32} {row['native']:>8.4f} {row['tuned']:>8.4f} {row['tuned'] - row['native']:>+8.4f}  "
                  f"{ci:<20} {p:>7}  {row['verdict']}")
    print(f"total {seconds:.0f} s")
    summary = {"command": "st-pooling " + shlex.join(tune_argv), "model": payload["model"], "kept": payload["kept"],
               "native": payload["native"],
               "winner": None if winner is None else {key: winner[key] for key in ("label", "step", "overall",
                                                                                     "per_type")},
               "native_dev": payload["native_dev"], "test": payload["test"], "seconds": round(seconds, 1),
               "cache_seconds": payload["cache_seconds"], "mixture": payload["mixture"],
               "machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                           "platform": platform.platform(), "threads": torch.get_num_threads()}}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
