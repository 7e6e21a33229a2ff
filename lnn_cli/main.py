"""The `lnn` command. A problem a person can fix exits with status 2 and one line that says what to do."""

import argparse
import importlib.metadata
import os
import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from lnn_cli import stack_commands
from lnn_cli.cloud.deploy import DeployError
from lnn_cli.cloud.stack import DEFAULT_STACK, aws_errors_explained
from lnn_cli.cloud.up.command import DEFAULT_STATE_DIR, command_down, command_up
from lnn_cli.datafiles import FORMATS
from lnn_cli.inputs import (
    DEMO_CONFIG,
    DEMO_DATA,
    PROJECT_DIR,
    comma_list,
    read_data,
    run_parameters,
)
from lnn_cli.local_command import command_local
from lnn_cli.model_file import command_predict_model
from lnn_cli.sweeps import commands as sweeps
from lnn_cli.web import DEFAULT_PORT
from lnn_core.aws.pricing import DEFAULT_PRICES, PRICE_TABLES
from lnn_core.errors import LnnInputError
from lnn_core.ml.parameters import CHOICE, COUNTS, INTEGER, NAMES, NUMBER, TABLE

USAGE_ERROR = 2


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (with where to look), not the usage text and then the error."""

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"lnn: error: {message} (see `{self.prog} --help`)\n")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data",
        default=str(DEMO_DATA),
        help="training data: an .npz with X, y and optionally "
        "X_test, y_test; or LNN's HDF5 (train_set_x, train_set_y, ...) or a CSV, converted to an .npz "
        "before upload (default: the bundled breast cancer data set)",
    )
    add_label_column(parser)
    parser.add_argument(
        "--config",
        help="a parameters.json in the LNN format; flags override it (the demo's: "
        f"{DEMO_CONFIG.relative_to(PROJECT_DIR)})",
    )
    training = parser.add_argument_group(
        "training parameters",
        "Defaults: those of a stack deployed with an empty context (`-c KEY=VALUE` at deploy "
        "changes them), shared by `lnn local` and `lnn start`. All of them: docs/parameters.md",
    )
    for row in TABLE:
        if row.flag:
            kind = {INTEGER: {"type": int}, NUMBER: {"type": float}, CHOICE: {"choices": row.choices}}.get(row.kind, {})
            example = f", e.g. {row.example}" if row.kind in (COUNTS, NAMES) else ""
            training.add_argument(row.flag_name, **kind, help=f"{row.help}{example} (default: {row.default_text})")
    parser.add_argument("--name", help="the run id (default: generated)")


def add_context_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--context",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a context parameter of the stack, as for cdk deploy (repeatable), e.g. -c memory_size=1769 "
        "-c reserved_concurrency=40; over cdk.json's context (default: cdk.json's context alone)",
    )


def add_label_column(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--label-column",
        help="a CSV's label column: its header name or a 0-based index, -1 the last (default: the last column)",
    )


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number; got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1; got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a port number; got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be between 0 and 65535; got {value}")
    return value


def add_runtime_options(parser: argparse.ArgumentParser) -> None:
    """The local runtime's flags (`lnn local`, `python -m lnn_cli.bench`)."""
    parser.add_argument(
        "--concurrency",
        type=positive_int,
        default=os.cpu_count() or 1,
        help="containers per function; deliveries run in parallel threads, one per container at a "
        "time (default: this machine's cores; 1 gives a deterministic order)",
    )
    parser.add_argument(
        "--container-cpus",
        type=positive_int,
        default=1,
        help="BLAS threads per BLAS call, i.e. per container (default 1, like a 1,769 MB Lambda's vCPU)",
    )


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="lnn",
        description="LNN, the Lambda Neural Network: train NumPy networks with self-invoking Lambda functions.",
    )
    parser.add_argument("--version", action="version", version=f"lnn {installed_version()}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    local = commands.add_parser(
        "local",
        help="train on an embedded AWS (moto) with the real stack; no account needed",
        description="Start a moto server, deploy the stack onto it with cdk deploy, and train "
        "through a local Lambda runtime. The training defaults are the stack's, as for `lnn start`; "
        f"`make demo` adds --config {DEMO_CONFIG.relative_to(PROJECT_DIR)}.",
    )
    add_run_options(local)
    add_context_option(local)
    local.add_argument(
        "--out",
        default="out/local",
        help="directory for results.json, model.npz, cost.png and logs (default out/local)",
    )
    local.add_argument(
        "--chaos",
        help="inject faults, e.g. duplicate=0.1,crash=0.05,delay=0.1,lose=0.01,seed=7 (also pause=P, "
        "distinct_ids=P, lost_answer=P: a write applied whose answer is lost, so the SDK retries it; "
        "default: none)",
    )
    local.add_argument(
        "--stack", default=DEFAULT_STACK, help=f"the stack to deploy from the CDK app (default {DEFAULT_STACK})"
    )
    add_runtime_options(local)
    local.add_argument(
        "--sweep",
        metavar="FILE",
        dest="sweep_file",
        help="train a sweep of runs (a sweep file, JSON "
        "or YAML; or give --vary) instead of one run; see `lnn sweep start --help` (default: none, one run)",
    )
    add_sweep_options(local)

    start = commands.add_parser(
        "start",
        help="upload data and parameters.json to a deployed stack: the upload starts the run",
        description="Check the data and the parameters as the stack's launcher will, then "
        "upload data.npz and parameters.json to runs/RUN_ID/ in the stack's bucket: that upload "
        "starts the run (S3 -> EventBridge -> LaunchLambda). Follow it with `lnn status RUN_ID "
        "--follow`.",
    )
    add_run_options(start)

    status = commands.add_parser(
        "status",
        help="a run's progress, from DynamoDB",
        description="One line: the run's status, epoch, step, cost, time elapsed and, while it "
        "runs, an estimate of the time left. Exit status 0 while running or succeeded, 1 "
        "otherwise.",
    )
    status.add_argument("run_id", help="the run (`lnn runs` lists them)")
    status.add_argument(
        "--follow",
        action="store_true",
        help="keep reading until the run ends (a progress bar; a plain line every few seconds without a terminal)",
    )

    results = commands.add_parser(
        "results",
        help="a run's per-epoch costs (and weights)",
        description="A run's epochs: the training cost of each, the test set's cost and "
        "accuracy (or RMSE) where it was evaluated (--eval-every), and the final figures; as "
        "a table, CSV or a PNG plot.",
    )
    results.add_argument("run_id", help="the run (`lnn runs` lists them)")
    results.add_argument(
        "--plot", metavar="FILE.png", help="also write the cost curves to this PNG file (default: none)"
    )
    results.add_argument("--csv", action="store_true", help="print the epochs as CSV instead of a table")
    results.add_argument("--weights", action="store_true", help="also print the trained weights")

    commands.add_parser(
        "runs",
        help="list the runs and their status",
        description="The stack's runs, oldest first: status, epoch, cost, when created, granularity.",
    )

    for name, text, description in (
        (
            "stop",
            "stop a run at its next step boundary; it keeps its model and can be resumed",
            "Ask a running run to stop: the step in flight finishes, then the run ends with status stopped, keeping "
            "the model of its last committed epoch; `lnn resume` continues it.",
        ),
        (
            "resume",
            "continue a stopped run, or re-send a stalled run's next step",
            "Continue a stopped run from its last committed step, to the same result as an uninterrupted run; on a "
            "running run, re-send its next step (e.g. after an invocation was lost; harmless: a copy of a step that is "
            "alive is dropped; the watchdog does this by itself for a stalled run).",
        ),
    ):
        command = commands.add_parser(name, help=text, description=description)
        command.add_argument("run_id", help="the run (`lnn runs` lists them)")

    predict = commands.add_parser(
        "predict",
        help="predict with a run's trained model.npz, or a model file",
        description="Predict the class (and its probability) or the value of each example "
        "with a run's model: on this machine from its model.npz, or with --remote by the "
        "stack's PredictLambda; or, without a stack, from a model file (--model).",
    )
    predict.add_argument(
        "run_id", nargs="?", help="the run whose model predicts (`lnn runs` lists them); leave it out with --model"
    )
    predict.add_argument(
        "--model",
        metavar="FILE.npz",
        help="a model file instead of a run (e.g. out/local/model.npz "
        "from `lnn local`); needs no stack (default: none, the run's model)",
    )
    predict_input = predict.add_mutually_exclusive_group(required=True)
    predict_input.add_argument(
        "--image",
        nargs="+",
        metavar="FILE",
        help="images (.jpg, .png, ...) for a model trained "
        "on images: resized to its example_shape, scaled by 1/255 as at training",
    )
    predict_input.add_argument(
        "--data",
        help="an .npz with X (and optionally y, to report accuracy, or RMSE "
        "and R² for a regression model); or LNN's HDF5 or a CSV",
    )
    add_label_column(predict)
    predict.add_argument(
        "--csv",
        action="store_true",
        help="print one prediction per row as CSV, with a probability "
        "column per class (p_<class>; for a sigmoid output, of the second class)",
    )
    predict.add_argument(
        "--remote",
        action="store_true",
        help="ask the stack's PredictLambda (a synchronous invoke) "
        "instead of computing on this machine from model.npz; the numbers are the same",
    )

    serve = commands.add_parser(
        "serve",
        help="a web page on 127.0.0.1: the runs, their live cost curves, final metrics, predictions",
        description="Serve a page on 127.0.0.1 (only) that shows the stack's runs and their "
        "status, a run's cost curve while it trains, its final metrics, and a form to predict "
        "with its model from an uploaded image or a pasted row. Ctrl-C stops it.",
    )
    serve.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"the port on 127.0.0.1 (default {DEFAULT_PORT}; 0: any free port)",
    )

    convert = commands.add_parser(
        "convert",
        help="convert LNN's HDF5 or a CSV to the .npz the stack reads (to upload it yourself)",
        description=f"Convert a data file ({FORMATS}) to an .npz with X, y (and X_test, "
        "y_test, classes, example_shape when the file has them), checked as `lnn start` checks it.",
    )
    convert.add_argument("input", help="the data file: LNN's HDF5, a CSV or an .npz")
    convert.add_argument("output", help="the .npz to write")
    add_label_column(convert)

    for command in commands.choices.values():
        if command.prog.split()[-1] not in ("local", "convert", "sweep"):
            command.add_argument(
                "--stack", default=DEFAULT_STACK, help=f"the deployed stack's name (default {DEFAULT_STACK})"
            )
    for name in ("status", "results", "runs"):
        commands.choices[name].add_argument(
            "--prices",
            choices=sorted(PRICE_TABLES),
            default=DEFAULT_PRICES,
            help=f"the price table of the AWS cost estimate (default {DEFAULT_PRICES})",
        )
    add_up_down(commands)
    add_sweep(commands)
    return parser


