"""Past one process: training (trainer head / full modes, the fast path), the sweep, and multi-process encoding.

Real launches: 2 CPU ranks under torchrun and under accelerate launch (gloo, 1 thread each) running the packaged
MiniLM on STS-B rows, compared with the same runs in one process (this one). Each rank of a job writes what it ended
with (tests/distributed_job.py); the ranks must agree bit for bit, the main process alone must have written one output
folder (nothing left beside it), and the saved model must equal the single-process run's within float reduction order.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

import st_pooling
from st_pooling.training.data import stsb_scored_pairs

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
TOLERANCE = 2e-5

pytestmark = pytest.mark.slow


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def launch(launcher: list[str], program: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """Run ``program`` on 2 CPU ranks with ``launcher`` (torchrun / accelerate launch), 1 thread each."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "TOKENIZERS_PARALLELISM": "false", "HOME": str(cwd)}  # HOME: no accelerate config of the user's
    return subprocess.run(launcher + program, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def torchrun() -> list[str]:
    return [str(BIN / "torchrun"), "--nproc_per_node=2", f"--master_port={free_port()}"]


def accelerate_launch() -> list[str]:
    # --multi_gpu is accelerate's multi-process launcher (torchrun underneath); without GPUs the ranks use gloo
    return [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]


def failed(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"


@pytest.fixture(scope="module")
def data(data_dir, tmp_path_factory) -> dict[str, Path]:
    """64 STS-B train pairs and 32 dev pairs as tsv files (64 is a multiple of the global batch 16)."""
    folder = tmp_path_factory.mktemp("data")
    sets = {"train": stsb_scored_pairs(data_dir / "stsbenchmark", "train").subset(64, seed=1),
            "dev": stsb_scored_pairs(data_dir / "stsbenchmark", "dev").subset(32, seed=1)}
    paths = {}
    for name, pairs in sets.items():
        paths[name] = folder / f"{name}.tsv"
        rows = ["text1\ttext2\tscore"] + [f"{a}\t{b}\t{s}" for a, b, s in zip(pairs.texts1, pairs.texts2, pairs.scores)]
        paths[name].write_text("\n".join(rows) + "\n", encoding="utf-8")
    return paths


def train_runs(data: dict[str, Path], outputs: Path) -> list[dict]:
    common = {"kind": "train", "train": str(data["train"]), "dev": str(data["dev"])}
    return [
        {**common, "name": "fast", "pooling": "latent_attention", "output": str(outputs / "fast"),
         "config": {"mode": "head", "fast_path": True, "epochs": 2, "batch_size": 16, "cache_dtype": "float32",
                    "learning_rate": 3e-3}},
        {**common, "name": "head", "pooling": "gem", "output": str(outputs / "head"),
         "config": {"mode": "head", "epochs": 3, "batch_size": 16, "learning_rate": 3e-2}},
        {**common, "name": "full", "pooling": "weighted_sum", "output": str(outputs / "full"), "no_dropout": True,
         "config": {"mode": "full", "epochs": 1, "batch_size": 16, "max_steps": 2, "learning_rate": 1e-4}},
    ]


def sweep_run(data: dict[str, Path], output: Path) -> dict:
    argv = ["sweep", "--poolings", "gem", "weighted_sum", "--lrs", "3e-2", "1e-1", "--train", str(data["train"]),
            "--dev", str(data["dev"]), "--steps", "8", "--eval-every", "2", "--batch-size", "16",
            "--max-seq-length", "32", "--strategy", "halving", "--eta", "2", "--seed", "3", "--output", str(output),
            "--no-progress"]
    return {"kind": "sweep", "name": "sweep", "argv": argv, "output": str(output)}


def run_here(runs: list[dict], report: Path) -> None:
    """The same runs in this one process (no launcher: a single rank)."""
    sys.path.insert(0, str(HERE))
    try:
        import distributed_job
    finally:
        sys.path.remove(str(HERE))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for run in runs:
            outcome = distributed_job.run_train(run) if run["kind"] == "train" else distributed_job.run_sweep(run)
            (report / f"{run['name']}.rank0.json").write_text(json.dumps(outcome), encoding="utf-8")
    finally:
        torch.set_num_threads(threads)


def reports(folder: Path, name: str, ranks: int) -> list[dict]:
    return [json.loads((folder / f"{name}.rank{rank}.json").read_text(encoding="utf-8")) for rank in range(ranks)]


def assert_no_leftovers(parent: Path, expected: set[str]) -> None:
    assert {path.name for path in parent.iterdir()} == expected, sorted(path.name for path in parent.iterdir())


# A softmax is blind to a shift of its inputs, so the gradient of weighted_sum's scorer bias is 0 up to float noise,
# which Adam scales to full-size steps: that weight wanders with the reduction order and changes no output.
NO_EFFECT = {"1.scorer.bias"}


def assert_same_weights(folder: Path, reference: Path) -> None:
    """The saved model reloads, and its weights and embeddings equal the single-process run's."""
    model, single = SentenceTransformer(str(folder), device="cpu"), SentenceTransformer(str(reference), device="cpu")
    state, expected = model.state_dict(), single.state_dict()
    assert state.keys() == expected.keys()
    for key in state.keys() - NO_EFFECT:
        torch.testing.assert_close(state[key], expected[key], atol=TOLERANCE, rtol=0, msg=key)
    texts = ["A man is playing a guitar.", "The bank raised interest rates again."]
    np.testing.assert_allclose(model.encode(texts), single.encode(texts), atol=TOLERANCE)


def test_two_ranks_train_every_mode_and_sweep_as_one_process(data, tmp_path):
    """torchrun, 2 gloo ranks: fast path (latent attention), trainer head mode (GeM, best epoch restored) and full
    mode (dropout off: each rank draws its own dropout masks, so only a run without dropout can equal one process
    step for step), then a halving sweep, each against the same run in one process."""
    distributed, single = tmp_path / "distributed", tmp_path / "single"
    for folder in (distributed, single):
        (folder / "outputs").mkdir(parents=True)
        (folder / "reports").mkdir()
    taken = tmp_path / "taken"  # a folder the main process must refuse: every rank stops, naming it
    taken.mkdir()
    (taken / "notes.txt").write_text("mine", encoding="utf-8")
    refused = {**train_runs(data, tmp_path)[0], "name": "refused", "output": str(taken), "expect_error": True}
    runs = [refused] + train_runs(data, distributed / "outputs") + \
        [sweep_run(data, distributed / "outputs" / "sweep")]
    job = tmp_path / "job.json"
    job.write_text(json.dumps(runs), encoding="utf-8")
    result = launch(torchrun(), [str(HERE / "distributed_job.py"), str(distributed / "reports"), str(job)], tmp_path)
    assert result.returncode == 0, failed(result)
    assert "could not be read" not in result.stderr, failed(result)  # every checkpoint sent between ranks loaded
    run_here(train_runs(data, single / "outputs") + [sweep_run(data, single / "outputs" / "sweep")],
             single / "reports")

    rank0, rank1 = reports(distributed / "reports", "refused", 2)
    assert rank0["error"] == rank1["error"] == "FileExistsError" and str(taken) in rank0["message"]
    assert rank1["message"].startswith("the main process (rank 0) failed: ")
    assert sorted(path.name for path in taken.iterdir()) == ["notes.txt"]

    # one output folder per run, written by the main process alone: no staging folder, lock or second copy beside it
    assert_no_leftovers(distributed / "outputs", {"fast", "head", "full", "sweep"})
    for run in train_runs(data, distributed / "outputs"):
        name = run["name"]
        rank0, rank1 = reports(distributed / "reports", name, 2)
        assert rank0["hash"] == rank1["hash"], f"{name}: the two ranks ended with different weights"
        assert rank0["best_epoch"] == rank1["best_epoch"]
        (alone,) = reports(single / "reports", name, 1)
        assert rank0["best_epoch"] == alone["best_epoch"], name
        for ours, theirs in zip(rank0["history"], alone["history"], strict=True):
            np.testing.assert_allclose(ours["step_losses"], theirs["step_losses"], atol=1e-4, err_msg=name)
            if theirs["dev_score"] is not None:
                assert abs(ours["dev_score"] - theirs["dev_score"]) < 1e-4, name
        assert_same_weights(distributed / "outputs" / name, single / "outputs" / name)
    head = reports(single / "reports", "head", 1)[0]
    assert head["best_epoch"] is not None  # the best epoch was restored on both ranks (the hashes above)

    # the sweep: the same decisions and curves; the main process wrote the state, the best model, no checkpoints
    rank0, rank1 = reports(distributed / "reports", "sweep", 2)
    (alone,) = reports(single / "reports", "sweep", 1)
    assert rank0["code"] == rank1["code"] == alone["code"] == 0
    state, reference = rank0["state"], alone["state"]
    assert state["best_id"] == reference["best_id"]
    for ours, theirs in zip(state["records"], reference["records"], strict=True):
        assert (ours["id"], ours["status"], ours["steps"]) == (theirs["id"], theirs["status"], theirs["steps"])
        np.testing.assert_allclose(ours["scores"], theirs["scores"], atol=1e-4, err_msg=ours["id"])
    assert any(record["status"] == "stopped" for record in state["records"])  # halving paused and cut candidates
    sweep = distributed / "outputs" / "sweep"
    assert not any((sweep / "checkpoints").glob("*")) if (sweep / "checkpoints").exists() else True
    assert not list(sweep.glob(".*partial*")) and (sweep / "best_model" / "modules.json").is_file()
    assert_same_weights(sweep / "best_model", single / "outputs" / "sweep" / "best_model")


def test_train_command_under_accelerate_launch(data, tmp_path):
    """`accelerate launch` of `st-pooling train` (here on the fast path; the trainer path under a launcher is the test
    above): exit 0, one report, one output folder that reloads."""
    output = tmp_path / "runs" / "gem"
    command = [str(BIN / "st-pooling"), "train", "--pooling", "gem", "--train", str(data["train"]), "--dev",
               str(data["dev"]), "--fast-path", "--epochs", "2", "--batch-size", "16", "--max-seq-length", "32",
               "--output", str(output), "--no-progress"]
    result = launch(accelerate_launch(), command, tmp_path)
    assert result.returncode == 0, failed(result)
    assert result.stdout.count("saved to") == 1, result.stdout  # the main process reports, once
    assert_no_leftovers(output.parent, {"gem"})
    model = SentenceTransformer(str(output), device="cpu")
    assert model.encode(["one sentence"]).shape == (1, 384)
    summary = json.loads((output / "st_pooling_training.json").read_text(encoding="utf-8"))
    assert summary["best_epoch"] in (1, 2) and len(summary["history"]) == 2


def test_encoding_in_two_processes_equals_one_process(tmp_path, sample_texts):
    """Every pooling (MLTP included) through compare's shared forward pass in 2 encode processes, and an index built
    in 2 processes with a trained-and-saved MLTP model, equal the single-process encoding."""
    from st_pooling.evaluation.shared_forward import SharedForwardEmbedder
    from st_pooling.index import load_index
    from st_pooling.index.build import build_index
    from st_pooling.models import build_transformer, pooling_for
    from st_pooling.modules.base import BaseNeeds
    from st_pooling.modules.registry import POOLINGS

    texts = sample_texts * 3
    transformer = build_transformer("minilm", BaseNeeds(hidden_states=True, last_token=True), max_seq_length=48)
    torch.manual_seed(0)
    poolings = {name: pooling_for(transformer, name) for name in POOLINGS}
    one = SharedForwardEmbedder(transformer, poolings, batch_size=4, show_progress_bar=False, device="cpu")
    two = SharedForwardEmbedder(transformer, poolings, batch_size=4, show_progress_bar=False, device="cpu",
                                devices=["cpu", "cpu"])
    try:
        for name in POOLINGS:
            np.testing.assert_allclose(two.embeddings(texts, name), one.embeddings(texts, name), atol=1e-5,
                                       err_msg=name)
    finally:
        two.close()
    assert two.forward_texts == one.forward_texts == len(sample_texts)

    # index build: a saved MLTP model (its hidden-state setting saved in its config) encoded by 2 processes
    st_pooling.build_model("minilm", "mltp", max_seq_length=48, device="cpu").save(str(tmp_path / "mltp"))
    model = SentenceTransformer(str(tmp_path / "mltp"), device="cpu")
    corpus = {str(i): text for i, text in enumerate(sample_texts)}
    build_index(model, corpus, tmp_path / "one", index_type="flat", show_progress=False)
    build_index(model, corpus, tmp_path / "two", index_type="flat", show_progress=False, devices=["cpu", "cpu"])
    queries = model.encode(["a guitar on stage", "interest rates"], normalize_embeddings=True)
    found = [load_index(tmp_path / name, model).search_vectors(queries, k=len(corpus)) for name in ("one", "two")]
    np.testing.assert_allclose(found[1][0], found[0][0], atol=1e-5)
    assert (found[1][1] == found[0][1]).all()
    shutil.rmtree(tmp_path / "mltp")
