"""One rank of the distributed tests' jobs (tests/test_distributed.py starts it under torchrun, or alone).

``python tests/distributed_job.py REPORT_DIR JOB.json``: JOB.json lists runs, each ``{"name", "kind": "train" |
"sweep", ...}``; every rank runs them all in order and writes ``REPORT_DIR/<name>.rank<r>.json`` with what it ended
with (a hash of its model's weights, its history), so the test can compare the ranks with each other and with a
single-process run. Only the report files are this script's own writing; the outputs are written by st-pooling.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def weights_hash(module) -> str:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def run_train(run: dict) -> dict:
    from dataclasses import asdict

    import torch

    from st_pooling.models import build_model, with_native_start
    from st_pooling.training import TrainConfig, load_training_data, train_model

    train = load_training_data(run["train"])
    dev = load_training_data(run["dev"]) if run.get("dev") else None
    config = TrainConfig(**run["config"], show_progress_bar=False)
    torch.manual_seed(config.seed)  # as train_pooling: the head's initialisation follows the seed
    model = build_model("minilm", run["pooling"], max_seq_length=run.get("max_seq_length", 32),
                        **with_native_start("minilm", run["pooling"], {}))
    if run.get("no_dropout"):  # full mode: dropout masks are drawn per rank, so only a run without them compares
        for module in model.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = 0.0
    result = train_model(model, train, run.get("output"), dev=dev, config=config)
    return {"hash": weights_hash(result.model), "best_epoch": result.best_epoch,
            "history": [asdict(record) | {"seconds": 0.0} for record in result.history]}


def run_sweep(run: dict) -> dict:
    from st_pooling.cli import main

    code = main(run["argv"])
    state = json.loads((Path(run["output"]) / "state.json").read_text(encoding="utf-8")) \
        if Path(run["output"], "state.json").is_file() else None
    return {"code": code, "state": state}


def main() -> None:
    import torch

    torch.set_num_threads(1)
    report, job = Path(sys.argv[1]), json.loads(Path(sys.argv[2]).read_text(encoding="utf-8"))
    rank = int(os.environ.get("RANK", "0"))
    for run in job:
        try:
            outcome = run_train(run) if run["kind"] == "train" else run_sweep(run)
        except Exception as error:  # a run meant to be refused: what each rank raised
            if not run.get("expect_error"):
                raise
            outcome = {"error": type(error).__name__, "message": str(error)}
        (report / f"{run['name']}.rank{rank}.json").write_text(json.dumps(outcome), encoding="utf-8")


if __name__ == "__main__":
    main()