def add_sweep_options(parser: argparse.ArgumentParser) -> None:
    """What a sweep varies (besides a sweep file) and how many of its trials run at once."""
    parser.add_argument(
        "--vary",
        action="append",
        default=[],
        metavar="NAME=VALUES",
        help="a parameter to vary: a list NAME=a,b,c (a grid axis) or a range NAME=LOW:HIGH[:log] "
        "(drawn in a random search; needs --trials); repeatable, over the sweep file's parameters (default: none)",
    )
    parser.add_argument(
        "--trials",
        type=positive_int,
        help="a random search of N trials (default: the sweep file's trials; without, a grid of every combination)",
    )
    parser.add_argument(
        "--seeds",
        help="repeat every configuration with each of these training seeds, e.g. 1,2,3 "
        "(default: the sweep file's seeds, else once)",
    )
    parser.add_argument(
        "--parallel",
        type=positive_int,
        help="at most this many trials at once (default: as many as "
        "the stack's max_running_runs and the trainer's reserved concurrency allow)",
    )


def add_sweep(commands) -> None:
    """`lnn sweep start|status|results` (lnn_cli/sweeps/)."""
    sweep = commands.add_parser(
        "sweep",
        help="many runs of one network with varied parameters: start one, see its "
        "trials ranked, its best model and what it cost",
        description="A sweep is a grid or a random search of runs (its trials) on a deployed "
        "stack or `lnn up`; each trial is a normal run named SWEEP-tNNN. A sweep file "
        "(JSON or YAML) holds base, parameters (per parameter a list or a {low, high, scale} "
        "range), trials, search_seed, seeds and name; see docs/sweeps.md.",
    )
    actions = sweep.add_subparsers(dest="sweep_command", required=True, parser_class=OneLineParser)
    start = actions.add_parser(
        "start",
        help="check every trial, record the sweep, start what fits; the stack starts the rest",
        description="Check every trial as `lnn start` checks a run (nothing starts when one is "
        "bad), record the sweep at runs/SWEEP/sweep.json, start the trials that fit the limits "
        "now, and return: the stack (its watchdog) starts the queued trials as places free up, "
        "applies successive halving and sends the sweep's message at its end. Starting the same "
        "sweep again starts only the trials that have no run yet.",
    )
    start.add_argument("sweep_file", nargs="?", help="the sweep file, JSON or YAML (default: none; give --vary)")
    add_run_options(start)
    add_sweep_options(start)
    for name, text in (
        ("status", "the trials ranked, the sweep's time and cost; starts queued trials that fit now"),
        ("results", "the trials ranked, as a table, CSV or overlaid cost curves"),
    ):
        action = actions.add_parser(
            name,
            help=text,
            description=f"A sweep's {text}: trial, the parameters that vary, "
            "status, epochs, cost, validation and test metrics, AWS dollars and warnings (a "
            "collapsed model marked), best first; the best trial's model is the sweep's.",
        )
        action.add_argument("sweep_id", help="the sweep's name")
        action.add_argument(
            "--prices",
            choices=sorted(PRICE_TABLES),
            default=DEFAULT_PRICES,
            help=f"the price table of the AWS cost estimate (default {DEFAULT_PRICES})",
        )
        action.add_argument("--csv", action="store_true", help="print the trials as CSV instead of a table")
        action.add_argument(
            "--plot", metavar="FILE.png", help="also write every trial's cost curve to this PNG file (default: none)"
        )
    for action in actions.choices.values():
        action.add_argument(
            "--stack", default=DEFAULT_STACK, help=f"the deployed stack's name (default {DEFAULT_STACK})"
        )


