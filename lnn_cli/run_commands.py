"""The commands on a deployed stack's runs: start, status, results, runs, stop, resume.

The stack's resources come from its CloudFormation outputs (lnn_cli.deployed_stack). Stop and resume use
`lnn_core.run_control`, the same code the functions run, through the same ports.
"""

import csv
import os
import sys
import time
from typing import Any

import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lnn_cli.cloud.local import new_run_id, upload_run_inputs
from lnn_cli.deployed_stack import DeployedStack, model_params
from lnn_cli.inputs import validate_run
from lnn_cli.presentation.configuration import show_launched_configuration
from lnn_cli.presentation.progress import RunProgress, run_progress, timing_text
from lnn_cli.presentation.report import (
    plain_table,
    plot_costs,
    show_warnings,
    warning_mark,
)
from lnn_core import run_control
from lnn_core.aws import pricing
from lnn_core.errors import LnnInputError
from lnn_core.ml.config import check_run_id
from lnn_core.protocol import end_message, ending
from lnn_core.sweep.record import sweep_key, sweep_of_trial_id

FOLLOW_SECONDS = 2.0  # how often `status --follow` reads the run record
# What an epoch item records of the test set every `eval_every` epochs (results.evaluation): (key, label, format)
TEST_FIGURES = (
    ("test_cost", "test cost", "{:.6f}"),
    *((key, label, style) for key, label, style in end_message.FIGURES if key in ("test_accuracy", "test_rmse")),
)
# What the text table of `lnn results` shows of an epoch's figures (its columns; --plot needs no other)
TABLE_FIGURES = ("epoch", "cost", *(key for key, _, _ in TEST_FIGURES), "learning_rate", "finished_at")


def check_no_sweep_named(stack: DeployedStack, run_id: str) -> None:
    """Sweeps and runs share runs/<name>/: a run cannot take a sweep's name, nor the id of a sweep's trial."""
    if stack.ports.store.read_current(sweep_key(run_id)) is not None:
        raise LnnInputError(f"a sweep named {run_id} exists; a run cannot share a sweep's name: choose another --name")
    sweep_id = sweep_of_trial_id(run_id)
    if sweep_id and stack.ports.store.read_current(sweep_key(sweep_id)) is not None:
        raise LnnInputError(
            f"{run_id} is the id of a trial of sweep {sweep_id}; a run cannot take it: choose another --name"
        )


def command_start(args, parameters: dict, stack: DeployedStack, console: Console) -> int:
    """Upload data.npz (with workers K > 1, its K parts and common.npz), then parameters.json: that upload starts the
    run (S3 -> EventBridge -> LaunchLambda)."""
    limits = stack.launch_limits()
    inputs = validate_run(
        parameters,
        args.data,
        defaults=stack.launch_defaults(),
        trainer_memory_mb=limits.trainer_memory_mb,
        launcher_memory_mb=limits.launcher_memory_mb,
        label_column=getattr(args, "label_column", None),
        in_parts=True,
    )
    run_id = check_run_id(args.name) if args.name else new_run_id("run")
    if stack.ports.table.get_run(run_id) is not None:
        raise LnnInputError(f"a run named {run_id} already exists; choose another --name")
    check_no_sweep_named(stack, run_id)
    limits.check_workers(inputs.config.workers)
    running = len(stack.ports.table.run_ids("running"))
    if running >= limits.max_running_runs:  # the launcher would refuse it: say so before uploading anything
        raise LnnInputError(
            f"{running} runs are already running, the limit (LNN_MAX_RUNNING_RUNS) is {limits.max_running_runs}; "
            "wait for one to end or stop one with `lnn stop RUN_ID`"
        )
    upload_run_inputs(stack.session, stack.outputs, run_id, inputs.data, inputs.parameters, parts=inputs.parts)
    console.print(
        f"started run [bold]{run_id}[/] in stack {stack.outputs.stack_name}: s3://{stack.outputs.bucket}/runs/{run_id}/"
    )
    show_launched_configuration(console, inputs.config.to_parameters(), lambda: stack.ports.table.get_run(run_id))
    console.print(f"follow it with: lnn status {run_id} --follow")
    return 0


