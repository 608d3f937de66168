"""The `st-pooling` command line."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import time

from st_pooling.atomic import LockBusyError, owned_output
from st_pooling.cli_args import add_base_flag, add_progress_flag, positive_int
from st_pooling.index.cli import add_index_commands
from st_pooling.index.errors import IndexStoreError
from st_pooling.publish.cli import add_export_command, add_export_onnx_command
from st_pooling.sweep.cli import add_sweep_command
from st_pooling.training.cli import add_train_command
from st_pooling.tuning.cli import add_tune_command

DEFAULT_POOLINGS = ["mean", "max", "cls", "last_token", "weighted_mean", "gem"]


def add_compare_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "compare", help="compare poolings on one base model through MTEB, with significance statistics",
        description="Evaluate several poolings of one base model on MTEB tasks with one shared forward pass; "
                    "writes results.md (scores, bootstrap CIs, significance), results.csv and a PNG per task type.")
    add_base_flag(parser)
    parser.add_argument("--poolings", nargs="+", default=DEFAULT_POOLINGS, metavar="SPEC",
                        help="pooling specs, e.g. mean gem gem:initial_p=2 mltp:layer_summary=last_token, or folders "
                             "of saved models (e.g. a head from st-pooling train), evaluated as saved "
                             f"(default: {' '.join(DEFAULT_POOLINGS)})")
    parser.add_argument("--tasks", nargs="+", default=None, metavar="TASK",
                        help="local task names (see `st-pooling list`) or any mteb task name "
                             "(default: the embedded default tasks)")
    parser.add_argument("--data-dir", default=None, help="folder of the benchmark data sets (default: "
                        "$ST_POOLING_DATA_DIR, else ../shared/data next to the source tree)")
    parser.add_argument("--output", default="runs/compare", help="output folder (default: runs/compare); a non-empty "
                        "folder that an earlier compare did not write is refused unless --overwrite")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder anyway")
    parser.add_argument("--reference", default=None, help="pooling the others are tested against (default: first)")
    parser.add_argument("--max-items", type=positive_int, default=None, help="evaluate on a subset of each local task")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument("--max-seq-length", type=positive_int, default=None)
    parser.add_argument("--attention-mode", choices=["causal", "bidirectional"], default=None,
                        help="decoder base models only")
    parser.add_argument("--n-resamples", type=positive_int, default=1000, help="bootstrap resamples (default: 1000)")
    parser.add_argument("--correction", choices=["holm", "none"], default="holm",
                        help="multiple-comparison correction of the p-values behind the significance marks, for "
                             "testing several poolings against one reference (default: holm)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--processes", type=positive_int, default=None,
                        help="run the forward passes in N CPU processes (sentence-transformers' multi-process "
                             "pool). Each process loads the base first: on a CPU it pays off only for long encodes "
                             "(the embedded default's ~27 s comparison took 1.7x as long with 2; docs/distributed.md)")
    parser.add_argument("--devices", nargs="+", default=None, metavar="DEVICE",
                        help="run the forward passes in one process per device, e.g. cuda:0 cuda:1")
    add_progress_flag(parser)
    parser.set_defaults(handler=run_compare)


def run_compare(args: argparse.Namespace) -> int:
    from st_pooling.evaluation.compare import compare_poolings
    from st_pooling.evaluation.report import write_report
    from st_pooling.evaluation.shared_forward import ModelEntry
    from st_pooling.modules.spec import PoolingSpec
    from st_pooling.evaluation.stats import check_bootstrap_settings
    from st_pooling.evaluation.tasks import EMBEDDED_DEFAULT_TASKS, get_tasks

    from st_pooling.forward import encode_devices

    started = time.perf_counter()
    check_bootstrap_settings(args.n_resamples)  # all settings before any folder is touched
    devices = encode_devices(args.processes, args.devices)
    specs = [ModelEntry.load(text) if os.path.isdir(text) or os.sep in text else PoolingSpec.parse(text)
             for text in args.poolings]
    tasks = get_tasks(args.tasks or EMBEDDED_DEFAULT_TASKS, data_dir=args.data_dir, max_items=args.max_items)
    with owned_output(args.output, "compare", overwrite=args.overwrite) as output:
        comparison = compare_poolings(
            args.base, specs, tasks, output, reference=args.reference, batch_size=args.batch_size,
            max_seq_length=args.max_seq_length, attention_mode=args.attention_mode, n_resamples=args.n_resamples,
            seed=args.seed, correction=args.correction, show_progress_bar=not args.no_progress, device=args.device,
            devices=devices)
        written = write_report(comparison, output, command="st-pooling " + shlex.join(args.argv))
    print(written[0].read_text(encoding="utf-8"))
    print(f"wrote {', '.join(str(path) for path in written)} in {time.perf_counter() - started:.0f} s")
    return 0


def add_list_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("list", help="list the registered poolings and the local tasks")
    parser.set_defaults(handler=run_list)


def run_list(args: argparse.Namespace) -> int:
    from st_pooling.catalogue import catalogue_lines  # a table, so listing imports neither torch nor mteb

    print("\n".join(catalogue_lines()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="st-pooling", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    subparsers = parser.add_subparsers(dest="command", required=True)
    add_compare_command(subparsers)
    add_list_command(subparsers)
    add_export_command(subparsers)
    add_export_onnx_command(subparsers)
    add_index_commands(subparsers)
    add_train_command(subparsers)
    add_sweep_command(subparsers)
    add_tune_command(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING)
    try:
        return args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, KeyError, ImportError, IndexStoreError,
            LockBusyError, FloatingPointError) as error:  # FloatingPointError: a loss diverged (lower the rate)
        logging.getLogger("st_pooling.cli").info("details of the error below:", exc_info=error)  # shown with -v
        print(f"st-pooling {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # one line, not a traceback; what was being written was staged, so nothing is lost
        print(f"st-pooling {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
