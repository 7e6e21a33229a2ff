"""The commands for a deployed stack: start, status, results, runs, stop, resume, predict.

The stack's resources come from its CloudFormation outputs. Stop and resume use `lnn_core.run_control`, the same
code the functions run, through the same ports.
"""

import csv
import functools
import io
import json
import os
import sys
import time
from typing import Any

import boto3
import numpy as np
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from lnn_cli.cloud.local import new_run_id, upload_run_inputs
from lnn_cli.cloud.stack import CLI_BOTO_CONFIG, StackOutputs, aws_errors_explained
from lnn_cli.inputs import read_prediction_data, validate_run
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
from lnn_core.aws.ports import LambdaInvoker, Ports, S3ObjectStore, SnsNotifier
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import BOTO_CONFIG, IoCounter
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.launch.launcher import LaunchLimits
from lnn_core.ml import network
from lnn_core.ml.config import check_run_id
from lnn_core.predictor import SYNC_PAYLOAD_LIMIT, Model, predicted_probability, rows_that_fit
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


class DeployedStack:
    """A deployed LNN stack: its outputs and the ports to its resources."""

    def __init__(self, session: boto3.Session, stack_name: str):
        self.session = session
        self.outputs = StackOutputs.from_stack(session, stack_name)
        self.counter = IoCounter()
        # what the reads (`lnn results`, `status`, `runs`, the page) need of the stack: `ports` is built on first use
        self.table = RunTable(
            session.resource("dynamodb", config=CLI_BOTO_CONFIG).Table(self.outputs.table), self.counter
        )

    @functools.cached_property
    def ports(self) -> Ports:
        """The ports to all of the stack's resources. Built on first use: loading the SNS, Lambda and S3 clients'
        models took 0.35 s at load 6, a quarter of `lnn results` then (docs/performance.md), which uses none."""
        lambda_client = self.session.client("lambda", config=CLI_BOTO_CONFIG)
        return Ports(
            table=self.table,
            notifier=SnsNotifier(
                self.session.client("sns", config=CLI_BOTO_CONFIG), self.outputs.topic_arn, self.counter
            ),
            invoker=LambdaInvoker(lambda_client, self.outputs.trainer_function, self.counter),
            counter=self.counter,
            store=S3ObjectStore(self.session.client("s3", config=CLI_BOTO_CONFIG), self.outputs.bucket, self.counter),
            # a sweep's queued trials start as the watchdog starts them: an invoke of the launcher
            functions={"launcher": LambdaInvoker(lambda_client, self.outputs.launch_function, self.counter)},
        )

    def invoke_predictor(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A synchronous invoke (RequestResponse) of the stack's PredictLambda; its answer. (The local runtime's
        `invoke("predictor", payload)` is the same call, without AWS.)"""
        name = self.outputs.predict_function
        if not name:
            raise LnnInputError(
                f"stack {self.outputs.stack_name} has no PredictLambda (no output PredictFunctionName); "
                "redeploy it with this version of LNN, or predict on this machine without --remote"
            )
        response = self.session.client("lambda", config=BOTO_CONFIG).invoke(
            FunctionName=name, InvocationType="RequestResponse", Payload=json.dumps(payload).encode()
        )
        answer = json.loads(response["Payload"].read() or b"null")
        if response.get("FunctionError"):
            detail = answer.get("errorMessage", answer) if isinstance(answer, dict) else answer
            raise LnnInputError(f"the PredictLambda {name} failed ({detail}); see its log group")
        return answer

    def run(self, run_id: str) -> dict[str, Any]:
        run = self.table.get_run(check_run_id(run_id))
        if run is None:
            raise LnnInputError(f"no run named {run_id!r} in stack {self.outputs.stack_name}; `lnn runs` lists them")
        return run

    @functools.cached_property
    def _launcher_environment(self) -> dict[str, str]:
        """The LaunchLambda's environment variables, with its own memory size as Lambda reports it to the function."""
        configuration = self.session.client("lambda", config=CLI_BOTO_CONFIG).get_function_configuration(
            FunctionName=self.outputs.launch_function
        )
        environment = dict(configuration.get("Environment", {}).get("Variables", {}))
        return {"AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(configuration.get("MemorySize", "")), **environment}

    def launch_defaults(self) -> dict[str, Any]:
        """The training defaults the launcher applies (its LNN_TRAINING_DEFAULTS)."""
        return json.loads(self._launcher_environment.get("LNN_TRAINING_DEFAULTS") or "{}")

    def launch_limits(self) -> LaunchLimits:
        """The limits the launcher applies; the trainer's memory from the launcher's LNN_TRAINER_MEMORY_MB, else
        from the trainer function's own configuration."""
        environment = dict(self._launcher_environment)
        if not environment.get("LNN_TRAINER_MEMORY_MB"):
            trainer = self.session.client("lambda", config=CLI_BOTO_CONFIG).get_function_configuration(
                FunctionName=self.outputs.trainer_function
            )
            environment["LNN_TRAINER_MEMORY_MB"] = str(trainer.get("MemorySize", ""))
        try:
            return LaunchLimits.from_environment(environment)
        except RuntimeError as error:
            raise LnnInputError(f"the launcher of stack {self.outputs.stack_name} is misconfigured: {error}") from None


def open_stack(session: boto3.Session, stack_name: str) -> DeployedStack:
    with aws_errors_explained(stack_name):
        return DeployedStack(session, stack_name)


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


def model_bytes(stack: DeployedStack, key: str) -> bytes:
    """A run's model.npz, read afresh every time (never from the store's cache: `lnn resume` and a later ending
    replace it); one line when its ending committed but the copy has not landed yet."""
    try:
        return stack.ports.store.get_bytes(key, cache=False)
    except RunFailure:
        raise LnnInputError(
            f"the run's model ({key}) is being published by the step that ended it; try again in a few seconds"
        ) from None


def model_params(stack: DeployedStack, key: str) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(model_bytes(stack, key)), allow_pickle=False) as model:
        return {name: model[name] for name in model.files}


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


