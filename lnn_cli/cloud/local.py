"""One training run on a deployed stack, driven through the local runtime: `run_local`.

The same code serves `lnn local` (a moto server with the stack deployed by `cdk deploy`) and in-process tests
(`moto.mock_aws` with the synthesized template created by CloudFormation): it needs a boto3 session and the
stack's outputs. What a run did is a `local_result.LocalRunResult`; its SNS messages are read back through an
`inbox.NotificationInbox`.
"""

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3

from lnn_cli.cloud.chaos import Chaos, ChaosPlan
from lnn_cli.cloud.inbox import NotificationInbox
from lnn_cli.cloud.local_result import LocalRunResult, busiest_step, sum_io
from lnn_cli.cloud.runtime import DeliveryRecord, LocalLambdaRuntime
from lnn_cli.cloud.stack import StackOutputs
from lnn_core import run_control
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import LnnInputError
from lnn_core.protocol.ending import TERMINAL
from lnn_core.protocol.layout import parts_folder
from lnn_core.protocol.sending import LEASE_SECONDS

MAX_STALLS = run_control.MAX_RESUMES + 1  # the last resume finds the limit reached and fails the run
# An ended run whose message is still owed (its sender gave up its claim, or died after the commit) is the
# watchdog's: its scheduled pass comes this long after the queue drained, past any claim's lease, at most
# `OWED_PASSES` times a run.
WATCHDOG_PASS_SECONDS = 2 * LEASE_SECONDS
OWED_PASSES = 3
SCHEDULED_EVENT = {"source": "aws.events", "detail-type": "Scheduled Event"}


def new_run_id(prefix: str = "local") -> str:
    return f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"


def upload_run_inputs(
    session: boto3.Session,
    outputs: StackOutputs,
    run_id: str,
    data: bytes,
    parameters: dict[str, Any] | None = None,
    *,
    parts: dict[str, bytes] | None = None,
) -> dict[str, Any] | None:
    """Put the data at runs/<run_id>/data.npz, or its `parts` (`datafiles.data_in_parts`) in runs/<run_id>/data/,
    and then, when given, parameters.json (whose upload starts the run in AWS; with parts its `data` names their
    folder). Returns the parameters the run is launched with."""
    s3 = session.client("s3")
    if parts is None:
        s3.put_object(Bucket=outputs.bucket, Key=f"runs/{run_id}/data.npz", Body=data)
    for name, body in (parts or {}).items():
        s3.put_object(Bucket=outputs.bucket, Key=parts_folder(run_id) + name, Body=body)
    if parts is not None and parameters is not None:
        parameters = {**parameters, "data": parts_folder(run_id)}
    if parameters is not None:
        s3.put_object(
            Bucket=outputs.bucket,
            Key=f"runs/{run_id}/parameters.json",
            Body=json.dumps(parameters, indent=2).encode(),
            ContentType="application/json",
        )
    return parameters


def local_runtime(
    session: boto3.Session,
    outputs: StackOutputs,
    *,
    log_stream=None,
    chaos: Chaos | None = None,
    on_delivery: Callable[[DeliveryRecord], None] | None = None,
    concurrency: int = 1,
    container_cpus: int | None = 1,
) -> LocalLambdaRuntime:
    """The stack's functions in a local runtime: `concurrency` containers each (1: deliveries one at a time, in
    a deterministic order), each BLAS call capped at `container_cpus` threads."""
    return LocalLambdaRuntime(
        session,
        {
            "trainer": outputs.trainer_function,
            "launcher": outputs.launch_function,
            "watchdog": outputs.watchdog_function,
            **({"predictor": outputs.predict_function} if outputs.predict_function else {}),
        },
        log_stream=log_stream,
        faults=chaos,
        on_delivery=on_delivery,
        concurrency=concurrency,
        container_cpus=container_cpus,
    )


def drive(runtime: LocalLambdaRuntime, table: RunTable, run_id: str) -> int:
    """Deliver until the run ends. A running run with nothing in flight has stalled: resume it, as the watchdog
    (or `lnn resume`) would. Returns the number of stalls."""
    return drive_many(runtime, table, [run_id])[run_id]


def drive_many(runtime: LocalLambdaRuntime, table: RunTable, run_ids: list[str]) -> dict[str, int]:
    """Deliver until every run has ended, resuming the stalled ones (running, nothing in flight) as the watchdog
    would, each at most `MAX_STALLS` times, and until every ended run's message (and model) is out: a scheduled
    watchdog pass sends what is still owed, as on AWS. Returns the stalls per run."""
    stalls = {run_id: 0 for run_id in run_ids}
    owed_passes = 0
    while True:
        runtime.run()
        stalled, owed = [], []
        for run_id in run_ids:
            run = table.get_run(run_id)
            if run is not None and run["status"] == "running" and stalls[run_id] < MAX_STALLS:
                stalled.append(run_id)
            elif run is not None and run["status"] in TERMINAL and not run.get("notified", True):
                owed.append(run_id)
        if not stalled:
            if not owed or owed_passes == OWED_PASSES:
                return stalls
            owed_passes += 1
            runtime.schedule("watchdog", SCHEDULED_EVENT, after=WATCHDOG_PASS_SECONDS)
            continue
        for run_id in stalled:
            stalls[run_id] += 1
            run_control.resume_run(runtime.handler("watchdog").ports, run_id)


