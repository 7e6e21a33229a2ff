"""The `lnn` command's argument parser: every subcommand, its flags and its help."""

import importlib.metadata

from lnn_cli.cloud.up.command import DEFAULT_STATE_DIR
from lnn_cli.datafiles import FORMATS
from lnn_cli.inputs import DEMO_CONFIG, PROJECT_DIR
from lnn_cli.parser_options import (
    OneLineParser,
    add_context_option,
    add_label_column,
    add_prices_option,
    add_run_options,
    add_runtime_options,
    add_stack_option,
    add_sweep_options,
    port_number,
)
from lnn_cli.web import DEFAULT_PORT

RUN_ID_HELP = "the run (`lnn runs` lists them)"


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
    add_stack_option(local, deploys=True)
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
    status.add_argument("run_id", help=RUN_ID_HELP)
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
    results.add_argument("run_id", help=RUN_ID_HELP)
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
        command.add_argument("run_id", help=RUN_ID_HELP)

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
            add_stack_option(command)
    for name in ("status", "results", "runs"):
        add_prices_option(commands.choices[name])
    add_up_down(commands)
    add_sweep(commands)
    return parser


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
        add_prices_option(action)
        action.add_argument("--csv", action="store_true", help="print the trials as CSV instead of a table")
        action.add_argument(
            "--plot", metavar="FILE.png", help="also write every trial's cost curve to this PNG file (default: none)"
        )
    for action in actions.choices.values():
        add_stack_option(action)


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
    add_stack_option(up, deploys=True)
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
