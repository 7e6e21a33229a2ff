"""`lnn sweep start|status|results` on a deployed stack (or `lnn up`), and what `lnn local --sweep` shares with them.

Starting a sweep: its trials are generated and each validated as a run (nothing starts when one is bad), the sweep
is recorded once (`record.SweepStore`) with its data, and put on the stack's list of active sweeps; one pass of the
sweep controller (`lnn_core.sweep.controller`) starts the trials that fit the limits now (the sweep's --parallel,
the stack's max_running_runs and the trainer's reserved concurrency). From then on the stack drives the sweep: the
watchdog starts the queued trials as places free up, stops the trials successive halving stops, and sends the
sweep's message at its end. The readers (`lnn sweep status|results`) run the same pass, harmlessly.
"""

import io
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from lnn_cli.cloud.local import new_run_id
from lnn_cli.inputs import RunInputs, run_parameters, validate_run
from lnn_cli.sweeps import table
from lnn_cli.sweeps.record import SweepStore
from lnn_cli.sweeps.spec import (
    CHECK_DATA,
    SweepSpec,
    Trial,
    check_sweep_name,
    parse_spec,
    parse_vary,
    read_sweep_file,
)
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.launch.budget import check_training_fits, inspect_npz, parameter_copies, value_bytes
from lnn_core.launch.launcher import LaunchLimits
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.validation import held_out
from lnn_core.sweep import results
from lnn_core.sweep.controller import SweepController, halted, not_started
from lnn_core.sweep.halving import Stop, check_granularity
from lnn_core.sweep.record import SweepRecord, stack_limit


def sweep_spec(args, cli_flags: dict[str, Any]) -> SweepSpec:
    """The sweep of `FILE` and/or `--vary`, `--seeds`, `--trials`; the run flags and --config over its base."""
    if not args.sweep_file and not getattr(args, "vary", None) and not getattr(args, "seeds", None):
        raise LnnInputError("a sweep needs a sweep file, or --vary NAME=VALUES (and/or --seeds) flags")
    content = read_sweep_file(args.sweep_file) if args.sweep_file else {}
    source = args.sweep_file or "the --vary flags"
    if getattr(args, "vary", None):
        content = {**content, "parameters": {**content.get("parameters", {}), **parse_vary(args.vary)}}
    if getattr(args, "seeds", None):
        try:
            content = {**content, "seeds": [int(seed) for seed in args.seeds.split(",")]}
        except ValueError:
            raise LnnInputError(
                f"--seeds must be whole numbers separated by commas, e.g. 1,2,3; got {args.seeds!r}"
            ) from None
    if isinstance(content.get("base", {}), dict):  # else parse_spec says what base must be
        content = {**content, "base": run_parameters(content.get("base", {}), args.config, cli_flags)}
    return parse_spec(content, source=source, trials=getattr(args, "trials", None))


def sweep_id_of(args, spec: SweepSpec) -> str:
    return check_sweep_name(args.name or spec.name or new_run_id("sweep"))


def checked_trials(
    spec: SweepSpec,
    sweep_id: str,
    data_path: str,
    *,
    defaults: dict[str, Any],
    limits: LaunchLimits,
    label_column: str | None,
) -> tuple[list[Trial], RunInputs]:
    """Every trial validated as `lnn start` validates a run: its parameters, its fit to the data and to the trainer's
    memory (each trial's own: they differ in neurons, dtype, optimizer), its workers and validation split. Raises
    for the first bad one; nothing has started."""
    trials = spec.generate(sweep_id, defaults=defaults)
    inputs = validate_run(
        trials[0].parameters,
        data_path,
        defaults=defaults,
        trainer_memory_mb=limits.trainer_memory_mb,
        launcher_memory_mb=limits.launcher_memory_mb,
        label_column=label_column,
    )
    layout = inspect_npz(io.BytesIO(inputs.data), source=str(data_path))
    for trial in trials:
        config = TrainingConfig.from_parameters({**trial.parameters, "data": CHECK_DATA}, defaults=defaults)
        try:
            check_training_fits(
                layout,
                config.neurons,
                memory_mb=limits.trainer_memory_mb,
                source=str(data_path),
                copies=parameter_copies(config, layout),
                itemsize=value_bytes(config),
            )
            inputs.training_data.check_fits(config)
            held_out(inputs.training_data, config.validation_split, config.validation_seed)
            limits.check_workers(config.workers)
            if spec.halving:  # its granularity may be the stack's default
                check_granularity(config.granularity, source="halving")
        except LnnInputError as error:
            raise LnnInputError(f"sweep trial {trial.index} ({trial.run_id}) is not a valid run: {error}") from None
    return trials, inputs


