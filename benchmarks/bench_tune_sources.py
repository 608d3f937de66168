"""Which training source moves which dev score: tune's heads trained on parts of its mixture.

``st-pooling tune`` keeps a head only if no task type's dev score is significantly below the native pooling's. On
MiniLM the heads it searches fall below native on the clustering dev split (20 Newsgroups posts, nearest-neighbour
label agreement) within a few dozen steps. This benchmark shows where that comes from: with tune's own splits, mixture,
dev suite and feature cache (built once), it trains one head per configuration on the whole mixture or on a part of
it, and prints each task type's dev score against the native pooling (paired-bootstrap difference, `*`: p < 0.05,
uncorrected, as tune's rule) at a few steps.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false .venv/bin/python benchmarks/bench_tune_sources.py

Writes benchmarks/results/tune_sources.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from st_pooling.evaluation.stats import paired_bootstrap
from st_pooling.modules.spec import PoolingSpec
from st_pooling.sweep.space import Candidate, space_from_options
from st_pooling.tuning.data import Mixture, build_dev_suite, build_mixture, load_splits, overall
from st_pooling.tuning.defaults import DEFAULT_IR_DISTRACTORS, DEFAULT_MAX_DEV, DEFAULT_MAX_SEQ_LENGTH, DEFAULT_MAX_TRAIN
from st_pooling.tuning.mixture import MixtureRun, MixtureTrainer

RESULTS = Path(__file__).resolve().parent / "results"
SHORT = ["stsb", "sick", "sick-nli", "banking77", "sst2", "cranfield", "cisi"]
CONFIGURATIONS = [  # (head, learning rate, sources; None: the whole mixture)
    ("latent_attention", 1e-3, None),
    ("latent_attention", 3e-4, None),
    ("weighted_sum", 1e-2, None),
    ("latent_attention", 1e-3, ["20newsgroups"]),
    ("latent_attention", 1e-3, SHORT),
    ("latent_attention", 1e-3, ["cranfield", "cisi"]),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="minilm")
    parser.add_argument("--native", default="mean")
    parser.add_argument("--points", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--max-train", type=int, default=DEFAULT_MAX_TRAIN)
    parser.add_argument("--results", default=str(RESULTS / "tune_sources.json"))
    args = parser.parse_args(argv)
    started = time.perf_counter()
    steps = max(args.points)
    space = space_from_options(["latent_attention"], [1e-3], base=args.base, max_seq_length=DEFAULT_MAX_SEQ_LENGTH,
                               train="tune-mixture", dev="tune-dev", loss="cosent", batch_size=32, steps=steps,
                               eval_every=min(args.points), max_train=args.max_train, max_dev=DEFAULT_MAX_DEV)
    splits = load_splits(seed=0)
    mixture = build_mixture(splits, max_train=args.max_train, seed=0)
    dev = build_dev_suite(splits, max_dev=DEFAULT_MAX_DEV, ir_distractors=DEFAULT_IR_DISTRACTORS, seed=0)
    trainer = MixtureTrainer(space, mixture, dev, native=args.native, cache_dtype="float16")
    native = trainer.native_dev_scores()
    rows = [{"head": args.native, "lr": None, "sources": "-", "step": 0, "overall": overall(native),
             "per_type": {t: s.full_score() for t, s in native.items()}, "difference": {}, "significant": {}}]
    print(f"native {args.native}: " + "  ".join(f"{t} {s:.4f}" for t, s in rows[0]["per_type"].items())
          + f"  overall {rows[0]['overall']:.4f}  ({time.perf_counter() - started:.0f} s to cache and score)")
    for number, (head, lr, sources) in enumerate(CONFIGURATIONS):
        candidate = Candidate(number, PoolingSpec(head, {"native": args.native}), lr)
        part = None if sources is None else Mixture([s for s in mixture.sources if s.name in sources])
        run = MixtureRun(trainer, candidate, part)
        label = "all" if sources is None else "+".join(sources)
        for point in args.points:
            run.train_to(point)
            run.head.eval()
            scores = dev.item_scores(run.embedder.encode)
            tests = {t: paired_bootstrap(scores[t], native[t], n_resamples=1000, seed=0) for t in scores}
            row = {"head": head, "lr": lr, "sources": label, "step": point, "overall": overall(scores),
                   "per_type": {t: s.full_score() for t, s in scores.items()},
                   "difference": {t: r.difference for t, r in tests.items()},
                   "significant": {t: bool(r.significant(0.05)) for t, r in tests.items()}}
            rows.append(row)
            cells = "  ".join(f"{t} {row['per_type'][t]:.4f} ({row['difference'][t]:+.4f}"
                              f"{'*' if row['significant'][t] else ''})" for t in scores)
            print(f"{head} lr={lr:g} sources={label} step {point}: {cells}  overall {row['overall']:.4f}", flush=True)
    payload = {"command": "python benchmarks/bench_tune_sources.py " + " ".join(argv or sys.argv[1:]),
               "model": args.base, "native": args.native, "max_train": args.max_train, "rows": rows,
               "seconds": round(time.perf_counter() - started, 1), "threads": torch.get_num_threads()}
    Path(args.results).write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(f"wrote {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
