"""`lnn up` / `lnn down` end to end, as a user drives them: `lnn up` in a shell (a subprocess that returns while
the stack stays up), the printed environment pasted, then the deployed-stack commands, unchanged, and `lnn down`.

Nothing here delivers an event by hand: the upload of parameters.json starts the run through the background
process (S3 PutObject -> the deployed EventBridge rule -> LaunchLambda), and the trainer's chain runs there.
"""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import boto3
import numpy as np
import pytest

from lnn_cli.cloud.emulator import ACCOUNT_ID
from lnn_cli.cloud.up import registry as up_registry
from lnn_cli.cloud.up.command import read_state
from lnn_cli.cloud.up.registry import SERVER_MODULE, STATE_FILE, is_ours, stacks_up
from lnn_cli.deployed_stack import open_stack
from lnn_cli.inputs import DEMO_DATA
from lnn_cli.main import main
from lnn_core.ml import metrics, training
from tests.support.cli import assert_one_line_error

SMALL = [
    "--epochs",
    "3",
    "--neurons",
    "4,1",
    "--activations",
    "relu,sigmoid",
    "--learning-rate",
    "0.3",
    "--seed",
    "2",
    "--init",
    "he",
]
LONG = [
    "--epochs",
    "5000",
    "--neurons",
    "4,1",
    "--activations",
    "relu,sigmoid",
    "--granularity",
    "layer",
    "--seed",
    "3",
]


