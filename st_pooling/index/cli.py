"""``st-pooling index build|add|search|eval``: wire with ``add_index_commands(subparsers)``."""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from st_pooling.cli_args import positive_int

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
from st_pooling.index.corpus import CORPUS_FORMATS, CorpusFile


def resolve_model(name: str | None = None, device: str | None = None, *, base: str | None = None,
                  pooling: str | None = None, max_seq_length: int | None = None) -> SentenceTransformer:
    """The model an index embeds with: ``name``, a saved SentenceTransformer (a folder or Hub name with modules.json;
    'minilm' is the packaged MiniLM) loaded as it is; or ``base``, a plain transformers model (such as the packaged
    'smollm2') given ``pooling`` (default: the base's native pooling) by ``st_pooling.models.build_model``, so
    decoders get their own handling. ``max_seq_length`` truncates longer texts."""
    from st_pooling.loading import load_model
    from st_pooling.models import build_model, native_pooling_of, resolve_base

    if (name is None) == (base is None):
        raise ValueError("give the model once: as --model (a saved SentenceTransformer) or as --base (a transformers "
                         "model to pool)")
    if name is not None:
        if pooling:
            raise ValueError(f"--pooling {pooling}: --model {name} is a saved SentenceTransformer, loaded with its "
                             "own pooling; leave out --pooling, or give a transformers model to pool as --base")
        path = resolve_base(name)
        if not _is_sentence_transformer(path):
            why = ("its folder has no modules.json" if Path(path).is_dir()
                   else "no modules.json for it on the Hub or in the local Hub cache")
            raise ValueError(f"--model {name} is not a saved SentenceTransformer ({why}): give a plain transformers "
                             f"model as --base {name} [--pooling POOLING]")
        model = load_model(path, device=device)
    else:
        path = resolve_base(str(base))
        model = build_model(path, pooling or native_pooling_of(path), device=device)
    if max_seq_length:
        model.max_seq_length = max_seq_length
    return model


def _is_sentence_transformer(path: str) -> bool:
    if Path(path).is_dir():
        return (Path(path) / "modules.json").is_file()
    from sentence_transformers.util import load_file_path

    try:
        return load_file_path(path, "modules.json") is not None
    except Exception:  # offline, or not on the Hub: loading it will say what is wrong
        return True


def _model_for(args: argparse.Namespace, index: str | None = None) -> SentenceTransformer:
    """The --model (or --base) of a command; add and search default --max-seq-length to the index's."""
    max_seq_length = args.max_seq_length
    if max_seq_length is None and index is not None:
        from st_pooling.index.store import read_live_metadata

        metadata = read_live_metadata(index)
        max_seq_length = (metadata or {}).get("model", {}).get("max_seq_length")
    return resolve_model(args.model, args.device, base=args.base, pooling=args.pooling, max_seq_length=max_seq_length)


INDEX_PARAMS = ("M", "ef_construction", "ef_search", "nlist", "nprobe", "pq_m", "refine")


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
    from st_pooling.forward import encode_devices
    from st_pooling.index.build import add_documents, build_index, train_index

    corpus = CorpusFile(args.corpus, args.format)
    progress = not args.no_progress
    if args.command_name == "add":
        report = add_documents(_model_for(args, args.index), corpus, args.index, batch_size=args.batch_size,
                               wait=not args.no_wait, show_progress=progress, document_prompt=args.document_prompt)
    elif args.command_name == "train":
        report = train_index(_model_for(args), corpus, args.index, model_name=args.model or args.base, pq=args.pq,
                             index_params=dict(args.param), batch_size=args.batch_size, overwrite=args.overwrite,
                             show_progress=progress, document_prompt=args.document_prompt,
                             query_prompt=args.query_prompt, seed=args.seed, count=args.total_count)
    else:
        report = build_index(_model_for(args), corpus, args.index, model_name=args.model or args.base,
                             index_type=args.type, pq=args.pq, index_params=dict(args.param), batch_size=args.batch_size,
                             id_type=args.id_type, overwrite=args.overwrite, wait=not args.no_wait,
                             show_progress=progress, document_prompt=args.document_prompt,
                             query_prompt=args.query_prompt, trained=args.trained, seed=args.seed,
                             devices=encode_devices(args.processes, args.devices))
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
    index = SearchIndex.load(args.index, _model_for(args, args.index), mmap=not args.in_memory,
                             query_prompt=args.query_prompt)
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

    model = _model_for(args)
    task = get_task(args.task, data_dir=args.data_dir, max_items=args.max_queries)
    evaluation = evaluate_index(model, retrieval_data_from_task(task), index_type=args.type, pq=args.pq,
                                index_params=dict(args.param), k=args.k, batch_size=args.batch_size)
    if not args.no_mteb:
        evaluation.mteb = evaluate_with_mteb(model, task, batch_size=args.batch_size)
    result = {"task": args.task, "model": args.model or args.base, **evaluation.to_dict()}
    if args.output:
        Path(args.output).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(result, indent=2))


