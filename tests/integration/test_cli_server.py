"""The `lnn` command end to end against moto servers with the stack deployed by the real `cdk deploy`.

moto cannot run Lambda code, so after `lnn start` the test delivers the launcher's EventBridge event, and the
trainer's self-invocations, through the local runtime; the commands then read the real state in the emulator.
"""

import csv
import io
import json
import re
from pathlib import Path

import numpy as np
import pytest

from lnn_cli.cloud.local import drive, local_runtime
from lnn_cli.inputs import DEMO_DATA
from lnn_cli.main import main
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.ml import training

SMALL = ["--epochs", "3", "--neurons", "4,1", "--activations", "relu,sigmoid", "--learning-rate", "0.3", "--seed", "2"]


def uploaded_event(bucket: str, key: str) -> dict:
    """The EventBridge event S3 sends for an upload (what triggers the launcher in AWS)."""
    return {
        "version": "0",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "region": "us-east-1",
        "detail": {"bucket": {"name": bucket}, "object": {"key": key}},
    }


def started_run(deployed, capsys, name, *extra) -> tuple[str, object]:
    """`lnn start`, then the launcher's delivery; returns the run id and the runtime holding the chain."""
    emulator, outputs = deployed
    assert main(["start", "--name", name, *SMALL, *extra]) == 0
    shown = capsys.readouterr().out
    assert name in shown and "network: neurons 4,1, activations relu,sigmoid, init lecun, seed 2\n" in shown  # sent
    session = emulator.session()
    keys = {
        o["Key"]
        for o in session.client("s3").list_objects_v2(Bucket=outputs.bucket, Prefix=f"runs/{name}/")["Contents"]
    }
    assert keys == {f"runs/{name}/data.npz", f"runs/{name}/parameters.json"}
    runtime = local_runtime(session, outputs, log_stream=io.StringIO())
    answer = runtime.invoke("launcher", uploaded_event(outputs.bucket, f"runs/{name}/parameters.json"))
    assert answer == {"run_id": name, "status": "running"}
    return name, runtime


def table_of(deployed) -> RunTable:
    emulator, outputs = deployed
    return RunTable(emulator.session().resource("dynamodb").Table(outputs.table), IoCounter())


