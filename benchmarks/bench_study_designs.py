"""Train the five pooling-and-attention study designs on SmolLM2 and compare them on STS-B test and SICK test.

Designs (``st_pooling.training.recipes.STUDY_DESIGNS``): 1 eos-causal (LoRA), 2 lasttp-causal (head only),
3 mltp-causal (head only), 4 lasttp-bidirectional (LoRA), 5 mltp-bidirectional (LoRA). Each is trained with CoSENT
on STS Benchmark train (dev: STS-B dev, best epoch kept), then every trained model and zero-shot SmolLM2 (mean
pooling; EOS-last too) is scored by cosine Spearman on STS-B test and SICK test, computed directly with
``st_pooling.evaluation.item_scores.sts_item_scores`` (no mteb), with paired-bootstrap CIs of each model's difference
to design 1 (``st_pooling.evaluation.stats.paired_bootstrap``). Runs the same on CPU or GPU.

    .venv/bin/python benchmarks/bench_study_designs.py --device cuda --epochs 2 --train-rows 0

Per-design results (scores and per-pair cosines) are kept in ``--state`` so an interrupted run resumes where it
stopped; the JSON (``--output``) is rewritten after every design.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import st_pooling  # noqa: E402,F401  (registers the module classes)
from st_pooling import build_model  # noqa: E402
from st_pooling.data import load_sick, load_stsbenchmark, shared_data_dir  # noqa: E402
from st_pooling.evaluation.item_scores import sts_item_scores_from_cosines  # noqa: E402
from st_pooling.evaluation.stats import paired_bootstrap  # noqa: E402
from st_pooling.training import load_training_data, train_model  # noqa: E402
from st_pooling.training.recipes import STUDY_DESIGNS  # noqa: E402

REFERENCE = "eos-causal"
ZERO_SHOT = {"zero-shot-mean": ("mean", "causal"), "zero-shot-eos": ("last_token", "causal")}


def pair_cosines(model, texts1, texts2, batch_size: int) -> np.ndarray:
    e1 = model.encode(list(texts1), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                      show_progress_bar=False)
    e2 = model.encode(list(texts2), batch_size=batch_size, convert_to_numpy=True, normalize_embeddings=True,
                      show_progress_bar=False)
    return np.einsum("ij,ij->i", e1.astype(np.float64), e2.astype(np.float64))


def evaluate(model, tests: dict, batch_size: int) -> tuple[dict, dict, float]:
    started = time.perf_counter()
    model.eval()
    cosines, scores = {}, {}
    with torch.inference_mode():
        for name, data in tests.items():
            cos = pair_cosines(model, data.sentences1, data.sentences2, batch_size)
            cosines[name] = cos
            scores[name] = sts_item_scores_from_cosines(cos, data.scores).full_score()
    return scores, cosines, time.perf_counter() - started


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The options that decide how the designs are trained and compared (shared with bench_study_suite.py)."""
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-rows", type=int, default=0, help="STS-B train pairs to use (0: all 5,749)")
    parser.add_argument("--dev-rows", type=int, default=0, help="STS-B dev pairs (0: all 1,500)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-seq-length", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-resamples", type=int, default=1000)
    parser.add_argument("--designs", default="all", help="comma-separated recipe names or 'all'")


def use_tf32(device: str) -> None:
    if device.startswith("cuda"):
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def training_splits(args: argparse.Namespace, data_dir: Path) -> tuple:
    """STS-B train and dev pairs (subsets when --train-rows / --dev-rows are set), as every design trains on."""
    train = load_training_data("stsb", data_dir)
    if args.train_rows:
        train = train.subset(args.train_rows, seed=args.seed)
    dev = load_training_data("stsb:dev", data_dir)
    if args.dev_rows:
        dev = dev.subset(args.dev_rows, seed=args.seed)
    return train, dev


def build_and_train(name: str, args: argparse.Namespace, train, dev) -> tuple:
    """Design ``name`` (or a zero-shot baseline) built and trained as the study table does: (model, record)."""
    torch.manual_seed(args.seed)
    started = time.perf_counter()
    record: dict = {"name": name}
    if name in ZERO_SHOT:
        pooling, attention = ZERO_SHOT[name]
        model = build_model("smollm2", pooling, attention_mode=attention, max_seq_length=args.max_seq_length,
                            device=args.device)
        record.update(description=f"zero-shot SmolLM2-135M-Instruct, {pooling} pooling, {attention} attention",
                      mode="none", build_seconds=time.perf_counter() - started)
    else:
        recipe = STUDY_DESIGNS[name]
        model = recipe.build(max_seq_length=args.max_seq_length, device=args.device)
        config = recipe.config(epochs=args.epochs, batch_size=args.batch_size, loss="cosent", seed=args.seed,
                               show_progress_bar=False, cache_dtype="float32")
        build_seconds = time.perf_counter() - started
        trainable_head = sum(p.numel() for p in model[1].parameters())
        sync(args.device)
        t0 = time.perf_counter()
        result = train_model(model, train, None, dev=dev, config=config)
        sync(args.device)
        train_seconds = time.perf_counter() - t0
        model = result.model
        trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        record.update(description=recipe.description, mode=recipe.mode, pooling=recipe.pooling,
                      attention_mode=recipe.attention_mode, options=recipe.options,
                      fast_path=config.fast_path, build_seconds=build_seconds, train_seconds=train_seconds,
                      cache_seconds=result.cache_seconds, best_epoch=result.best_epoch,
                      best_dev_score=result.best_dev_score, head_parameters=trainable_head,
                      trainable_parameters_after_training=trainable,
                      history=[{"epoch": r.epoch, "train_loss": r.train_loss, "dev_score": r.dev_score,
                                "seconds": r.seconds} for r in result.history])
    record["total_seconds"] = time.perf_counter() - started
    return model, record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_options(parser)
    parser.add_argument("--eval-rows", type=int, default=0, help="test pairs per test set (0: all; for smoke runs)")
    parser.add_argument("--data-dir", default=None, help="folder with stsbenchmark/ and sick/ (default: shared)")
    parser.add_argument("--state", default="benchmarks/results/.study_designs_state")
    parser.add_argument("--output", default="benchmarks/results/study_designs.json")
    parser.add_argument("--fresh", action="store_true", help="ignore per-design results already in --state")
    args = parser.parse_args()

    data_dir = Path(args.data_dir) if args.data_dir else shared_data_dir()
    if data_dir is None:
        raise SystemExit("no data folder: pass --data-dir or set ST_POOLING_DATA_DIR")
    use_tf32(args.device)
    state = Path(args.state)
    state.mkdir(parents=True, exist_ok=True)

    tests = {"STSBenchmark": load_stsbenchmark(data_dir / "stsbenchmark", "test"),
             "SICK-R": load_sick(data_dir / "sick", "test")}
    if args.eval_rows:
        for name, data in list(tests.items()):
            n = args.eval_rows
            tests[name] = type(data)(data.sentences1[:n], data.sentences2[:n], data.scores[:n],
                                     min_score=data.min_score, max_score=data.max_score)
    train, dev = training_splits(args, data_dir)

    designs = list(STUDY_DESIGNS) if args.designs == "all" else [d.strip() for d in args.designs.split(",")]
    names = list(ZERO_SHOT) + designs
    budget = {"loss": "cosent", "train": "stsb", "train_rows": len(train), "dev": "stsb:dev", "dev_rows": len(dev),
              "epochs": args.epochs, "batch_size": args.batch_size, "max_seq_length": args.max_seq_length,
              "seed": args.seed, "lora": {"r": 16, "alpha": 32, "dropout": 0.1},
              "learning_rates": "recipe defaults: head mode 1e-3; lora mode base 1e-4, head 1e-3",
              "best_epoch_by": "STS-B dev cosine Spearman (load_best_model_at_end / fast path restore)"}

    for name in names:
        record_path = state / f"{name}.json"
        if record_path.is_file() and not args.fresh:
            print(f"[{name}] already done, kept from {record_path}", flush=True)
            continue
        model, record = build_and_train(name, args, train, dev)
        started = time.perf_counter() - record["total_seconds"]
        sync(args.device)
        scores, cosines, eval_seconds = evaluate(model, tests, batch_size=128)
        record.update(scores=scores, eval_seconds=eval_seconds, total_seconds=time.perf_counter() - started)
        np.savez(state / f"{name}.npz", **cosines)
        record_path.write_text(json.dumps(record, indent=2))
        print(f"[{name}] " + json.dumps({k: record.get(k) for k in ("scores", "best_epoch", "best_dev_score",
                                                                      "train_seconds", "eval_seconds")}), flush=True)
        del model
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
        write_summary(args, names, state, tests, budget, data_dir)
    write_summary(args, names, state, tests, budget, data_dir)


def write_summary(args, names, state: Path, tests: dict, budget: dict, data_dir: Path) -> None:
    records, cosines = {}, {}
    for name in names:
        path = state / f"{name}.json"
        if path.is_file():
            records[name] = json.loads(path.read_text())
            with np.load(state / f"{name}.npz") as npz:
                cosines[name] = {task: npz[task] for task in npz.files}
    comparisons: dict = {}
    if REFERENCE in cosines:
        for name in records:
            if name == REFERENCE:
                continue
            comparisons[name] = {}
            for task, data in tests.items():
                a = sts_item_scores_from_cosines(cosines[name][task], data.scores)
                b = sts_item_scores_from_cosines(cosines[REFERENCE][task], data.scores)
                boot = paired_bootstrap(a, b, n_resamples=args.n_resamples, seed=args.seed)
                comparisons[name][task] = {"difference": boot.difference, "ci_low": boot.ci_low,
                                           "ci_high": boot.ci_high, "p_value": boot.p_value,
                                           "significant_at_0.05": bool(boot.significant()),
                                           "n_items": boot.n_items, "n_resamples": boot.n_resamples}
    device_name = (torch.cuda.get_device_name(0) if args.device.startswith("cuda") and torch.cuda.is_available()
                   else platform.processor() or platform.machine())
    import sentence_transformers
    import transformers
    try:
        import peft
        peft_version = peft.__version__
    except ImportError:
        peft_version = None
    summary = {
        "benchmark": "bench_study_designs",
        "reference": REFERENCE,
        "metric": "cosine Spearman (raw, in [-1, 1])",
        "tests": {task: len(data.scores) for task, data in tests.items()},
        "budget": budget,
        "data_dir": str(data_dir),
        "environment": {"device": args.device, "device_name": device_name, "torch": torch.__version__,
                        "transformers": transformers.__version__,
                        "sentence_transformers": sentence_transformers.__version__, "peft": peft_version,
                        "python": platform.python_version(), "cuda": torch.version.cuda},
        "command": "python benchmarks/bench_study_designs.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items()
            if k in ("device", "epochs", "train_rows", "dev_rows", "eval_rows", "batch_size", "max_seq_length",
                     "seed", "n_resamples", "designs")),
        "results": records,
        "vs_reference": comparisons,
    }
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