def describe(record: SweepRecord, spec: SweepSpec, limit: int, limits: LaunchLimits) -> str:
    kind = "a grid" if spec.trials is None else f"a random search (search_seed {spec.search_seed})"
    parallel = f"--parallel {record.parallel}, " if record.parallel else ""
    reserved = f", reserved concurrency {limits.trainer_concurrency}" if limits.trainer_concurrency else ""
    return (
        f"sweep {record.sweep_id}: {len(record.trials)} trials, {kind}, varying {', '.join(record.varied)}; at most "
        f"{min(limit, record.parallel or limit)} at once ({parallel}the stack's max_running_runs "
        f"{limits.max_running_runs}{reserved})"
    )


def say_reconciled(outcome: dict[str, Any], console: Console) -> None:
    """What a pass of the sweep controller did, a line each."""
    for run_id, reason in outcome.get("stopped", {}).items():
        console.print(f"{run_id}: {reason}", highlight=False)
    if outcome.get("started"):
        console.print(f"started {', '.join(outcome['started'])}", highlight=False)
    if outcome.get("message_sent"):
        console.print(f"sent sweep {outcome['sweep_id']}'s message to the stack's topic", highlight=False)


# ---- on a deployed stack ---------------------------------------------------------------------------------------


class StackSweeps:
    """A deployed stack's sweeps: its records, its trials' runs, and a pass of the sweep controller with the CLI's
    credentials (which invokes the stack's launcher to start a trial, as the watchdog does)."""

    def __init__(self, stack):
        self.stack = stack
        self.store = SweepStore(stack.session.client("s3"), stack.outputs.bucket)

    def record(self, sweep_id: str) -> SweepRecord:
        record = self.store.read(check_sweep_name(sweep_id))
        if record is None:
            raise LnnInputError(
                f"no sweep named {sweep_id!r} in stack {self.stack.outputs.stack_name}; start one with "
                "`lnn sweep start FILE`"
            )
        return record

    def runs(self, record: SweepRecord) -> dict[str, dict | None]:
        return {run_id: self.stack.ports.table.get_run(run_id) for run_id in record.run_ids}

    def reconcile(self, record: SweepRecord, limits: LaunchLimits) -> dict[str, Any]:
        try:
            return SweepController(self.stack.ports, limits=limits).reconcile(record.sweep_id)
        except RunFailure as error:  # the sweep cannot go on (its data is gone): its reason names the fix
            raise LnnInputError(str(error)) from None

    def limit(self, record: SweepRecord, limits: LaunchLimits) -> int:
        return stack_limit(limits.max_running_runs, limits.trainer_concurrency, record.workers)

    def figures(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        return self.stack.ports.table.epoch_figures(run)


def check_names_free(table, sweep_id: str, run_ids: list[str], existing: SweepRecord | None) -> None:
    """Sweeps and runs share runs/<name>/: refuse a sweep named as a run, or one whose trial id is a run that is not
    this sweep's trial (a repeated start of a recorded sweep finds its own trials' runs). Nothing is written yet."""
    if table.get_run(sweep_id) is not None:
        raise LnnInputError(f"a run named {sweep_id} exists; a sweep cannot share a run's name: choose another --name")
    for run_id in run_ids:
        run = table.get_run(run_id)
        if run is not None and (existing is None or (run.get("config") or {}).get("sweep") != sweep_id):
            raise LnnInputError(
                f"a run named {run_id} exists and is not a trial of sweep {sweep_id}, whose trial it would be; "
                "choose another --name"
            )


def command_sweep_start(args, cli_flags: dict[str, Any], stack, console: Console) -> int:
    spec = sweep_spec(args, cli_flags)
    sweep_id = sweep_id_of(args, spec)
    limits, defaults = stack.launch_limits(), stack.launch_defaults()
    trials, inputs = checked_trials(
        spec, sweep_id, args.data, defaults=defaults, limits=limits, label_column=args.label_column
    )
    sweeps = StackSweeps(stack)
    check_names_free(stack.ports.table, sweep_id, [trial.run_id for trial in trials], sweeps.store.read(sweep_id))
    record, created = sweeps.store.create(
        SweepRecord.new(sweep_id, spec, trials, inputs.data, args.parallel), inputs.data
    )
    console.print(
        describe(record, spec, sweeps.limit(record, limits), limits)
        if created
        else f"sweep {sweep_id} exists (the same trials): starting only the trials that have no run yet",
        highlight=False,
    )
    sweeps.store.mark_active(sweep_id)
    outcome = sweeps.reconcile(record, limits)
    say_reconciled(outcome, console)
    queued = sum(1 for run_id, run in sweeps.runs(record).items() if run is None and run_id not in outcome["started"])
    console.print(
        (f"{queued} trials wait for a place: " if queued else "")
        + "the stack starts the queued trials as places free up and sends the sweep's message at its end; "
        f"follow it with: lnn sweep status {sweep_id}",
        highlight=False,
    )
    return 0


def command_sweep_status(args, stack, console: Console) -> int:
    """The table; and a pass of the sweep controller (the same as the stack's, harmless when it ran meanwhile)."""
    sweeps = StackSweeps(stack)
    record = sweeps.record(args.sweep_id)
    if args.sweep_command == "status":
        say_reconciled(sweeps.reconcile(record, stack.launch_limits()), console)
    runs = sweeps.runs(record)
    show_results(
        args,
        record,
        runs,
        console,
        curves=lambda run: [item["cost"] for item in sweeps.figures(run)],
        halted=halted(stack.ports, record, runs),
        not_started=not_started(stack.ports, record, runs),
    )
    return 0


def show_results(
    args,
    record: SweepRecord,
    runs: dict[str, dict | None],
    console: Console,
    *,
    curves: Callable[[dict], list[float]],
    halted: dict[str, Stop] | None = None,
    not_started: dict[str, str] | None = None,
) -> int:
    rows = results.trial_rows(
        record,
        runs,
        prices=getattr(args, "prices", None),
        local=bool(os.environ.get("AWS_ENDPOINT_URL")),
        not_started=not_started,
    )
    for row in rows:
        row.halted = (halted or {}).get(row.trial["run_id"])
    if getattr(args, "csv", False):
        sys.stdout.write(table.csv_text(record, rows))
    else:
        console.print("\n".join(table.table_lines(record, rows)), markup=False, highlight=False, soft_wrap=True)
        console.print(table.summary_line(record, rows, time.time()), markup=False, highlight=False, soft_wrap=True)
    if getattr(args, "plot", None):
        top = results.best(rows)
        table.plot_sweep(
            {row.trial["run_id"]: curves(row.run) for row in rows if row.run},
            args.plot,
            sweep_id=record.sweep_id,
            best_id=top.trial["run_id"] if top else None,
        )
        console.print(f"wrote {args.plot}")
    return 0


def best_trial_run_id(stack, sweep_id: str) -> str:
    """The run whose model is the sweep's: its best trial with a model."""
    sweeps = StackSweeps(stack)
    record = sweeps.record(sweep_id)
    top = results.best(results.trial_rows(record, sweeps.runs(record), prices=None, local=False))
    if top is None:
        raise LnnInputError(f"sweep {sweep_id} has no trial with a model yet; see `lnn sweep status {sweep_id}`")
    return top.trial["run_id"]


def model_run_id(stack, name: str) -> str:
    """The run whose model `lnn predict NAME` uses: the run NAME, or, when NAME is a sweep, its best trial."""
    if stack.ports.table.get_run(name) is not None:
        return name
    try:
        check_sweep_name(name)
    except LnnInputError:
        return name  # not a sweep's name: the run's own checks say what is wrong
    return best_trial_run_id(stack, name) if StackSweeps(stack).store.read(name) else name
