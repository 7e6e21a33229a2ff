"""Sweeps and runs share the bucket's runs/<name>/ (and the table's run ids): `lnn sweep start --name X` refuses a
run X and a run of a trial's id that is not this sweep's trial; a repeated start of the same sweep, whose trials
run, is fine; `lnn start --name X` refuses a sweep X and a trial id of the sweep X. Each refusal writes nothing."""

import io
from argparse import Namespace

import pytest
from rich.console import Console

from lnn_cli import run_commands
from lnn_cli.sweeps.record import SweepStore
from lnn_core.errors import LnnInputError
from lnn_core.handlers import build_launcher
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.support.arrays import npz_bytes
from tests.support.sweeps import SWEEP_TRIAL, cli_stack, start_sweep

BASE = {"epochs": 3, **SWEEP_TRIAL}


def keys(aws) -> set[str]:
    return {item["Key"] for item in aws.s3.list_objects_v2(Bucket=aws.bucket).get("Contents", [])}


def sweep_start(aws, tmp_path, name: str) -> int:
    X, y = blobs(40, features=3)
    return start_sweep(tmp_path, cli_stack(aws), name, {"base": BASE, "seeds": [1, 2]}, npz_bytes(X=X, y=y), parallel=1)


def run_start(aws, tmp_path, name: str) -> int:
    data_path = tmp_path / "run.npz"
    X, y = blobs(40, features=3)
    data_path.write_bytes(npz_bytes(X=X, y=y))
    args = Namespace(name=name, data=str(data_path), label_column=None)
    return run_commands.command_start(args, {**BASE, "seed": 1}, cli_stack(aws), Console(file=io.StringIO()))


def launch(aws, run_id: str, parameters: dict) -> None:
    X, y = blobs(40, features=3)
    aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
    launcher = build_launcher(session=aws.session, invoker=QueueInvoker(), clock=FakeClock())
    assert launcher.handle({"run_id": run_id, "parameters": parameters})["status"] == "running"


def test_a_sweep_named_as_a_run_is_refused_and_writes_nothing(aws, tmp_path):
    launch(aws, "exp", {**BASE, "seed": 1})
    before = keys(aws)
    with pytest.raises(LnnInputError, match=r"^a run named exp exists; a sweep cannot share a run's name"):
        sweep_start(aws, tmp_path, "exp")
    assert keys(aws) == before


def test_a_sweep_whose_trial_id_is_another_run_is_refused_and_a_repeated_start_is_not(aws, tmp_path):
    launch(aws, "exp-t002", {**BASE, "seed": 9})
    before = keys(aws)
    with pytest.raises(LnnInputError, match=r"^a run named exp-t002 exists and is not a trial of sweep exp"):
        sweep_start(aws, tmp_path, "exp")
    assert keys(aws) == before

    assert sweep_start(aws, tmp_path, "mine") == 0  # its trial 1 starts (parallel 1)
    launch(aws, "mine-t001", {**BASE, "seed": 1, "sweep": "mine"})  # the launcher ran it
    assert sweep_start(aws, tmp_path, "mine") == 0  # the same sweep again: its own trial's run is no clash
    assert SweepStore(aws.s3, aws.bucket).read("mine").run_ids == ["mine-t001", "mine-t002"]


def test_a_run_named_as_a_sweep_or_one_of_its_trials_is_refused_and_writes_nothing(aws, tmp_path):
    assert sweep_start(aws, tmp_path, "sw") == 0
    before = keys(aws)
    with pytest.raises(LnnInputError, match=r"^a sweep named sw exists; a run cannot share a sweep's name"):
        run_start(aws, tmp_path, "sw")
    with pytest.raises(LnnInputError, match=r"^sw-t002 is the id of a trial of sweep sw; a run cannot take it"):
        run_start(aws, tmp_path, "sw-t002")
    assert keys(aws) == before
    assert run_start(aws, tmp_path, "sw-t2x") == 0  # not a trial's id: a run like any other
    assert "runs/sw-t2x/parameters.json" in keys(aws)
