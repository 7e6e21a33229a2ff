"""The sweep controller: one pass (`reconcile`) drives a sweep toward its end, from whatever state it is in.

The stack runs it: the watchdog reconciles every active sweep (`sweeps/active/<sweep>`) on each scheduled tick, and
a trial's end kicks it (the trainer invokes the watchdog with `{"sweep": <sweep>}`) to fill the place it freed; so
does a trial's epoch with a validation cost (`{"sweep": <sweep>, "epoch": <epoch>}`), reconciled only when that
epoch is one of the sweep's halving rungs (`judges`). The CLI's readers (`lnn sweep start|status|results`,
`lnn local --sweep`) run the same pass. A pass:

1. records the trials that arrived at a halving rung since the last pass (`runs/<sweep>/halving.json`, appended to
   under an If-Match), and stops the running trials successive halving stops (`run_control.stop_run`: each keeps
   the model of its last epoch);
2. starts the queued trials that fit the sweep's `parallel` and the stack's limits: each start is marked at
   `runs/<trial>/trial.json`, created only if absent (If-None-Match), so that of several concurrent passes one
   starts it; then the winner copies the sweep's data to the trial (server side, from the key of the recorded data's
   MD5, which is created once and never replaced: `record.sweep_data_key`) and invokes the launcher, which
   recognises a repeated launch of a run that exists. A start whose run record has not appeared after
   `PENDING_SECONDS` (the launcher refused it: the stack was full when it came) is started again, under an If-Match
   on its mark;
3. when every trial has ended, sends the sweep's one message (`message.notify_if_done`, an S3 claim), and once the
   message is recorded as sent, removes the sweep's active mark.

Every step is idempotent and safe under concurrent passes. The limits are a soft cap, as the launcher's own
max_running_runs is (`Launcher._check_capacity`): two passes at the same instant may each see the same free place;
the launcher then refuses the start beyond its max_running_runs, and a later pass starts that trial again.
"""

import json
from typing import Any

from lnn_core import run_control
from lnn_core.aws.ports import Ports, StoredObject
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.launch.launcher import LaunchLimits
from lnn_core.ml.config import check_run_id
from lnn_core.sweep.halving import Stop, halving_decisions, halving_of
from lnn_core.sweep.message import message_sent, notify_if_done
from lnn_core.sweep.record import (
    ACTIVE_PREFIX,
    SweepRecord,
    active_key,
    gave_up,
    halving_key,
    stack_limit,
    start_key,
    sweep_key,
    trial_data_key,
    trials_to_start,
)
from lnn_core.sweep.results import totals, trial_rows


def start_marks(ports: Ports, record: SweepRecord, runs: dict[str, dict | None]) -> dict[str, StoredObject]:
    """The start marks of the trials that have no run record yet. Trials start in their order, so the marked ones
    come first: the reads stop at the first trial without a mark."""
    marks = {}
    for run_id in record.run_ids:
        if runs.get(run_id) is not None:
            continue
        mark = ports.store.read_current(start_key(run_id))
        if mark is None:
            break
        marks[run_id] = mark
    return marks


def attempts(marks: dict[str, StoredObject]) -> dict[str, tuple[int, float]]:
    """The start marks' attempts and times (run id -> (attempt, when marked))."""
    return {run_id: (json.loads(mark.data)["attempt"], mark.modified) for run_id, mark in marks.items()}


def not_started(ports: Ports, record: SweepRecord, runs: dict[str, dict | None]) -> dict[str, str]:
    """The trials whose starts were refused for good, and why (for a reader: writes nothing)."""
    return gave_up(attempts(start_marks(ports, record, runs)), ports.clock())


def halted(ports: Ports, record: SweepRecord, runs: dict[str, dict | None]) -> dict[str, Stop]:
    """The trials successive halving stops, as the passes recorded their arrivals (for a reader: writes nothing)."""
    log = ports.store.read_current(halving_key(record.sweep_id))
    return halving_decisions(record, runs, ports.table.epochs_at, json.loads(log.data) if log else {})[0]


