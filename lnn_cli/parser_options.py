"""The flags several of `lnn`'s subcommands share, their types, and the parser whose usage error is one line."""

import argparse
import os

from lnn_cli.cloud.stack import DEFAULT_STACK
from lnn_cli.inputs import DEMO_CONFIG, DEMO_DATA, PROJECT_DIR
from lnn_core.aws.pricing import DEFAULT_PRICES, PRICE_TABLES
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


def add_stack_option(parser: argparse.ArgumentParser, *, deploys: bool = False) -> None:
    """--stack: the deployed stack's name, or (`deploys`) the stack the command deploys from the CDK app."""
    what = "the stack to deploy from the CDK app" if deploys else "the deployed stack's name"
    parser.add_argument("--stack", default=DEFAULT_STACK, help=f"{what} (default {DEFAULT_STACK})")


def add_prices_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--prices",
        choices=sorted(PRICE_TABLES),
        default=DEFAULT_PRICES,
        help=f"the price table of the AWS cost estimate (default {DEFAULT_PRICES})",
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
