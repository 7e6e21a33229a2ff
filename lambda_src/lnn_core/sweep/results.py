"""A sweep's results: one row per trial, the ranking, the best trial and the sweep's totals.

The ranking: by the validation metric when the trials hold out a validation split (accuracy, highest first; RMSE,
lowest first), else by the final training cost, lowest first; a collapsed trial (its model learned nothing) after
every trial that did not collapse, whatever its figure; trials without that figure (queued, running, failed) last,
in their order. The best trial is the first ranked one that has a model: its model is the sweep's.
"""

import math
from dataclasses import dataclass
from typing import Any

from lnn_core.aws import pricing
from lnn_core.protocol import ending
from lnn_core.sweep.record import SweepRecord

RANKED_STATUSES = ("succeeded", "stopped")  # the endings whose figures rank a trial (and that keep a model)


@dataclass
class TrialRow:
    trial: dict[str, Any]  # the sweep record's entry: index, run_id, varied, parameters
    run: dict[str, Any] | None  # its run record; None while queued
    dollars: float | None
    halted: Any = None  # halving.Stop when successive halving stopped it
    not_started: str | None = None  # why, when its starts were refused for good (`record.gave_up`)

    @property
    def final(self) -> dict[str, Any]:
        return (self.run or {}).get("final") or {}

    @property
    def status(self) -> str:
        if self.run:
            return self.run["status"]
        return "not started" if self.not_started else "queued"

    @property
    def cost(self) -> float | None:
        return self.final.get("cost", (self.run or {}).get("last_cost"))

    def figure(self, name: str) -> float | None:
        """A final figure (validation_accuracy, test_rmse, ...); None before the run ends."""
        return self.final.get(name)

    @property
    def has_model(self) -> bool:
        return self.run is not None and ending.published_model(self.run) is not None

    @property
    def collapsed(self) -> bool:
        """A model that learned nothing: its warnings (`diagnostics.model_warnings`) say it predicts one class for
        every example, or that its cost is that of a constant prediction."""
        return any("learned nothing" in warning or "for all" in warning for warning in self.final.get("warnings") or [])


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
        if value is None or row.status not in RANKED_STATUSES:
            return (2, 0.0, row.trial["index"])
        return (1 if row.collapsed else 0, -value if descending else value, row.trial["index"])

    return sorted(rows, key=key)


def best(rows: list[TrialRow]) -> TrialRow | None:
    return next((row for row in ranked(rows) if row.has_model and row.status in RANKED_STATUSES), None)


def trial_rows(
    record: SweepRecord,
    runs: dict[str, dict | None],
    *,
    prices: str | None,
    local: bool,
    not_started: dict[str, str] | None = None,
) -> list[TrialRow]:
    """A row per trial; `not_started`: the trials whose starts were refused for good, and why."""
    rows = []
    for trial in record.trials:
        run = runs.get(trial["run_id"])
        cost = pricing.run_cost(run, table=prices, local=local) if run else None
        why = (not_started or {}).get(trial["run_id"])
        rows.append(TrialRow(trial, run, None if cost is None else cost["dollars"], not_started=why))
    return rows


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