def command_predict(args, stack: DeployedStack, console: Console) -> int:
    """`lnn predict RUN_ID --data FILE | --image FILE... [--remote] [--csv]`: on this machine from model.npz, or with
    --remote by the stack's PredictLambda; both run `Model.answer`, so both give the same numbers."""
    run = stack.run(args.run_id)
    published = ending.published_model(run)
    if published is None:
        raise LnnInputError(ending.no_model(run))
    model_key = published[0]
    images = getattr(args, "image", None)
    if bool(images) == bool(getattr(args, "data", None)):
        raise LnnInputError("give the examples to predict with either --data FILE or --image FILE ...")
    if getattr(args, "remote", False):
        described = predictor_answer(stack.invoke_predictor, {"run_id": args.run_id, "describe": True})
        return predict_with(
            args, described, lambda X: predict_remote(stack.invoke_predictor, args.run_id, X, described), console
        )
    model = Model.from_npz(model_bytes(stack, model_key), key=model_key)
    return predict_with(args, model.describe(), lambda X: model.answer(X, run_id=args.run_id), console)


def the_model(args, described: dict[str, Any] | None = None) -> str:
    """The model `lnn predict` uses, in words: a run's (and the epoch it is from, when the model says), or a model
    file's (--model)."""
    if not getattr(args, "run_id", None):
        return f"the model {args.model}"
    epoch = (described or {}).get("model_epoch")
    return f"the model of run {args.run_id}" + (f" from epoch {epoch}" if epoch is not None else "")


