"""`lnn local --sweep FILE`: a sweep on the embedded stack (moto, the stack deployed by the CDK, the local runtime).

The same trials, record and queue as `lnn sweep start`; the launcher is invoked directly (as `lnn local` does for
one run) and the runtime delivers until a trial ends, when the next queued one starts.
"""

import time
from typing import Any

from rich.console import Console

from lnn_cli.cloud.deploy import deploy_to_emulator
from lnn_cli.cloud.deploy_context import deploy_context
from lnn_cli.cloud.emulator import running_emulator
from lnn_cli.cloud.local import MAX_STALLS, local_runtime
from lnn_cli.cloud.runtime import LocalLambdaRuntime
from lnn_cli.local_command import prepare_out_dir
from lnn_cli.presentation.progress import waiting
from lnn_cli.sweeps.commands import (
    announce_if_done,
    checked_trials,
    describe,
    enforce_halving,
    feed,
    halving_decisions,
    queued_count,
    show_results,
    sweep_id_of,
    sweep_spec,
)
from lnn_cli.sweeps.record import SweepRecord, SweepStore, stack_limit, sweep_data_key
from lnn_core import run_control
from lnn_core.aws.ports import SnsNotifier
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import LnnInputError


def command_local_sweep(args, cli_flags: dict[str, Any], console: Console) -> int:
    context = deploy_context(args.context, command="lnn local")
    spec = sweep_spec(args, cli_flags)
    sweep_id = sweep_id_of(args, spec)
    launch_limits = context.limits
    trials, inputs = checked_trials(
        spec,
        sweep_id,
        args.data,
        defaults=context.training_defaults,
        limits=launch_limits,
        label_column=args.label_column,
    )
    out_dir = prepare_out_dir(args.out)  # everything above only reads: a bad sweep has created nothing
    started = time.monotonic()
    with running_emulator(out_dir / "emulator.log") as emulator:
        with waiting(console, "deploying the stack (cdk synth, bootstrap, deploy)..."):
            deployment = deploy_to_emulator(
                emulator, out_dir / "deploy.log", stack_name=args.stack, context=context.pairs
            )
        session = emulator.session()
        outputs = deployment.outputs
        sweeps = SweepStore(session.client("s3"), outputs.bucket)
        record, _ = sweeps.create(SweepRecord.new(sweep_id, spec, trials, inputs.data, args.parallel), inputs.data)
        workers = max(trial["parameters"].get("workers") or 1 for trial in record.trials)
        limit = stack_limit(launch_limits.max_running_runs, launch_limits.trainer_concurrency, workers)
        console.print(describe(record, spec, limit, launch_limits), highlight=False)
        table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
        with open(out_dir / "lambda.log", "w") as log:
            runtime = local_runtime(
                session, outputs, log_stream=log, concurrency=args.concurrency, container_cpus=args.container_cpus
            )
            run_sweep(runtime, table, session.client("s3"), outputs.bucket, record, limit, console)
        runs = {run_id: table.get_run(run_id) for run_id in record.run_ids}
        halted = halving_decisions(record, runs, table.epoch_figures)
        show_results(
            args,
            record,
            runs,
            console,
            curves=lambda run: [item["cost"] for item in table.epoch_figures(run)],
            halted=halted,
        )
        notifier = SnsNotifier(session.client("sns"), outputs.topic_arn, IoCounter())
        announce_if_done(session.client("s3"), outputs.bucket, notifier, record, runs, console)
    console.print(f"wall time {time.monotonic() - started:.1f} s (emulator, deploy and the sweep); logs in {out_dir}")
    ended_well = all(
        run and (run["status"] == "succeeded" or (run["status"] == "stopped" and run_id in halted))
        for run_id, run in runs.items()
    )
    return 0 if ended_well else 1


def run_sweep(
    runtime: LocalLambdaRuntime, table: RunTable, s3, bucket: str, record: SweepRecord, limit: int, console: Console
) -> None:
    """Start the trials that fit, deliver until one of the running ends (resuming a stalled one, as the watchdog
    would), and again, until every trial has ended."""
    pending: dict[str, float] = {}
    stalls: dict[str, int] = {}
    rungs = tuple((record.spec.get("halving") or {}).get("rungs", ()))
    table_ports = runtime.handler("watchdog").ports  # `lnn stop` through the same ports as a resume

    def read_runs():
        return {run_id: table.get_run(run_id) for run_id in record.run_ids}

    def start(trial):
        run_id = trial["run_id"]
        s3.copy_object(
            Bucket=bucket,
            Key=f"runs/{run_id}/data.npz",
            CopySource={"Bucket": bucket, "Key": sweep_data_key(record.sweep_id)},
        )
        launched = runtime.invoke("launcher", {"run_id": run_id, "parameters": trial["parameters"]})
        if launched.get("status") == "rejected":
            raise LnnInputError(f"sweep trial {run_id}: {launched['reason']}")

    while True:
        started = feed(
            record,
            read_runs=read_runs,
            running_on_stack=lambda: len(table.run_ids("running")),
            start=start,
            limit=limit,
            pending=pending,
        )
        runs = read_runs()
        running = [run_id for run_id, run in runs.items() if run and run["status"] == "running"]
        if started:
            queued = queued_count(record, runs, pending)
            console.print(f"started {', '.join(started)}" + (f"; {queued} queued" if queued else ""), highlight=False)
        if not running:
            return
        runtime.run(until=changed(table, running, rungs))
        runs = read_runs()
        enforce_halving(halving_decisions(record, runs, table.epoch_figures), runs, table_ports, console)
        if runtime.pending == 0:  # nothing in flight: a running run has stalled; resume it as the watchdog would
            for run_id in running:
                run = table.get_run(run_id)
                if run["status"] == "running" and stalls.get(run_id, 0) < MAX_STALLS:
                    stalls[run_id] = stalls.get(run_id, 0) + 1
                    run_control.resume_run(runtime.handler("watchdog").ports, run_id)
                elif run["status"] == "running":
                    raise LnnInputError(f"sweep trial {run_id} stalled {MAX_STALLS} times; see lambda.log")


def changed(table: RunTable, running: list[str], rungs: tuple[int, ...]):
    """The runtime's `until`: a running trial ended, or passed a halving rung it had not (so halving can judge it)."""
    passed = {run_id: _rungs_passed(table.get_run(run_id), rungs) for run_id in running}

    def until() -> bool:
        for run_id in running:
            run = table.get_run(run_id)
            if run["status"] != "running" or _rungs_passed(run, rungs) != passed[run_id]:
                return True
        return False

    return until


def _rungs_passed(run: dict[str, Any], rungs: tuple[int, ...]) -> int:
    return sum(1 for rung in rungs if (run.get("progress_epoch") or 0) >= rung)