def command_status(args, stack: DeployedStack, console: Console) -> int:
    run = stack.run(args.run_id)
    if args.follow and run["status"] == "running":
        with run_progress(console) as progress:
            bar = RunProgress(
                progress, lambda: stack.run(args.run_id), epochs=run["config"]["epochs"], label=args.run_id
            )
            bar.show(run)
            while run["status"] == "running":
                time.sleep(FOLLOW_SECONDS)
                run = bar.poll(force=True)
    console.print(status_line(run))
    show_warnings(console, run.get("final"))
    console.print(f"AWS cost: {pricing.cost_text(run_cost(run, args.prices))}", highlight=False)
    return 0 if run["status"] in ("running", "succeeded") else 1


def run_cost(run: dict[str, Any], prices: str | None = None) -> dict[str, Any] | None:
    """The run's dollar estimate at the `prices` table (`--prices`); on the local stack (AWS_ENDPOINT_URL set)
    labelled as AWS's price of the locally measured usage."""
    return pricing.run_cost(run, table=prices, local=bool(os.environ.get("AWS_ENDPOINT_URL")))


def status_line(run: dict[str, Any]) -> str:
    config = run["config"]
    parts = [
        f"run {run['run_id']}: {run['status']}",
        f"epoch {run.get('progress_epoch', 0)}/{config['epochs']}",
        f"step {run.get('committed_step', 0)}/{run.get('step_bound', '?')}",
        f"granularity {config['granularity']}",
    ]
    if run.get("last_cost") is not None:
        parts.append(f"cost {run['last_cost']:.6f}")
    if end_message.warning_count(run.get("final")):
        parts.append(end_message.warning_count(run.get("final")))
    if timing_text(run):
        parts.append(timing_text(run))
    if run.get("reason"):
        parts.append(f"reason: {run['reason']}")
    return ", ".join(parts)


def command_results(args, stack: DeployedStack, console: Console) -> int:
    run = stack.run(args.run_id)
    # the weights only with --weights, and of one epoch; started_at only in the CSV
    epochs = stack.table.epoch_figures(run, **({} if args.csv else {"attributes": TABLE_FIGURES}))
    costs = [item["cost"] for item in epochs]
    evaluated = [(key, label, style) for key, label, style in TEST_FIGURES if any(key in item for item in epochs)]
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(
            ["epoch", "cost", *(key for key, _, _ in evaluated), "learning_rate", "started_at", "finished_at"]
        )
        for item in epochs:
            writer.writerow(
                [
                    item["epoch"],
                    repr(item["cost"]),
                    *(repr(item[key]) if key in item else "" for key, _, _ in evaluated),
                    item.get("learning_rate"),
                    item.get("started_at"),
                    item.get("finished_at"),
                ]
            )
    else:
        console.print(status_line(run), markup=False, highlight=False, soft_wrap=True)
        rows = [
            [
                str(item["epoch"]),
                f"{item['cost']:.6f}",
                *(style.format(item[key]) if key in item else "" for key, _, style in evaluated),
                str(item.get("learning_rate", "")),
                item.get("finished_at", ""),
            ]
            for item in epochs
        ]
        headers = ["epoch", "cost", *(label for _, label, _ in evaluated), "learning rate", "finished at"]
        console.print("\n".join(plain_table(headers, rows)), markup=False, highlight=False, soft_wrap=True)
        final = run.get("final") or {}
        if final:
            console.print(
                ", ".join(f"{label} {value}" for label, value in end_message.figures(final))
                + f", {final['seconds']:.1f} s, {final['invocations']} invocations, model s3://{stack.outputs.bucket}/{final['model_key']}"
            )
            show_warnings(console, final)
        console.print(f"AWS cost: {pricing.cost_text(run_cost(run, args.prices))}", highlight=False)
        published = ending.published_model(run)
        if published:
            console.print(f"model from epoch {published[1]}: s3://{stack.outputs.bucket}/{published[0]}")
    if args.weights:
        show_weights(run, stack.table.committed_epoch(run), stack, console)
    if args.plot:
        plot_costs(
            costs,
            args.plot,
            run_id=args.run_id,
            test_costs={int(item["epoch"]): item["test_cost"] for item in epochs if "test_cost" in item},
        )
        console.print(f"wrote {args.plot}")
    return 0