def predict_with(args, described: dict[str, Any], answer_for, console: Console) -> int:
    """Read --image or --data as rows of X, check them against the model `described`, show `answer_for(X)`."""
    images = getattr(args, "image", None)
    if images:
        X, y, names = image_rows(images, described.get("example_shape"), model=the_model(args)), None, list(images)
    else:
        X, y = read_prediction_data(args.data, label_column=getattr(args, "label_column", None))
        names = None
    if X.shape[1] != described["features"]:
        source = "the images" if images else args.data
        raise LnnInputError(
            f"{source}: X has {X.shape[1]} features but {the_model(args)} takes {described['features']}"
        )
    return show_answer(args, answer_for(X), described, y, names, console)


def predictor_answer(invoke, payload: dict[str, Any]) -> dict[str, Any]:
    answer = invoke(payload)
    if not isinstance(answer, dict):
        raise LnnInputError(f"the PredictLambda answered {answer!r}, not a JSON object")
    if "error" in answer:
        raise LnnInputError(f"the PredictLambda refused the request: {answer['error']}")
    return answer


def predict_remote(invoke, run_id: str, X: np.ndarray, described: dict[str, Any]) -> dict[str, Any]:
    """The PredictLambda's answer for every row of X: as many synchronous invokes as the 6 MB payloads need."""
    rows = X.tolist()
    row_bytes = [len(json.dumps(row)) + 2 for row in rows]
    # An answer row: the label (or class name) and its probabilities (or values), about 25 bytes a number.
    longest_class = max((len(name) for name in described.get("classes") or []), default=0)
    answer_row = 25 * described.get("outputs", 1) + longest_class + 30
    budget = SYNC_PAYLOAD_LIMIT - 2 * 1024
    merged: dict[str, Any] = {}
    start = 0
    while start < len(rows):
        end, size = start, 0
        while end < len(rows) and size + max(row_bytes[end], answer_row) <= budget:
            size += max(row_bytes[end], answer_row)
            end += 1
        if end == start:
            raise LnnInputError(
                f"one row of X is {row_bytes[start]:,} bytes as JSON: more than a synchronous invoke "
                f"carries ({rows_that_fit(row_bytes[start])} rows fit); predict without --remote"
            )
        answer = predictor_answer(invoke, {"run_id": run_id, "X": rows[start:end]})
        for key in ("predictions", "probabilities", "values"):
            if key in answer:
                merged.setdefault(key, []).extend(answer[key])
        merged.update(run_id=answer["run_id"], model_key=answer["model_key"])
        start = end
    return merged


def image_rows(paths: list[str], example_shape: list[int] | None, *, model: str) -> np.ndarray:
    """Images as rows of X, as the model saw its examples at training: resized to its example_shape (height, width
    [, channels]) with Pillow, uint8 scaled by 1/255, flattened."""
    from PIL import Image, UnidentifiedImageError

    if not example_shape or len(example_shape) not in (2, 3):
        raise LnnInputError(
            f"{model} was not trained on images (its model.npz has no example_shape "
            "of height x width x channels); predict with --data"
        )
    height, width = example_shape[:2]
    channels = example_shape[2] if len(example_shape) == 3 else 1
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise LnnInputError(
            f"{model} takes examples of shape {example_shape}: {channels} channels "
            "is not an image Pillow makes (1, 3 or 4)"
        )
    rows = []
    for path in paths:
        try:
            with Image.open(path) as image:
                pixels = np.asarray(
                    image.convert(mode).resize((width, height), Image.Resampling.BILINEAR), dtype=np.uint8
                )
        except FileNotFoundError:
            raise LnnInputError(f"image {path} does not exist") from None
        except (UnidentifiedImageError, OSError) as error:
            raise LnnInputError(f"{path} is not an image Pillow can read ({error})") from None
        rows.append(pixels.reshape(-1))
    X = np.stack(rows).astype(np.float64)
    X /= 255.0  # as dataset.load_training_data scales uint8 at training
    return X