def lnn(*arguments: str, env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`lnn ...` in a shell: a new process with the given environment (its output a pipe), in `cwd`."""
    return subprocess.run(
        [sys.executable, "-m", "lnn_cli.main", *arguments],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        timeout=600,
        cwd=cwd,
    )


def shell_environment() -> dict[str, str]:
    """The user's shell before pasting: no endpoint, no credentials."""
    hidden = ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    return {name: value for name, value in os.environ.items() if name not in hidden}


@pytest.fixture(scope="module")
def stack_up(tmp_path_factory):
    """`lnn up` once for the module, in a project directory (its state in the default ./.lnn); yields (state dir,
    the pasted environment, the up output); after, `lnn down` from another directory, without --state-dir."""
    project, elsewhere = tmp_path_factory.mktemp("lnn-up"), tmp_path_factory.mktemp("elsewhere")
    state_dir = project.resolve() / ".lnn"
    shell = shell_environment()
    started = lnn("up", "--concurrency", "1", env=shell, cwd=project)
    try:
        assert started.returncode == 0, started.stderr + started.stdout
        pasted = dict(re.findall(r"^export (\w+)=(\S+)$", started.stdout, flags=re.MULTILINE))
        with pytest.MonkeyPatch.context() as patch:
            for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
                patch.delenv(name, raising=False)
            for name, value in pasted.items():
                patch.setenv(name, value)
            yield state_dir, pasted, started.stdout
    finally:
        state = read_state(state_dir)
        stopped = lnn("down", env=shell, cwd=elsewhere)  # finds it through the registry of `lnn up`
        if state and is_ours(int(state["pid"]), state_dir):  # down failed: do not leave the process behind
            os.kill(int(state["pid"]), 9)
            pytest.fail(f"lnn down left pid {state['pid']} running: {stopped.stderr}")
        assert stopped.returncode == 0, stopped.stderr
        assert f"stopped the local stack LnnStack (pid {state['pid']}" in " ".join(stopped.stdout.split())
        assert "deploying LnnStack" in started.stdout  # piped: a plain line, not rich's spinner (which prints nothing)
        after = lnn("runs", env={**shell, **pasted})  # the pasted environment, still set after `lnn down`
        assert after.returncode == 2 and "Traceback" not in after.stderr
        assert after.stderr == (
            f"lnn: error: nothing answers at {state['endpoint']} (AWS_ENDPOINT_URL): run `lnn up`, "
            "or unset AWS_ENDPOINT_URL to use AWS\n"
        )
        assert not (state_dir / STATE_FILE).exists()


def test_up_then_the_deployed_stack_commands(stack_up, capsys, tmp_path):
    """One test for the one deploy (xdist would give each test of a module fixture its own)."""
    state_dir, pasted, shown = stack_up
    state = read_state(state_dir)
    assert set(pasted) == {"AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION"}
    assert pasted["AWS_ENDPOINT_URL"] == f"http://localhost:{state['port']}" == state["endpoint"]
    assert pasted["AWS_DEFAULT_REGION"] == "us-east-1" and "deployed with cdk deploy" in shown
    assert is_ours(state["pid"], state_dir)
    assert {"up.log", "emulator.log", "deploy.log", "lambda.log"} <= {path.name for path in state_dir.iterdir()}

    again = lnn("up", "--state-dir", str(state_dir), env=shell_environment())
    assert again.returncode == 2
    assert f"a local stack is already up in {state_dir} (pid {state['pid']}" in again.stderr
    assert read_state(state_dir) == state  # untouched

    assert main(["start", "--name", "up-run", *SMALL]) == 0  # the upload starts the run: S3 -> EventBridge -> launcher
    assert "started run up-run" in capsys.readouterr().out
    assert main(["status", "up-run", "--follow"]) == 0
    assert "run up-run: succeeded, epoch 3/3" in capsys.readouterr().out
    up_log = (state_dir / "up.log").read_text()
    assert re.search(r"rule \S*LaunchOnParametersUpload\S*: Object Created -> launcher", up_log)

    plot = tmp_path / "cost.png"
    assert main(["results", "up-run", "--plot", str(plot), "--csv"]) == 0
    rows = capsys.readouterr().out.strip().splitlines()
    costs = [float(row.split(",")[1]) for row in rows[1:4]]
    demo = np.load(DEMO_DATA)
    _, expected = training.train_reference(
        demo["X"].astype(float),
        demo["y"].astype(float),
        neurons=[4, 1],
        activations=["relu", "sigmoid"],
        learning_rate=0.3,
        epochs=3,
        seed=2,
        init="he",
    )
    assert costs == expected  # the chain the background process ran is the reference training, bit for bit
    assert plot.read_bytes().startswith(b"\x89PNG")

    assert main(["predict", "up-run", "--data", str(DEMO_DATA)]) == 0
    predicted = capsys.readouterr().out
    assert "455 predictions" in predicted and "accuracy against the file's labels" in predicted
    stack = open_stack(boto3.Session(), "LnnStack")
    # The stack's PredictLambda, invoked (RequestResponse) through the proxy: by hand, then by `lnn predict --remote`
    answer = stack.session.client("lambda").invoke(
        FunctionName=stack.outputs.predict_function,
        Payload=json.dumps({"run_id": "up-run", "X": demo["X"][:5].tolist()}),
    )
    assert answer["StatusCode"] == 200 and "FunctionError" not in answer
    predicted = json.loads(answer["Payload"].read())
    model = np.load(io.BytesIO(stack.ports.store.get_bytes(predicted["model_key"])))
    params = {name: model[name] for name in model.files if name[0] in "Wb" and name[1:].isdigit()}
    labels = metrics.predict(params, demo["X"][:5].astype(float), [str(name) for name in model["activations"]])
    assert [int(label) for label in predicted["predictions"]] == [int(label) for label in labels]
    assert main(["predict", "up-run", "--data", str(DEMO_DATA), "--remote"]) == 0
    remote = capsys.readouterr().out
    assert "455 predictions" in remote and "accuracy against the file's labels" in remote
    assert (state_dir / "lambda.log").read_text().count('"predict"') == 3  # one invoke by hand, describe + predict

    # `lnn serve`'s predict form takes its answer from the PredictLambda too, says so, and matches model.npz's
    from lnn_cli.web.app import create_app
    from lnn_cli.web.predict import load_model, predict_here

    row = demo["X"][:1].astype(float)
    served = (
        create_app(stack)
        .test_client()
        .post(
            "/api/runs/up-run/predict",
            data={"row": " ".join(repr(float(value)) for value in row[0])},
            base_url="http://127.0.0.1:8765",
        )
    )
    assert served.status_code == 200, served.get_json()
    body = served.get_json()
    assert body["source"] == "PredictLambda (deployed)" and body["note"] is None
    assert body["source_title"] == f"the PredictLambda {stack.outputs.predict_function}"  # its name on hover
    here = predict_here(load_model(stack, stack.run("up-run")), row)
    assert {key: body[key] for key in here} == here
    assert (state_dir / "lambda.log").read_text().count('"predict"') == 4

    assert main(["start", "--name", "up-stop", *LONG]) == 0
    capsys.readouterr()
    assert main(["resume", "up-stop"]) == 0  # re-sends its next step through Invoke (Event): harmless on a live run
    assert main(["stop", "up-stop"]) == 0
    assert "asked run up-stop to stop" in capsys.readouterr().out
    assert main(["status", "up-stop", "--follow"]) == 1  # ended, not succeeded
    line = " ".join(capsys.readouterr().out.split())
    assert "run up-stop: stopped" in line and "reason: stopped on request" in line and "elapsed 0:0" in line

    assert main(["runs"]) == 0
    listing = capsys.readouterr().out
    assert re.search(r"up-run\s.*succeeded", listing) and re.search(r"up-stop\s.*stopped", listing)

    assert stack.run("up-run")["uploaded_by"] == ACCOUNT_ID  # launched by the S3 event (a direct invoke has none)


@pytest.fixture
def own_registry(tmp_path, monkeypatch):
    """A registry of `lnn up` stacks of this test alone (the module's stack stays up in the session's)."""
    monkeypatch.setenv("LNN_HOME", str(tmp_path / "lnn-home"))


def test_down_stops_only_our_process_and_cleans_stale_state(tmp_path, capsys, own_registry):
    state_dir = tmp_path / "stale"
    state_dir.mkdir()
    (state_dir / STATE_FILE).write_text(json.dumps({"pid": os.getpid(), "endpoint": "http://localhost:1"}))
    assert not is_ours(os.getpid(), state_dir)  # a live process, but not the background process of this directory
    assert main(["down", "--state-dir", str(state_dir)]) == 0  # nobody holds the lock: nothing of ours runs
    shown = " ".join(capsys.readouterr().out.split())
    assert f"cleaned a stale state in {state_dir}: pid {os.getpid()}" in shown  # and this process still runs
    assert not (state_dir / STATE_FILE).exists()
    assert main(["down", "--state-dir", str(state_dir)]) == 0
    assert "no local stack is up" in capsys.readouterr().out


@pytest.fixture
def background_stacks(tmp_path, own_registry):
    """Stand-ins for `lnn up`'s background process (its command line, its held up.lock, its state and registry
    entry), as many as asked; killed after the test if `lnn down` left them."""
    started = []

    def start(name: str) -> tuple[Path, subprocess.Popen]:
        state_dir = (tmp_path / name / ".lnn").resolve()
        state_dir.mkdir(parents=True)
        holder = (
            "import fcntl, sys, time; lock = open(sys.argv[1] + '/up.lock', 'a'); fcntl.flock(lock, fcntl.LOCK_EX); "
            "print('ready', flush=True); time.sleep(300)"
        )
        process = subprocess.Popen(
            [sys.executable, "-c", holder, str(state_dir), "-m", SERVER_MODULE, "--state-dir", str(state_dir)],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert process.stdout.readline() == "ready\n"
        state = {
            "pid": process.pid,
            "endpoint": f"http://localhost:{40000 + len(started)}",
            "stack": "LnnStack",
            "state_dir": str(state_dir),
        }
        (state_dir / STATE_FILE).write_text(json.dumps(state))
        up_registry.record(state)
        started.append(process)
        return state_dir, process

    yield start
    for process in started:
        process.kill()
        process.wait()


def test_down_from_another_directory_stops_the_stack_that_is_up(background_stacks, tmp_path, monkeypatch, capsys):
    state_dir, process = background_stacks("project")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    assert main(["down"]) == 0
    shown = " ".join(capsys.readouterr().out.split())
    assert (
        f"no local stack is up in {tmp_path / 'elsewhere' / '.lnn'}; stopping the one up in {state_dir} "
        f"(pid {process.pid}"
    ) in shown
    assert f"stopped the local stack LnnStack (pid {process.pid}" in shown
    assert process.wait(timeout=10) == -15  # SIGTERM
    assert stacks_up() == [] and not (state_dir / STATE_FILE).exists()
    assert main(["down"]) == 0
    assert "no local stack is up" in capsys.readouterr().out


def test_down_names_the_stacks_up_when_it_cannot_choose(background_stacks, tmp_path, monkeypatch, capsys):
    first, first_process = background_stacks("one")
    empty = tmp_path / "empty"
    assert_one_line_error(
        capsys,
        main(["down", "--state-dir", str(empty)]),  # asked for a directory: not another one
        f"no local stack is up in {empty}; up: {first} (pid {first_process.pid}, http://localhost:40000)",
        f"`lnn down --state-dir {first}`",
    )
    second, _ = background_stacks("two")
    empty.mkdir()
    monkeypatch.chdir(empty)
    line = assert_one_line_error(capsys, main(["down"]), f"{first} (pid", f"{second} (pid")
    assert "Stop one with `lnn down --state-dir" in line
    assert first_process.poll() is None and len(stacks_up()) == 2  # nothing was stopped


NEVER_READY = """\
# a stand-in for `lnn up`'s background process: it starts a child, never reports ready and is deaf to SIGTERM
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print(f"pids {os.getpid()} {child.pid}", file=sys.stderr, flush=True)
time.sleep(300)
"""


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie, killed but not yet reaped, is not)."""
    state = subprocess.run(["ps", "-o", "stat=", "-p", str(pid)], capture_output=True, text=True).stdout.strip()
    return bool(state) and not state.startswith("Z")


def test_up_gives_up_after_its_time_limit_and_stops_what_it_started(tmp_path, own_registry, monkeypatch, capsys):
    from lnn_cli.cloud.up import command as up

    modules = tmp_path / "modules"
    modules.mkdir()
    (modules / "never_ready.py").write_text(NEVER_READY)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(modules), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setattr(up, "SERVER_MODULE", "never_ready")
    monkeypatch.setattr(up, "START_TIMEOUT_SECONDS", 2)
    monkeypatch.setattr(up, "STOP_TIMEOUT_SECONDS", 1)
    state_dir = tmp_path / ".lnn"
    line = assert_one_line_error(
        capsys,
        main(["up", "--state-dir", str(state_dir)]),
        "the local stack did not start within 2 s",
        "was stopped",
        f"see {state_dir / 'up.log'}",
        "then run `lnn up` again",
    )
    pids = [int(pid) for pid in (state_dir / "up.log").read_text().split("pids ", 1)[1].split()]
    assert not any(map(running, pids)), line  # the process, deaf to SIGTERM, and its child: both killed
    assert main(["down", "--state-dir", str(state_dir)]) == 0  # nothing holds up.lock, no state was left
    assert "no local stack is up" in capsys.readouterr().out
    assert stacks_up() == []
