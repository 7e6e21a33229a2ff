"""Successive halving, ASHA-style (off unless a sweep file has "halving"): the worst trials stop early.

    "halving": {"rungs": [25, 50, 100], "keep": 0.5}

A trial reports its validation cost at each rung (an epoch at which its epoch item records it: `eval_every` divides
every rung). When a trial reaches a rung, it is compared with the trials that reached that rung before it and itself:
once at least `ceil(1 / keep)` have, a trial that ranks below the best `ceil(n * keep)` of those n, by validation
cost, is stopped (`lnn stop`: it keeps the model of its last epoch). As in ASHA, a decision is made when the trial
arrives and never revised. A trial arrives at a rung when a pass first sees its rung epoch's item; the passes record
each rung's arrivals in that order (`arrivals`, kept by the controller in runs/<sweep>/halving.json, appended to
only), so an item that finished earlier but committed after a pass judged the rung arrives after the trials already
judged, and every pass (the watchdog's, `lnn sweep status`'s, `lnn local --sweep`'s) makes the same decisions.
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


Reports = dict[str, dict[int, tuple[str, float]]]  # run id -> rung -> (when that epoch finished, validation cost)


def arrivals(
    halving: Halving, reports: Reports, order: dict[str, int], recorded: dict[str, list[str]]
) -> dict[str, list[str]]:
    """Each rung's arrivals (rung, as a JSON key -> run ids): those `recorded` by earlier passes, in their order, then
    the trials seen there for the first time, by when their rung epoch finished, then by trial order."""
    arrived = {}
    for rung in halving.rungs:
        known = recorded.get(str(rung), [])
        new = sorted(
            (report[rung][0], order[run_id], run_id)
            for run_id, report in reports.items()
            if rung in report and run_id not in known
        )
        if known or new:
            arrived[str(rung)] = [*known, *(run_id for _, _, run_id in new)]
    return arrived


def stops(
    halving: Halving, reports: Reports, order: dict[str, int], arrived: dict[str, list[str]] | None = None
) -> dict[str, Stop]:
    """The trials halving stops, each at its first rung where it ranks below those kept. `reports`: run id -> rung ->
    (when that epoch finished, its validation cost); `order`: run id -> trial index (the tie-breaker); `arrived`: each
    rung's arrivals in order (`arrivals`; by default those of `reports` alone)."""
    arrived = arrivals(halving, reports, order, {}) if arrived is None else arrived
    decided: dict[str, Stop] = {}
    for rung in halving.rungs:
        at_rung: list[tuple[float, int, str]] = []  # (cost, index, run id) of those at the rung so far
        for run_id in arrived.get(str(rung), []):
            if rung not in reports.get(run_id, {}):
                continue  # (its run record is gone)
            index, cost = order[run_id], reports[run_id][rung][1]
            at_rung.append((cost, index, run_id))
            if run_id in decided or len(at_rung) < halving.grace:
                continue
            rank = sorted(at_rung).index((cost, index, run_id)) + 1
            kept = math.ceil(len(at_rung) * halving.keep)
            if rank > kept:
                decided[run_id] = Stop(rung, rank, len(at_rung), kept, cost)
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
    record: SweepRecord,
    runs: dict[str, dict | None],
    figures_of: Callable[[dict, tuple[int, ...]], list[dict]],
    recorded: dict[str, list[str]],
) -> tuple[dict[str, Stop], dict[str, list[str]]]:
    """The trials successive halving stops (none when the sweep has no "halving"), and each rung's arrivals with
    those first seen now after the `recorded` ones (`arrivals`); `figures_of(run, rungs)`: the run's epoch items at
    (at least) those epochs."""
    halving = halving_of(record)
    if halving is None:
        return {}, {}
    reports = {run_id: rung_reports(halving, figures_of(run, halving.rungs)) for run_id, run in runs.items() if run}
    order = {trial["run_id"]: trial["index"] for trial in record.trials}
    arrived = arrivals(halving, reports, order, recorded)
    return stops(halving, reports, order, arrived), arrived
