"""`lnn local --sweep FILE`: a sweep on the embedded stack (moto, the stack deployed by the CDK, the local runtime).

The same trials, record and controller as `lnn sweep start`, driven as the stack drives them: the watchdog's pass
starts the trials that fit (it invokes the launcher), a trial's end kicks it (the trainer invokes the watchdog,
which the runtime delivers), and this command runs the pass the watchdog's schedule would run whenever the runtime
has delivered what it had (and when a trial passes a halving rung), until the sweep has ended and its message is sent.
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
    checked_trials,
    describe,
    show_results,
    sweep_id_of,
    sweep_spec,
)
from lnn_cli.sweeps.record import SweepStore
from lnn_core import run_control
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import LnnInputError
from lnn_core.sweep.controller import halted
from lnn_core.sweep.message import message_sent
from lnn_core.sweep.record import SweepRecord, stack_limit


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
        limit = stack_limit(launch_limits.max_running_runs, launch_limits.trainer_concurrency, record.workers)
        console.print(describe(record, spec, limit, launch_limits), highlight=False)
        sweeps.mark_active(sweep_id)
        table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
        with open(out_dir / "lambda.log", "w") as log:
            runtime = local_runtime(
                session, outputs, log_stream=log, concurrency=args.concurrency, container_cpus=args.container_cpus
            )
            run_sweep(runtime, table, record, console)
            if message_sent(runtime.handler("watchdog").ports, sweep_id):
                console.print(f"the stack sent sweep {sweep_id}'s message to its topic", highlight=False)
        runs = {run_id: table.get_run(run_id) for run_id in record.run_ids}
        stops = halted(runtime.handler("watchdog").ports, record, runs)
        show_results(
            args,
            record,
            runs,
            console,
            curves=lambda run: [item["cost"] for item in table.epoch_figures(run)],
            halted=stops,
        )
    console.print(f"wall time {time.monotonic() - started:.1f} s (emulator, deploy and the sweep); logs in {out_dir}")
    ended_well = all(
        run and (run["status"] == "succeeded" or (run["status"] == "stopped" and run_id in stops))
        for run_id, run in runs.items()
    )
    return 0 if ended_well else 1


def run_sweep(runtime: LocalLambdaRuntime, table: RunTable, record: SweepRecord, console: Console) -> None:
    """Drive the sweep to its end as the stack would (the module's docstring), resuming a stalled trial as the
    watchdog would; then say which trials successive halving stopped, and why (whichever pass stopped them)."""
    watchdog = runtime.handler("watchdog")
    stalls: dict[str, int] = {}
    rungs = tuple((record.spec.get("halving") or {}).get("rungs", ()))
    while True:
        outcome = watchdog.sweeps.reconcile(record.sweep_id)  # the pass of the watchdog's scheduled tick
        if outcome["started"]:
            console.print(f"started {', '.join(outcome['started'])}", highlight=False)
        if outcome["outcome"] == "done" and runtime.pending == 0:
            runs = {run_id: table.get_run(run_id) for run_id in record.run_ids}
            for run_id, decision in halted(watchdog.ports, record, runs).items():
                console.print(f"{run_id}: {decision.reason}", highlight=False)
            return
        runs = {run_id: table.get_run(run_id) for run_id in record.run_ids}
        running = [run_id for run_id, run in runs.items() if run and run["status"] == "running"]
        if runtime.pending == 0 and not running and outcome["outcome"] != "done":
            raise LnnInputError(
                f"sweep {record.sweep_id}: its queued trials could not start (the launcher refused them); "
                "see lambda.log"
            )
        runtime.run(until=changed(table, record.run_ids, rungs))
        if runtime.pending == 0:  # nothing in flight: a running trial has stalled; resume it as the watchdog would
            for run_id in running:
                run = table.get_run(run_id)
                if run["status"] == "running" and stalls.get(run_id, 0) < MAX_STALLS:
                    stalls[run_id] = stalls.get(run_id, 0) + 1
                    run_control.resume_run(watchdog.ports, run_id)
                elif run["status"] == "running":
                    raise LnnInputError(f"sweep trial {run_id} stalled {MAX_STALLS} times; see lambda.log")


def changed(table: RunTable, run_ids: list[str], rungs: tuple[int, ...]):
    """The runtime's `until`: a trial that was running (or not yet launched) ended, or passed a halving rung it had
    not (so that halving can judge it)."""
    launched = ("running", 0)  # a trial's state when its launch creates its run
    seen = {run_id: _state(table.get_run(run_id), rungs) or launched for run_id in run_ids}

    def until() -> bool:
        for run_id, before in seen.items():
            if before[0] != "running":
                continue
            now = _state(table.get_run(run_id), rungs)
            if now is not None and now != before:
                return True
        return False

    return until


def _state(run: dict[str, Any] | None, rungs: tuple[int, ...]) -> tuple[str, int] | None:
    if run is None:
        return None
    return run["status"], sum(1 for rung in rungs if (run.get("progress_epoch") or 0) >= rung)