def show_answer(
    args,
    answer: dict[str, Any],
    described: dict[str, Any],
    y: np.ndarray | None,
    names: list[str] | None,
    console: Console,
) -> int:
    """One line per input (the class and its probability, or the value), or CSV; then the figures against y."""
    predictions = answer["predictions"]
    labels = names or [f"row {row}" for row in range(len(predictions))]
    if "values" in answer:
        return show_values(args, answer["values"], described, y, names, console)
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        columns, probabilities = probability_columns(answer["probabilities"], described.get("classes"))
        writer.writerow(["row" if names is None else "input", "prediction", *columns])
        for row, prediction in enumerate(predictions):
            writer.writerow([row if names is None else names[row], prediction, *map(repr, probabilities[row])])
        return 0
    for row, prediction in enumerate(predictions):
        console.print(
            f"{labels[row]}: class {prediction} (probability {predicted_probability(answer, row):.4f})",
            markup=False,
            highlight=False,
        )
    values, counts = np.unique(np.array(predictions, dtype=object).astype(str), return_counts=True)
    summary = ", ".join(f"class {value}: {count}" for value, count in zip(values, counts))
    console.print(
        f"{len(predictions)} predictions with {the_model(args, described)} ({summary})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if y is not None:
        indices = [described["classes"].index(p) if described.get("classes") else p for p in predictions]
        console.print(f"accuracy against the file's labels: {float(np.mean(np.array(indices) == y)):.1%}")
    return 0


def probability_columns(probabilities: list, classes: list[str] | None) -> tuple[list[str], list[list[float]]]:
    """The CSV's probability columns, each named by its class (p_<class>), and their values per row: one per class
    for softmax; for a sigmoid output, the probability of class 1 (the second class name)."""
    if probabilities and isinstance(probabilities[0], list):
        names = classes or [str(index) for index in range(len(probabilities[0]))]
        return [f"p_{name}" for name in names], [[float(p) for p in row] for row in probabilities]
    return [f"p_{(classes or ['0', '1'])[1]}"], [[float(p)] for p in probabilities]


def show_values(
    args, values: list, described: dict[str, Any], y: np.ndarray | None, names: list[str] | None, console: Console
) -> int:
    """A regression model's predicted values, and its RMSE and R² (metrics.rmse's and r2's formulas) against y."""
    AL = np.array(values, dtype=np.float64).reshape(len(values), -1).T  # (k, m), as the network's output
    outputs = AL.shape[0]
    if y is not None and (1 if y.ndim == 1 else y.shape[1]) != outputs:
        raise LnnInputError(
            f"{args.data}: y holds {1 if y.ndim == 1 else y.shape[1]} target(s) per example but "
            f"{the_model(args)} predicts {outputs}"
        )
    if args.csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        first = "row" if names is None else "input"
        writer.writerow(
            [first, *(["prediction"] if outputs == 1 else [f"prediction_{index}" for index in range(1, outputs + 1)])]
        )
        for row, value in enumerate(values):
            writer.writerow(
                [row if names is None else names[row], *(repr(float(item)) for item in np.atleast_1d(value))]
            )
        return 0
    for row, value in enumerate(values):
        label = f"row {row}" if names is None else names[row]
        console.print(
            f"{label}: {' '.join(repr(float(item)) for item in np.atleast_1d(value))}", markup=False, highlight=False
        )
    console.print(
        f"{len(values)} predictions with {the_model(args, described)} (regression, {outputs} value(s) each)",
        soft_wrap=True,
    )
    if y is not None:
        Y = network.targets(y, "linear", outputs)
        D = AL - Y
        residual = ((Y - AL) ** 2).sum(axis=1)
        total = ((Y - Y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
        constant = total == 0
        scores = np.where(constant, np.where(residual == 0, 1.0, 0.0), 1.0 - residual / np.where(constant, 1.0, total))
        console.print(
            f"against the file's targets: RMSE {float(np.sqrt((D * D).mean())):.6g}, R² {float(scores.mean()):.4f}"
        )
    return 0
