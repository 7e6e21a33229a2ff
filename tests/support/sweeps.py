"""Sweeps for tests: the trial parameters the sweep tests share, a sweep as `lnn sweep start` records it, and
`lnn sweep start` itself on the `aws` backend (moto) with what the CLI uses of a deployed stack."""

import io
import json
from argparse import Namespace
from types import SimpleNamespace

from rich.console import Console

from lnn_cli.sweeps import commands
from lnn_cli.sweeps.record import SweepStore
from lnn_cli.sweeps.spec import parse_spec
from lnn_core.handlers import build_watchdog
from lnn_core.launch.launcher import LaunchLimits
from lnn_core.sweep.record import SweepRecord
from tests.conftest import FakeClock, QueueInvoker

# The sweep tests' trials: a 3-1 tanh network, one step an epoch, quick on 40 examples of 3 features. Each file
# adds its epochs first, then its validation.
SWEEP_TRIAL = {"learning_rate": 0.3, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "granularity": "epoch"}


def record_sweep(s3, bucket: str, sweep_id: str, content: dict, data: bytes, parallel: int | None) -> SweepRecord:
    """What `lnn sweep start` leaves behind: the record, the data, the active mark (no pass of the controller)."""
    spec = parse_spec(content, source="s.json")
    store = SweepStore(s3, bucket)
    record, created = store.create(SweepRecord.new(sweep_id, spec, spec.generate(sweep_id), data, parallel), data)
    assert created
    store.mark_active(sweep_id)
    return record


def cli_stack(aws, watchdog=None):
    """What the CLI's commands use of a deployed stack, on the `aws` backend: the ports are `watchdog`'s (by default
    a new watchdog's, whose invokes are queued and never delivered)."""
    if watchdog is None:
        watchdog = build_watchdog(
            session=aws.session, invoker=QueueInvoker(), clock=FakeClock(), functions={"launcher": QueueInvoker()}
        )
    return SimpleNamespace(
        launch_limits=LaunchLimits,
        launch_defaults=dict,
        session=aws.session,
        outputs=SimpleNamespace(bucket=aws.bucket, stack_name="lnn-test"),
        ports=watchdog.ports,
    )


def start_args(sweep_file, data, *, name: str, parallel: int | None) -> Namespace:
    """The arguments of `lnn sweep start SWEEP_FILE --data DATA --name NAME --parallel PARALLEL`, as parsed."""
    return Namespace(
        sweep_file=str(sweep_file),
        vary=[],
        seeds=None,
        trials=None,
        config=None,
        name=name,
        data=str(data),
        label_column=None,
        parallel=parallel,
    )


def start_sweep(tmp_path, stack, name: str, content: dict, data: bytes, *, parallel: int) -> int:
    """`lnn sweep start --name <name> --parallel <parallel>` of a sweep file holding `content`, on `data` (an .npz's
    bytes), written in `tmp_path`."""
    sweep_file, data_path = tmp_path / "sweep.json", tmp_path / "data.npz"
    sweep_file.write_text(json.dumps(content))
    data_path.write_bytes(data)
    args = start_args(sweep_file, data_path, name=name, parallel=parallel)
    return commands.command_sweep_start(args, {}, stack, Console(file=io.StringIO()))