def add_up_down(commands) -> None:
    """`lnn up` / `lnn down`: a local stack that stays up (lnn_cli/cloud/up/command.py)."""
    up = commands.add_parser(
        "up",
        help="start a local stack (moto + cdk deploy + a background Lambda runtime) that "
        "stays up for start, status, results, runs, stop, resume, predict",
        description="Start a moto server, deploy the stack onto it with cdk deploy, and keep a "
        "background process running the stack's Lambda invokes, S3 -> EventBridge events and "
        "schedules; prints the environment to paste. `lnn down` stops it.",
    )
    up.add_argument(
        "--state-dir",
        default=DEFAULT_STATE_DIR,
        help=f"where the pid, port and logs live (default {DEFAULT_STATE_DIR})",
    )
    up.add_argument("--port", type=int, help="the endpoint's port on localhost (default: a free one)")
    up.add_argument(
        "--stack", default=DEFAULT_STACK, help=f"the stack to deploy from the CDK app (default {DEFAULT_STACK})"
    )
    add_context_option(up)
    add_runtime_options(up)
    down = commands.add_parser(
        "down",
        help="stop the local stack of `lnn up`",
        description="Stop the background process of `lnn up` (its logs stay in the state "
        "directory). Without --state-dir and none up in ./.lnn, it stops the one local stack "
        "this user has up elsewhere, or names them when there are several.",
    )
    down.add_argument(
        "--state-dir", default=DEFAULT_STATE_DIR, help=f"the state directory of `lnn up` (default {DEFAULT_STATE_DIR})"
    )


