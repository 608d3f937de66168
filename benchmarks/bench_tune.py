"""Benchmark of `st-pooling tune` on the packaged MiniLM with its defaults.

Runs :func:`st_pooling.tuning.run_tune` exactly as ``st-pooling tune --model minilm`` does (the defaults of
docs/tuning.md), then prints, per local test task, the tuned head against the native (mean) pooling: both mteb main
scores, the paired-bootstrap difference with its 95% CI and the Holm-corrected p-value, and the verdict. If tune kept
the native pooling, it says so (there is then nothing to test).

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false .venv/bin/python benchmarks/bench_tune.py

Writes benchmarks/results/tune.json (and the tune output folder, default runs/bench_tune).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

from st_pooling.tuning.tune import run_tune

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--output", default="runs/bench_tune")
    parser.add_argument("--results", default=str(RESULTS / "tune.json"))
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    command = "st-pooling tune --model " + args.model + " --output " + args.output + " --overwrite"
    result = run_tune(args.model, args.output, overwrite=True, command=command)
    seconds = time.perf_counter() - started
    print()
    if result.kept == "native":
        print(f"tune kept the native pooling ({result.native}): no head qualified on the dev suite")
    else:
        print(f"tune kept {result.winner.label} at step {result.winner.step} "
              f"(overall dev {result.winner.overall:.4f})")
        print(f"{'task':<32} {'native':>8} {'tuned':>8} {'diff':>8}  {'95% CI':<20} {'p_holm':>7}  verdict")
        for task, row in result.test.items():
            ci = f"[{row['ci_low']:+.4f}, {row['ci_high']:+.4f}]" if "ci_low" in row else "n/a"
            p = f"{row['p_holm']:.3f}" if row.get("p_holm") is not None else "-"
            print(f"{task:<32} {row['native']:>8.4f} {row['tuned']:>8.4f} {row['tuned'] - row['native']:>+8.4f}  "
                  f"{ci:<20} {p:>7}  {row['verdict']}")
    print(f"total {seconds:.0f} s")
    payload = {"command": command, "model": args.model, "kept": result.kept, "native": result.native,
               "winner": None if result.winner is None else {"label": result.winner.label, "step": result.winner.step,
                                                             "dev_overall": result.winner.overall,
                                                             "dev_per_type": result.winner.per_type},
               "native_dev": result.native_dev, "test": result.test, "seconds": round(seconds, 1),
               "machine": {"python": sys.version.split()[0], "torch": torch.__version__,
                           "platform": platform.platform(), "threads": torch.get_num_threads()}}
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    Path(args.results).write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
