"""The `lnn` command. A problem a person can fix exits with status 2 and one line that says what to do."""

import sys
from pathlib import Path

import boto3
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console

from lnn_cli import deployed_stack, predict_command, run_commands
from lnn_cli.cloud.deploy import DeployError
from lnn_cli.cloud.stack import aws_errors_explained
from lnn_cli.cloud.up.command import command_down, command_up
from lnn_cli.inputs import comma_list, read_data, run_parameters
from lnn_cli.local_command import command_local
from lnn_cli.model_file import command_predict_model
from lnn_cli.parser import build_parser
from lnn_cli.parser_options import USAGE_ERROR
from lnn_cli.sweeps import commands as sweeps
from lnn_core.errors import LnnInputError
from lnn_core.ml.parameters import COUNTS, NAMES, TABLE


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
    data, checked = read_data(args.input, label_column=args.label_column, argument="lnn convert IN OUT.npz")
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
        stack = deployed_stack.open_stack(boto3.Session(), args.stack)
        if args.command == "serve":
            from lnn_cli.web.app import (
                command_serve,  # Flask is imported only for `lnn serve`
            )

            return command_serve(args, stack, console)
        if args.command == "start":
            return run_commands.command_start(args, run_parameters({}, args.config, flags(args)), stack, console)
        if args.command == "sweep":
            if args.sweep_command == "start":
                return sweeps.command_sweep_start(args, flags(args), stack, console)
            return sweeps.command_sweep_status(args, stack, console)
        if args.command == "predict":
            args.run_id = sweeps.model_run_id(stack, args.run_id)  # a sweep's model is its best trial's
        command = {
            "status": run_commands.command_status,
            "results": run_commands.command_results,
            "runs": run_commands.command_runs,
            "stop": run_commands.command_stop,
            "resume": run_commands.command_resume,
            "predict": predict_command.command_predict,
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
        # The Ctrl-C also ended the CDK's jsii node child (lnn local and lnn up import the CDK to read -c): the exit
        # hook that closes its pipe would print a traceback after this line.
        sys.unraisablehook = lambda unraisable: None
        return 130


if __name__ == "__main__":
    sys.exit(main())
