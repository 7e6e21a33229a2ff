"""A sweep's results shown: one row per trial, best first (the ranking is `lnn_core.sweep.results`'), and the
sweep's totals; as text, CSV or overlaid cost curves."""

import csv
import io
from typing import Any

from lnn_cli.presentation.report import plain_table, warning_mark
from lnn_core.sweep.record import SweepRecord
from lnn_core.sweep.results import TrialRow, metric_names, ranked, totals


def _text(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return "/".join(map(str, value))
    return str(value)


def _percent_or(value: float | None, name: str) -> str:
    if value is None:
        return "-"
    return f"{value:.1%}" if name.endswith("accuracy") else f"{value:.4g}"


def table_lines(record: SweepRecord, rows: list[TrialRow]) -> list[str]:
    """The trials, best first: trial, the parameters that vary, status, epochs, cost, the validation and test
    metrics, warnings (a collapsed model is one) and dollars."""
    validation, test = metric_names(rows)
    headers = [
        "trial",
        *record.varied,
        "status",
        "epochs",
        "cost",
        *([validation.replace("_", " ")] if validation else []),
        test.replace("_", " "),
        "AWS $",
        "warnings",
    ]
    lines = []
    for row in ranked(rows):
        run = row.run or {}
        epochs = f"{run.get('progress_epoch', 0)}/{row.trial['parameters'].get('epochs', '?')}" if run else "-"
        lines.append(
            [
                row.trial["run_id"],
                *(_text(row.trial["varied"].get(name, row.trial["parameters"].get(name))) for name in record.varied),
                row.status + (f" (halving @{row.halted.rung})" if row.halted else ""),
                epochs,
                "-" if row.cost is None else f"{row.cost:.4f}",
                *([_percent_or(row.figure(validation), validation)] if validation else []),
                _percent_or(row.figure(test), test),
                "-" if row.dollars is None else f"{row.dollars:.6f}",
                warning_mark(row.final) + (" collapsed" if row.collapsed else ""),
            ]
        )
    return plain_table(headers, lines)


def summary_line(record: SweepRecord, rows: list[TrialRow], clock: float) -> str:
    total = totals(record, rows, clock)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(total["counts"].items()))
    dollars = "no usage recorded" if total["dollars"] is None else f"${total['dollars']:.6f}"
    state = "done" if total["done"] else "in progress"
    best_text = (
        f"; best {total['best']} (its model is the sweep's: lnn predict {record.sweep_id} ...)" if total["best"] else ""
    )
    refused = [row for row in rows if row.status == "not started"]
    refused_text = f"; {', '.join(row.trial['run_id'] for row in refused)} {refused[0].not_started}" if refused else ""
    return (
        f"sweep {record.sweep_id}: {len(rows)} trials, {state} ({counts}); {total['seconds']:.1f} s; "
        f"AWS cost {dollars}{best_text}{refused_text}"
    )


def csv_text(record: SweepRecord, rows: list[TrialRow]) -> str:
    validation, test = metric_names(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    figures = [name for name in (validation, "validation_cost", test, "train_accuracy", "train_rmse") if name]
    writer.writerow(["trial", *record.varied, "status", "epochs", "cost", *figures, "dollars", "warnings"])
    for row in ranked(rows):
        run = row.run or {}
        writer.writerow(
            [
                row.trial["run_id"],
                *(_text(row.trial["varied"].get(name, row.trial["parameters"].get(name))) for name in record.varied),
                row.status,
                run.get("progress_epoch", ""),
                "" if row.cost is None else repr(row.cost),
                *("" if row.figure(name) is None else repr(row.figure(name)) for name in figures),
                "" if row.dollars is None else repr(row.dollars),
                len(row.final.get("warnings") or []),
            ]
        )
    return out.getvalue()


def plot_sweep(curves: dict[str, list[float]], path: str, *, sweep_id: str, best_id: str | None) -> None:
    """Every trial's cost curve on one plot, the best trial's drawn thick."""
    from lnn_cli.presentation.report import plt

    figure, axes = plt.subplots(figsize=(9, 5), dpi=100)
    for run_id, costs in curves.items():
        top = run_id == best_id
        axes.plot(
            range(1, len(costs) + 1),
            costs,
            linewidth=2.5 if top else 1,
            alpha=1 if top else 0.6,
            label=f"{run_id} (best)" if top else None,
            zorder=3 if top else 2,
        )
    axes.set_xlabel("epoch")
    axes.set_ylabel("training cost")
    axes.set_yscale("log")
    axes.set_title(f"LNN sweep {sweep_id}: {len(curves)} trials")
    axes.grid(True, alpha=0.3)
    if best_id:
        axes.legend()
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