def installed_version() -> str:
    """The version in the package's metadata (pyproject.toml's, once installed)."""
    try:
        return importlib.metadata.version("lnn")
    except importlib.metadata.PackageNotFoundError:
        return "(not installed: run `pip install -e .`)"


def flags(args) -> dict:
    """The training flags as parameters.json keys (None: not given)."""
    values = {}
    for row in TABLE:
        if row.flag:
            value = getattr(args, row.name)
            if value is not None and row.kind in (COUNTS, NAMES):
                value = comma_list(value, name=row.name, whole_numbers=row.kind == COUNTS)
            values[row.name] = value
    return values


def command_convert(args, console: Console) -> int:
    """`lnn convert IN OUT.npz`: the .npz `lnn start` would upload, written to OUT.npz (nothing written for a bad
    file)."""
    output = Path(args.output)
    if output.suffix.lower() != ".npz":
        raise LnnInputError(f"the output {output} must be an .npz file (e.g. {output.with_suffix('.npz').name})")
    data, checked = read_data(args.input, label_column=args.label_column)
    try:
        output.write_bytes(data)
    except OSError as error:
        raise LnnInputError(f"{output} cannot be written ({error.strerror}); choose another path") from None
    test = f", {checked.X_test.shape[0]} test examples" if checked.X_test is not None else ""
    classes = f", classes {', '.join(checked.classes)}" if checked.classes else ""
    shape = f", example shape {'x'.join(map(str, checked.example_shape))}" if checked.example_shape else ""
    console.print(
        f"wrote {output}: {checked.X.shape[0]} examples x {checked.features} features{test}{classes}{shape}",
        markup=False,
        highlight=False,
    )
    return 0


