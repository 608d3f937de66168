"""``st-pooling index build|add|search|eval``: wire with ``add_index_commands(subparsers)``."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from st_pooling.cli_args import positive_int
from st_pooling.index.corpus import CORPUS_FORMATS, CorpusFile


def resolve_model(name: str, device: str | None = None):
    """A SentenceTransformer from a folder, a Hub name, or a packaged short name ('minilm', 'smollm2')."""
    from sentence_transformers import SentenceTransformer

    from st_pooling.models import resolve_base

    return SentenceTransformer(resolve_base(name), device=device)


INDEX_PARAMS = ("M", "ef_construction", "ef_search", "nlist", "nprobe", "pq_m")


def index_param(text: str) -> tuple[str, int]:
    """argparse type for ``--param NAME=INTEGER``."""
    name, _, value = text.partition("=")
    if name not in INDEX_PARAMS:
        raise argparse.ArgumentTypeError(f"expected NAME=INTEGER with NAME one of {', '.join(INDEX_PARAMS)}, "
                                         f"got {text!r}")
    try:
        return name, positive_int(value)
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"{name}: {error}") from None


def _cmd_build(args: argparse.Namespace) -> None:
    from st_pooling.index.build import add_documents, build_index

    model = resolve_model(args.model, args.device)
    corpus = CorpusFile(args.corpus, args.format)
    if args.command_name == "add":
        report = add_documents(model, corpus, args.index, batch_size=args.batch_size, wait=not args.no_wait)
    else:
        report = build_index(model, corpus, args.index, model_name=args.model, index_type=args.type, pq=args.pq,
                             index_params=dict(args.param), batch_size=args.batch_size,
                             id_type=args.id_type, overwrite=args.overwrite, wait=not args.no_wait)
    print(f"{report.path}: {report.spec.kind} index {report.spec.params or ''} ({report.spec.chosen_by}), "
          f"added {report.added:,}, holds {report.total:,}; encoding {report.encode_seconds:.1f} s, "
          f"indexing {report.index_seconds:.2f} s")


def _cmd_search(args: argparse.Namespace) -> None:
    from st_pooling.index.search import SearchIndex

    queries = list(args.query)
    if args.queries_file:
        queries += [line.strip() for line in Path(args.queries_file).read_text(encoding="utf-8").splitlines()
                    if line.strip()]
    if not queries:
        raise ValueError("give at least one --query TEXT or a --queries-file")
    index = SearchIndex.load(args.index, resolve_model(args.model, args.device))
    index.set_search_params(ef_search=args.ef_search, nprobe=args.nprobe)
    results = index.search(queries, k=args.k)
    if args.json:
        print(json.dumps([{"query": q, "hits": [vars(h) for h in hits]} for q, hits in zip(queries, results)],
                         ensure_ascii=False, indent=2))
        return
    for query, hits in zip(queries, results):
        print(f"query: {query}")
        for rank, hit in enumerate(hits, start=1):
            snippet = (f"{hit.title} | " if hit.title else "") + hit.text
            print(f"  {rank:>3}. {hit.score:.4f}  {hit.id}  {snippet[:100]}")


def _cmd_eval(args: argparse.Namespace) -> None:
    from st_pooling.evaluation.tasks import get_task
    from st_pooling.index.evaluate import evaluate_index, evaluate_with_mteb, retrieval_data_from_task

    model = resolve_model(args.model, args.device)
    if args.max_seq_length:
        model.max_seq_length = args.max_seq_length
    task = get_task(args.task, data_dir=args.data_dir, max_items=args.max_queries)
    evaluation = evaluate_index(model, retrieval_data_from_task(task), index_type=args.type, pq=args.pq,
                                index_params=dict(args.param), k=args.k, batch_size=args.batch_size)
    if not args.no_mteb:
        evaluation.mteb = evaluate_with_mteb(model, task, batch_size=args.batch_size)
    result = {"task": args.task, "model": args.model, **evaluation.to_dict()}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


def add_index_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``index`` with sub-commands build, add, search and eval to an argparse subparsers object."""
    index_parser = subparsers.add_parser("index", help="build, search and evaluate FAISS indexes")
    index_parser.set_defaults(handler=run_index_command)
    commands = index_parser.add_subparsers(dest="index_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--model", required=True, help="folder, Hub name, or 'minilm' (packaged MiniLM)")
        parser.add_argument("--device", default=None, help="torch device (default: sentence-transformers' choice)")
        parser.add_argument("--batch-size", type=positive_int, default=64)

    def index_choice(parser: argparse.ArgumentParser, default: str) -> None:
        parser.add_argument("--type", default=default, choices=["auto", "flat", "hnsw", "ivf"],
                            help="index type; auto: flat below 100k documents, hnsw below 2M, else ivf")
        parser.add_argument("--pq", action="store_true", help="product quantisation (ivf only)")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=INT", type=index_param,
                            help="M, ef_construction, ef_search (hnsw); nlist, nprobe, pq_m (ivf)")

    for name, help_text in (("build", "embed a corpus and save a new index"),
                            ("add", "embed more documents into an existing index")):
        parser = commands.add_parser(name, help=help_text)
        common(parser)
        parser.add_argument("--corpus", required=True, help="jsonl (id, text[, title]), csv/tsv with a header, "
                                                            "or .txt (one document a line, line number as id)")
        parser.add_argument("--format", choices=CORPUS_FORMATS, default=None, help="default: from the suffix")
        parser.add_argument("--index", required=True, help="the index folder")
        parser.add_argument("--no-wait", action="store_true",
                            help="if another build/add is writing this index, fail at once instead of waiting")
        if name == "build":
            index_choice(parser, "auto")
            parser.add_argument("--id-type", choices=["auto", "int64", "string"], default="auto")
            parser.add_argument("--overwrite", action="store_true", help="replace an index already at --index")
        parser.set_defaults(index_handler=_cmd_build, command_name=name)

    search = commands.add_parser("search", help="top-k documents for queries")
    common(search)
    search.add_argument("--index", required=True)
    search.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    search.add_argument("--queries-file", help="a file with one query a line")
    search.add_argument("-k", type=positive_int, default=10)
    search.add_argument("--ef-search", type=positive_int, default=None)
    search.add_argument("--nprobe", type=positive_int, default=None)
    search.add_argument("--json", action="store_true", help="print results as JSON")
    search.set_defaults(index_handler=_cmd_search)

    evaluate = commands.add_parser("eval", help="recall vs exact search and nDCG@10 / recall@100 beside mteb")
    common(evaluate)
    index_choice(evaluate, "hnsw")
    evaluate.add_argument("--task", default="LocalCranfield", help="LocalCranfield, LocalCISI or an mteb task name")
    evaluate.add_argument("--data-dir", default=None, help="folder holding cranfield/ and cisi/")
    evaluate.add_argument("--max-queries", type=positive_int, default=None, help="evaluate on a subset (local tasks)")
    evaluate.add_argument("--max-seq-length", type=positive_int, default=None)
    evaluate.add_argument("-k", type=positive_int, default=10, help="k of recall against exact search")
    evaluate.add_argument("--no-mteb", action="store_true", help="skip the direct mteb evaluation")
    evaluate.add_argument("--output", help="also write the JSON result here")
    evaluate.set_defaults(index_handler=_cmd_eval)
    return index_parser


def run_index_command(args: argparse.Namespace) -> int:
    """Run a parsed ``index`` command; library errors become one-line messages and exit status 2."""
    from st_pooling.index.errors import CorpusError, IndexModelMismatchError, IndexStoreError

    try:
        args.index_handler(args)
    except (CorpusError, IndexModelMismatchError, IndexStoreError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0