def _cmd_merge(args: argparse.Namespace) -> None:
    from st_pooling.index.build import compact_index, merge_indexes

    if args.index_command == "compact":
        report = compact_index(args.index, wait=not args.no_wait, show_progress=not args.no_progress)
    else:
        report = merge_indexes(args.shards, args.index, overwrite=args.overwrite, wait=not args.no_wait,
                               show_progress=not args.no_progress)
    from st_pooling.index.store import read_live_metadata

    segments = len((read_live_metadata(report.path) or {}).get("segments", []))
    print(f"{report.path}: {report.spec.kind} index holding {report.total:,} documents in {segments} segment(s)")


def _cmd_migrate(args: argparse.Namespace) -> None:
    from st_pooling.index.migrate import migrate_index

    report = migrate_index(args.index, wait=not args.no_wait)
    print(f"{report.path}: migrated {report.total:,} documents to the segment format")


def add_index_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``index`` with sub-commands build, add, search and eval to an argparse subparsers object."""
    index_parser = subparsers.add_parser("index", help="build, search and evaluate FAISS indexes")
    index_parser.set_defaults(handler=run_index_command)
    commands = index_parser.add_subparsers(dest="index_command", required=True)

    def common(parser: argparse.ArgumentParser) -> None:
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--model", default=None,
                           help="a saved SentenceTransformer, loaded as it is (folder or Hub name with modules.json; "
                                "'minilm' is the packaged MiniLM)")
        which.add_argument("--base", default=None,
                           help="or a plain transformers model to pool ('smollm2', a folder), with --pooling")
        parser.add_argument("--pooling", default=None,
                            help="pooling for --base (default: its native pooling, mean)")
        parser.add_argument("--max-seq-length", type=positive_int, default=None,
                            help="truncate longer texts (add and search default to the index's)")
        parser.add_argument("--device", default=None, help="torch device (default: sentence-transformers' choice)")
        parser.add_argument("--batch-size", type=positive_int, default=64)

    def writer(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--no-wait", action="store_true",
                            help="if another build/add is writing this index, fail at once instead of waiting")
        parser.add_argument("--no-progress", action="store_true", help="hide progress bars")

    def index_choice(parser: argparse.ArgumentParser, default: str) -> None:
        parser.add_argument("--type", default=default, choices=["auto", "flat", "hnsw", "ivf"],
                            help="index type; auto: flat below 10k documents, hnsw below 2M, else ivf (docs/indexing.md)")
        parser.add_argument("--pq", action="store_true", help="product quantisation (ivf only)")
        parser.add_argument("--param", action="append", default=[], metavar="NAME=INT", type=index_param,
                            help="M, ef_construction, ef_search (hnsw); nlist, nprobe, pq_m, refine (ivf)")

    for name, help_text in (("build", "embed a corpus and save a new index"),
                            ("add", "embed more documents into an existing index (costs what is added)"),
                            ("train", "train an ivf quantiser on a uniform sample of a corpus, for sharded builds")):
        parser = commands.add_parser(name, help=help_text)
        common(parser)
        writer(parser)
        parser.add_argument("--corpus", required=True, help="jsonl (id, text[, title]), csv/tsv with a header, "
                                                            "or .txt (one document a line, line number as id)")
        parser.add_argument("--format", choices=CORPUS_FORMATS, default=None, help="default: from the suffix")
        parser.add_argument("--index", required=True, help="the index folder")
        parser.add_argument("--document-prompt", default=None,
                            help="prompt for documents (default: the model's document prompt, as encode_document)")
        if name != "add":
            parser.add_argument("--query-prompt", default=None,
                                help="prompt searches must use (default: the model's query prompt, as encode_query)")
            parser.add_argument("--seed", type=int, default=0, help="seed of the ivf training sample")
            parser.add_argument("--overwrite", action="store_true", help="replace an index already at --index")
        if name == "build":
            index_choice(parser, "auto")
            parser.add_argument("--id-type", choices=["auto", "int64", "string"], default="auto")
            parser.add_argument("--trained", default=None,
                                help="a folder made by `index train`: build a shard with its quantiser")
            parser.add_argument("--processes", type=positive_int, default=None,
                                help="encode in N CPU processes (sentence-transformers' multi-process pool)")
            parser.add_argument("--devices", nargs="+", default=None, metavar="DEVICE",
                                help="encode in one process per device, e.g. cuda:0 cuda:1")
        if name == "train":
            parser.add_argument("--pq", action="store_true", help="product quantisation")
            parser.add_argument("--param", action="append", default=[], metavar="NAME=INT", type=index_param,
                                help="nlist, nprobe, pq_m, refine")
            parser.add_argument("--total-count", type=positive_int, default=None,
                                help="documents the merged index will hold (default: the corpus's)")
        parser.set_defaults(index_handler=_cmd_build, command_name=name)

    merge = commands.add_parser("merge", help="merge shards built with one `index train` quantiser into one index")
    merge.add_argument("--index", required=True, help="the merged index folder")
    merge.add_argument("--shards", nargs="+", required=True, help="shard index folders, in order")
    merge.add_argument("--overwrite", action="store_true")
    writer(merge)
    merge.set_defaults(index_handler=_cmd_merge)
    compact = commands.add_parser("compact", help="merge an index's segments (one per add) into one")
    compact.add_argument("--index", required=True)
    writer(compact)
    compact.set_defaults(index_handler=_cmd_merge)
    migrate = commands.add_parser("migrate", help="convert an index saved by an older st-pooling (documents.jsonl)")
    migrate.add_argument("--index", required=True)
    migrate.add_argument("--no-wait", action="store_true")
    migrate.set_defaults(index_handler=_cmd_migrate)

    search = commands.add_parser("search", help="top-k documents for queries")
    common(search)
    search.add_argument("--index", required=True)
    search.add_argument("--query", action="append", default=[], help="a query (repeatable)")
    search.add_argument("--queries-file", help="a file with one query a line")
    search.add_argument("-k", type=positive_int, default=10)
    search.add_argument("--ef-search", type=positive_int, default=None)
    search.add_argument("--nprobe", type=positive_int, default=None)
    search.add_argument("--json", action="store_true", help="print results as JSON")
    search.add_argument("--query-prompt", default=None, help="default: the model's query prompt (checked against "
                                                             "the index's)")
    search.add_argument("--in-memory", action="store_true", help="read the index into memory instead of mapping it")
    search.set_defaults(index_handler=_cmd_search)

    evaluate = commands.add_parser("eval", help="recall vs exact search and nDCG@10 / recall@100 beside mteb")
    common(evaluate)
    index_choice(evaluate, "hnsw")
    evaluate.add_argument("--task", default="LocalCranfield", help="LocalCranfield, LocalCISI or an mteb task name")
    evaluate.add_argument("--data-dir", default=None, help="folder holding cranfield/ and cisi/")
    evaluate.add_argument("--max-queries", type=positive_int, default=None, help="evaluate on a subset (local tasks)")
    evaluate.add_argument("-k", type=positive_int, default=10, help="k of recall against exact search")
    evaluate.add_argument("--no-mteb", action="store_true", help="skip the direct mteb evaluation")
    evaluate.add_argument("--output", help="also write the JSON result here")
    evaluate.set_defaults(index_handler=_cmd_eval)
    return index_parser


def run_index_command(args: argparse.Namespace) -> int:
    """Run a parsed ``index`` command; its errors reach ``st_pooling.cli.main``, which turns them into the one-line
    message and exit status 2 of every command."""
    args.index_handler(args)
    return 0
