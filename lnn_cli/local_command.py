"""`lnn local`: validate, start the emulator, deploy the stack with the CDK, train through the local runtime, report."""

import time
from pathlib import Path

from rich.console import Console

from lnn_cli.cloud.chaos import ChaosPlan
from lnn_cli.cloud.deploy import deploy_to_emulator
from lnn_cli.cloud.deploy_context import deploy_context
from lnn_cli.cloud.emulator import running_emulator
from lnn_cli.cloud.local import new_run_id, run_local
from lnn_cli.inputs import validate_run
from lnn_cli.presentation.configuration import show_configuration
from lnn_cli.presentation.progress import RunProgress, run_progress, waiting
from lnn_cli.presentation.report import show_notification, summary_table, write_outputs
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import LnnInputError
from lnn_core.ml.config import check_run_id
from lnn_core.ml.parameters import STAYING_WORKERS


def prepare_out_dir(path: str) -> Path:
    out_dir = Path(path)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / ".lnn-write-check").touch()
        (out_dir / ".lnn-write-check").unlink()
    except OSError as error:
        raise LnnInputError(f"--out {out_dir} cannot be written ({error.strerror}); choose another directory") from None
    return out_dir


def command_local(args, parameters: dict, console: Console) -> int:
    context = deploy_context(args.context, command="lnn local")
    limits = context.limits
    inputs = validate_run(
        parameters,
        args.data,
        defaults=context.training_defaults,
        trainer_memory_mb=limits.trainer_memory_mb,
        launcher_memory_mb=limits.launcher_memory_mb,
        label_column=args.label_column,
        in_parts=True,
    )
    limits.check_workers(inputs.config.workers, fix="rerun with -c reserved_concurrency={workers} or more")
    if inputs.config.reduce == STAYING_WORKERS and args.concurrency < inputs.config.workers:
        raise LnnInputError(
            f"reduce workers needs its {inputs.config.workers} workers running at once, and --concurrency "
            f"{args.concurrency} runs {args.concurrency} trainer delivery(ies) at a time; rerun with --concurrency "
            f"{inputs.config.workers + 1} (room for a retry beside them), or with reduce slices"
        )
    chaos = ChaosPlan.parse(args.chaos) if args.chaos else None
    run_id = check_run_id(args.name) if args.name else new_run_id()
    out_dir = prepare_out_dir(args.out)  # everything above only reads: a bad input has created nothing
    started = time.monotonic()
    config = inputs.config
    console.print(
        f"LNN local run [bold]{run_id}[/]: {inputs.training_data.X.shape[0]} examples x "
        f"{inputs.training_data.features} features, network {'-'.join(map(str, config.neurons))} "
        f"({','.join(config.activations)}), {config.epochs} epochs, "
        f"granularity {config.granularity}, {args.concurrency} container(s) per function of {args.container_cpus} "
        f"BLAS thread(s)" + (f", chaos {args.chaos}" if chaos else "")
    )
    with running_emulator(out_dir / "emulator.log") as emulator:
        console.print(f"  emulator: moto server at {emulator.endpoint_url} ({emulator.started_seconds:.1f} s)")
        with waiting(console, "deploying the stack (cdk synth, bootstrap, deploy)..."):
            deployment = deploy_to_emulator(
                emulator, out_dir / "deploy.log", stack_name=args.stack, context=context.pairs
            )
        phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in deployment.seconds.items())
        console.print(f"  deployed {args.stack} with {deployment.method} ({phases})")
        for note in deployment.notes:
            console.print(f"  note: {note}")
        session = emulator.session()
        table = RunTable(session.resource("dynamodb").Table(deployment.outputs.table), IoCounter())
        with run_progress(console) as progress, open(out_dir / "lambda.log", "w") as log:
            bar = RunProgress(progress, lambda: table.get_run(run_id), epochs=config.epochs, label=run_id)
            result = run_local(
                session,
                deployment.outputs,
                inputs.parameters,
                inputs.data,
                run_id=run_id,
                chaos=chaos,
                log_stream=log,
                on_delivery=bar.poll,
                concurrency=args.concurrency,
                container_cpus=args.container_cpus,
                parts=inputs.parts,
                on_launch=lambda run: show_configuration(
                    progress.console, run["config"], seed_drawn=run.get("seed_drawn")
                ),
            )
            bar.show(result.run)
    results = result.results()
    written = write_outputs(out_dir, results, result.model)
    for notification in result.notifications:
        show_notification(console, notification)
    if not result.notifications:
        console.print("[yellow]no SNS message was received[/]")
    console.print(summary_table(results))
    console.print(
        f"wrote {', '.join(str(path) for path in written)}; logs in {out_dir} (lambda.log, deploy.log, emulator.log)"
    )
    console.print(f"wall time {time.monotonic() - started:.1f} s (emulator, deploy and training)")
    return 0 if result.status == "succeeded" else 1
