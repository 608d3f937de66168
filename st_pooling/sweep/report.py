"""What a search leaves behind: a table of all candidates, a PNG of the learning curves, and a summary.

The summary gives the chosen configuration, the compute used against training every candidate to the end, and the
predictor's accuracy two ways: its live predictions for candidates that were then trained to the end, and a
leave-one-curve-out test over all finished curves, each beside the last-value baseline.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from st_pooling.sweep.predictor import FinalScorePredictor, leave_one_curve_out, r_squared
from st_pooling.sweep.state import CandidateRecord, write_json_atomically
from st_pooling.sweep.strategies import PredictiveSettings, SearchSession


def _number(value: float | None, digits: int = 4) -> float | None:
    return None if value is None or not math.isfinite(value) else round(float(value), digits)


def live_accuracy(records: list[CandidateRecord]) -> dict[str, Any]:
    """R^2 of the predictions made while candidates trained, against the final score of those trained to the end."""
    predicted, last, actual = [], [], []
    for record in records:
        if record.status != "finished":
            continue
        for prediction in record.predictions:
            predicted.append(prediction["mean"])
            last.append(prediction["last"])
            actual.append(record.final)
    return {"points": len(actual), "r2": _number(r_squared(predicted, actual)),
            "last_value_r2": _number(r_squared(last, actual)),
            "mae": _number(float(np.mean(np.abs(np.subtract(predicted, actual)))) if actual else None, 5),
            "last_value_mae": _number(float(np.mean(np.abs(np.subtract(last, actual)))) if actual else None, 5)}


def held_out_accuracy(session: SearchSession) -> dict[str, Any] | None:
    """Leave-one-curve-out accuracy over the finished curves at every prefix (None with fewer than 3)."""
    curves = session.finished_curves()
    if len(curves) < 3:
        return None
    settings = session.settings if isinstance(session.settings, PredictiveSettings) else PredictiveSettings()
    space = session.space

    def make() -> FinalScorePredictor:
        return FinalScorePredictor(session.encoder, space.steps, method=settings.method, n_models=settings.n_models,
                                   min_std=settings.min_std, min_points=settings.min_points,
                                   trend_weight=settings.trend_weight, seed=space.seed)

    lengths = range(settings.min_points, len(space.eval_steps))
    summary = leave_one_curve_out(curves, make, lengths).summary()
    return {key: _number(value, 5) if isinstance(value, float) else value for key, value in summary.items()}


def summarize(session: SearchSession) -> dict[str, Any]:
    state, space = session.state, session.space
    best = state.best
    return {
        "strategy": state.strategy,
        "settings": state.settings,
        "candidates": len(space.candidates),
        "poolings": sorted({candidate.pooling for candidate in space.candidates}),
        "finished": len(state.finished()),
        "stopped": sum(record.status == "stopped" for record in state.records.values()),
        "best": None if best is None else {"id": best.id, "label": best.label, "final_dev_score": _number(best.final),
                                           "model": str(session.best_model_dir)},
        "steps_used": state.steps_used,
        "steps_train_all": space.full_compute_steps,
        "compute_fraction": round(state.steps_used / space.full_compute_steps, 4),
        "evaluations": state.evaluations_used,
        "seconds_training": round(state.seconds_used, 1),
        "seconds_evaluating": round(state.eval_seconds_used, 1),
        "seconds_feature_caches": round(session.trainer.cache_seconds, 1),
        "predictor_live": live_accuracy(list(state.records.values())),
        "predictor_leave_one_curve_out": held_out_accuracy(session),
        "space_fingerprint": state.fingerprint,
        "dev_metric": "spearman_cosine" if hasattr(session.trainer.dev_data, "scores") else "neg_loss",
    }


def candidate_table(session: SearchSession, true_finals: dict[str, float] | None = None) -> str:
    """A markdown table of every candidate in training order (``true_finals`` adds a train-all column); for a
    predictive search with a warm-up, the order after it."""
    header = ["#", "candidate", "status", "steps", "last dev", "predicted final", "actual final"]
    if true_finals is not None:
        header.append("final if trained fully")
    header.append("note")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for position, candidate in enumerate(session.training_order(), start=1):
        record = session.state.record(candidate)
        prediction = record.last_prediction
        predicted = f"{prediction['mean']:.4f} ± {prediction['std']:.4f}" if prediction else "—"
        cells = [str(position), f"{record.id} `{record.label}`", record.status + (" ★" if record.id ==
                                                                                 session.state.best_id else ""),
                 str(record.steps_trained), f"{record.scores[-1]:.4f}" if record.scores else "—", predicted,
                 f"{record.final:.4f}" if record.final is not None else "—"]
        if true_finals is not None:
            cells.append(f"{true_finals[record.id]:.4f}" if record.id in true_finals else "—")
        cells.append((record.stop_reason or "").replace("|", "/"))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot_curves(session: SearchSession, path: str | Path, title: str | None = None) -> Path:
    """Every candidate's learning curve, coloured by pooling; stopping points marked with x, ends with o."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    poolings = sorted({candidate.pooling for candidate in session.space.candidates})
    colours = {name: plt.get_cmap("tab10")(index % 10) for index, name in enumerate(poolings)}
    figure, axis = plt.subplots(figsize=(9, 5.5))
    finite = [score for record in session.state.records.values() for score in record.scores if math.isfinite(score)]
    for record in session.state.records.values():
        if not record.steps:
            continue
        colour = colours[record.pooling]
        style = "-" if record.status == "finished" else "--"
        axis.plot(record.steps, record.scores, style, color=colour, alpha=0.8, linewidth=1.2)
        marker = {"finished": "o", "stopped": "x", "paused": "|"}.get(record.status, ".")
        axis.plot(record.steps[-1], record.scores[-1], marker, color=colour, markersize=7)
    for name in poolings:
        axis.plot([], [], color=colours[name], label=name)
    axis.plot([], [], "kx", label="stopped")
    axis.plot([], [], "ko", label="trained to the end")
    if session.state.best is not None:
        axis.axhline(session.state.best.final, color="grey", linewidth=0.8, linestyle=":")
    if finite:
        top = max(finite)
        axis.set_ylim(max(min(finite), top - 0.25) - 0.005, top + 0.01)
    axis.set_xlabel("training steps")
    axis.set_ylabel("dev score (cosine Spearman)")
    axis.set_title(title or f"st-pooling sweep ({session.state.strategy}): {len(session.space.candidates)} candidates")
    axis.legend(loc="lower right", fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


def write_report(session: SearchSession, folder: str | Path | None = None,
                 true_finals: dict[str, float] | None = None) -> dict[str, Path]:
    """Write report.md (summary + table), summary.json and curves.png into ``folder`` (default: the output)."""
    folder = Path(folder or session.output)
    summary = summarize(session)
    write_json_atomically(folder / "summary.json", summary)
    png = plot_curves(session, folder / "curves.png")
    best = summary["best"]
    lines = [f"# st-pooling sweep: {summary['strategy']}", ""]
    if best:
        lines.append(f"Chosen: **{best['label']}** ({best['id']}), final dev score {best['final_dev_score']:.4f}; "
                     f"saved as a ready model in `{best['model']}`.")
    lines += [
        "",
        f"Compute: {summary['steps_used']} training steps of {summary['steps_train_all']} for training all "
        f"{summary['candidates']} candidates to the end ({100 * summary['compute_fraction']:.1f}%) and "
        f"{summary['evaluations']} dev evaluations; {summary['seconds_training']} s training and evaluating (of "
        f"which {summary['seconds_evaluating']} s evaluating), {summary['seconds_feature_caches']} s building the "
        "feature caches.",
        "",
    ]
    live, held_out = summary["predictor_live"], summary["predictor_leave_one_curve_out"]
    if live["points"]:
        lines.append(f"Predictor, live (predictions for candidates then trained to the end, {live['points']} "
                     f"points): R^2 {live['r2']} (last value: {live['last_value_r2']}).")
    if held_out:
        lines.append(f"Predictor, leave one finished curve out ({held_out['points']} prefixes): R^2 "
                     f"{held_out['r2']}, MAE {held_out['mae']} (last value: R^2 {held_out['last_value_r2']}, MAE "
                     f"{held_out['last_value_mae']}).")
    lines += ["", candidate_table(session, true_finals), "", f"![learning curves]({png.name})", ""]
    markdown = folder / "report.md"
    markdown.write_text("\n".join(lines), encoding="utf-8")
    return {"report": markdown, "summary": folder / "summary.json", "curves": png}
