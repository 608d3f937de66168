"""Wall time of comparing 6 poolings with the shared-forward runner vs 6 separate mteb runs, same tasks, same run.

The anchor is what a user does without st-pooling's runner: one ``mteb.evaluate`` per pooling, each a full
SentenceTransformer that runs the base model over every text again. The runner's time is also set beside the time
of evaluating a single pooling (the issue's target: at most 1.2x one pooling), and each runner time is split into the
shared forward pass (the base and every pooling head over each distinct text once) and the rest (mteb's scoring of
each configuration, the paired bootstrap, the report). Writes benchmarks/results/compare.json.

    .venv/bin/python benchmarks/bench_compare.py [--max-items N] [--skip-separate]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import mteb  # noqa: E402

from st_pooling import build_model  # noqa: E402
from st_pooling.evaluation.compare import compare_poolings  # noqa: E402
from st_pooling.evaluation.shared_forward import SharedForwardEmbedder  # noqa: E402
from st_pooling.modules.spec import PoolingSpec  # noqa: E402
from st_pooling.evaluation.tasks import EMBEDDED_DEFAULT_TASKS, get_tasks  # noqa: E402

POOLINGS = ["mean", "max", "cls", "last_token", "weighted_mean", "gem"]


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def run_runner(poolings: list[str], max_items: int | None, folder: str) -> tuple[float, float]:
    """(wall seconds, seconds of them in the shared forward pass) of one compare run."""
    tasks = get_tasks(EMBEDDED_DEFAULT_TASKS, max_items=max_items)
    forward_seconds = [0.0]
    forward = SharedForwardEmbedder._forward

    def timed_forward(self, texts, store):  # our own method, timed where it is: the benchmark's stopwatch
        began = time.perf_counter()
        try:
            return forward(self, texts, store)
        finally:
            forward_seconds[0] += time.perf_counter() - began

    SharedForwardEmbedder._forward = timed_forward
    try:
        wall = timed(lambda: compare_poolings("minilm", [PoolingSpec.parse(p) for p in poolings], tasks, folder,
                                              show_progress_bar=False))
    finally:
        SharedForwardEmbedder._forward = forward
    return wall, forward_seconds[0]


def run_separate(poolings: list[str], max_items: int | None, folder: str) -> float:
    def evaluate_all() -> None:
        for pooling in poolings:
            model = build_model("minilm", pooling, device="cpu")
            model.model_card_data.model_name = f"separate-{pooling}"
            tasks = get_tasks(EMBEDDED_DEFAULT_TASKS, max_items=max_items)
            mteb.evaluate(model, tasks, cache=mteb.ResultCache(cache_path=f"{folder}/{pooling}"),
                          overwrite_strategy="always", show_progress_bar=False,
                          encode_kwargs={"batch_size": 32, "show_progress_bar": False})

    return timed(evaluate_all)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-items", type=int, default=None)
    parser.add_argument("--output", default=str(Path(__file__).parent / "results" / "compare.json"))
    parser.add_argument("--skip-separate", action="store_true", help="leave out the six separate mteb runs (~7 min)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        run_runner(POOLINGS[:1], args.max_items, f"{folder}/warm-up")  # first-call costs (imports, file cache)
        one, one_forward = run_runner(POOLINGS[:1], args.max_items, f"{folder}/one")
        runner, runner_forward = run_runner(POOLINGS, args.max_items, f"{folder}/runner")
        separate = None if args.skip_separate else run_separate(POOLINGS, args.max_items, f"{folder}/separate")
    extra_pooling = ((runner - runner_forward) - (one - one_forward)) / (len(POOLINGS) - 1)
    allowed = 0.2 * one / (len(POOLINGS) - 1)
    result = {"tasks": EMBEDDED_DEFAULT_TASKS, "poolings": POOLINGS, "max_items": args.max_items,
              "one_pooling_runner_s": one, "one_pooling_forward_s": one_forward,
              "six_poolings_runner_s": runner, "six_poolings_forward_s": runner_forward,
              "six_separate_mteb_runs_s": separate, "runner_vs_one_pooling": runner / one,
              "runner_vs_separate": None if separate is None else runner / separate,
              "non_forward_s_per_extra_pooling": extra_pooling, "allowed_s_per_extra_pooling_at_1_2x": allowed,
              "note": "runner times include the paired bootstrap statistics (1000 resamples) that separate runs lack"}
    print(f"1 pooling, runner:          {one:8.1f} s  (shared forward pass {one_forward:.1f} s)")
    print(f"6 poolings, runner:         {runner:8.1f} s  (shared forward pass {runner_forward:.1f} s; "
          f"{runner / one:.2f}x one pooling; target <= 1.2x)")
    print(f"outside the forward pass, each pooling beyond the first adds {extra_pooling:.2f} s; 1.2x allows "
          f"{allowed:.2f} s")
    if separate is not None:
        print(f"6 poolings, separate mteb:  {separate:8.1f} s  (runner = {runner / separate:.2f}x of separate)")
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