def dispatch(args, console: Console) -> int:
    if args.command == "local" and (args.sweep_file or args.vary or args.seeds):
        from lnn_cli.sweeps.local import command_local_sweep

        return command_local_sweep(args, flags(args), console)
    if args.command == "local":
        return command_local(args, run_parameters({}, args.config, flags(args)), console)
    if args.command == "convert":
        return command_convert(args, console)
    if args.command in ("up", "down"):
        return (command_up if args.command == "up" else command_down)(args, console)
    if args.command == "predict" and (args.model or not args.run_id):
        return command_predict_model(args, console)  # a model file: no stack
    with aws_errors_explained(args.stack):
        stack = stack_commands.open_stack(boto3.Session(), args.stack)
        if args.command == "serve":
            from lnn_cli.web.app import (
                command_serve,  # Flask is imported only for `lnn serve`
            )

            return command_serve(args, stack, console)
        if args.command == "start":
            return stack_commands.command_start(args, run_parameters({}, args.config, flags(args)), stack, console)
        if args.command == "sweep":
            if args.sweep_command == "start":
                return sweeps.command_sweep_start(args, flags(args), stack, console)
            return sweeps.command_sweep_status(args, stack, console)
        if args.command == "predict":
            args.run_id = sweeps.model_run_id(stack, args.run_id)  # a sweep's model is its best trial's
        command = {
            "status": stack_commands.command_status,
            "results": stack_commands.command_results,
            "runs": stack_commands.command_runs,
            "stop": stack_commands.command_stop,
            "resume": stack_commands.command_resume,
            "predict": stack_commands.command_predict,
        }[args.command]
        return command(args, stack, console)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    try:
        return dispatch(args, console)
    except LnnInputError as error:
        print(f"lnn: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except DeployError as error:
        print(f"lnn: error: {error}", file=sys.stderr)
        return 1
    except (BotoCoreError, ClientError) as error:  # not one a person can fix (those are LnnInputErrors): still one line
        print(f"lnn: error: AWS failed: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lnn: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
