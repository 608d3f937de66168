"""`st-pooling export`: a saved model's results as a submission to the MTEB results repository (or a local folder)."""

from __future__ import annotations

import argparse


def add_export_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export", help="write a saved model's MTEB submission: results, model_meta.json and the mteb ModelMeta file",
        description="Writes <output>/results/<name with / as __>/<revision>/ (model_meta.json, one <Task>.json per "
                    "task, run_settings.jsonl) and <output>/mteb_model_implementation/<model>.py (the ModelMeta for a "
                    "pull request to mteb), checked against the MTEB results repository's rules. The revision is "
                    "the Hub commit holding the saved files (push the model first), or --revision-from-content.")
    parser.add_argument("--model", required=True, help="the saved st-pooling model folder")
    parser.add_argument("--results", required=True,
                        help="a folder of <Task>.json files, or an mteb ResultCache folder")
    parser.add_argument("--name", required=True, help="organization/model_name: the model's Hub repository")
    parser.add_argument("--revision", default=None,
                        help="the commit id to publish under (default: read from the Hub repository --name)")
    parser.add_argument("--revision-from-content", action="store_true",
                        help="use a SHA-1 of the saved files as the revision (a model not on the Hub)")
    parser.add_argument("--local", action="store_true",
                        help="a local results folder: any tasks (local ones too), any revision name, no mteb checks")
    parser.add_argument("--source-name", default=None, help="which model's results to take from a ResultCache")
    parser.add_argument("--license", default=None, help="default: the model card's")
    parser.add_argument("--languages", nargs="+", default=None, metavar="LANG",
                        help="mteb language codes, e.g. eng-Latn (default: the model card's)")
    parser.add_argument("--adapted-from", default=None, help="the base model's Hub id (default: the model card's)")
    parser.add_argument("--reference", default=None, help="URL of the model's page (default: its Hub page)")
    parser.add_argument("--training-datasets", nargs="*", default=None, metavar="TASK",
                        help="mteb task names whose data the model (and its base) trained on; no names: none "
                             "(default: from the model's training record and the base's entry in mteb)")
    parser.add_argument("--output", required=True, help="export root folder")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier export of this name and revision")
    parser.add_argument("--unverified-results", action="store_true",
                        help="export results whose folder does not record the model that produced them")
    parser.set_defaults(handler=run_export)


def run_export(args: argparse.Namespace) -> int:
    from st_pooling.publish.export import export_results

    fields = {"license": args.license, "languages": args.languages, "adapted_from": args.adapted_from,
              "reference": args.reference,
              "training_datasets": None if args.training_datasets is None else set(args.training_datasets)}
    folder = export_results(args.model, args.results, args.output, args.name, args.revision,
                            revision_from_content=args.revision_from_content, leaderboard=not args.local,
                            source_name=args.source_name, overwrite=args.overwrite,
                            verify_source=not args.unverified_results,
                            **{key: value for key, value in fields.items() if value is not None})
    print(f"wrote {folder}")
    if not args.local:
        print("next: add the file in mteb_model_implementation/ to mteb/models/model_implementations/ by a pull "
              "request to embeddings-benchmark/mteb, then copy results/ into a clone of embeddings-benchmark/results "
              "and open a pull request there (see docs/publishing.md)")
    return 0


def add_export_onnx_command(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export-onnx", help="export a saved model (any pooling) to ONNX with dynamic batch and sequence axes",
        description="Writes <output>/model.onnx, onnx_inputs.json and the tokenizer; run it with onnxruntime "
                    "(st_pooling.publish.onnx.OnnxEncoder). Needs pip install 'st-pooling[onnx]'.")
    parser.add_argument("--model", required=True, help="the saved st-pooling model folder")
    parser.add_argument("--output", required=True, help="output folder")
    parser.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    parser.set_defaults(handler=run_export_onnx)


def run_export_onnx(args: argparse.Namespace) -> int:
    from st_pooling.publish.onnx import export_onnx

    path = export_onnx(args.model, args.output, overwrite=args.overwrite)
    print(f"wrote {path}")
    return 0
