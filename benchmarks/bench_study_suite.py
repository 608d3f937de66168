"""The study's five designs on SmolLM2 across the seven tasks, against mean pooling and ST's best built-in pooling.

Each design of ``st_pooling.training.recipes.STUDY_DESIGNS`` is trained exactly as ``bench_study_designs.py`` trains
it (CoSENT on STS Benchmark train, best epoch by STS-B dev), then evaluated through mteb on the seven local tasks of
``bench_trained_poolings.py`` (STS-B test, SICK test, SST-2, Banking77, 20 Newsgroups clustering, Cranfield, CISI).
Zero-shot SmolLM2 (causal, nothing appended: what sentence-transformers itself does with a decoder) is evaluated with
every built-in ``Pooling`` mode from one shared forward pass. Differences carry a paired bootstrap over each task's
items (``*`` = p < 0.05) against (a) zero-shot ST mean pooling and (b) the built-in mode with the best mean score.

Each system's scores and per-item scores are kept in ``--state``, so a run cut off by a time limit resumes where it
stopped. Runs on CPU or GPU; the published table came from a GPU:

    python benchmarks/bench_study_suite.py --device cuda --output benchmarks/results/study_suite
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path

import dill  # pickles the per-item scores' closures (a dependency of datasets, so of mteb)
import numpy as np
import torch
# bench_study_designs sets the offline environment on import
from bench_study_designs import add_training_options, build_and_train, sync, training_splits, use_tf32  # noqa: E402
from bench_trained_poolings import ST_MODES, TASKS, comparison_sections, evaluate_embedder  # noqa: E402
from sentence_transformers.sentence_transformer.modules import Pooling

from st_pooling.data import shared_data_dir
from st_pooling.evaluation.shared_forward import SharedForwardEmbedder
from st_pooling.evaluation.stats import paired_bootstrap
from st_pooling.models import build_transformer
from st_pooling.training.recipes import STUDY_DESIGNS

ZERO_SHOT = "zero-shot"


def zero_shot_system(args: argparse.Namespace) -> tuple[SharedForwardEmbedder, dict]:
    transformer = build_transformer("smollm2", attention_mode="causal", append_eos=False,
                                    max_seq_length=args.max_seq_length)
    dim = transformer.get_embedding_dimension()
    poolings = {f"st-{mode}": Pooling(dim, pooling_mode=mode) for mode in ST_MODES}
    record = {"description": "zero-shot SmolLM2-135M-Instruct, causal, sentence-transformers' built-in Pooling modes"}
    return SharedForwardEmbedder(transformer, poolings, batch_size=args.eval_batch_size, show_progress_bar=False,
                                 device=args.device), record


def design_system(name: str, args: argparse.Namespace, train, dev) -> tuple[SharedForwardEmbedder, dict]:
    model, record = build_and_train(name, args, train, dev)
    model.eval()
    return SharedForwardEmbedder(model[0], {name: model[1]}, batch_size=args.eval_batch_size,
                                 show_progress_bar=False, device=args.device), record


def run_system(name: str, args: argparse.Namespace, train, dev, state: Path) -> None:
    started = time.perf_counter()
    if name == ZERO_SHOT:
        embedder, record = zero_shot_system(args)
    else:
        embedder, record = design_system(name, args, train, dev)
    sync(args.device)
    evaluate_started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        evaluation = evaluate_embedder(embedder, "smollm2", args.tasks, args.max_items, Path(scratch),
                                       batch_size=args.eval_batch_size)
    record.update(eval_seconds=time.perf_counter() - evaluate_started, total_seconds=time.perf_counter() - started)
    evaluation["record"] = record
    partial = state / f".{name}.pkl.partial"
    partial.write_bytes(dill.dumps(evaluation))
    partial.replace(state / f"{name}.pkl")
    print(f"[{name}] done in {record['total_seconds']:.0f} s", flush=True)
    del embedder
    if args.device.startswith("cuda"):
        torch.cuda.empty_cache()


def merged(state: Path, names: list[str], tasks: list[str]) -> dict:
    """Scores and per-item scores of every finished system, keyed by label."""
    scores, items, records, types = {}, {task: {} for task in tasks}, {}, {}
    for name in names:
        path = state / f"{name}.pkl"
        if not path.is_file():
            continue
        evaluation = dill.loads(path.read_bytes())
        scores.update(evaluation["scores"])
        for task in tasks:
            items[task].update(evaluation["items"][task])
        records[name] = evaluation["record"]
        types.update(evaluation["types"])
    return {"scores": scores, "items": items, "records": records, "types": types}


def significance(items: dict, reference: str, labels: list[str], n_resamples: int) -> dict:
    return {label: {task: paired_bootstrap(items[task][label], items[task][reference], n_resamples=n_resamples,
                                           seed=0) for task in items} for label in labels}


def write_report(args: argparse.Namespace, results: dict, seconds: float) -> None:
    scores, items = results["scores"], results["items"]
    built_in = [f"st-{mode}" for mode in ST_MODES if f"st-{mode}" in scores]
    designs = [name for name in STUDY_DESIGNS if name in scores]
    if "st-mean" not in scores:
        return
    best = max(built_in, key=lambda label: np.mean(list(scores[label].values())))
    versus_mean = significance(items, "st-mean", [label for label in scores if label != "st-mean"],
                               args.n_resamples)
    versus_best = significance(items, best, designs, args.n_resamples) if best != "st-mean" else None
    command = "python benchmarks/bench_study_suite.py " + shlex.join(sys.argv[1:])
    lines = [f"Reproduce: `{command}`.", "",
             f"Designs trained with CoSENT on STS-B train ({args.epochs} epochs, batch {args.batch_size}, best epoch "
             f"by STS-B dev); tasks {'in full' if args.max_items is None else f'subset to {args.max_items} items'}; "
             f"max_seq_length {args.max_seq_length}; `st-*` are zero-shot SmolLM2 with sentence-transformers' own "
             "Pooling modes (causal, no EOS appended).", "",
             *comparison_sections(scores, args.tasks, "zero-shot mean pooling", versus_mean, best, versus_best,
                                  designs)]
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text("\n".join(lines), encoding="utf-8")
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available()
                   else "cpu")
    payload = {"command": command, "device": device_name, "torch": torch.__version__, "scores": scores,
               "task_types": results["types"], "best_builtin": best, "systems": results["records"],
               "versus_mean": {k: {t: vars(r) for t, r in v.items()} for k, v in versus_mean.items()},
               "versus_best": None if versus_best is None else
               {k: {t: vars(r) for t, r in v.items()} for k, v in versus_best.items()},
               "seconds_this_call": seconds}
    out.with_suffix(".json").write_text(json.dumps(payload, indent=2, default=float), encoding="utf-8")
    print("\n".join(lines), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_options(parser)
    parser.add_argument("--tasks", default=",".join(TASKS), help="comma-separated subset of the seven tasks")
    parser.add_argument("--max-items", type=int, default=None, help="items per task (default: every item)")
    parser.add_argument("--eval-batch-size", type=int, default=128)
    parser.add_argument("--time-budget", type=float, default=None,
                        help="seconds: start no new system after this much time (resume later from --state)")
    parser.add_argument("--state", default="benchmarks/results/.study_suite_state")
    parser.add_argument("--output", default="benchmarks/results/study_suite")
    args = parser.parse_args()
    args.tasks = [task.strip() for task in args.tasks.split(",")]
    if unknown := sorted(set(args.tasks) - set(TASKS)):
        raise SystemExit(f"unknown task(s) {unknown}; choose from {TASKS}")
    started = time.perf_counter()

    data_dir = shared_data_dir()
    if data_dir is None:
        raise SystemExit("no data folder: set ST_POOLING_DATA_DIR")
    use_tf32(args.device)
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)
    train, dev = training_splits(args, data_dir)
    designs = list(STUDY_DESIGNS) if args.designs == "all" else [d.strip() for d in args.designs.split(",")]
    names = [ZERO_SHOT, *designs]
    for name in names:
        if (state / f"{name}.pkl").is_file():
            print(f"[{name}] already done, kept from {state}", flush=True)
            continue
        if args.time_budget is not None and time.perf_counter() - started > args.time_budget:
            print(f"[{name}] not started: time budget spent; run again to resume", flush=True)
            break
        run_system(name, args, train, dev, state)
        write_report(args, merged(state, names, args.tasks), time.perf_counter() - started)
    write_report(args, merged(state, names, args.tasks), time.perf_counter() - started)


if __name__ == "__main__":
    main()
