"""One rule for output folders (issue 15): one writer at a time, nothing a user saved is overwritten, and staging
left by a dead writer is cleaned. Real processes and real files throughout."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sentence_transformers import SentenceTransformer

from st_pooling.atomic import OWNER_FILE, OutputBusyError, owned_output
from st_pooling.cli import main

ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
       "OMP_NUM_THREADS": "1"}
CLI = [sys.executable, "-m", "st_pooling.cli"]


def pairs_file(folder: Path, rows: int = 64) -> Path:
    path = folder / "pairs.jsonl"
    path.write_text("".join(json.dumps({"anchor": f"question {i} about topic {i % 5}",
                                        "positive": f"answer {i} on topic {i % 5}"}) + "\n" for i in range(rows)),
                    encoding="utf-8")
    return path


def train_command(train: Path, output: Path, epochs: int = 1) -> list[str]:
    return [*CLI, "train", "--pooling", "weighted_sum", "--train", str(train), "--fast-path", "--epochs", str(epochs),
            "--batch-size", "8", "--max-seq-length", "32", "--output", str(output), "--no-progress"]


def hold_in_another_process(target: Path, command: str, ready: Path, release: Path) -> subprocess.Popen:
    script = (
        "import sys, time, pathlib\n"
        "from st_pooling.atomic import owned_output\n"
        f"with owned_output({str(target)!r}, {command!r}, replaced_whole=True):\n"
        f"    pathlib.Path({str(ready)!r}).write_text('held')\n"
        f"    while not pathlib.Path({str(release)!r}).exists(): time.sleep(0.05)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", script], env=ENV)
    deadline = time.monotonic() + 120
    while not ready.exists():
        assert holder.poll() is None and time.monotonic() < deadline, "the holder process did not take the lock"
        time.sleep(0.05)
    return holder


def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    target, ready, release = tmp_path / "model", tmp_path / "ready", tmp_path / "release"
    holder = hold_in_another_process(target, "train", ready, release)
    try:
        with pytest.raises(OutputBusyError, match=rf"being written by pid {holder.pid} \(train"):
            with owned_output(target, "train", replaced_whole=True):
                pass
    finally:
        release.write_text("go")
        assert holder.wait(timeout=60) == 0
    with owned_output(target, "train", replaced_whole=True):  # released with its process
        pass


def test_train_while_another_process_writes_the_same_output_is_refused(tmp_path):
    target, ready, release = tmp_path / "model", tmp_path / "ready", tmp_path / "release"
    holder = hold_in_another_process(target, "train", ready, release)
    try:
        second = subprocess.run(train_command(pairs_file(tmp_path), target), env=ENV, capture_output=True, text=True,
                                timeout=600)
    finally:
        release.write_text("go")
        holder.wait(timeout=60)
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"being written by pid {holder.pid}" in second.stderr
    assert not target.exists() and not list(tmp_path.glob(".model.partial*"))


def test_two_train_runs_into_one_new_output_leave_one_intact_model(tmp_path):
    """Both start at once: exactly one writes the model; the other is refused (busy, or the folder is no longer
    empty), never reporting success over the first's model."""
    train, target = pairs_file(tmp_path), tmp_path / "model"
    runs = [subprocess.Popen(train_command(train, target, epochs=2), env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [(run.wait(timeout=600), run.stderr.read()) for run in runs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    refused = next(err for code, err in results if code == 2)
    assert "being written by pid" in refused or "exists and is not empty" in refused
    model = SentenceTransformer(str(target), device="cpu")
    assert type(model[1]).__name__ == "WeightedSumPooling"
    assert not list(tmp_path.glob(".model.partial*"))


def test_staging_left_by_a_killed_train_run_is_removed_by_the_next_writer(tmp_path):
    train, target = pairs_file(tmp_path, rows=2000), tmp_path / "model"
    run = subprocess.Popen(train_command(train, target, epochs=50), env=ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".model.partial-*")):
        assert run.poll() is None and time.monotonic() < deadline, "training ended before its staging folder showed"
        time.sleep(0.1)
    run.send_signal(signal.SIGTERM)
    run.wait(timeout=60)
    assert list(tmp_path.glob(".model.partial-*")), "SIGTERM left no staging folder: nothing to clean"
    with owned_output(target, "train", replaced_whole=True):
        assert not list(tmp_path.glob(".model.partial-*"))


def test_compare_refuses_a_folder_with_a_users_files_and_keeps_them(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in {"report.md": "my notes", "summary.json": "{}", "results.md": "my table"}.items():
        (folder / name).write_text(text)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["compare", "--poolings", "mean", "max", "--output", str(folder), "--no-progress"]) == 2
    assert "st-pooling compare did not write it" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


def test_a_command_may_write_again_where_it_wrote_but_not_where_another_command_did(tmp_path):
    folder = tmp_path / "runs"
    with owned_output(folder, "compare") as owned:
        (owned / "results.md").write_text("table")
    assert json.loads((folder / OWNER_FILE).read_text())["command"] == "compare"
    with owned_output(folder, "compare"):  # a rerun
        pass
    with pytest.raises(FileExistsError, match="holds the output of `st-pooling compare`"):
        with owned_output(folder, "search"):
            pass
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        with owned_output(folder, "train", replaced_whole=True):
            pass
    with owned_output(folder, "train", overwrite=True, replaced_whole=True):
        pass


def test_ctrl_c_ends_with_one_line_and_leaves_nothing_behind(tmp_path):
    train, target = pairs_file(tmp_path, rows=2000), tmp_path / "model"
    run = subprocess.Popen(train_command(train, target, epochs=50), env=ENV, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list(tmp_path.glob(".model.partial-*")):
        assert run.poll() is None and time.monotonic() < deadline, "training ended before its staging folder showed"
        time.sleep(0.1)
    time.sleep(1.0)
    run.send_signal(signal.SIGINT)
    assert run.wait(timeout=120) == 130
    stderr = run.stderr.read()
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1] == "st-pooling train: interrupted"
    assert not target.exists() and not list(tmp_path.glob(".model.partial-*"))


def test_nothing_is_left_beside_the_folder_after_a_write(tmp_path):
    with owned_output(tmp_path / "model", "train", replaced_whole=True):
        assert (tmp_path / ".model.lock").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_search_refuses_a_folder_with_a_users_files_and_keeps_them(tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    for name, text in {"report.md": "my notes", "summary.json": "{}"}.items():
        (folder / name).write_text(text)
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    assert main(["sweep", "--poolings", "gem", "--lrs", "1e-3", "--output", str(folder), "--quiet"]) == 2
    assert "st-pooling sweep did not write it" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before


@pytest.mark.parametrize("argv, option", [
    (["train", "--max-train", "-3"], "--max-train"),
    (["train", "--epochs", "0"], "--epochs"),
    (["train", "--lr", "nan"], "--lr"),
    (["compare", "--n-resamples", "zero"], "--n-resamples"),
    (["sweep", "--steps", "-1", "--output", "x"], "--steps"),
])
def test_bad_numbers_are_refused_while_parsing_naming_the_option(argv, option, capsys):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert f"argument {option}" in capsys.readouterr().err