def show_weights(run: dict[str, Any], last: dict[str, Any] | None, stack: DeployedStack, console: Console) -> None:
    """The trained model's parameters when the run finished, else the last epoch item's weights (or their norms)."""
    final = run.get("final") or {}
    if final.get("model_key"):
        params = model_params(stack, final["model_key"])
        source = f"s3://{stack.outputs.bucket}/{final['model_key']}"
    elif last and "weights" in last:
        params = {
            f"{kind[0].upper()}{layer}": np.array(values)
            for kind in ("weights", "bias")
            for layer, values in _by_layer(last[kind]).items()
        }
        source = f"epoch item {last['epoch']}"
    else:
        console.print(
            "no weights stored yet"
            if not last
            else f"epoch {last['epoch']} stores weight norms only: "
            f"{last.get('weight_norms')}"
            + (
                f" (parameters in s3://{stack.outputs.bucket}/{last['checkpoint_key']})"
                if last.get("checkpoint_key")
                else " (kept parameters every 100 epochs and at the end)"
            )
        )
        return
    console.print(f"weights from {source}:")
    with np.printoptions(precision=4, suppress=True, threshold=200, linewidth=120):
        layers = [name for name in params if name[0] in "Wb" and name[1:].isdigit()]  # not "activations", "config"
        for name in sorted(layers, key=lambda key: (int(key[1:]), key[0])):
            console.print(f"{name} {params[name].shape}:\n{params[name]}", markup=False, highlight=False)


def _by_layer(values: Any) -> dict[int, Any]:
    """Epoch item weights/bias: a {"layer1": ...} map or a list, layer 1 first."""
    if isinstance(values, dict):
        return {int(key.removeprefix("layer")): value for key, value in values.items()}
    return dict(enumerate(values, start=1))


def command_runs(args, stack: DeployedStack, console: Console) -> int:
    runs = sorted(stack.table.list_runs(), key=lambda run: run.get("created_at", ""))
    # Fits 80 columns: light borders, the warnings beside the status, the creation time to the
    # minute (the granularity is in `lnn status`); nothing cut
    table = Table(
        title=f"runs in {stack.outputs.stack_name}",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
        padding=(0, 1),
    )
    for column in ("run id", "status", "epoch", "cost", "created", "AWS $"):
        table.add_column(column, no_wrap=column != "run id", overflow="fold")  # a long id folds, never cut
    for run in runs:
        final = run.get("final") or {}
        cost = final.get("cost", run.get("last_cost"))
        dollars = run_cost(run, args.prices)
        status = Text(run["status"])
        if warning_mark(final):
            status.append(f" {warning_mark(final)}", style="yellow")
        table.add_row(
            run["run_id"],
            status,
            f"{run.get('progress_epoch', 0)}/{run['config']['epochs']}",
            "-" if cost is None else f"{cost:.4f}",
            run.get("created_at", "")[5:16].replace("T", " "),
            "-" if dollars is None else f"{dollars['dollars']:.6f}",
        )
    if runs:
        console.print(f"AWS $: estimates, {pricing.price_table(args.prices).label} (docs/costs.md)", highlight=False)
    console.print(table if runs else "no runs yet; start one with `lnn start`")
    return 0


def command_stop(args, stack: DeployedStack, console: Console) -> int:
    stack.run(args.run_id)
    run_control.stop_run(stack.ports, args.run_id)
    console.print(f"asked run {args.run_id} to stop: it halts at its next step boundary with status stopped")
    return 0


def command_resume(args, stack: DeployedStack, console: Console) -> int:
    stack.run(args.run_id)
    outcome = run_control.resume_run(stack.ports, args.run_id)
    if outcome["outcome"] == "continued":
        kept = f"; its model from epoch {outcome['model_epoch']} stays until it ends" if outcome["model_epoch"] else ""
        console.print(
            f"continued stopped run {args.run_id} from step {outcome['step']} (after epoch {outcome['epoch']})"
            f"{kept}; follow it with: lnn status {args.run_id} --follow"
        )
        return 0
    console.print(
        f"resumed run {args.run_id}: re-sent step {outcome['step']} (if that step is alive, the copy is dropped)"
    )
    return 0
