"""A sweep's record, `runs/<sweep>/sweep.json` in the stack's bucket, its objects, and the queue of its trials.

The record is created once, by the command that starts the sweep (`lnn_cli.sweeps.record.SweepStore`); it holds the
spec, every trial's run id and parameters, and when the sweep started. It never changes afterwards, so every reader
(the watchdog's reconcile, `lnn sweep status`, the page) reads the same trials. The trials are normal runs: a trial
has started when its run record exists, and a start in flight is marked by its `runs/<trial>/trial.json`.
"""

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from lnn_core.aws.sdk import now
from lnn_core.ml.parameters import TRIAL_SUFFIX

# A trial whose start was marked this long ago but whose run record has not appeared was refused (the stack was
# full when its launch came) or its launch was lost: it is started again.
PENDING_SECONDS = 60.0
# A trial started this many times with no run record to show for it is refused for good (its parameters or data, or a
# stack that stays full): it counts as ended, "not started", so that its sweep can end.
MAX_START_ATTEMPTS = 3
NOT_STARTED = (
    f"not started: the launcher refused it {MAX_START_ATTEMPTS} times; see the launcher's log or the dead-letter queue"
)
ACTIVE_PREFIX = "sweeps/active/"  # one object per sweep not yet done and announced: the watchdog reconciles these


def sweep_key(sweep_id: str) -> str:
    return f"runs/{sweep_id}/sweep.json"


def sweep_data_key(sweep_id: str, data_md5: str) -> str:
    """The sweep's data, named by its MD5 (the record's `data_md5`) and created only if absent, so that it never
    changes: a start with other data, or a run of the sweep's name (whose data is runs/<run>/data.npz), cannot reach
    a trial. Each trial gets a server-side copy under its own prefix (the launcher reads a run's data only from
    runs/<run_id>/)."""
    return f"runs/{sweep_id}/data-{data_md5}.npz"


def trial_data_key(run_id: str) -> str:
    return f"runs/{run_id}/data.npz"


def sweep_of_trial_id(run_id: str) -> str | None:
    """The sweep whose trial id `run_id` would be (<sweep>-tNNN, `TRIAL_SUFFIX`); None for a name of no trial's form."""
    sweep_id, marker, index = run_id.rpartition(TRIAL_SUFFIX.partition("{")[0])
    return sweep_id if marker and sweep_id and index.isdigit() else None


def start_key(run_id: str) -> str:
    """The mark of a trial's start: created only if absent, so that one reconcile starts it (not parameters.json,
    whose upload the stack's rule would launch a second time)."""
    return f"runs/{run_id}/trial.json"


def halving_key(sweep_id: str) -> str:
    """Each halving rung's arrivals in the order the passes first saw them (`halving.arrivals`): appended to only,
    under an If-Match, so that a decision, once made, is every later pass's too."""
    return f"runs/{sweep_id}/halving.json"


def active_key(sweep_id: str) -> str:
    return ACTIVE_PREFIX + sweep_id


@dataclass
class SweepRecord:
    sweep_id: str
    spec: dict[str, Any]  # the sweep file's form of its spec (lnn_cli.sweeps.spec.SweepSpec.to_json)
    varied: list[str]  # the names of the parameters that vary, in the spec's order
    trials: list[dict[str, Any]]  # index, run_id, varied, parameters
    data_md5: str
    parallel: int | None  # at most this many trials at once (None: the stack's limits alone)
    created_at: str = field(default_factory=now)
    created_epoch_seconds: float = field(default_factory=time.time)

    @classmethod
    def new(cls, sweep_id: str, spec: Any, trials: list[Any], data: bytes, parallel: int | None) -> "SweepRecord":
        """From the CLI's spec (`SweepSpec`) and its generated trials (`Trial`)."""
        return cls(
            sweep_id,
            spec.to_json(),
            spec.varied_names,
            [{"index": t.index, "run_id": t.run_id, "varied": t.varied, "parameters": t.parameters} for t in trials],
            hashlib.md5(data).hexdigest(),
            parallel,
        )

    @classmethod
    def from_json(cls, body: bytes) -> "SweepRecord":
        return cls(**json.loads(body))

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), indent=1).encode()

    @property
    def data_key(self) -> str:
        return sweep_data_key(self.sweep_id, self.data_md5)

    @property
    def run_ids(self) -> list[str]:
        return [trial["run_id"] for trial in self.trials]

    @property
    def workers(self) -> int:
        """The most shard workers of any trial: what a place on the trainer's reservation takes."""
        return max(trial["parameters"].get("workers") or 1 for trial in self.trials)

    def same_sweep(self, other: "SweepRecord") -> bool:
        return self.trials == other.trials and self.data_md5 == other.data_md5


def trials_to_start(
    record: SweepRecord,
    runs: dict[str, dict | None],
    pending: dict[str, float],
    *,
    stack_running: int,
    stack_limit: int,
    clock: float,
    given_up: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The trials to start now, in order: those with no run record (and whose start was not marked less than
    `PENDING_SECONDS` ago, `pending`: run id -> when), as many as fit both the sweep's `parallel` and the stack's free
    places (`stack_limit` runs at once, `stack_running` running now, the starts not yet launched included); never one
    `given_up` (`gave_up`)."""
    waiting = [run_id for run_id in pending if runs.get(run_id) is None and clock - pending[run_id] < PENDING_SECONDS]
    sweep_running = sum(1 for run in runs.values() if run is not None and run["status"] == "running") + len(waiting)
    free = stack_limit - stack_running - len(waiting)
    if record.parallel is not None:
        free = min(free, record.parallel - sweep_running)
    startable = [
        trial
        for trial in record.trials
        if runs.get(trial["run_id"]) is None
        and trial["run_id"] not in waiting
        and trial["run_id"] not in (given_up or {})
    ]
    return startable[: max(0, free)]


def gave_up(attempts: dict[str, tuple[int, float]], clock: float) -> dict[str, str]:
    """The trials with no run record whose last of `MAX_START_ATTEMPTS` starts is older than `PENDING_SECONDS` (run
    id -> why): ended, not started. `attempts`: run id -> (its start mark's attempt, when it was marked)."""
    return {
        run_id: NOT_STARTED
        for run_id, (attempt, marked) in attempts.items()
        if attempt >= MAX_START_ATTEMPTS and clock - marked >= PENDING_SECONDS
    }


def stack_limit(max_running_runs: int, trainer_concurrency: int | None, workers: int) -> int:
    """Runs at once the stack admits: its max_running_runs, and as many as the trainer's reserved concurrency runs
    (a run of K shard workers takes K of it)."""
    if trainer_concurrency is None:
        return max_running_runs
    return min(max_running_runs, trainer_concurrency // workers)
