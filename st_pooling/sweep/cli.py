"""`st-pooling sweep`: pick a pooling configuration with predictive early stopping (or successive halving)."""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import ExitStack

from st_pooling.atomic import owned_output
from st_pooling.cli_args import BASE_HELP, add_base_flag, add_progress_flag, positive_float, positive_int


def add_sweep_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``st-pooling sweep`` on the main parser's subparsers."""
    parser = subparsers.add_parser(
        "sweep", aliases=["search"], help="sweep pooling configurations with learning-curve prediction and early stopping",
        description="Train candidate pooling heads on cached features of the frozen base, record the dev score at "
                    "fixed points of each learning curve, and stop a candidate when a regression on its curve so far "
                    "says its final score is unlikely to beat the best so far (Baker et al. 2017). Writes the best "
                    "model (best_model/), report.md (all candidates), curves.png and summary.json to --output. "
                    "Run the same command again to continue an interrupted search.")
    space = parser.add_argument_group("search space (a file, or options; options given override the file)")
    space.add_argument("--space", default=None, help="a .yaml/.yml/.json search-space file (see docs/sweep.md)")
    space.add_argument("--poolings", nargs="+", default=None, metavar="SPEC",
                       help="pooling specs, e.g. weighted_sum gem latent_attention:num_latents=4 "
                            "mltp:layers=4+5+6 (each tried with every --lrs)")
    space.add_argument("--lrs", nargs="+", type=positive_float, default=None, metavar="LR", help="learning rates to try")
    add_base_flag(space, default=None, help=f"{BASE_HELP} (default minilm)")
    space.add_argument("--train", default=None, help="training source (default stsb)")
    space.add_argument("--dev", default=None, help="dev source (default stsb:dev)")
    space.add_argument("--max-train", type=positive_int, default=None, help="seeded subset of the training rows")
    space.add_argument("--max-dev", type=positive_int, default=None, help="seeded subset of the dev rows")
    space.add_argument("--steps", type=positive_int, default=None, help="training steps of a full run (default 120)")
    space.add_argument("--eval-every", type=positive_int, default=None, help="steps between curve points (default 10)")
    space.add_argument("--batch-size", type=positive_int, default=None)
    space.add_argument("--max-seq-length", type=positive_int, default=None)
    space.add_argument("--loss", choices=["cosent", "angle", "mnrl"], default=None)
    space.add_argument("--seed", type=int, default=None)
    space.add_argument("--data-dir", default=None, help="folder holding stsbenchmark/, sick/, ...")
    space.add_argument("--no-native-start", dest="native_start", action="store_false", default=None,
                       help="start every head from its own initialisation (random latents, GeM at p=3, ...) instead "
                            "of as exactly the base's own pooling (the default; the space's native_start; a "
                            "candidate option native=NAME chooses another parameter-free pooling)")
    space.add_argument("--lora-rank", type=int, default=None, metavar="R",
                       help="also train LoRA adapters of rank R on the base beside each head (the space's lora_rank; "
                            "every step runs the base: for a GPU)")
    space.add_argument("--lora-lr", dest="lora_learning_rate", type=float, default=None,
                       help="the adapters' learning rate (the space's lora_learning_rate, default 1e-4)")
    how = parser.add_argument_group("strategy")
    how.add_argument("--strategy", choices=["predictive", "halving", "all"], default="predictive")
    how.add_argument("--threshold", type=float, default=None,
                     help="predictive: stop when P(final > best so far) is below this (default 0.05)")
    how.add_argument("--min-improvement", type=float, default=None,
                     help="predictive: finish only candidates that may beat the best by more than this "
                          "(dev-score units; default 0: any improvement)")
    how.add_argument("--bootstrap", type=positive_int, default=None,
                     help="predictive: candidates trained to the end before any is stopped (default 1: the "
                          "best at the first check)")
    how.add_argument("--first-check", type=positive_int, default=None,
                     help="predictive: steps to the first check point; later ones double it (default eval_every/4)")
    how.add_argument("--no-warm-up", dest="warm_up", action="store_false", default=None,
                     help="predictive: do not train every candidate to its first check before going on in order of "
                          "that score")
    how.add_argument("--predictor", choices=["forest", "svr"], default=None,
                     help="predictive: random forests or support-vector regression (default forest)")
    how.add_argument("--eta", type=positive_int, default=None, help="halving: keep the best 1/eta at each rung (default 3)")
    how.add_argument("--min-steps", type=positive_int, default=None, help="halving: budget of the first rung")
    parser.add_argument("--output", required=True, help="folder of the search (state, best model, report)")
    parser.add_argument("--device", default=None)
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads (1 is often fastest for heads)")
    add_progress_flag(parser, "hide the progress lines: print only the report")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty output folder that an earlier search did not write")
    parser.set_defaults(handler=run_sweep)