def test_start_status_results_runs_predict(deployed, capsys, tmp_path):
    run_id, runtime = started_run(deployed, capsys, "cli-run")
    assert main(["status", run_id]) == 0
    assert "running" in capsys.readouterr().out
    table = table_of(deployed)
    drive(runtime, table, run_id)
    assert table.get_run(run_id)["status"] == "succeeded"

    assert main(["status", run_id, "--follow"]) == 0  # returns at once: the run has ended
    shown = capsys.readouterr().out
    assert f"run {run_id}: succeeded, epoch 3/3" in shown
    assert "AWS cost: $" in shown and "Lambda GB-s" in shown and "locally measured usage" in shown

    assert main(["results", run_id, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    items = table.list_epochs(run_id)
    assert [int(row["epoch"]) for row in rows] == [1, 2, 3]
    assert [float(row["cost"]) for row in rows] == [item["cost"] for item in items]

    plot = tmp_path / "costs.png"
    assert main(["results", run_id, "--plot", str(plot), "--weights"]) == 0
    shown = capsys.readouterr().out
    assert plot.read_bytes().startswith(b"\x89PNG") and "W1 (4, 30)" in shown and "train accuracy" in shown

    assert main(["runs", "--prices", "eu-west-1-arm64"]) == 0
    listing = capsys.readouterr().out
    assert run_id in listing and "succeeded" in listing and "AWS $" in listing and "eu-west-1 arm64" in listing

    assert main(["predict", run_id, "--data", str(DEMO_DATA)]) == 0
    predicted = capsys.readouterr().out
    assert "455 predictions" in predicted and "accuracy against the file's labels" in predicted
    assert main(["predict", run_id, "--data", str(DEMO_DATA), "--csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    assert len(rows) == 455 + 1 and rows[0] == "row,prediction,p_1"  # the probability of class 1

    assert main(["stop", run_id]) == 2  # it has ended: nothing to stop
    assert "not running" in capsys.readouterr().err
    assert main(["start", "--name", run_id, *SMALL]) == 2
    assert "already exists" in capsys.readouterr().err


def test_stop_then_resume(deployed, capsys):
    table = table_of(deployed)
    run_id, runtime = started_run(deployed, capsys, "cli-stop")
    runtime.run(until=lambda: len(runtime.deliveries) >= 4)
    assert main(["stop", run_id]) == 0
    assert "asked run cli-stop to stop" in capsys.readouterr().out
    drive(runtime, table, run_id)
    assert table.get_run(run_id)["status"] == "stopped"

    run_id, lost = started_run(deployed, capsys, "cli-resume")
    before = table.get_run(run_id)
    assert lost.pending == 1  # step 1 was sent to the local runtime; dropping that runtime loses it
    assert main(["resume", run_id]) == 0  # re-sends step 1 with Lambda's Invoke (moto accepts, cannot run it)
    assert "re-sent step 1" in capsys.readouterr().out
    after = table.get_run(run_id)
    assert after["resumes"] == before["resumes"] and after["status"] == "running"  # not a stall: always harmless
    assert main(["resume", "no-such-run"]) == 2
    assert "no run named 'no-such-run'" in capsys.readouterr().err


def test_a_stopped_run_keeps_its_model_predicts_from_it_and_continues(deployed, capsys):
    table = table_of(deployed)
    run_id, runtime = started_run(deployed, capsys, "cli-pause", "--granularity", "epoch")
    runtime.run(until=lambda: table.get_run(run_id)["progress_epoch"] >= 1)
    assert main(["stop", run_id]) == 0
    drive(runtime, table, run_id)
    stopped = table.get_run(run_id)
    epoch = stopped["model_epoch"]
    assert stopped["status"] == "stopped" and epoch == stopped["progress_epoch"] >= 1
    capsys.readouterr()
    assert main(["results", run_id]) == 0
    assert f"model from epoch {epoch}: s3://" in " ".join(capsys.readouterr().out.split())
    assert main(["predict", run_id, "--data", str(DEMO_DATA)]) == 0
    assert f"455 predictions with the model of run {run_id} from epoch {epoch}" in " ".join(
        capsys.readouterr().out.split()
    )

    assert main(["resume", run_id]) == 0
    assert f"continued stopped run {run_id} from step {stopped['committed_step'] + 1}" in capsys.readouterr().out
    drive(runtime, table, run_id)
    run = table.get_run(run_id)
    assert run["status"] == "succeeded" and run["model_epoch"] == 3 and run["continuations"] == 1


# make slow: its own emulator and cdk deploy (half a minute); the deploy (the `deployed` fixture), run_local and the
# files it writes (tests/integration/test_local_runtime.py) are tested on their own in make test
@pytest.mark.slow
def test_lnn_local_end_to_end(tmp_path, capsys):
    """`lnn local` starts its own emulator, deploys with cdk, trains and writes its three files."""
    out = tmp_path / "out"
    assert main(["local", "--out", str(out), *SMALL, "-c", "memory_size=1769", "-c", "reserved_concurrency=40"]) == 0
    shown = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert results["status"] == "succeeded" and results["epochs"] == 3 and len(results["costs"]) == 3
    demo = np.load(DEMO_DATA)
    _, costs = training.train_reference(
        demo["X"].astype(float),
        demo["y"].astype(float),
        neurons=[4, 1],  # init: the
        activations=["relu", "sigmoid"],
        learning_rate=0.3,
        epochs=3,
        seed=2,
        init="lecun",
    )  # stack's default
    assert results["costs"] == costs
    assert {"dynamodb", "s3", "sns"} <= set(results["aws_requests"]) and results["s3_bytes_out"] > 0
    # the usage the deliveries recorded in the run record is what the local runtime counted for them
    cost = results["aws_cost"]
    assert cost["requests"] == {"lambda": 0, **results["aws_requests"]} and cost["deliveries"] == results["deliveries"]
    assert cost["s3_bytes"] == results["s3_bytes_in"] + results["s3_bytes_out"] and cost["dollars"] > 0
    assert "AWS cost" in shown and "locally measured usage" in shown
    assert results["test_accuracy"] is not None and results["invocations"] == 3 * 5 + 1
    with np.load(out / "model.npz") as model:
        assert model["W1"].shape == (4, 30) and model["W2"].shape == (1, 4)
    assert Path(out / "cost.png").read_bytes().startswith(b"\x89PNG")
    assert (
        "SNS message received: LNN run" in shown
        and "attributes: status=succeeded" in shown
        and "deployed LnnStack with cdk deploy" in shown
    )
    # the configuration the launcher recorded, after the stack's defaults
    assert "network: neurons 4,1, activations relu,sigmoid, init lecun, seed 2\n" in shown
    assert (
        "training: epochs 3, learning_rate 0.3, optimizer gd, granularity layer\n" in shown and "options:" not in shown
    )
    assert "-c memory_size=1769 -c reserved_concurrency=40" in (out / "deploy.log").read_text()  # the deploy's context
    # not a terminal: plain progress lines, not rich's bar (which prints nothing until the end)
    assert "deploying the stack (cdk synth, bootstrap, deploy)..." in shown
    assert re.search(r"^\S+ (running|succeeded): epoch \d/3, cost ", shown, flags=re.MULTILINE), shown

    # the model file it left predicts without any stack, as the run's model would
    assert main(["predict", "--model", str(out / "model.npz"), "--data", str(DEMO_DATA)]) == 0
    predicted = " ".join(capsys.readouterr().out.split())
    assert f"455 predictions with the model {out / 'model.npz'}" in predicted
    train_accuracy = f"{results['train_accuracy']:.1%}"
    assert f"accuracy against the file's labels: {train_accuracy}" in predicted
