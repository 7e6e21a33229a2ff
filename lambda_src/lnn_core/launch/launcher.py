"""The LaunchLambda's logic: validate a run's parameters and data, create its record, send its first step.

Triggered by an upload of `runs/<name>/parameters.json` (through EventBridge; the run id is `<name>`) or by a
direct invoke `{"run_id": ..., "parameters": {...}}`. Nothing is created until everything is valid, and a
repeated launch of the same run (EventBridge delivers at least once) starts nothing new.

Guard rails before anything is created: at most LNN_MAX_RUNNING_RUNS runs running, parameters.json at most
64 KB, training data checked by size, zip directory and .npy headers before it is parsed (`budget`), and a
run whose training step would not fit the trainer's memory (LNN_TRAINER_MEMORY_MB) refused with the
memory_size it needs, and a new run with more shard workers than the trainer's reserved concurrency
(LNN_TRAINER_RESERVED_CONCURRENCY) refused.
"""

import dataclasses
import io
import json
import os
import secrets
import time
import uuid
from collections.abc import Mapping
from typing import Any

from lnn_core.aws.ports import Ports
from lnn_core.aws.run_record import RunExists, send_lease
from lnn_core.aws.sdk import now
from lnn_core.aws.usage import DEFAULT_MEMORY_MB, DeliveryMeter
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.launch.budget import (
    MAX_PARAMETERS_BYTES,
    check_npz_fits,
    check_object_size,
    check_training_fits,
    data_budget_bytes,
    inspect_npz,
    parameter_copies,
    positive_int_from,
    value_bytes,
)
from lnn_core.launch.parts import check_parts
from lnn_core.ml import batching
from lnn_core.ml.config import TrainingConfig, check_key_segments, check_run_id
from lnn_core.ml.dataset import load_training_data
from lnn_core.ml.parameters import MAX_SEED
from lnn_core.ml.validation import held_out
from lnn_core.protocol import sending
from lnn_core.protocol.events import MAX_BATCHES, make_event
from lnn_core.protocol.layout import PART_WORKER_BYTES_FIELD, STATE_SLICES_FIELD, in_parts, model_key, parts_folder
from lnn_core.protocol.schedule import first_position, step_bound

DEFAULT_MAX_RUNNING_RUNS = 10
# Cost cap: by default at most this many trainer steps at once (-c reserved_concurrency; each running run uses
# about one, and the default max_running_runs of 10 leaves room for retries, duplicates and resumes). AWS keeps
# at least 100 of the account's concurrency unreserved, so the account quota must be at least 100 plus every
# reservation.
DEFAULT_TRAINER_RESERVED_CONCURRENCY = 20


