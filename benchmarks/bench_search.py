"""Benchmark of `st-pooling sweep`: predictive early stopping and successive halving against training all.

On the packaged MiniLM (frozen, max_seq_length 64), CoSENT on a seeded subset of STS-B train, dev score = cosine
Spearman on a seeded subset of STS-B dev, 16 candidates over 5 pooling types (weighted_sum, gem, group_gem,
latent_attention, mltp) with their learning rates and sizes. In one go it builds the two feature caches once (token
states; every layer's masked mean for MLTP), trains every candidate to the end (the anchor), then runs the predictive
search and successive halving on the same caches, and prints each strategy's chosen configuration, its dev score and
the gap to the best of the full run (in points = 100 x Spearman), and its compute as a ratio of the full run's.

Compute is counted two ways. Training steps (the issue's "training compute"). And training plus dev evaluations,
which on 500 dev pairs cost 5-25 training steps each: every candidate's seconds per training step and per evaluation
are measured in the train-all run, and each strategy is charged its steps and evaluations at those prices
("priced seconds"; the same prices for every strategy, so the ratios do not depend on what else the machine was doing
while one strategy ran). The full run is charged its training plus one evaluation per candidate (its final score),
not the curve points it records for the report. Wall seconds as measured are printed too.
Successive halving runs with the standard settings: eta 3, rungs of 200/9, 200/3 and 200 steps rounded to the eval
grid (20, 60, 200: the first rung is one eval interval), keeping the best 16 // 3 = 5, then 1. Runs are seeded, so a
candidate's curve is the same in every strategy.

    HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 .venv/bin/python benchmarks/bench_search.py

Writes benchmarks/results/search.json and, per strategy, report.md, summary.json, curves.png and the chosen model
under --output (default runs/bench_search). An interrupted benchmark continues where it stopped (each strategy's
state.json); --fresh starts over.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import torch

from st_pooling.sweep import HalvingSettings, PredictiveSettings, SearchSession, SearchTrainer, rung_budgets, \
    space_from_dict
from st_pooling.sweep.predictor import FinalScorePredictor, r_squared
from st_pooling.sweep.report import summarize, write_report

RESULTS = Path(__file__).resolve().parent / "results" / "search.json"
ALL_LAYERS = [1, 2, 3, 4, 5, 6]
BENCH_SPACE = {
    "base": "minilm", "max_seq_length": 64, "train": "stsb", "dev": "stsb:dev", "max_train": 1500, "max_dev": 500,
    "loss": "cosent", "batch_size": 32, "steps": 200, "eval_every": 20, "seed": 0,
    "candidates": [
        {"pooling": "weighted_sum", "lr": [3e-4, 3e-3, 3e-2]},
        {"pooling": "gem", "lr": [1e-3, 1e-2, 1e-1]},
        {"pooling": "group_gem", "lr": [1e-2, 1e-1]},
        {"pooling": "latent_attention", "num_latents": [4, 16], "ffn_multiplier": 2, "lr": [1e-4, 1e-3]},
        {"pooling": "mltp", "layer_summary": "mean", "layers": [ALL_LAYERS, [4, 5, 6]], "ffn_multiplier": 2,
         "lr": [1e-4, 1e-3]},
    ],
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="runs/bench_search")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a busy 2-core "
                        "machine: small head ops lose more to thread contention than they gain)")
    parser.add_argument("--threshold", type=float, default=PredictiveSettings.threshold)
    parser.add_argument("--min-improvement", type=float, default=PredictiveSettings.min_improvement,
                        help="finish only candidates that may beat the best by more than this")
    parser.add_argument("--bootstrap", type=int, default=PredictiveSettings.n_bootstrap,
                        help="candidates trained to the end before stopping")
    parser.add_argument("--method", choices=["forest", "svr"], default="forest")
    parser.add_argument("--first-check", type=int, default=None, help="predictive: steps to the first check")
    parser.add_argument("--trend-weight", type=float, default=PredictiveSettings.trend_weight)
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false")
    parser.add_argument("--eta", type=int, default=3, help="successive halving's reduction factor")
    parser.add_argument("--fresh", action="store_true", help="delete the output folder's earlier runs first")
    parser.add_argument("--results", default=str(RESULTS))
    return parser.parse_args(argv)


def run_strategy(name: str, space, trainer: SearchTrainer, folder: Path, settings) -> SearchSession:
    started = time.perf_counter()

    def progress(event: str, record) -> None:
        if event in ("finished", "stopped"):
            final = f"{record.scores[-1]:.4f}" if record.scores else "-"
            print(f"  [{name}] {event:<8} {record.id:<22} steps {record.steps_trained:>4}  dev {final}  "
                  f"{record.stop_reason or ''}", flush=True)

    session = SearchSession(space, trainer, folder, name, settings, on_event=progress)
    if session.resumed:
        print(f"  [{name}] resuming {folder}")
    session.run()
    print(f"  [{name}] done in {time.perf_counter() - started:.0f} s", flush=True)
    return session


def live_r2_against_truth(session: SearchSession, true_finals: dict[str, float]) -> dict[str, float | int | None]:
    """Every prediction the search made (stopped candidates included) against the final score the candidate
    reaches when trained fully (known from the train-all run), beside the last-value baseline."""
    predicted, last, actual, spread = [], [], [], []
    for record in session.state.records.values():
        for prediction in record.predictions:
            predicted.append(prediction["mean"])
            last.append(prediction["last"])
            actual.append(true_finals[record.id])
            spread.append(prediction["std"])
    if not actual:
        return {"points": 0, "r2": None, "last_value_r2": None}
    z = np.subtract(actual, predicted) / np.asarray(spread)
    return {"points": len(actual), "r2": round(r_squared(predicted, actual), 4),
            "last_value_r2": round(r_squared(last, actual), 4),
            "mae": round(float(np.mean(np.abs(np.subtract(predicted, actual)))), 5),
            "last_value_mae": round(float(np.mean(np.abs(np.subtract(last, actual)))), 5),
            # calibration: a calibrated Gaussian puts 90% of the true finals inside mean +- 1.645 std
            "coverage_90": round(float(np.mean(np.abs(z) <= 1.645)), 3),
            "true_final_above_upper_95": round(float(np.mean(z > 1.645)), 3)}


def calibration_on_full_curves(session: SearchSession, settings: PredictiveSettings) -> dict[str, dict[str, float]]:
    """How often the true final lies above the predicted one-sided 95% bound (nominal 5%) and inside the 90%
    interval (nominal 90%), for predictors fit on the train-all curves: on one other curve (each curve in turn; the
    situation early in a search) and on all 15 others (leave one curve out)."""
    curves = session.finished_curves()
    space = session.space

    def make() -> FinalScorePredictor:
        return FinalScorePredictor(session.encoder, space.steps, method=settings.method, n_models=settings.n_models,
                                   min_std=settings.min_std, min_points=settings.min_points,
                                   trend_weight=settings.trend_weight, seed=space.seed)

    def score(pairs: list[tuple[list, object]]) -> dict[str, float]:
        z = []
        for train, test in pairs:
            predictor = make().fit(train)
            for length in range(settings.min_points, len(test.scores)):
                prediction = predictor.predict(test.prefix(length))
                z.append((test.final - prediction.mean) / prediction.std)
        z = np.asarray(z)
        return {"predictions": int(len(z)), "inside_90": round(float(np.mean(np.abs(z) <= 1.645)), 3),
                "above_upper_95": round(float(np.mean(z > 1.645)), 3)}

    one = [([train], test) for train in curves for test in curves if test is not train]
    others = [([other for other in curves if other is not test], test) for test in curves]
    return {"fit_on_one_curve": score(one), "fit_on_the_15_others": score(others)}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    output = Path(args.output)
    if args.fresh and output.exists():
        shutil.rmtree(output)
    torch.set_num_threads(args.threads)
    space = space_from_dict(BENCH_SPACE, source="bench space")
    print(f"{len(space.candidates)} candidates over {len({c.pooling for c in space.candidates})} poolings, "
          f"{space.steps} steps each, dev every {space.eval_every}", flush=True)
    trainer = SearchTrainer(space, device="cpu")
    cache_seconds = trainer.prepare()
    print(f"feature caches: {len(trainer.texts)} texts, {cache_seconds:.0f} s (built once, shared by every "
          "candidate and strategy)", flush=True)

    predictive = PredictiveSettings(n_bootstrap=args.bootstrap, threshold=args.threshold, method=args.method,
                                    min_improvement=args.min_improvement, first_check=args.first_check,
                                    trend_weight=args.trend_weight, warm_up=args.warm_up)
    halving = HalvingSettings(eta=args.eta)
    sessions = {"all": run_strategy("all", space, trainer, output / "all", None)}
    sessions["predictive"] = run_strategy("predictive", space, trainer, output / "predictive", predictive)
    sessions["halving"] = run_strategy("halving", space, trainer, output / "halving", halving)

    reference = sessions["all"].state
    true_finals = {record.id: record.final for record in reference.records.values()}
    best_all = reference.best
    for session in sessions.values():
        write_report(session, true_finals=true_finals)

    # prices measured in the train-all run: seconds per training step and per dev evaluation, per candidate
    prices = {}
    for record in reference.records.values():
        prices[record.id] = ((record.seconds - record.eval_seconds) / max(1, record.steps_trained),
                             record.eval_seconds / max(1, record.evaluations))
    full_priced = sum(space.steps * step + evaluation for step, evaluation in prices.values())
    full_evaluations = len(space.candidates)

    rows = {}
    for name, session in sessions.items():
        state = session.state
        chosen = state.best
        priced = sum(record.steps_trained * prices[record.id][0] + record.evaluations * prices[record.id][1]
                     for record in state.records.values())
        rows[name] = {
            "chosen": chosen.label, "chosen_id": chosen.id, "dev_score": round(chosen.final, 5),
            "gap_to_best_points": round(100 * (best_all.final - chosen.final), 3),
            "steps": state.steps_used, "steps_ratio_to_all": round(state.steps_used / space.full_compute_steps, 4),
            "evaluations": state.evaluations_used,
            "priced_seconds": round(priced, 2), "compute_ratio_to_all": round(priced / full_priced, 4),
            "seconds": round(state.seconds_used, 1),
            "seconds_ratio_to_all": round(state.seconds_used / reference.seconds_used, 4),
            "eval_seconds": round(state.eval_seconds_used, 1),
            "finished": len(state.finished()),
            "stopped": sum(record.status == "stopped" for record in state.records.values()),
        }
    rows["all"]["evaluations_counted"] = full_evaluations
    rows["all"]["priced_seconds"], rows["all"]["compute_ratio_to_all"] = round(full_priced, 2), 1.0
    summary = summarize(sessions["predictive"])
    predictor = {"live_vs_true_final_all_candidates": live_r2_against_truth(sessions["predictive"], true_finals),
                 "live_vs_final_of_finished": summary["predictor_live"],
                 "leave_one_curve_out_train_all_curves": summarize(sessions["all"])["predictor_leave_one_curve_out"],
                 "calibration_train_all_curves": calibration_on_full_curves(sessions["all"], predictive)}

    print()
    print(f"best when training all {len(space.candidates)} fully: {best_all.label} dev {best_all.final:.4f}")
    print(f"{'strategy':<11} {'chosen':<44} {'dev':>7} {'gap pts':>8} {'steps':>6} {'x all':>6} {'evals':>5} "
          f"{'priced s':>8} {'x all':>6} {'wall s':>7} {'x all':>6}")
    for name, row in rows.items():
        print(f"{name:<11} {row['chosen'][:44]:<44} {row['dev_score']:>7.4f} {row['gap_to_best_points']:>8.3f} "
              f"{row['steps']:>6} {row['steps_ratio_to_all']:>6.3f} {row['evaluations']:>5} "
              f"{row['priced_seconds']:>8.1f} {row['compute_ratio_to_all']:>6.3f} {row['seconds']:>7.1f} "
              f"{row['seconds_ratio_to_all']:>6.3f}")
    print(f"(all: priced as {space.full_compute_steps} steps + {full_evaluations} final evaluations; it ran "
          f"{rows['all']['evaluations']} to draw the curves)")
    live = predictor["live_vs_true_final_all_candidates"]
    print(f"predictor (predictive run, {live['points']} predictions vs true finals): R^2 {live['r2']} "
          f"(last value {live['last_value_r2']}), MAE {live.get('mae')} (last value {live.get('last_value_mae')})")
    loo = predictor["leave_one_curve_out_train_all_curves"]
    if loo:
        print(f"predictor (leave one of the {len(space.candidates)} full curves out, {loo['points']} prefixes): "
              f"R^2 {loo['r2']} (last value {loo['last_value_r2']}), MAE {loo['mae']} "
              f"(last value {loo['last_value_mae']})")
    for name, figures in predictor["calibration_train_all_curves"].items():
        print(f"calibration ({name.replace('_', ' ')}, {figures['predictions']} predictions): true final inside the "
              f"90% interval {figures['inside_90']:.3f} (nominal 0.9), above the 95% bound "
              f"{figures['above_upper_95']:.3f} (nominal 0.05)")
    p, h = rows["predictive"], rows["halving"]
    target = {"within_half_point": p["gap_to_best_points"] <= 0.5,
              "at_most_a_third_of_steps": p["steps_ratio_to_all"] <= 1 / 3,
              "at_most_a_third_of_priced_compute": p["compute_ratio_to_all"] <= 1 / 3}
    beats_halving = {"chooses_as_well": p["gap_to_best_points"] <= h["gap_to_best_points"],
                     "fewer_steps": p["steps"] < h["steps"],
                     "less_priced_compute": p["priced_seconds"] < h["priced_seconds"]}
    print(f"predictive within 0.5 points: {target['within_half_point']}; at most 1/3 of the steps: "
          f"{target['at_most_a_third_of_steps']}; at most 1/3 of the priced compute: "
          f"{target['at_most_a_third_of_priced_compute']}")
    print(f"predictive vs successive halving: chooses as well: {beats_halving['chooses_as_well']}; fewer steps: "
          f"{beats_halving['fewer_steps']}; less priced compute (steps + evaluations): "
          f"{beats_halving['less_priced_compute']}")

    payload = {
        "benchmark": "st-pooling sweep: predictive early stopping vs successive halving vs training all",
        "command": "python benchmarks/bench_search.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {"platform": platform.platform(), "torch": torch.__version__, "threads": args.threads},
        "space": space.to_dict(),
        "texts_cached": len(trainer.texts),
        "feature_cache_seconds": round(cache_seconds, 1),
        "best_train_all": {"id": best_all.id, "label": best_all.label, "dev_score": round(best_all.final, 5)},
        "strategies": rows,
        "settings": {"predictive": summary["settings"], "halving": {"eta": args.eta,
                                                                     "rungs": rung_budgets(space, halving)}},
        "prices_seconds_per_step_and_evaluation": {key: [round(a, 5), round(b, 4)] for key, (a, b) in prices.items()},
        "predictor": predictor,
        "targets": target,
        "predictive_beats_halving": beats_halving,
        "true_finals": {key: round(value, 5) for key, value in true_finals.items()},
        "reports": {name: str(session.output / "report.md") for name, session in sessions.items()},
    }
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(json.dumps(payload, indent=2, default=lambda v: None if isinstance(v, float) and
                                  math.isnan(v) else str(v)), encoding="utf-8")
    print(f"wrote {results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
