"""A sweep's results: one row per trial, best first, and the sweep's totals; as text, CSV or overlaid cost curves.

The ranking: by the validation metric when the trials hold out a validation split (accuracy, highest first; RMSE,
lowest first), else by the final training cost, lowest first; trials without that figure (queued, running, failed)
last, in their order. The best trial is the first ranked one that has a model: its model is the sweep's.
"""

import csv
import io
import math
from dataclasses import dataclass
from typing import Any

from lnn_cli.presentation.report import plain_table, warning_mark
from lnn_cli.sweeps.record import SweepRecord
from lnn_core.aws import pricing
from lnn_core.protocol import ending


@dataclass
class TrialRow:
    trial: dict[str, Any]  # the sweep record's entry: index, run_id, varied, parameters
    run: dict[str, Any] | None  # its run record; None while queued
    dollars: float | None
    halted: Any = None  # halving.Stop when successive halving stopped it

    @property
    def final(self) -> dict[str, Any]:
        return (self.run or {}).get("final") or {}

    @property
    def status(self) -> str:
        return self.run["status"] if self.run else "queued"

    @property
    def cost(self) -> float | None:
        return self.final.get("cost", (self.run or {}).get("last_cost"))

    def figure(self, name: str) -> float | None:
        """A final figure (validation_accuracy, test_rmse, ...); None before the run ends."""
        return self.final.get(name)

    @property
    def has_model(self) -> bool:
        return self.run is not None and ending.published_model(self.run) is not None


def metric_names(rows: list[TrialRow]) -> tuple[str | None, str]:
    """(the validation metric the sweep is ranked by, or None without a validation split; the test metric)."""
    regression = any("train_rmse" in row.final for row in rows)
    suffix = "rmse" if regression else "accuracy"
    validated = any(row.trial["parameters"].get("validation_split") for row in rows)
    return (f"validation_{suffix}" if validated else None), f"test_{suffix}"


def ranked(rows: list[TrialRow]) -> list[TrialRow]:
    validation, _ = metric_names(rows)
    descending = validation is not None and validation.endswith("accuracy")

    def key(row: TrialRow):
        value = row.figure(validation) if validation else row.cost
        if value is None or row.status not in ("succeeded", "stopped"):
            return (1, 0.0, row.trial["index"])
        return (0, -value if descending else value, row.trial["index"])

    return sorted(rows, key=key)


def best(rows: list[TrialRow]) -> TrialRow | None:
    return next((row for row in ranked(rows) if row.has_model and row.status in ("succeeded", "stopped")), None)


def trial_rows(record: SweepRecord, runs: dict[str, dict | None], *, prices: str | None, local: bool) -> list[TrialRow]:
    rows = []
    for trial in record.trials:
        run = runs.get(trial["run_id"])
        cost = pricing.run_cost(run, table=prices, local=local) if run else None
        rows.append(TrialRow(trial, run, None if cost is None else cost["dollars"]))
    return rows


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
                warning_mark(row.final) + (" collapsed" if _collapsed(row.final) else ""),
            ]
        )
    return plain_table(headers, lines)


def _collapsed(final: dict[str, Any]) -> bool:
    """A model that learned nothing: its warnings (`diagnostics.model_warnings`) say it predicts one class for every
    example, or that its cost is that of a constant prediction."""
    return any("learned nothing" in warning or "for all" in warning for warning in final.get("warnings") or [])


def totals(record: SweepRecord, rows: list[TrialRow], clock: float) -> dict[str, Any]:
    """The sweep's state, its time (from its start to its last trial's end, or to now while any runs) and dollars."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.status] = counts.get(row.status, 0) + 1
    done = all(row.status not in ("queued", "running") for row in rows)
    ends = [_end_seconds(row.run) for row in rows if row.run]
    end = max((e for e in ends if e), default=clock) if done else clock
    priced = [row.dollars for row in rows if row.dollars is not None]
    top = best(rows)
    return {
        "done": done,
        "counts": counts,
        "seconds": max(0.0, end - record.created_epoch_seconds),
        "dollars": math.fsum(priced) if priced else None,
        "best": top.trial["run_id"] if top else None,
    }


def _end_seconds(run: dict[str, Any]) -> float | None:
    final = run.get("final") or {}
    if final.get("seconds") is not None and run.get("created_epoch_seconds") is not None:
        return float(run["created_epoch_seconds"]) + float(final["seconds"])
    return None


def summary_line(record: SweepRecord, rows: list[TrialRow], clock: float) -> str:
    total = totals(record, rows, clock)
    counts = ", ".join(f"{count} {status}" for status, count in sorted(total["counts"].items()))
    dollars = "no usage recorded" if total["dollars"] is None else f"${total['dollars']:.6f}"
    state = "done" if total["done"] else "in progress"
    best_text = (
        f"; best {total['best']} (its model is the sweep's: lnn predict {record.sweep_id} ...)" if total["best"] else ""
    )
    return (
        f"sweep {record.sweep_id}: {len(rows)} trials, {state} ({counts}); {total['seconds']:.1f} s; "
        f"AWS cost {dollars}{best_text}"
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