def build_space(args: argparse.Namespace):
    from st_pooling.sweep.space import SearchSpaceError, load_space, space_from_options

    overrides = {key: getattr(args, key) for key in ("base", "train", "dev", "max_train", "max_dev", "steps",
                                                     "eval_every", "batch_size", "max_seq_length", "loss", "seed",
                                                     "data_dir", "native_start", "lora_rank",
                                                     "lora_learning_rate")}
    if args.space:
        if args.poolings or args.lrs:
            raise SearchSpaceError("give the candidates either in --space or with --poolings/--lrs, not both")
        return load_space(args.space).with_overrides(**overrides)
    if not args.poolings or not args.lrs:
        raise SearchSpaceError("give a search-space file (--space) or both --poolings and --lrs")
    return space_from_options(args.poolings, args.lrs, **overrides)


def run_sweep(args: argparse.Namespace) -> int:
    if getattr(args, "command", None) == "search":
        print("st-pooling search is now st-pooling sweep (the index look-up is st-pooling index search); the old "
              "name will go in a later release", file=sys.stderr)
    import torch

    from st_pooling.sweep.report import write_report
    from st_pooling.sweep.candidates import SearchTrainer
    from st_pooling.sweep.strategies import SearchSession, settings_for
    from st_pooling.training.distributed import current_ranks

    space = build_space(args)
    if args.strategy == "predictive":
        settings = settings_for("predictive", n_bootstrap=args.bootstrap, threshold=args.threshold,
                                method=args.predictor, min_improvement=args.min_improvement,
                                first_check=args.first_check, warm_up=args.warm_up)
    elif args.strategy == "halving":
        settings = settings_for("halving", eta=args.eta, min_steps=args.min_steps)
    else:
        settings = settings_for("all")
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()

    def progress(event: str, record) -> None:
        if args.no_progress or event == "point":
            return
        score = f"{record.scores[-1]:.4f}" if record.scores else "-"
        print(f"{event:<8} {record.id:<24} {record.label:<60} step {record.steps_trained:>5} dev {score} "
              f"{record.stop_reason or ''}", flush=True)

    ranks = current_ranks()  # under torchrun / accelerate launch: the candidates are dealt out to the processes
    with ExitStack() as stack:
        # one sweep per folder at a time; the main process alone holds and writes it
        output = ranks.on_main(lambda: str(stack.enter_context(owned_output(args.output, "sweep",
                                                                             overwrite=args.overwrite))))
        session = SearchSession(space, SearchTrainer(space, device=args.device, ranks=ranks), output, args.strategy,
                                settings, on_event=progress, ranks=ranks)
        if session.resumed and not args.no_progress and ranks.is_main:
            done = sum(record.status in ("finished", "stopped") for record in session.state.records.values())
            print(f"continuing the search in {args.output}: {done} of {len(space.candidates)} candidates done")
        session.run()
        if not ranks.is_main:
            return 0
        written = write_report(session)
    print(written["report"].read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(path) for path in written.values())} in {time.perf_counter() - started:.0f} s")
    return 0
