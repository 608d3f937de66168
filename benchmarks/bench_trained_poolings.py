"""Trained pooling heads on MiniLM against mean pooling and sentence-transformers' best built-in pooling.

The encoder set (weighted sum, GeM, latent attention, MLTP) is trained head-only on STS Benchmark train with CoSENT on
the frozen-feature fast path (best epoch by STS-B dev cosine Spearman), then every head and every built-in
``sentence_transformers`` ``Pooling`` mode (mean, max, cls, weightedmean, lasttoken) is evaluated through mteb with one
shared forward pass of MiniLM. Differences carry a paired bootstrap over each task's items (``*`` = p < 0.05) against
(a) ST mean pooling and (b) the ST built-in mode with the best average score over the tasks. Writes
benchmarks/results/trained_poolings.json and .md (the table docs/results.md quotes).

    .venv/bin/python benchmarks/bench_trained_poolings.py --train-rows 2000 --epochs 2 --max-items 500
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=UserWarning)  # sklearn's ill-defined precision on small subsets

import numpy as np  # noqa: E402
import torch  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Pooling  # noqa: E402

from st_pooling import build_model  # noqa: E402
from st_pooling.data import shared_data_dir  # noqa: E402
from st_pooling.evaluation.compare import score_tasks  # noqa: E402
from st_pooling.evaluation.shared_forward import SharedForwardEmbedder  # noqa: E402
from st_pooling.evaluation.report import format_comparison_table  # noqa: E402
from st_pooling.evaluation.stats import paired_bootstrap  # noqa: E402
from st_pooling.evaluation.tasks import get_task  # noqa: E402
from st_pooling.models import build_transformer  # noqa: E402
from st_pooling.modules.base import BaseNeeds  # noqa: E402
from st_pooling.training import build_feature_cache, make_loss, stsb_scored_pairs, train_head_on_cache  # noqa: E402

TASKS = ["LocalSTSBenchmark", "LocalSICK", "LocalSST2", "LocalBanking77Classification", "Local20NewsgroupsClustering",
         "LocalCranfield", "LocalCISI"]
HEADS = {"weighted_sum": 1e-2, "gem": 1e-2, "latent_attention": 1e-3, "mltp": 1e-3}  # pooling -> learning rate
ST_MODES = ["mean", "max", "cls", "weightedmean", "lasttoken"]


def train_heads(args: argparse.Namespace, seed: int) -> tuple[dict, dict]:
    """Every head of HEADS trained with ``seed`` (its initialisation and batch order; the data subsets stay fixed)."""
    folder = shared_data_dir() / "stsbenchmark"
    train = stsb_scored_pairs(folder, "train").subset(args.train_rows, seed=0)
    dev = stsb_scored_pairs(folder, "dev").subset(args.dev_rows, seed=0)
    texts = train.texts() + dev.texts()
    heads, log, caches = {}, {}, {}
    for pooling, learning_rate in HEADS.items():
        torch.manual_seed(seed)
        model = build_model("minilm", pooling, max_seq_length=args.max_seq_length, device="cpu")
        kind = model[1].reads
        started = time.perf_counter()
        if kind not in caches:
            caches[kind] = build_feature_cache(model[0], model[1], texts, show_progress_bar=False)
        cache_seconds = time.perf_counter() - started
        result = train_head_on_cache(model, caches[kind], train, make_loss("cosent", model, train), dev=dev,
                                     epochs=args.epochs, batch_size=32, learning_rate=learning_rate, seed=seed,
                                     show_progress_bar=False)
        heads[pooling] = model[1]
        log[pooling] = {"learning_rate": learning_rate, "cache_seconds": cache_seconds,
                        "train_seconds": sum(r.seconds for r in result.history), "best_epoch": result.best_epoch,
                        "dev_spearman": [r.dev_score for r in result.history],
                        "parameters": model[1].num_parameters()}
        print(f"trained {pooling}: dev {log[pooling]['dev_spearman']} (best epoch {result.best_epoch})", flush=True)
    return heads, {"train_rows": len(train), "dev_rows": len(dev), "heads": log}


def evaluate(heads: dict, args: argparse.Namespace, folder: Path) -> dict:
    transformer = build_transformer("minilm", BaseNeeds(hidden_states=True), max_seq_length=args.max_seq_length)
    dim = transformer.get_embedding_dimension()
    poolings = {f"st-{mode}": Pooling(dim, pooling_mode=mode) for mode in ST_MODES}
    poolings.update({f"trained-{name}": head for name, head in heads.items()})
    embedder = SharedForwardEmbedder(transformer, poolings, batch_size=64, show_progress_bar=False, device="cpu")
    return evaluate_embedder(embedder, "minilm", TASKS, args.max_items, folder, batch_size=64)


def evaluate_embedder(embedder: SharedForwardEmbedder, base: str, task_names: list[str], max_items: int | None,
                      folder: Path, batch_size: int = 64) -> dict:
    """Every pooling of ``embedder`` on every task through mteb, plus per-item scores for the bootstrap."""
    tasks = [get_task(name, max_items=max_items) for name in task_names]
    comparison, items = score_tasks(embedder, base, tasks, folder, reference=embedder.labels[0],
                                    batch_size=batch_size, show_progress_bar=False)
    scores, types = comparison.scores, comparison.task_types
    for name in task_names:
        print(f"evaluated {name}: " + ", ".join(f"{k} {v[name]:.4f}" for k, v in scores.items()), flush=True)
    return {"scores": scores, "items": items, "types": types, "forward_texts": embedder.forward_texts}


def significance(evaluation: dict, reference: str, labels: list[str]) -> dict:
    return {label: {task: paired_bootstrap(evaluation["items"][task][label], evaluation["items"][task][reference],
                                           n_resamples=1000, seed=0) for task in TASKS} for label in labels}


def comparison_sections(scores: dict, tasks: list[str], mean_name: str, versus_mean: dict, best: str,
                        versus_best: dict | None, trained: list[str]) -> list[str]:
    """Markdown: every pooling against ST mean pooling, then the trained ones against the best built-in mode."""
    lines = [f"### Against {mean_name}", "",
             format_comparison_table({k: {t: v[t] for t in tasks} for k, v in scores.items()}, "st-mean",
                                     versus_mean), ""]
    if versus_best is None:
        return lines + ["The best built-in ST pooling on these tasks (by mean score) is mean itself: the table "
                        "above is also the comparison against the best built-in.", ""]
    return lines + [f"### Against the best built-in ST pooling ({best})", "",
                    format_comparison_table({k: scores[k] for k in [best, *trained]}, best, versus_best), ""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=2000)
    parser.add_argument("--dev-rows", type=int, default=500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--max-items", type=int, default=500)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0],
                        help="train every head once per seed; all are evaluated in the same shared forward pass")
    parser.add_argument("--output", default="benchmarks/results/trained_poolings")
    args = parser.parse_args()
    started = time.perf_counter()
    heads, training = {}, {"seeds": {}}
    for seed in args.seeds:
        seed_heads, log = train_heads(args, seed)
        suffix = f"-seed{seed}" if len(args.seeds) > 1 else ""
        heads.update({f"{name}{suffix}": head for name, head in seed_heads.items()})
        training.update(train_rows=log["train_rows"], dev_rows=log["dev_rows"])
        training["seeds"][seed] = log["heads"]
    with tempfile.TemporaryDirectory() as scratch:
        evaluation = evaluate(heads, args, Path(scratch))
    scores = evaluation["scores"]
    built_in = [f"st-{mode}" for mode in ST_MODES]
    best = max(built_in, key=lambda label: np.mean(list(scores[label].values())))
    trained = [f"trained-{name}" for name in heads]
    versus_mean = significance(evaluation, "st-mean", [label for label in scores if label != "st-mean"])
    versus_best = significance(evaluation, best, trained) if best != "st-mean" else None
    command = "python benchmarks/bench_trained_poolings.py " + shlex.join(sys.argv[1:])
    lines = [f"Reproduce: `{command}` ({time.perf_counter() - started:.0f} s).", "",
             f"Heads trained on {training['train_rows']} STS-B train pairs (CoSENT, fast path, {args.epochs} epochs, "
             f"best epoch by {training['dev_rows']} STS-B dev pairs); tasks subset to {args.max_items} items "
             f"(retrieval: {args.max_items} queries at most); max_seq_length {args.max_seq_length}.", "",
             *comparison_sections(scores, TASKS, "sentence-transformers mean pooling", versus_mean, best,
                                  versus_best, trained)]
    table = "\n".join(lines)
    print(table)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(table, encoding="utf-8")
    payload = {"command": command, "training": training, "scores": scores, "task_types": evaluation["types"],
               "best_builtin": best, "forward_texts": evaluation["forward_texts"],
               "versus_mean": {k: {t: vars(r) for t, r in v.items()} for k, v in versus_mean.items()},
               "versus_best": None if versus_best is None else
               {k: {t: vars(r) for t, r in v.items()} for k, v in versus_best.items()},
               "seconds": time.perf_counter() - started}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2), encoding="utf-8")
    print(f"wrote {out.with_suffix('.md')} and {out.with_suffix('.json')}")


if __name__ == "__main__":
    main()
