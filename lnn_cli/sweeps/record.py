"""A sweep's record, `runs/<sweep>/sweep.json` in the stack's bucket, and the queue of its trials.

The record is created once (a conditional put: `If-None-Match: *`), by the command that starts the sweep; it holds
the spec, every trial's run id and parameters, and when the sweep started. The trials are normal runs: a trial has
started when its run record exists, so a second start of the same sweep starts only what has no run yet (and the
launcher recognises a repeated launch of a run that exists). The CLI writes it with its own credentials: no Lambda
reads or writes it.
"""

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from botocore.exceptions import ClientError

from lnn_cli.sweeps.spec import SweepSpec, Trial
from lnn_core.aws.sdk import now
from lnn_core.errors import LnnInputError

PENDING_SECONDS = 60.0  # a trial uploaded this long ago whose run record has not appeared was refused: start it again


def sweep_key(sweep_id: str) -> str:
    return f"runs/{sweep_id}/sweep.json"


def sweep_data_key(sweep_id: str) -> str:
    """The sweep's data, uploaded once; each trial gets a server-side copy under its own prefix (the launcher reads
    a run's data only from runs/<run_id>/)."""
    return f"runs/{sweep_id}/data.npz"


@dataclass
class SweepRecord:
    sweep_id: str
    spec: dict[str, Any]  # SweepSpec.to_json()
    varied: list[str]  # the names of the parameters that vary, in the spec's order
    trials: list[dict[str, Any]]  # index, run_id, varied, parameters
    data_md5: str
    parallel: int | None  # at most this many trials at once (None: the stack's limits alone)
    created_at: str = field(default_factory=now)
    created_epoch_seconds: float = field(default_factory=time.time)

    @classmethod
    def new(
        cls, sweep_id: str, spec: SweepSpec, trials: list[Trial], data: bytes, parallel: int | None
    ) -> "SweepRecord":
        return cls(
            sweep_id,
            spec.to_json(),
            spec.varied_names,
            [{"index": t.index, "run_id": t.run_id, "varied": t.varied, "parameters": t.parameters} for t in trials],
            hashlib.md5(data).hexdigest(),
            parallel,
        )

    @property
    def run_ids(self) -> list[str]:
        return [trial["run_id"] for trial in self.trials]

    def same_sweep(self, other: "SweepRecord") -> bool:
        return self.trials == other.trials and self.data_md5 == other.data_md5


class SweepStore:
    """Sweep records in the stack's bucket (an S3 client and the bucket's name)."""

    def __init__(self, client, bucket: str):
        self.client, self.bucket = client, bucket

    def read(self, sweep_id: str) -> SweepRecord | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=sweep_key(sweep_id))["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return SweepRecord(**json.loads(body))

    def create(self, record: SweepRecord, data: bytes) -> tuple[SweepRecord, bool]:
        """Record a new sweep and upload its data; or, when a sweep of that name exists, return it (False) if it is
        the same sweep (a repeated start), else refuse. The record is written only if absent."""
        existing = self.read(record.sweep_id)
        if existing is None:
            self.client.put_object(Bucket=self.bucket, Key=sweep_data_key(record.sweep_id), Body=data)
            try:
                self.client.put_object(
                    Bucket=self.bucket,
                    Key=sweep_key(record.sweep_id),
                    IfNoneMatch="*",
                    Body=json.dumps(asdict(record), indent=1).encode(),
                    ContentType="application/json",
                )
                return record, True
            except ClientError as error:
                if error.response["Error"]["Code"] not in ("PreconditionFailed", "ConditionalRequestConflict"):
                    raise
            existing = self.read(record.sweep_id)  # another start created it first
        if not existing.same_sweep(record):
            raise LnnInputError(
                f"a sweep named {record.sweep_id} already exists with other trials or data; "
                "choose another --name (or repeat the same start to start its queued trials)"
            )
        return existing, False


def trials_to_start(
    record: SweepRecord,
    runs: dict[str, dict | None],
    pending: dict[str, float],
    *,
    stack_running: int,
    stack_limit: int,
    clock: float,
) -> list[dict[str, Any]]:
    """The trials to start now, in order: those with no run record (and not uploaded less than `PENDING_SECONDS`
    ago, `pending`: run id -> when), as many as fit both the sweep's `parallel` and the stack's free places
    (`stack_limit` runs at once, `stack_running` running now, the not yet launched uploads included)."""
    waiting = [run_id for run_id in pending if runs.get(run_id) is None and clock - pending[run_id] < PENDING_SECONDS]
    sweep_running = sum(1 for run in runs.values() if run is not None and run["status"] == "running") + len(waiting)
    free = stack_limit - stack_running - len(waiting)
    if record.parallel is not None:
        free = min(free, record.parallel - sweep_running)
    startable = [
        trial for trial in record.trials if runs.get(trial["run_id"]) is None and trial["run_id"] not in waiting
    ]
    return startable[: max(0, free)]


def stack_limit(max_running_runs: int, trainer_concurrency: int | None, workers: int) -> int:
    """Runs at once the stack admits: its max_running_runs, and as many as the trainer's reserved concurrency runs
    (a run of K shard workers takes K of it)."""
    if trainer_concurrency is None:
        return max_running_runs
    return min(max_running_runs, trainer_concurrency // workers)
