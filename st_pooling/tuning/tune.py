"""``st-pooling tune``: search heads and learning rates on the multi-task mixture, keep the winner only if it is never
worse than the native pooling on any task type's dev split, then test it against the native pooling.

Steps: (1) splits, mixture and dev suite (:mod:`st_pooling.tuning.data`); (2) the search
(:class:`~st_pooling.sweep.strategies.SearchSession`, learning-curve early stopping) with a
:class:`~st_pooling.tuning.mixture.MixtureTrainer`, which applies the never-worse rule at every evaluation point;
(3) the kept head saved as a normal SentenceTransformer folder (``<output>/model``), or nothing saved and the native
pooling kept; (4) the kept head against the native pooling on the seven local test tasks through mteb, with paired
bootstrap CIs and Holm-corrected p-values across the tasks (``<output>/test``); (5) ``<output>/tune_report.md`` and
``tune.json``.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from st_pooling.atomic import owned_output
from st_pooling.evaluation.compare import Comparison, score_tasks, shared_forward_groups
from st_pooling.evaluation.shared_forward import ModelEntry, SharedForwardEmbedder
from st_pooling.evaluation.stats import BootstrapResult, corrected, paired_bootstrap, wilcoxon_by_task_type
from st_pooling.models import is_decoder_model, native_pooling_of, resolve_base
from st_pooling.modules.spec import PoolingSpec
from st_pooling.modules.base import check_native
from st_pooling.publish.card import write_model_card
from st_pooling.sweep.space import space_from_options
from st_pooling.sweep.strategies import SearchSession, settings_for
from st_pooling.tuning.data import (build_dev_suite, build_mixture, load_splits, overall,
                                    test_tasks)
from st_pooling.tuning.defaults import (DEFAULT_EVAL_EVERY, DEFAULT_HEADS, DEFAULT_IR_DISTRACTORS, DEFAULT_LRS,
                                        DEFAULT_MAX_DEV, DEFAULT_MAX_ITEMS, DEFAULT_MAX_SEQ_LENGTH, DEFAULT_MAX_TRAIN,
                                        DEFAULT_STEPS, DEFAULT_WEIGHTS)
from st_pooling.tuning.mixture import ALPHA, MixtureTrainer, PointVerdict



@dataclass
class TuneResult:
    kept: str  # "tuned" or "native"
    native: str
    model_dir: Path | None
    winner: PointVerdict | None
    native_dev: dict[str, float]
    test: dict[str, dict[str, Any]] = field(default_factory=dict)  # task -> scores and statistics
    report: Path | None = None
    seconds: float = 0.0


def _verdict(result: BootstrapResult | None) -> str:
    if result is None:
        return "n/a"
    if not result.significant(ALPHA):
        return "level"
    return "better" if result.difference > 0 else "worse"


def evaluate_on_tests(model, base: str, native: str, label: str, tasks, output: Path, *, batch_size: int = 32,
                      n_resamples: int = 1000, seed: int = 0, device: str | None = None,
                      show_progress_bar: bool = False) -> Comparison:
    """The tuned model against the native pooling of ``base`` on ``tasks``: mteb scores, per-item paired bootstrap
    (compare's machinery), Holm across the tasks. A head on the frozen base shares the native pooling's forward pass;
    a model whose base was adapted (LoRA) gets its own, and the native pooling runs on the base as it was."""
    groups = shared_forward_groups(base, [PoolingSpec.parse(native), ModelEntry(label, model)],
                                   max_seq_length=model[0].max_seq_length)
    embedders = [SharedForwardEmbedder(transformer, poolings, batch_size=batch_size,
                                       show_progress_bar=show_progress_bar, device=device)
                 for transformer, poolings in groups]
    try:
        comparison, items = score_tasks(embedders, base, tasks, output, reference=native, batch_size=batch_size,
                                        show_progress_bar=show_progress_bar)
    finally:
        for embedder in embedders:
            embedder.close()
    raw: dict[str, BootstrapResult] = {
        name: paired_bootstrap(per_item[label], per_item[native], n_resamples=n_resamples, seed=seed)
        for name, per_item in items.items() if per_item[native] is not None and per_item[label] is not None}
    comparison.bootstrap = {label: corrected(raw, "holm")}  # one family: the tuned head on every test task
    comparison.wilcoxon = {label: wilcoxon_by_task_type(comparison.scores[label], comparison.scores[native],
                                                        comparison.task_types)}
    return comparison


def run_tune(model: str = "minilm", output: str | Path = "runs/tune", *, heads: Sequence[str] = DEFAULT_HEADS,
             lrs: Sequence[float] = DEFAULT_LRS, steps: int = DEFAULT_STEPS, eval_every: int = DEFAULT_EVAL_EVERY,
             batch_size: int = 32, max_seq_length: int = DEFAULT_MAX_SEQ_LENGTH,
             max_train: int | None = DEFAULT_MAX_TRAIN,
             max_dev: int | None = DEFAULT_MAX_DEV, max_items: int | None = DEFAULT_MAX_ITEMS,
             weights: Mapping[str, float] | None = None, strategy: str = "predictive", seed: int = 0,
             ir_distractors: int | None = DEFAULT_IR_DISTRACTORS, data_dir: str | None = None,
             n_resamples: int = 1000, evaluate: bool = True, overwrite: bool = False,
             device: str | None = None, cache_dtype: str | None = None, command: str | None = None,
             native: str | None = None, lora_rank: int | None = None, lora_learning_rate: float | None = None,
             show_progress_bar: bool = False, log=print) -> TuneResult:
    """Run tune (see the module docstring); returns what was kept and the test statistics. ``native``: the
    parameter-free pooling every head starts as and is judged against (default: the base's own,
    :func:`~st_pooling.models.native_pooling_of`). ``lora_rank``: every candidate also trains LoRA adapters of the
    base (rank ``lora_rank``, learning rate ``lora_learning_rate``, default 1e-4), live: no feature cache, the base
    runs forward and backward at every step (a GPU's job; on a CPU only tiny settings finish)."""
    started = time.perf_counter()
    native = native or native_pooling_of(model)
    try:
        check_native(native)
    except ValueError as error:  # before anything is read or cached
        raise ValueError(f"--native {native!r}: {error}") from None
    cache_dtype = cache_dtype or ("float32" if is_decoder_model(resolve_base(model)) else "float16")
    space = space_from_options(list(heads), list(lrs), base=model, max_seq_length=max_seq_length,
                               train="tune-mixture", dev="tune-dev", loss="cosent", batch_size=batch_size,
                               steps=steps, eval_every=eval_every, seed=seed, max_train=max_train,
                               max_dev=max_dev, native_start=native, lora_rank=lora_rank,
                               lora_learning_rate=lora_learning_rate)
    with owned_output(output, "tune", overwrite=overwrite) as output:
        log(f"tune: reading the splits and building the mixture ({model}, native pooling {native})")
        splits = load_splits(data_dir, seed=seed, sources=list(weights or DEFAULT_WEIGHTS))
        mixture = build_mixture(splits, weights, max_train=max_train, seed=seed)
        dev = build_dev_suite(splits, max_dev=max_dev, ir_distractors=ir_distractors, seed=seed)
        trainer = MixtureTrainer(space, mixture, dev, native=native, device=device, cache_dtype=cache_dtype,
                                 n_resamples=n_resamples, show_progress_bar=show_progress_bar)

        def progress(event: str, record) -> None:
            if event != "point":
                score = f"{record.scores[-1]:.4f}" if record.scores else "-"
                log(f"  {event:<8} {record.label:<48} step {record.steps_trained:>4} dev {score} "
                    f"{record.stop_reason or ''}")

        # a fresh search every time: the never-worse rule judges points as they are trained, so a resumed search
        # would not know the points trained before (and the mixture's sampler state is not checkpointed)
        shutil.rmtree(output / "search", ignore_errors=True)
        session = SearchSession(space, trainer, output / "search", strategy, settings_for(strategy),
                                on_event=progress)
        if lora_rank is None:
            log(f"tune: caching features of {len(trainer.texts)} texts, then searching {len(space.candidates)} "
                f"candidates x {steps} steps ({strategy})")
        else:
            log(f"tune: searching {len(space.candidates)} candidates x {steps} steps ({strategy}), each with LoRA "
                f"adapters of rank {lora_rank} on the base (live forward passes, no feature cache)")
        session.run()
        shutil.rmtree(session.best_model_dir, ignore_errors=True)  # the search's pick ignores the rule: not kept
        native_dev = {t: s.full_score() for t, s in trainer.native_dev_scores().items()}
        winner_model = trainer.winner_model()
        result = TuneResult("tuned" if winner_model is not None else "native", native, None, trainer.best,
                            native_dev)
        comparison = None
        if winner_model is not None:
            model_dir = output / "model"
            shutil.rmtree(model_dir, ignore_errors=True)
            winner_model.save(str(model_dir))
            (model_dir / "st_pooling_tune.json").write_text(json.dumps(
                {"candidate": trainer.best.candidate, "label": trainer.best.label, "step": trainer.best.step,
                 "dev_overall": trainer.best.overall, "dev_per_type": trainer.best.per_type,
                 "native": native}, indent=2), encoding="utf-8")
            write_model_card(model_dir, winner_model)  # Hub-ready card: st-pooling, the pooling, how to load it
            result.model_dir = model_dir
            log(f"tune: kept {trainer.best.label} at step {trainer.best.step}; saved to {model_dir}")
            if evaluate:
                log("tune: testing it against the native pooling on the local test tasks")
                tasks = test_tasks(data_dir, max_items=max_items, split_seed=seed)
                comparison = evaluate_on_tests(winner_model, model, native, "tuned", tasks, output / "test",
                                               batch_size=batch_size, n_resamples=n_resamples, seed=seed,
                                               device=device, show_progress_bar=show_progress_bar)
                from st_pooling.evaluation.report import write_report

                write_report(comparison, output / "test", command=command)
                for task in comparison.task_types:
                    stats = comparison.bootstrap["tuned"].get(task)
                    result.test[task] = {"type": comparison.task_types[task],
                                         "native": comparison.scores[native][task],
                                         "tuned": comparison.scores["tuned"][task],
                                         "verdict": _verdict(stats),
                                         **({} if stats is None else {"difference": stats.difference,
                                                                      "ci_low": stats.ci_low,
                                                                      "ci_high": stats.ci_high,
                                                                      "p_value": stats.p_value,
                                                                      "p_holm": stats.p_adjusted})}
        else:
            log(f"tune: no candidate beat the native pooling ({native}) on the dev suite without being significantly "
                f"worse on some task type: kept the native pooling; no model saved")
        result.seconds = time.perf_counter() - started
        payload = {"model": model, "native": native, "kept": result.kept,
                   "model_dir": None if result.model_dir is None else str(result.model_dir),
                   "command": command, "seconds": round(result.seconds, 1), "space": space.to_dict(),
                   "strategy": strategy, "mixture": mixture.summary(), "dev_sizes": dev.sizes,
                   "native_dev": native_dev, "native_dev_overall": float(np.mean(list(native_dev.values()))),
                   "winner": None if trainer.best is None else _verdict_dict(trainer.best),
                   "points": [_verdict_dict(v) for v in trainer.verdicts], "test": result.test,
                   "cache_seconds": round(trainer.cache_seconds, 1)}
        (output / "tune.json").write_text(json.dumps(payload, indent=2, default=str), encoding="utf-8")
        result.report = output / "tune_report.md"
        result.report.write_text(markdown(payload), encoding="utf-8")
    return result


def _verdict_dict(verdict: PointVerdict) -> dict[str, Any]:
    payload = asdict(verdict)
    payload["versus_native"] = {t: asdict(r) for t, r in verdict.versus_native.items()}
    payload["worse_types"] = verdict.worse_types
    return payload


def markdown(payload: Mapping[str, Any]) -> str:
    """The short report: what was kept, its dev scores against the native pooling, and the test verdicts."""
    native, lines = payload["native"], [f"# st-pooling tune: {payload['model']}", ""]
    if payload.get("command"):
        lines += [f"Command: `{payload['command']}`", ""]
    winner = payload["winner"]
    if winner is None:
        lines += [f"**Kept the native pooling ({native}).** No trained head scored above the native pooling's "
                  "overall dev score without being significantly worse (paired bootstrap, p < 0.05) on some task "
                  "type's dev split, so no model was saved.", ""]
    else:
        lines += [f"**Kept {winner['label']}** (candidate {winner['candidate']}, step {winner['step']}), saved to "
                  f"`{payload['model_dir']}`: overall dev {winner['overall']:.4f} vs native {native} "
                  f"{payload['native_dev_overall']:.4f}.", ""]
    lines += ["## Dev suite (selection)", "", "| type | native | kept | difference [95% CI] | p |",
              "|---|---|---|---|---|"]
    for task_type, score in payload["native_dev"].items():
        if winner is None:
            lines.append(f"| {task_type} | {score:.4f} | - | - | - |")
            continue
        stats = winner["versus_native"].get(task_type, {})
        lines.append(f"| {task_type} | {score:.4f} | {winner['per_type'][task_type]:.4f} | "
                     f"{stats.get('difference', float('nan')):+.4f} [{stats.get('ci_low', float('nan')):+.4f}, "
                     f"{stats.get('ci_high', float('nan')):+.4f}] | {stats.get('p_value', float('nan')):.3f} |")
    if payload["test"]:
        lines += ["", "## Test (local tasks' test splits; IR: test share of queries)", "",
                  "| task | type | native | tuned | difference [95% CI] | p (Holm) | verdict |",
                  "|---|---|---|---|---|---|---|"]
        for task, row in payload["test"].items():
            if "difference" in row:
                stats = (f"{row['difference']:+.4f} [{row['ci_low']:+.4f}, {row['ci_high']:+.4f}] | "
                         f"{row['p_holm']:.3f}")
            else:
                stats = f"{row['tuned'] - row['native']:+.4f} (no CI) | -"
            lines.append(f"| {task} | {row['type']} | {row['native']:.4f} | {row['tuned']:.4f} | {stats} | "
                         f"{row['verdict']} |")
        groups = {v: [t for t, r in payload["test"].items() if r["verdict"] == v] for v in ("better", "level",
                                                                                              "worse")}
        lines += ["", f"Better on {', '.join(groups['better']) or 'no task'}; level on "
                      f"{', '.join(groups['level']) or 'no task'}; worse on {', '.join(groups['worse']) or 'no task'}."]
    lines += ["", "## Mixture", "", "| source | rows | kind | loss | probability |", "|---|---|---|---|---|"]
    for name, info in payload["mixture"].items():
        lines.append(f"| {name} | {info['rows']} | {info['kind']} | {info['loss']} | {info['probability']:.3f} |")
    lines += ["", f"Took {payload['seconds']:.0f} s (feature caching {payload['cache_seconds']:.0f} s).", ""]
    return "\n".join(lines)
