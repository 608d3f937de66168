"""`st-pooling tune`: a better pooling head for a base model, or a plain statement that none was found."""

from __future__ import annotations

import argparse
import shlex

from st_pooling.cli_args import add_base_flag


def _weight(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    try:
        weight = float(value)
    except ValueError:
        weight = -1.0
    if not sep or weight < 0:
        raise argparse.ArgumentTypeError(f"expected source=weight (weight >= 0), got {text!r}")
    return name, weight


def add_tune_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``st-pooling tune`` on the main parser's subparsers."""
    from st_pooling.tuning.defaults import (DEFAULT_EVAL_EVERY, DEFAULT_HEADS, DEFAULT_IR_DISTRACTORS, DEFAULT_LRS,
                                            DEFAULT_MAX_DEV, DEFAULT_MAX_ITEMS, DEFAULT_MAX_SEQ_LENGTH,
                                            DEFAULT_MAX_TRAIN, DEFAULT_STEPS, DEFAULT_WEIGHTS)

    parser = subparsers.add_parser(
        "tune", help="train a pooling head on a multi-task mixture and keep it only if it is never worse than the "
                     "base's own pooling",
        description="Searches heads x learning rates (native start, learning-curve early stopping) on a mixture of "
                    "STS, same-label and query-document training data; keeps the point with the best overall dev "
                    "score among those not significantly below the native pooling on any task type's dev split "
                    "(else keeps the native pooling and saves nothing); tests the kept head against the native "
                    "pooling on the local test tasks. Writes model/, test/, tune_report.md and tune.json to "
                    "--output. See docs/tuning.md.")
    add_base_flag(parser)
    parser.add_argument("--output", default="runs/tune", help="output folder (default: runs/tune)")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder anyway")
    parser.add_argument("--native", default=None, metavar="POOLING",
                        help="the parameter-free pooling every head starts as and is judged against (default: the "
                             "base's own: mean for MiniLM and for a plain transformers model)")
    parser.add_argument("--lora-rank", type=int, default=None, metavar="R",
                        help="also train LoRA adapters of rank R on the base's linear layers, per candidate (every "
                             "step runs the base: for a GPU; default: head only, on cached features)")
    parser.add_argument("--lora-lr", type=float, default=None,
                        help="the adapters' learning rate with --lora-rank (default 1e-4; --lrs are the heads')")
    parser.add_argument("--heads", nargs="+", default=list(DEFAULT_HEADS), metavar="SPEC",
                        help=f"learnable pooling specs to search (default: {' '.join(DEFAULT_HEADS)})")
    parser.add_argument("--lrs", nargs="+", type=float, default=list(DEFAULT_LRS),
                        help=f"learning rates (default: {' '.join(map(str, DEFAULT_LRS))})")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS, help=f"steps of a full run ({DEFAULT_STEPS})")
    parser.add_argument("--eval-every", type=int, default=None,
                        help=f"dev evaluation every this many steps (default {DEFAULT_EVAL_EVERY}, at most steps/4)")
    parser.add_argument("--strategy", choices=["predictive", "halving", "all"], default="predictive")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=DEFAULT_MAX_SEQ_LENGTH,
                        help=f"truncation for training, dev and test, for both poolings ({DEFAULT_MAX_SEQ_LENGTH})")
    parser.add_argument("--max-train", type=int, default=DEFAULT_MAX_TRAIN,
                        help=f"rows per training source ({DEFAULT_MAX_TRAIN})")
    parser.add_argument("--max-dev", type=int, default=DEFAULT_MAX_DEV, help=f"items per dev set ({DEFAULT_MAX_DEV})")
    parser.add_argument("--ir-distractors", type=int, default=DEFAULT_IR_DISTRACTORS,
                        help=f"dev IR corpus: judged documents plus this many others ({DEFAULT_IR_DISTRACTORS})")
    parser.add_argument("--max-items", type=int, default=DEFAULT_MAX_ITEMS,
                        help=f"items per local test task (default {DEFAULT_MAX_ITEMS}; 0: all)")
    parser.add_argument("--weights", nargs="+", type=_weight, default=None, metavar="SOURCE=W",
                        help="sources and sampling weights (default: "
                             + " ".join(f"{k}={v:g}" for k, v in DEFAULT_WEIGHTS.items()) + ")")
    parser.add_argument("--no-test", action="store_true", help="skip the test-task evaluation")
    parser.add_argument("--n-resamples", type=int, default=1000, help="bootstrap resamples (1000)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.set_defaults(handler=run_tune_command)


def run_tune_command(args: argparse.Namespace) -> int:
    from st_pooling.tuning.defaults import DEFAULT_EVAL_EVERY
    from st_pooling.tuning.tune import run_tune

    eval_every = args.eval_every or min(DEFAULT_EVAL_EVERY, max(1, args.steps // 4))
    result = run_tune(args.base, args.output, heads=args.heads, lrs=args.lrs, steps=args.steps,
                      eval_every=eval_every, batch_size=args.batch_size, max_seq_length=args.max_seq_length,
                      max_train=args.max_train or None, max_dev=args.max_dev or None,
                      max_items=args.max_items or None, ir_distractors=args.ir_distractors,
                      weights=dict(args.weights) if args.weights else None,
                      strategy=args.strategy, seed=args.seed, data_dir=args.data_dir, n_resamples=args.n_resamples,
                      evaluate=not args.no_test, overwrite=args.overwrite, device=args.device, native=args.native,
                      lora_rank=args.lora_rank, lora_learning_rate=args.lora_lr,
                      command="st-pooling " + shlex.join(getattr(args, "argv", []) or []))
    print(result.report.read_text(encoding="utf-8"))
    if result.kept == "native":
        print(f"st-pooling tune: kept the native pooling ({result.native}): no trained head was better without being "
              "worse somewhere; no model saved")
    else:
        print(f"st-pooling tune: saved the tuned model to {result.model_dir}")
    return 0
