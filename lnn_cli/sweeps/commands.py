"""`lnn sweep start|status|results` on a deployed stack (or `lnn up`), and what `lnn local --sweep` shares with them.

Starting a sweep: its trials are generated and each validated as a run (nothing starts when one is bad), the sweep
is recorded once (`record.SweepStore`), its data uploaded once, and trials start while fewer than the limits run:
the sweep's --parallel, the stack's max_running_runs and the trainer's reserved concurrency. A trial starts as any
run on the stack does: its data (a server-side copy) and its parameters.json, whose upload launches it.
"""

import json
import os
import sys
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console

from lnn_cli.cloud.local import new_run_id
from lnn_cli.inputs import RunInputs, run_parameters, validate_run
from lnn_cli.sweeps import table
from lnn_cli.sweeps.halving import Stop, parse_halving, rung_reports, stops
from lnn_cli.sweeps.message import notify_if_done
from lnn_cli.sweeps.record import SweepRecord, SweepStore, stack_limit, sweep_data_key, trials_to_start
from lnn_cli.sweeps.spec import (
    CHECK_DATA,
    SweepSpec,
    Trial,
    check_sweep_name,
    parse_spec,
    parse_vary,
    read_sweep_file,
)
from lnn_core import run_control
from lnn_core.errors import LnnInputError
from lnn_core.launch.launcher import LaunchLimits
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.validation import held_out

FEED_SECONDS = 2.0  # how often `lnn sweep start` looks for a free place for its queued trials


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
    memory, its workers and validation split. Raises for the first bad one; nothing has started."""
    trials = spec.generate(sweep_id, defaults=defaults)
    inputs = validate_run(
        trials[0].parameters,
        data_path,
        defaults=defaults,
        trainer_memory_mb=limits.trainer_memory_mb,
        launcher_memory_mb=limits.launcher_memory_mb,
        label_column=label_column,
    )
    for trial in trials:
        config = TrainingConfig.from_parameters({**trial.parameters, "data": CHECK_DATA}, defaults=defaults)
        try:
            inputs.training_data.check_fits(config)
            held_out(inputs.training_data, config.validation_split, config.validation_seed)
            limits.check_workers(config.workers)
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


def feed(
    record: SweepRecord,
    *,
    read_runs: Callable[[], dict[str, dict | None]],
    running_on_stack: Callable[[], int],
    start: Callable[[dict[str, Any]], None],
    limit: int,
    pending: dict[str, float],
    clock=time.time,
) -> list[str]:
    """Start the trials that fit now (`start(trial)`); their run ids. `pending` remembers this process's uploads."""
    runs = read_runs()
    chosen = trials_to_start(record, runs, pending, stack_running=running_on_stack(), stack_limit=limit, clock=clock())
    for trial in chosen:
        start(trial)
        pending[trial["run_id"]] = clock()
    return [trial["run_id"] for trial in chosen]


def halving_decisions(
    record: SweepRecord, runs: dict[str, dict | None], figures_of: Callable[[dict], list[dict[str, Any]]]
) -> dict[str, Stop]:
    """The trials successive halving stops (none when the sweep has no "halving")."""
    if not record.spec.get("halving"):
        return {}
    halving = parse_halving(record.spec["halving"], source=f"sweep {record.sweep_id}", base=record.spec["base"])
    reports = {run_id: rung_reports(halving, figures_of(run)) for run_id, run in runs.items() if run}
    return stops(halving, reports, {trial["run_id"]: trial["index"] for trial in record.trials})


def enforce_halving(decisions: dict[str, Stop], runs: dict[str, dict | None], ports, console: Console) -> None:
    """Stop (as `lnn stop` does: the model of the last epoch stays) each running trial halving decided to stop."""
    for run_id, decision in decisions.items():
        run = runs.get(run_id)
        if run and run["status"] == "running" and not run.get("stop_requested"):
            try:
                run_control.stop_run(ports, run_id)
            except LnnInputError:
                continue  # it ended meanwhile
            console.print(f"{run_id}: {decision.reason}", highlight=False)


def queued_count(record: SweepRecord, runs: dict[str, dict | None], pending: dict[str, float]) -> int:
    return sum(1 for run_id in record.run_ids if runs.get(run_id) is None and run_id not in pending)


# ---- on a deployed stack ---------------------------------------------------------------------------------------