def run_local(
    session: boto3.Session,
    outputs: StackOutputs,
    parameters: dict[str, Any],
    data: bytes,
    *,
    run_id: str | None = None,
    chaos: ChaosPlan | None = None,
    log_stream=None,
    on_delivery: Callable[[DeliveryRecord], None] | None = None,
    concurrency: int = 1,
    container_cpus: int | None = 1,
    on_launch: Callable[[dict[str, Any]], None] | None = None,
    parts: dict[str, bytes] | None = None,
) -> LocalRunResult:
    """Upload `data`, launch a run with `parameters` through the launcher, and drive it to its end.
    `on_launch` gets the run record as the launcher created it (its config after defaults, its seed drawn).

    `concurrency` is the containers per function (1: one delivery at a time, in a deterministic order; more: they
    run in threads), `container_cpus` the BLAS threads of each BLAS call. Raises `LnnInputError` when the launcher
    rejects the run (nothing was created then, but the data upload). `parts`: the data in parts, uploaded instead.
    """
    run_id = run_id or new_run_id()
    started = time.monotonic()
    if parts is not None:
        parameters = {**parameters, "data": parts_folder(run_id)}
    upload_run_inputs(session, outputs, run_id, data, parts=parts)
    inbox = NotificationInbox(session, outputs.topic_arn)
    try:
        faults = Chaos(chaos)
        runtime = local_runtime(
            session,
            outputs,
            log_stream=log_stream,
            chaos=faults,
            on_delivery=on_delivery,
            concurrency=concurrency,
            container_cpus=container_cpus,
        )
        launched = runtime.invoke("launcher", {"run_id": run_id, "parameters": parameters})
        if launched.get("status") == "rejected":
            raise LnnInputError(launched["reason"])
        table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
        if on_launch:
            on_launch(table.get_run(run_id))
        stalls = drive(runtime, table, run_id)
        run = table.get_run(run_id)
        epochs = table.epoch_figures(run)
        model = None
        if run["status"] == "succeeded":
            model = session.client("s3").get_object(Bucket=outputs.bucket, Key=run["final"]["model_key"])["Body"].read()
        notifications = inbox.read()
    finally:
        inbox.close()
    return LocalRunResult(
        run_id=run_id,
        run=run,
        epochs=epochs,
        notifications=notifications,
        model=model,
        io=sum_io(runtime.counters()),
        busiest_step=busiest_step(runtime.deliveries),
        deliveries=len(runtime.deliveries),
        failed_events=runtime.failed_events,
        chaos=faults.counts.as_dict(),
        chaos_plan=chaos,
        wall_seconds=time.monotonic() - started,
        stalls=stalls,
    )


@dataclass
class LocalJob:
    """One run of `run_many`."""

    parameters: dict[str, Any]
    data: bytes
    run_id: str = field(default_factory=new_run_id)


def run_many(
    session: boto3.Session,
    outputs: StackOutputs,
    jobs: list[LocalJob],
    *,
    chaos: ChaosPlan | None = None,
    log_stream=None,
    on_delivery: Callable[[DeliveryRecord], None] | None = None,
    on_launched: Callable[[LocalLambdaRuntime], None] | None = None,
    concurrency: int = 1,
    container_cpus: int | None = 1,
) -> list[LocalRunResult]:
    """Several runs at once on one stack and one runtime: upload every job's data, launch each through the
    launcher, then drain the shared queue (resuming stalled runs) until all have ended. One result per job, in
    order; a rejected launch is an `LnnInputError` naming the run. A result's `io`, `deliveries` and
    `busiest_step` are its run's deliveries'; `chaos` (one harness for all) and `wall_seconds` are shared."""
    started = time.monotonic()
    for job in jobs:
        upload_run_inputs(session, outputs, job.run_id, job.data)
    inbox = NotificationInbox(session, outputs.topic_arn)
    try:
        faults = Chaos(chaos)
        runtime = local_runtime(
            session,
            outputs,
            log_stream=log_stream,
            chaos=faults,
            on_delivery=on_delivery,
            concurrency=concurrency,
            container_cpus=container_cpus,
        )
        for job in jobs:
            launched = runtime.invoke("launcher", {"run_id": job.run_id, "parameters": job.parameters})
            if launched.get("status") == "rejected":
                raise LnnInputError(f"run {job.run_id}: {launched['reason']}")
        if on_launched is not None:
            on_launched(runtime)
        table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
        stalls = drive_many(runtime, table, [job.run_id for job in jobs])
        notifications = inbox.read()
        results = []
        for job in jobs:
            run = table.get_run(job.run_id)
            model = None
            if run["status"] == "succeeded":
                model = (
                    session.client("s3").get_object(Bucket=outputs.bucket, Key=run["final"]["model_key"])["Body"].read()
                )
            deliveries = [record for record in runtime.deliveries if record.run_id == job.run_id]
            results.append(
                LocalRunResult(
                    run_id=job.run_id,
                    run=run,
                    epochs=table.epoch_figures(run),
                    notifications=[
                        n for n in notifications if isinstance(n["body"], dict) and _names_run(n["body"], job.run_id)
                    ],
                    model=model,
                    io=sum_io([_counted(record.io) for record in deliveries]),
                    busiest_step=busiest_step(deliveries),
                    deliveries=len(deliveries),
                    failed_events=[
                        event
                        for event in runtime.failed_events
                        if (event.get("requestPayload") or {}).get("run_id") == job.run_id
                    ],
                    chaos=faults.counts.as_dict(),
                    chaos_plan=chaos,
                    wall_seconds=time.monotonic() - started,
                    stalls=stalls[job.run_id],
                )
            )
    finally:
        inbox.close()
    return results


def _names_run(body: dict[str, Any], run_id: str) -> bool:
    return body.get("run_id") == run_id or (body.get("requestPayload") or {}).get("run_id") == run_id


def _counted(io: dict[str, Any]) -> IoCounter:
    counter = IoCounter()
    counter.requests.update(io["requests"])
    counter.s3_bytes_in, counter.s3_bytes_out = io["s3_bytes_in"], io["s3_bytes_out"]
    return counter
