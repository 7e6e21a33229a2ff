"""Successive halving, ASHA-style (off unless a sweep file has "halving"): the worst trials stop early.

    "halving": {"rungs": [25, 50, 100], "keep": 0.5}

A trial reports its validation cost at each rung (an epoch at which its epoch item records it: `eval_every` divides
every rung). When a trial reaches a rung, it is compared with the trials that reached that rung before it (by the
time their rung epoch finished; then by trial order) and itself: once at least `ceil(1 / keep)` have, a trial that
ranks below the best `ceil(n * keep)` of those n, by validation cost, is stopped (`lnn stop`: it keeps the model of
its last epoch). As in ASHA, a decision is made when the trial arrives and never revised; and since it depends only
on the epoch items, every reconcile (the watchdog's, `lnn sweep status`'s, `lnn local --sweep`'s) makes the same one.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lnn_core.errors import LnnInputError, shown
from lnn_core.sweep.record import SweepRecord


@dataclass(frozen=True)
class Halving:
    rungs: tuple[int, ...]
    keep: float

    @property
    def grace(self) -> int:
        """Arrivals at a rung before any trial there is stopped."""
        return math.ceil(1 / self.keep)


@dataclass(frozen=True)
class Stop:
    """Why a trial stops: at `rung` it ranked `rank` of the `arrived` trials that had reached it, `kept` continuing."""

    rung: int
    rank: int
    arrived: int
    kept: int
    validation_cost: float

    @property
    def reason(self) -> str:
        return (
            f"stopped by successive halving at epoch {self.rung}: validation cost {self.validation_cost:.4g} ranked "
            f"{self.rank} of {self.arrived}, {self.kept} continue"
        )


def check_granularity(granularity: Any, *, source: str) -> None:
    """Halving judges a trial when its rung epoch commits; granularity auto commits many epochs in one step, so a
    trial would reach its rung together with later epochs, long after the others (and arrive out of order)."""
    if granularity == "auto":
        raise LnnInputError(
            f"{source}: halving judges each trial at its rung epochs, but granularity auto commits many epochs at "
            "once; use granularity epoch or layer"
        )


def parse_halving(value: Any, *, source: str, base: dict[str, Any], granularities: tuple[Any, ...] = ()) -> Halving:
    """The sweep file's "halving", checked against the base parameters it needs (a validation split, eval_every, a
    granularity that commits an epoch at a time: the base's, and the varied `granularities`)."""
    if not isinstance(value, dict) or set(value) != {"rungs", "keep"}:
        raise LnnInputError(
            f'{source}: halving must be {{"rungs": [epochs, ...], "keep": fraction}}; got {shown(value)}'
        )
    rungs, keep = value["rungs"], value["keep"]
    if (
        not isinstance(rungs, list)
        or not rungs
        or any(isinstance(r, bool) or not isinstance(r, int) or r < 1 for r in rungs)
        or rungs != sorted(set(rungs))
    ):
        raise LnnInputError(
            f"{source}: halving.rungs must be increasing epoch numbers, e.g. [25, 50, 100]; got {shown(rungs)}"
        )
    if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep < 1:
        raise LnnInputError(
            f"{source}: halving.keep must be the fraction that continues at a rung, in (0, 1), e.g. 0.5; "
            f"got {shown(keep)}"
        )
    for granularity in (base.get("granularity"), *granularities):
        check_granularity(granularity, source=source)
    if not base.get("validation_split"):
        raise LnnInputError(f"{source}: halving compares validation costs; give base a validation_split, e.g. 0.2")
    every = base.get("eval_every") or 0
    if not every or any(rung % every for rung in rungs):
        raise LnnInputError(
            f"{source}: halving needs the validation cost at every rung; give base an eval_every that "
            f"divides each of {rungs} (got eval_every {every})"
        )
    epochs = base.get("epochs")
    if isinstance(epochs, int) and rungs[-1] >= epochs:
        raise LnnInputError(f"{source}: halving's last rung {rungs[-1]} must be before the last epoch ({epochs})")
    return Halving(tuple(rungs), float(keep))


def stops(halving: Halving, reports: dict[str, dict[int, tuple[str, float]]], order: dict[str, int]) -> dict[str, Stop]:
    """The trials halving stops, each at its first rung where it ranks below those kept. `reports`: run id -> rung ->
    (when that epoch finished, its validation cost); `order`: run id -> trial index (the tie-breaker)."""
    decided: dict[str, Stop] = {}
    for rung in halving.rungs:
        arrivals = sorted(
            (report[rung][0], order[run_id], run_id) for run_id, report in reports.items() if rung in report
        )
        arrived: list[tuple[float, int, str]] = []  # (cost, index, run id) of those at the rung so far
        for _, index, run_id in arrivals:
            cost = reports[run_id][rung][1]
            arrived.append((cost, index, run_id))
            if run_id in decided or len(arrived) < halving.grace:
                continue
            rank = sorted(arrived).index((cost, index, run_id)) + 1
            kept = math.ceil(len(arrived) * halving.keep)
            if rank > kept:
                decided[run_id] = Stop(rung, rank, len(arrived), kept, cost)
    return decided


def rung_reports(halving: Halving, epochs: list[dict[str, Any]]) -> dict[int, tuple[str, float]]:
    """A trial's reports: its epoch items at the rungs that recorded a validation cost."""
    return {
        int(item["epoch"]): (item.get("finished_at", ""), float(item["validation_cost"]))
        for item in epochs
        if int(item["epoch"]) in halving.rungs and item.get("validation_cost") is not None
    }


def halving_of(record: SweepRecord) -> Halving | None:
    """The sweep's successive halving; None when it has none."""
    if not record.spec.get("halving"):
        return None
    return parse_halving(record.spec["halving"], source=f"sweep {record.sweep_id}", base=record.spec["base"])


def halving_decisions(
    record: SweepRecord, runs: dict[str, dict | None], figures_of: Callable[[dict, tuple[int, ...]], list[dict]]
) -> dict[str, Stop]:
    """The trials successive halving stops (none when the sweep has no "halving"); `figures_of(run, rungs)`: the
    run's epoch items at (at least) those epochs."""
    halving = halving_of(record)
    if halving is None:
        return {}
    reports = {run_id: rung_reports(halving, figures_of(run, halving.rungs)) for run_id, run in runs.items() if run}
    return stops(halving, reports, {trial["run_id"]: trial["index"] for trial in record.trials})