class StackSweeps:
    """A deployed stack's sweeps: its records, its trials' runs, and starting a trial."""

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

    def start(self, record: SweepRecord, trial: dict[str, Any]) -> None:
        """The trial's data (copied server side from the sweep's), then its parameters.json: the upload launches it."""
        run_id, store = trial["run_id"], self.stack.ports.store
        store.copy(sweep_data_key(record.sweep_id), f"runs/{run_id}/data.npz")
        store.put_bytes(f"runs/{run_id}/parameters.json", json.dumps(trial["parameters"], indent=2).encode())

    def limit(self, record: SweepRecord, limits: LaunchLimits) -> int:
        workers = max(trial["parameters"].get("workers") or 1 for trial in record.trials)
        return stack_limit(limits.max_running_runs, limits.trainer_concurrency, workers)

    def feed(self, record: SweepRecord, limits: LaunchLimits, pending: dict[str, float], console: Console) -> list[str]:
        """Stop the trials successive halving stops, then start the queued trials that fit."""
        runs = self.runs(record)
        enforce_halving(halving_decisions(record, runs, self.figures), runs, self.stack.ports, console)
        return feed(
            record,
            read_runs=lambda: self.runs(record),
            running_on_stack=lambda: len(self.stack.ports.table.run_ids("running")),
            start=lambda trial: self.start(record, trial),
            limit=self.limit(record, limits),
            pending=pending,
        )

    def figures(self, run: dict[str, Any]) -> list[dict[str, Any]]:
        return self.stack.ports.table.epoch_figures(run)


def command_sweep_start(args, cli_flags: dict[str, Any], stack, console: Console) -> int:
    spec = sweep_spec(args, cli_flags)
    sweep_id = sweep_id_of(args, spec)
    limits, defaults = stack.launch_limits(), stack.launch_defaults()
    trials, inputs = checked_trials(
        spec, sweep_id, args.data, defaults=defaults, limits=limits, label_column=args.label_column
    )
    sweeps = StackSweeps(stack)
    record, created = sweeps.store.create(
        SweepRecord.new(sweep_id, spec, trials, inputs.data, args.parallel), inputs.data
    )
    limit = sweeps.limit(record, limits)
    console.print(
        describe(record, spec, limit, limits)
        if created
        else f"sweep {sweep_id} exists (the same trials): starting only the trials that have no run yet",
        highlight=False,
    )
    pending: dict[str, float] = {}
    while True:
        started = sweeps.feed(record, limits, pending, console)
        runs = sweeps.runs(record)
        queued = queued_count(record, runs, pending)
        halving_on = bool(record.spec.get("halving")) and any(
            run and run["status"] == "running" for run in runs.values()
        )
        if started:
            console.print(f"started {', '.join(started)}" + (f"; {queued} queued" if queued else ""), highlight=False)
        if not queued and not halving_on:  # with halving, stay to stop the trials it stops
            break
        if args.no_wait:
            console.print(f"{queued} trials queued: `lnn sweep status {sweep_id}` starts them as places free up")
            return 0
        time.sleep(FEED_SECONDS)
    console.print(f"every trial of sweep {sweep_id} has started; follow it with: lnn sweep status {sweep_id}")
    return 0


def command_sweep_status(args, stack, console: Console) -> int:
    """The table; and, as places free up, the queued trials start (the same start, never twice)."""
    sweeps = StackSweeps(stack)
    record = sweeps.record(args.sweep_id)
    started = sweeps.feed(record, stack.launch_limits(), {}, console) if args.sweep_command == "status" else []
    if started:
        console.print(f"started queued trials {', '.join(started)}", highlight=False)
    runs = sweeps.runs(record)
    show_results(
        args,
        record,
        runs,
        console,
        curves=lambda run: [item["cost"] for item in sweeps.figures(run)],
        halted=halving_decisions(record, runs, sweeps.figures),
    )
    announce_if_done(sweeps.store.client, stack.outputs.bucket, stack.ports.notifier, record, runs, console)
    return 0


def announce_if_done(
    s3, bucket: str, notifier, record: SweepRecord, runs: dict[str, dict | None], console: Console
) -> None:
    """The sweep's one SNS message, sent by the first reader that finds the sweep done."""
    rows = table.trial_rows(record, runs, prices=None, local=bool(os.environ.get("AWS_ENDPOINT_URL")))
    if notify_if_done(s3, bucket, notifier, record, rows):
        console.print(f"sent sweep {record.sweep_id}'s message to the stack's topic", highlight=False)


def show_results(
    args,
    record: SweepRecord,
    runs: dict[str, dict | None],
    console: Console,
    *,
    curves: Callable[[dict], list[float]],
    halted: dict[str, Stop] | None = None,
) -> int:
    rows = table.trial_rows(
        record, runs, prices=getattr(args, "prices", None), local=bool(os.environ.get("AWS_ENDPOINT_URL"))
    )
    for row in rows:
        row.halted = (halted or {}).get(row.trial["run_id"])
    if getattr(args, "csv", False):
        sys.stdout.write(table.csv_text(record, rows))
    else:
        console.print("\n".join(table.table_lines(record, rows)), markup=False, highlight=False, soft_wrap=True)
        console.print(table.summary_line(record, rows, time.time()), markup=False, highlight=False, soft_wrap=True)
    if getattr(args, "plot", None):
        top = table.best(rows)
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
    top = table.best(table.trial_rows(record, sweeps.runs(record), prices=None, local=False))
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