@dataclasses.dataclass(frozen=True)
class LaunchLimits:
    """What the launcher admits: running runs at once, the memory of the trainer and of the launcher itself, and
    the trainer's reserved concurrency (None: unreserved), which a round's shard workers must fit."""

    max_running_runs: int = DEFAULT_MAX_RUNNING_RUNS
    trainer_memory_mb: int = DEFAULT_MEMORY_MB
    launcher_memory_mb: int = DEFAULT_MEMORY_MB
    trainer_concurrency: int | None = None

    @classmethod
    def from_environment(cls, environ: Mapping[str, str]) -> "LaunchLimits":
        """LNN_MAX_RUNNING_RUNS, LNN_TRAINER_MEMORY_MB and LNN_TRAINER_RESERVED_CONCURRENCY (set by the construct),
        and Lambda's own memory size."""
        return cls(
            max_running_runs=positive_int_from(environ, "LNN_MAX_RUNNING_RUNS", DEFAULT_MAX_RUNNING_RUNS),
            trainer_memory_mb=positive_int_from(environ, "LNN_TRAINER_MEMORY_MB", DEFAULT_MEMORY_MB),
            launcher_memory_mb=positive_int_from(environ, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", DEFAULT_MEMORY_MB),
            trainer_concurrency=positive_int_from(environ, "LNN_TRAINER_RESERVED_CONCURRENCY", None),
        )

    def check_workers(
        self, workers: int, *, fix: str = "deploy with -c reserved_concurrency={workers} or more"
    ) -> None:
        """Refuse more shard workers than the trainer may run at once: a round would wait on its own throttled
        shards (Lambda retries them for up to the event age), and every other run with it. `fix` names the way
        to a larger reservation ({workers} is filled in)."""
        if self.trainer_concurrency is not None and workers > self.trainer_concurrency:
            most = f"{self.trainer_concurrency} worker{'s' if self.trainer_concurrency != 1 else ''}"
            raise LnnInputError(
                f"workers {workers} is more than the trainer's reserved concurrency of {self.trainer_concurrency}: "
                f"a round's shards could not all run at once; use at most {most}, "
                f"or {fix.format(workers=workers)}"
            )


class Launcher:
    def __init__(self, ports: Ports, *, defaults: dict[str, Any], logger, limits: LaunchLimits | None = None):
        self.ports, self.defaults, self.log = ports, defaults, logger
        self.limits = limits or LaunchLimits.from_environment(os.environ)

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        meter, outcome = DeliveryMeter(self.ports.counter), {}
        try:
            outcome = self._handle(event)
            return outcome
        finally:  # paid for whatever it did; a launch that created no run adds to none
            meter.record(self.ports.table, outcome.get("run_id") or _named_run(event), context, self.log)

    def _handle(self, event: Any) -> dict[str, Any]:
        uploaded = isinstance(event, dict) and event.get("source") == "aws.s3"
        run_id = None
        try:
            try:
                if uploaded:
                    run_id, parameters, uploader = self._parameters_from_upload(event)
                else:
                    (run_id, parameters), uploader = self._parameters_from_invoke(event), None
                return self.launch(run_id, parameters, uploader=uploader)
            except MemoryError:  # numpy's _ArrayMemoryError included: a refusal, never an out-of-memory traceback
                raise LnnInputError(
                    f"the launcher ran out of its {self.limits.launcher_memory_mb} MB validating the run's data; "
                    "use less data or deploy with a larger memory_size"
                ) from None
        except LnnInputError as error:
            self.log.error("launch rejected", extra={"run_id": run_id, "reason": str(error)})
            if uploaded:  # nobody waits for an upload's answer: tell the operators
                self.ports.notifier.publish(
                    subject=f"LNN run {run_id} rejected",
                    body={"run_id": run_id, "status": "rejected", "reason": str(error)},
                    status="rejected",
                )
            return {"run_id": run_id, "status": "rejected", "reason": str(error)}

    def launch(
        self, run_id: str, parameters: dict[str, Any], *, uploader: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Validate, create the run record, and send step 1. `uploader`: who uploaded parameters.json (None:
        invoked)."""
        check_run_id(run_id)
        if not isinstance(parameters, dict):
            raise LnnInputError("parameters must be a JSON object in the LNN parameters.json format")
        try:
            size = len(json.dumps(parameters, default=str).encode())
        except (ValueError, RecursionError) as error:  # an integer too long to write, nesting too deep
            raise LnnInputError(f"parameters cannot be read as LNN parameters ({str(error)[:120]})") from None
        check_object_size(
            size,
            limit=MAX_PARAMETERS_BYTES,
            source="of the run",
            what="parameters",
            fix="LNN parameters take well under 1 KB; remove what LNN does not read",
        )
        config = TrainingConfig.from_parameters(
            {"data": f"runs/{run_id}/data.npz", **parameters}, defaults=self.defaults
        )
        if not config.data.startswith(f"runs/{run_id}/"):
            raise LnnInputError(f"data must be under runs/{run_id}/ (the run's own prefix); got {config.data}")
        if config.data == model_key(run_id) or config.data.startswith(f"runs/{run_id}/state/"):
            raise LnnInputError(f"data may not be {config.data}: LNN writes there; use runs/{run_id}/data.npz")
        if in_parts(config.data) and config.data != parts_folder(run_id):
            raise LnnInputError(f"data in parts must be the folder {parts_folder(run_id)}; got {config.data}")
        self._check_capacity(run_id, config.workers)
        parts = None
        if in_parts(config.data):  # checked by headers; a shard may take no example of a batch
            if config.validation_split:
                raise LnnInputError(
                    "validation_split is not supported for data in parts; upload one data file "
                    "(workers 1), or set validation_split to 0"
                )
            parts = check_parts(
                self.ports.store,
                config,
                trainer_memory_mb=self.limits.trainer_memory_mb,
                launcher_memory_mb=self.limits.launcher_memory_mb,
            )
            etag, features, examples = parts.common_etag, parts.features, sum(parts.part_examples)
        else:
            etag, data = self._training_data(config)
            data.check_fits(config)
            data = held_out(data, config.validation_split, config.validation_seed)  # the run trains on the rest
            features, examples = data.features, int(data.X.shape[0])
            check_workers_fit(config, examples)
        seed_drawn = config.seed is None
        if seed_drawn:  # drawn once, here: every output of the run is then a pure function of its record
            config = dataclasses.replace(config, seed=secrets.randbelow(MAX_SEED + 1))
        batches = batching.batch_count(examples, config.batch_size)
        if batches > MAX_BATCHES:
            raise LnnInputError(
                f"{batches:,} mini-batches per epoch exceed the {MAX_BATCHES:,} a run may have; use a larger batch_size"
            )
        first_event = make_event(run_id, config, first_position(), batches=batches)
        claimant = f"launch/{uuid.uuid4().hex[:12]}"  # this launch's claim on sending step 1
        record = {
            "status": "running",
            "config": config.to_parameters(),
            "seed_drawn": seed_drawn,
            "data_etag": etag,  # of data in parts: common.npz's
            "features": features,
            "examples": examples,
            **(
                {
                    "part_examples": parts.part_examples,
                    "part_etags": parts.part_etags,
                    PART_WORKER_BYTES_FIELD: parts.worker_bytes,
                }
                if parts
                else {}
            ),
            **({STATE_SLICES_FIELD: config.workers} if config.workers > 1 else {}),
            "committed_step": 0,
            "invoked_step": 0,
            "step_bound": step_bound(config, batches),
            "next_event": first_event,
            "progress_epoch": 0,
            "invocations": 0,
            "resumes": 0,
            "stop_requested": False,
            "notified": False,
            "uploaded_by": (uploader or {}).get("uploaded_by"),
            "source_ip": (uploader or {}).get("source_ip"),
            "created_at": now(),
            "created_epoch_seconds": time.time(),
            "updated_at": now(),
            "heartbeat_at": self.ports.clock(),
            "committed_at": self.ports.clock(),  # step 1's event is sent now: the watchdog counts its age from here
            "send_lease": send_lease(1, claimant=claimant, until=sending.lease_until(self.ports, None)),
        }
        try:
            self.ports.table.create_run(run_id, record, token=claimant)
        except RunExists:
            return self._relaunch(
                run_id,
                config,
                seed_drawn=seed_drawn,
                claimant=claimant,
                etag=etag,
                part_etags=parts.part_etags if parts else None,
            )
        sending.send(self.ports, run_id, first_event)
        self.log.info("launched", extra={"run_id": run_id, "epochs": config.epochs, "granularity": config.granularity})
        return {"run_id": run_id, "status": "running"}

    def _check_capacity(self, run_id: str, workers: int) -> None:
        """Refuse a new run while `max_running_runs` runs are running, or one with more shard `workers` than the
        trainer may run at once; a repeated launch of an existing run passes (it is recognised, not refused).

        A soft cap: the count is a read of the (eventually consistent) status index, not a reservation, so two
        launches at the same instant may both see one free place and overshoot the limit by one.
        """
        if self.ports.table.get_run(run_id) is not None:
            return
        self.limits.check_workers(workers)
        limit = self.limits.max_running_runs
        running = self.ports.table.run_ids("running")
        if len(running) < limit or run_id in running:
            return
        raise LnnInputError(
            f"{len(running)} runs are already running, the limit (LNN_MAX_RUNNING_RUNS) is {limit}; "
            "wait for one to end or stop one with `lnn stop RUN_ID`, then launch again"
        )

    def _training_data(self, config: TrainingConfig):
        """(ETag, validated data) of the run's .npz, its size, zip directory and headers checked before it is parsed."""
        store = self.ports.store
        source = f"s3://{store.bucket}/{config.data}"
        head = store.head(config.data)
        if head is None:
            raise LnnInputError(f"training data {source} does not exist; upload it first")
        etag, size = head
        memory_mb = self.limits.launcher_memory_mb
        check_object_size(
            size,
            limit=data_budget_bytes(memory_mb),
            source=source,
            what="training data",
            fix=f"use less data or deploy with a memory_size above {memory_mb} MB",
        )
        try:
            raw = store.get_bytes(config.data, etag=etag, cache=False)
        except RunFailure as error:  # the object changed between HEAD and GET
            raise LnnInputError(str(error)) from error
        layout = inspect_npz(io.BytesIO(raw), source=source)
        check_npz_fits(layout, compressed_bytes=len(raw), memory_mb=memory_mb, source=source)
        check_training_fits(
            layout,
            config.neurons,
            memory_mb=self.limits.trainer_memory_mb,
            source=source,
            copies=parameter_copies(config, layout),
            itemsize=value_bytes(config),
        )
        return etag, load_training_data(raw, source=source, dtype=config.dtype)

    def _relaunch(
        self,
        run_id: str,
        config: TrainingConfig,
        *,
        seed_drawn: bool,
        claimant: str,
        etag: str,
        part_etags: list[str] | None = None,
    ) -> dict[str, Any]:
        """A second launch of an existing run: the same request is a duplicate delivery, a different one a name
        clash, and so is the same request for data replaced since the run was created (its steps read only the
        data of the ETag it was created with, and would fail on the new)."""
        existing = self.ports.table.get_run(run_id)
        requested = config.to_parameters()
        if seed_drawn and existing.get("seed_drawn"):  # both asked for no seed: each drew its own
            requested["seed"] = existing["config"]["seed"]
        if existing["config"] != requested:
            raise LnnInputError(f"a run named {run_id} already exists with other parameters; choose another name")
        if existing.get("data_etag") != etag or existing.get("part_etags") != part_etags:
            raise LnnInputError(
                f"a run named {run_id} already exists, created from other data ({config.data} was replaced since: "
                f"ETag {existing.get('data_etag')}, now {etag}); that run cannot read the new data and will fail; "
                "launch the new data under another name"
            )
        sending.ensure_next_sent(self.ports, existing, claimant=claimant)
        return {"run_id": run_id, "status": existing["status"], "duplicate": True}

    def _parameters_from_upload(self, event: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any]]:
        """(run id, parameters, uploader) of an EventBridge S3 "Object Created" event; the size is checked first."""
        detail = _mapping(event.get("detail"))
        key = _mapping(detail.get("object")).get("key", "")
        parts = key.split("/") if isinstance(key, str) else []
        if len(parts) != 3 or parts[0] != "runs" or parts[2] != "parameters.json":
            raise LnnInputError(f"uploaded key {key!r} is not runs/<name>/parameters.json")
        check_key_segments(key, name="uploaded key")
        run_id = check_run_id(parts[1])
        head = self.ports.store.head(key)
        if head is None:
            raise LnnInputError(f"{key} no longer exists; upload it again")
        etag, size = head
        check_object_size(
            size,
            limit=MAX_PARAMETERS_BYTES,
            source=key,
            what="parameters file",
            fix="LNN parameters take well under 1 KB; upload the parameters.json of the LNN format",
        )
        uploader = {"uploaded_by": _text(detail.get("requester")), "source_ip": _text(detail.get("source-ip-address"))}
        try:
            parameters = json.loads(self.ports.store.get_bytes(key, etag=etag, cache=False))
        except (ValueError, RecursionError) as error:  # bad JSON, bad UTF-8, a number too long, nesting too deep
            raise LnnInputError(f"{key} is not valid JSON ({str(error)[:200]})") from None
        except RunFailure as error:
            raise LnnInputError(str(error)) from error
        return run_id, parameters, uploader

    @staticmethod
    def _parameters_from_invoke(event: Any) -> tuple[str, dict[str, Any]]:
        if not isinstance(event, dict) or "parameters" not in event:
            raise LnnInputError('a direct launch needs {"parameters": {...}} and optionally "run_id"')
        return event.get("run_id") or f"run-{uuid.uuid4().hex[:12]}", event["parameters"]


def _named_run(event: Any) -> str | None:
    """The run an event names (a direct launch's run_id, an upload's runs/<run_id>/parameters.json), if any."""
    if not isinstance(event, dict):
        return None
    key = _mapping(_mapping(event.get("detail")).get("object")).get("key")
    if isinstance(key, str) and key.count("/") == 2 and key.startswith("runs/"):
        return key.split("/")[1]
    return event.get("run_id") if isinstance(event.get("run_id"), str) else None


def _mapping(value: Any) -> dict[str, Any]:
    """An event field that should be an object: itself, or {} when it is anything else (a malformed event is refused
    by what it lacks, never by an AttributeError that Lambda would retry)."""
    return value if isinstance(value, dict) else {}


def _text(value: Any, limit: int = 256) -> str | None:
    """An event field kept in the run record: a string, cut to `limit` characters, or None."""
    return value[:limit] if isinstance(value, str) and value else None


def check_workers_fit(config: TrainingConfig, examples: int) -> None:
    """Every shard worker needs at least one example of the smallest mini-batch."""
    size = min(config.batch_size or examples, examples)
    smallest = examples % size or size
    if config.workers > smallest:
        raise LnnInputError(
            f"workers {config.workers} is more than the {smallest} examples of the smallest mini-batch "
            f"({examples} examples in batches of {size}); use at most {smallest} workers or larger batches"
        )