class SweepController:
    """Reconciles sweeps through `ports` (its store, table, notifier, and the launcher in `ports.functions`),
    within the stack's `limits` (max_running_runs, the trainer's reserved concurrency)."""

    def __init__(self, ports: Ports, *, limits: LaunchLimits):
        self.ports, self.limits = ports, limits

    def active(self) -> list[str]:
        """The sweeps not yet done and announced (their marks under `sweeps/active/`)."""
        return sorted(key[len(ACTIVE_PREFIX) :] for key in self.ports.store.list_objects(ACTIVE_PREFIX))

    def record(self, sweep_id: str) -> SweepRecord | None:
        current = self.ports.store.read_current(sweep_key(sweep_id))
        return None if current is None else SweepRecord.from_json(current.data)

    def runs(self, record: SweepRecord) -> dict[str, dict | None]:
        return {run_id: self.ports.table.get_run(run_id) for run_id in record.run_ids}

    def judges(self, sweep_id: str, epoch: int) -> bool:
        """Whether a trial's epoch kick is worth a pass: the sweep has halving and `epoch` is one of its rungs (reads
        the sweep's record alone)."""
        record = self.record(check_run_id(sweep_id))
        halving = None if record is None else halving_of(record)
        return halving is not None and epoch in halving.rungs

    def reconcile(self, sweep_id: str) -> dict[str, Any]:
        """One pass over the sweep (the module's docstring): what it stopped, started and sent."""
        record = self.record(check_run_id(sweep_id))
        if record is None:  # a mark without a sweep (its record was deleted): nothing to drive
            self.ports.store.delete_keys([active_key(sweep_id)])
            return {"sweep_id": sweep_id, "outcome": "no such sweep"}
        runs = self.runs(record)
        stopped = self._halve(record, runs)
        marks = self._start_marks(record, runs)
        given_up = gave_up(attempts(marks), self.ports.clock())
        started = self._start(record, runs, marks, given_up)
        rows = trial_rows(record, runs, prices=None, local=False, not_started=given_up)
        sent = notify_if_done(self.ports, record, rows)
        finished = totals(record, rows, self.ports.clock())["done"] and (sent or message_sent(self.ports, sweep_id))
        if finished:
            self.ports.store.delete_keys([active_key(sweep_id)])
        return {
            "sweep_id": sweep_id,
            "outcome": "done" if finished else "in progress",
            "stopped": stopped,
            "started": started,
            "message_sent": sent,
        }

    def _halve(self, record: SweepRecord, runs: dict[str, dict | None]) -> dict[str, str]:
        """Record the trials that arrived at a rung since the last pass, after those recorded (only if the record
        is still the one read: else another pass recorded arrivals meanwhile, and the next pass judges with them);
        then stop each running trial successive halving decided to stop: run id -> why."""
        log = self.ports.store.read_current(halving_key(record.sweep_id))
        recorded = json.loads(log.data) if log else {}
        decisions, arrived = halving_decisions(record, runs, self.ports.table.epochs_at, recorded)
        if arrived != recorded and (
            self.ports.store.put_if(
                halving_key(record.sweep_id), json.dumps(arrived).encode(), etag=log.etag if log else None
            )
            is None
        ):
            return {}
        stopped = {}
        for run_id, decision in decisions.items():
            run = runs.get(run_id)
            if run and run["status"] == "running" and not run.get("stop_requested"):
                try:
                    run_control.stop_run(self.ports, run_id)
                except LnnInputError:
                    continue  # it ended meanwhile
                stopped[run_id] = decision.reason
        return stopped

    def _start(
        self,
        record: SweepRecord,
        runs: dict[str, dict | None],
        marks: dict[str, StoredObject],
        given_up: dict[str, str],
    ) -> list[str]:
        """Start the queued trials that fit now (never one `given_up`); the run ids this pass started."""
        chosen = trials_to_start(
            record,
            runs,
            {run_id: mark.modified for run_id, mark in marks.items()},
            stack_running=len(self.ports.table.run_ids("running")),
            stack_limit=stack_limit(self.limits.max_running_runs, self.limits.trainer_concurrency, record.workers),
            clock=self.ports.clock(),
            given_up=given_up,
        )
        return [trial["run_id"] for trial in chosen if self._start_trial(record, trial, marks.get(trial["run_id"]))]

    def _start_marks(self, record: SweepRecord, runs: dict[str, dict | None]) -> dict[str, StoredObject]:
        return start_marks(self.ports, record, runs)

    def _start_trial(self, record: SweepRecord, trial: dict[str, Any], mark: StoredObject | None) -> bool:
        """Mark the trial's start (only if unmarked, or still at the stale `mark`), copy its data, launch it. False
        when another pass marked it first."""
        run_id = trial["run_id"]
        attempt = 1 if mark is None else json.loads(mark.data)["attempt"] + 1
        body = json.dumps({"sweep_id": record.sweep_id, "attempt": attempt, "parameters": trial["parameters"]})
        if self.ports.store.put_if(start_key(run_id), body.encode(), etag=None if mark is None else mark.etag) is None:
            return False
        if not self.ports.store.copy(record.data_key, trial_data_key(run_id)):
            raise RunFailure(
                f"sweep {record.sweep_id}'s data {record.data_key} is missing; its queued trials "
                "cannot start: start the sweep again under another name"
            )
        self.ports.functions["launcher"].invoke_async({"run_id": run_id, "parameters": trial["parameters"]})
        return True
