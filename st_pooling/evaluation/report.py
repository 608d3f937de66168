"""Write a :class:`~st_pooling.evaluation.compare.Comparison` as results.md, results.csv and one PNG per task type."""

from __future__ import annotations

import csv
from pathlib import Path

from st_pooling.evaluation.compare import Comparison, safe_name
from collections.abc import Mapping

from st_pooling.evaluation.stats import (
    DEFAULT_ALPHA,
    BootstrapResult,
    WilcoxonResult,
    minimum_tasks_for_wilcoxon,
    significance_mark,
)

CSV_COLUMNS = ["task", "task_type", "metric", "pooling", "score", "reference", "difference", "ci_low", "ci_high",
               "p_value", "p_adjusted", "significant"]


def _signed(value: float, digits: int) -> str:
    return f"{value:+.{digits}f}"


def format_difference(result: BootstrapResult, digits: int = 4, alpha: float = DEFAULT_ALPHA) -> str:
    """"+0.0098 [+0.0021, +0.0170]*": difference, percentile interval, significance mark."""
    return (
        f"{_signed(result.difference, digits)} "
        f"[{_signed(result.ci_low, digits)}, {_signed(result.ci_high, digits)}]"
        f"{significance_mark(result.p_for_significance, alpha)}"
    )


def format_comparison_table(
    scores: Mapping[str, Mapping[str, float]],
    reference: str,
    bootstrap: Mapping[str, Mapping[str, BootstrapResult]],
    digits: int = 4,
    alpha: float = DEFAULT_ALPHA,
) -> str:
    """Markdown table: one row per task, for each pooling its (mteb) score and, for every
    pooling but ``reference``, the bootstrap difference to the reference with its interval
    and a "*" where p < alpha.

    Args:
        scores: pooling name -> task name -> main score (the headline mteb number).
        reference: the pooling the others are compared with; must be a key of ``scores``.
        bootstrap: pooling name -> task name -> ``paired_bootstrap(pooling, reference)``;
            a missing entry shows as "n/a".
    """
    if reference not in scores:
        raise ValueError(f"reference pooling {reference!r} is not among the scored poolings {sorted(scores)}")
    others = [name for name in scores if name != reference]
    tasks = sorted({task for per_task in scores.values() for task in per_task})
    confidence = next(
        (r.confidence for per_task in bootstrap.values() for r in per_task.values()), 0.95
    )
    header = ["task", reference]
    for name in others:
        header += [name, f"{name} − {reference} [{confidence:.0%} CI]"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for task in tasks:
        cells = [task, _format_score(scores[reference].get(task), digits)]
        for name in others:
            result = bootstrap.get(name, {}).get(task)
            cells.append(_format_score(scores[name].get(task), digits))
            cells.append(format_difference(result, digits, alpha) if result is not None else "n/a")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    corrected = any(r.p_adjusted is not None for per_task in bootstrap.values() for r in per_task.values())
    lines.append(f"\\* p < {alpha} (paired bootstrap over the task's items"
                 + (", Holm-corrected for the poolings tested against the reference" if corrected else "") + "). "
                 "Each difference is the difference of the two scores printed beside it; intervals are per "
                 "comparison (not widened for the correction). n/a: no interval, because "
                 "st-pooling cannot see the task's items (a Hub task) or its main metric does not decompose into "
                 "them.")
    return "\n".join(lines)


def format_wilcoxon_table(
    results: Mapping[str, Mapping[str, WilcoxonResult]],
    reference: str,
    digits: int = 4,
    alpha: float = DEFAULT_ALPHA,
) -> str:
    """Markdown table in the style of the study: one row per pooling, one column per task
    type, each cell the mean score difference to ``reference`` with "*" where the Wilcoxon
    test across that type's tasks gives p < alpha ("(n/a)" where p could not be computed).

    Args:
        results: pooling name -> task type -> ``wilcoxon_across_tasks(pooling, reference)``.
    """
    task_types = sorted({t for per_type in results.values() for t in per_type})
    lines = [
        "| pooling | " + " | ".join(task_types) + " |",
        "|" + "---|" * (len(task_types) + 1),
    ]
    for name, per_type in results.items():
        cells = [f"{name} − {reference}"]
        for task_type in task_types:
            result = per_type.get(task_type)
            if result is None:
                cells.append("")
                continue
            p_value = result.p_for_significance
            mark = significance_mark(p_value, alpha) if p_value is not None else " (n/a)"
            cells.append(f"{_signed(result.mean_difference, digits)}{mark}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        f"\\* p < {alpha}, two-sided Wilcoxon signed-rank test across the tasks of the type; "
        f"(n/a): fewer than {minimum_tasks_for_wilcoxon(alpha)} tasks with a non-zero difference."
    )
    return "\n".join(lines)


def _format_score(score: float | None, digits: int) -> str:
    return "" if score is None else f"{score:.{digits}f}"


def csv_rows(comparison: Comparison) -> list[dict[str, object]]:
    rows = []
    for task, task_type in comparison.task_types.items():
        for label in comparison.labels:
            result = comparison.bootstrap.get(label, {}).get(task)
            rows.append({
                "task": task, "task_type": task_type, "metric": comparison.main_metrics[task], "pooling": label,
                "score": comparison.scores[label][task], "reference": comparison.reference,
                "difference": "" if result is None else result.difference,
                "ci_low": "" if result is None else result.ci_low,
                "ci_high": "" if result is None else result.ci_high,
                "p_value": "" if result is None else result.p_value,
                "p_adjusted": "" if result is None or result.p_adjusted is None else result.p_adjusted,
                "significant": "" if result is None else result.significant(),
            })
    return rows


def markdown_report(comparison: Comparison, command: str | None = None) -> str:
    lines = [f"# Pooling comparison on `{comparison.base}`", ""]
    if command:
        lines += ["Reproduce with:", "", f"```bash\n{command}\n```", ""]
    lines += [
        "Scores are mteb main scores (STS: cosine Spearman, classification: accuracy, clustering: v-measure, "
        f"retrieval: nDCG@10). Each difference is against `{comparison.reference}`, with a paired-bootstrap "
        "confidence interval over the task's items (pairs, test examples, documents, queries): each item's share "
        "of mteb's score (classification and clustering from the predictions mteb wrote), so the difference equals "
        "the difference of the two scores; `*` marks p < 0.05"
        + (" after Holm's correction for the poolings tested against the reference" if comparison.correction == "holm"
           else "") + ".",
        "",
        "## Per task",
        "",
        format_comparison_table(comparison.scores, comparison.reference, comparison.bootstrap),
        "",
    ]
    if comparison.wilcoxon:
        lines += ["## Per task type (Wilcoxon signed-rank test across tasks)", "",
                  format_wilcoxon_table(comparison.wilcoxon, comparison.reference), ""]
    lines += [f"The base model ran once per distinct text: {comparison.forward_texts} texts for "
              f"{len(comparison.labels)} poolings.", ""]
    return "\n".join(lines)


def plot_task_type(comparison: Comparison, task_type: str, path: Path) -> None:
    """Grouped bars: one group per task of ``task_type``, one bar per pooling, with the bootstrap interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    tasks = [task for task, kind in comparison.task_types.items() if kind == task_type]
    labels = comparison.labels
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.6 * len(tasks) * len(labels) ** 0.5), 3.6))
    for i, label in enumerate(labels):
        scores = np.array([comparison.scores[label][task] for task in tasks])
        errors = np.zeros((2, len(tasks)))
        for j, task in enumerate(tasks):
            result = comparison.bootstrap.get(label, {}).get(task)
            if result is not None:  # the interval of the difference, drawn around this pooling's score
                errors[:, j] = [result.difference - result.ci_low, result.ci_high - result.difference]
        positions = np.arange(len(tasks)) + (i - (len(labels) - 1) / 2) * width
        ax.bar(positions, scores, width, label=label, yerr=errors if errors.any() else None, capsize=3)
    ax.set_xticks(np.arange(len(tasks)), tasks, fontsize=8)
    ax.set_ylabel(", ".join(sorted({comparison.main_metrics[task] for task in tasks})))
    ax.set_title(f"{task_type}: poolings on {Path(comparison.base).name or comparison.base}")
    ax.legend(fontsize=7, ncol=min(len(labels), 4), loc="lower center", bbox_to_anchor=(0.5, 1.1))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(comparison: Comparison, output_dir: str | Path, command: str | None = None) -> list[Path]:
    """Write results.md, results.csv and results_<TaskType>.png into ``output_dir``; returns the paths."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    markdown = output_dir / "results.md"
    markdown.write_text(markdown_report(comparison, command), encoding="utf-8")
    table = output_dir / "results.csv"
    with table.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(csv_rows(comparison))
    written = [markdown, table]
    for task_type in sorted(set(comparison.task_types.values())):
        png = output_dir / f"results_{safe_name(task_type)}.png"
        plot_task_type(comparison, task_type, png)
        written.append(png)
    return written
