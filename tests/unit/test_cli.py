"""The `lnn` command's input handling: every problem a person can fix is exit status 2, one line, nothing created."""

import json
import os

import boto3
import numpy as np
import pytest
from moto import mock_aws

from lnn_cli.cloud.chaos import ChaosPlan
from lnn_cli.inputs import (
    DEMO_CONFIG,
    DEMO_DATA,
    read_config,
    read_prediction_data,
    run_parameters,
    validate_run,
)
from lnn_cli.main import main
from lnn_core.errors import LnnInputError
from tests.support.arrays import lying_npz, npz_bytes
from tests.support.cli import assert_one_line_error

DEMO_PARAMETERS = read_config(DEMO_CONFIG)  # `make demo`'s parameters


def npz(path, **arrays):
    path.write_bytes(npz_bytes(**arrays))
    return str(path)


@pytest.fixture
def out_dir(tmp_path):
    return tmp_path / "out"


@pytest.mark.parametrize(
    "make_arguments, fragments",
    [
        (lambda tmp: ["--data", str(tmp / "missing.npz")], ["missing.npz does not exist", "--data"]),
        (lambda tmp: ["--data", str(tmp)], ["is a directory"]),
        (
            lambda tmp: ["--data", str((tmp / "junk.npz").write_text("junk") and tmp / "junk.npz")],
            ["not a readable .npz"],
        ),
        (lambda tmp: ["--data", npz(tmp / "rows.npz", X=np.ones((5, 3)), y=np.zeros(4))], ["5 examples", "4 labels"]),
        (
            lambda tmp: [
                "--data",
                npz(tmp / "test.npz", X=np.ones((4, 3)), y=np.zeros(4), X_test=np.ones((2, 2)), y_test=np.zeros(2)),
            ],
            ["X_test has 2 features but X has 3"],
        ),
        (lambda tmp: ["--data", npz(tmp / "nan.npz", X=np.full((4, 3), np.nan), y=np.zeros(4))], ["NaN or Inf"]),
        (lambda tmp: ["--activations", "relu,relu,swish,sigmoid"], ["'swish' is unknown", "use one of"]),
        (lambda tmp: ["--neurons", "20,x,5,1"], ["--neurons must be whole numbers"]),
        (lambda tmp: ["--neurons", "20,7,1", "--activations", "relu,relu,relu,sigmoid"], ["layers is 3"]),
        (lambda tmp: ["--epochs", "0"], ["epochs must be an integer from 1"]),
        (lambda tmp: ["--learning-rate", "-0.1"], ["learning_rate must be a number in (0, 10]"]),
        (lambda tmp: ["--seed", "-1"], ["seed must be an integer from 0"]),
        (lambda tmp: ["--config", str(tmp / "nope.json")], ["config file", "does not exist"]),
        (
            lambda tmp: ["--config", str((tmp / "bad.json").write_text("{oops") and tmp / "bad.json")],
            ["not valid JSON"],
        ),
        (lambda tmp: ["--config", str((tmp / "list.json").write_text("[1]") and tmp / "list.json")], ["JSON object"]),
        (
            lambda tmp: ["--config", str((tmp / "k.json").write_text('{"epoch": 3}') and tmp / "k.json")],
            ["unknown parameter 'epoch'"],
        ),
        (lambda tmp: ["--chaos", "crash=2"], ["probability from 0 to 1"]),
        (lambda tmp: ["--chaos", "explode=0.1"], ["not understood"]),
        (lambda tmp: ["--name", "bad name!"], ["run id 'bad name!' is invalid"]),
    ],
)
def test_local_rejects_bad_input_before_starting_anything(tmp_path, out_dir, capsys, make_arguments, fragments):
    code = main(["local", "--out", str(out_dir), *make_arguments(tmp_path)])
    assert_one_line_error(capsys, code, *fragments)
    assert not out_dir.exists()  # validated before the out dir, the emulator or the deploy


def test_labels_that_do_not_fit_the_output_layer(tmp_path, out_dir, capsys):
    data = npz(tmp_path / "three.npz", X=np.ones((6, 2)), y=np.array([0, 1, 2, 0, 1, 2]))
    code = main(["local", "--out", str(out_dir), "--data", data, "--neurons", "3,1", "--activations", "relu,sigmoid"])
    assert_one_line_error(capsys, code, "class labels 0..1")


def test_usage_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["local", "--epochs", "many"])
    assert_one_line_error(capsys, exit_info.value.code, "--epochs", "invalid int value", "--help")


def test_unwritable_out_dir(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code = main(["local", "--out", str(blocker / "out")])
    assert_one_line_error(capsys, code, "cannot be written")


@pytest.fixture
def no_aws_environment(monkeypatch, tmp_path):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")


def test_missing_credentials(no_aws_environment, capsys):
    code = main(["runs"])
    assert_one_line_error(capsys, code, "no AWS credentials", "aws configure")


def test_stack_not_found(no_aws_environment, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        code = main(["status", "some-run", "--stack", "NoSuchStack"])
    assert_one_line_error(capsys, code, "stack NoSuchStack was not found", "--stack")


def test_a_stack_that_is_not_lnn(no_aws_environment, monkeypatch, capsys):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    with mock_aws():
        boto3.client("cloudformation").create_stack(StackName="Other", TemplateBody=json.dumps(template))
        code = main(["runs", "--stack", "Other"])
    assert_one_line_error(capsys, code, "lacks the output", "is it an LNN stack")


def test_run_parameters_precedence(tmp_path):
    config = tmp_path / "parameters.json"
    config.write_text(
        json.dumps(
            {
                "epochs": 7,
                "layers": 2,
                "neurons": {"layer1": 3, "layer2": 1},
                "activations": {"layer1": "tanh", "layer2": "sigmoid"},
                "data": "runs/x/data.npz",
            }
        )
    )
    merged = run_parameters(DEMO_PARAMETERS, str(config), {"epochs": 9, "neurons": None})
    assert merged["epochs"] == 9 and merged["neurons"] == {"layer1": 3, "layer2": 1} and merged["layers"] == 2
    assert "data" not in merged  # the run's own data key is set at launch
    assert merged["learning_rate"] == DEMO_PARAMETERS["learning_rate"]
    relayered = run_parameters(
        DEMO_PARAMETERS, str(config), {"neurons": [4, 4, 1], "activations": ["relu", "relu", "sigmoid"]}
    )
    assert "layers" not in relayered and validate_run(relayered, DEMO_DATA).config.layers == 3


def test_demo_defaults_are_valid_for_the_demo_data():
    inputs = validate_run(DEMO_PARAMETERS, DEMO_DATA)
    assert inputs.training_data.X.shape == (455, 30) and inputs.training_data.X_test.shape == (114, 30)
    assert set(np.unique(inputs.training_data.y)) == {0.0, 1.0}
    assert inputs.config.granularity == "layer"


def test_prediction_data_may_lack_labels(tmp_path):
    X, y = read_prediction_data(npz(tmp_path / "x.npz", X=np.ones((3, 2))))
    assert X.shape == (3, 2) and y is None
    with pytest.raises(LnnInputError, match="lacks the array 'X'"):
        read_prediction_data(npz(tmp_path / "y.npz", y=np.ones(3)))


def test_chaos_plan_parsing():
    assert ChaosPlan.parse("duplicate=0.1, crash=0.05,delay=0.2,lose=0.01,seed=7") == ChaosPlan(
        duplicate=0.1, crash=0.05, delay=0.2, lose=0.01, seed=7
    )
    assert ChaosPlan.parse("") == ChaosPlan()
    for bad in ("crash", "crash=x", "seed=1.5", "delay=-0.1"):
        with pytest.raises(LnnInputError):
            ChaosPlan.parse(bad)


def big_job(tmp_path):
    """60,000 x 784 examples (uint8 zeros, compressed: a small file) for a 784-128-64-10 network."""
    path = tmp_path / "mnist-sized.npz"
    np.savez_compressed(path, X=np.zeros((60_000, 784), dtype=np.uint8), y=np.zeros(60_000, dtype=np.uint8))
    return ["--data", str(path), "--neurons", "128,64,10", "--activations", "relu,relu,softmax"]


def test_local_refuses_a_job_that_cannot_fit_the_trainer(tmp_path, out_dir, capsys):
    code = main(["local", "--out", str(out_dir), *big_job(tmp_path)])
    assert_one_line_error(
        capsys,
        code,
        "60,000 x 784 examples with network 784-128-64-10 needs about 1,2",
        "the trainer has 1024 MB; deploy with -c memory_size=1216",
    )
    assert not out_dir.exists()


def test_local_refuses_data_lnn_does_not_read_and_forged_headers(tmp_path, out_dir, capsys):

    extra = npz(tmp_path / "extra.npz", X=np.ones((4, 2)), y=np.zeros(4), weights=np.ones(2))
    assert_one_line_error(
        capsys, main(["local", "--out", str(out_dir), "--data", extra]), "the array 'weights', which LNN does not read"
    )
    (tmp_path / "forged.npz").write_bytes(lying_npz())
    assert_one_line_error(
        capsys,
        main(["local", "--out", str(out_dir), "--data", str(tmp_path / "forged.npz")]),
        "header of X declares shape (1048576, 1048576)",
    )
    assert not out_dir.exists()


def test_local_takes_the_context_of_cdk_json_and_c_pairs_over_it(tmp_path):
    from lnn_cli.cloud.deploy_context import deploy_context

    def limits(*pairs):
        context = deploy_context(list(pairs), command="lnn local", project_dir=tmp_path)
        return context.limits.trainer_memory_mb, context.limits.launcher_memory_mb, context.limits.trainer_concurrency

    assert limits() == (1024, 1024, 20)  # no cdk.json: the stack's defaults
    (tmp_path / "cdk.json").write_text(
        json.dumps({"app": "x", "context": {"memory_size": 3008, "reserved_concurrency": 40}})
    )
    assert limits() == (3008, 3008, 40)
    assert limits("memory_size=1769", "reserved_concurrency=none") == (1769, 1769, None)
    context = deploy_context(["epochs=7", "seed=3"], command="lnn local", project_dir=tmp_path)
    assert context.pairs == {"epochs": "7", "seed": "3"}  # handed to cdk synth as given
    assert (context.training_defaults["epochs"], context.training_defaults["seed"]) == (7, 3)


@pytest.mark.parametrize(
    "pair, fragments",
    [
        (
            "memory_size=99",
            [
                "Context parameter 'memory_size' must be an integer from 128 to 10240 (MB); got '99'",
                "Fix: lnn local -c memory_size=1024",
            ],
        ),
        ("memorysize=2048", ["Unknown context parameter 'memorysize'; did you mean 'memory_size'?"]),
        ("memory_size", ["-c 'memory_size' is not KEY=VALUE; e.g. lnn local -c memory_size=1769"]),
        ("neurons=4,3", ["do not make a valid network", "layers is 2 but 2 neurons and 4 activations"]),
    ],
)
def test_a_bad_context_pair_is_one_line_and_exit_2_before_anything_starts(out_dir, capsys, pair, fragments):
    assert_one_line_error(capsys, main(["local", "--out", str(out_dir), "-c", pair]), *fragments)
    assert not out_dir.exists()


def test_a_job_refused_at_the_default_memory_passes_the_checks_with_c_memory_size(tmp_path, out_dir, monkeypatch):
    """The refusal's fix, `-c memory_size=1216`, is taken by `lnn local`: every check passes, up to the emulator."""
    from lnn_cli import local_command

    class ReachedTheEmulator(Exception):
        pass

    def emulator(*args, **kwargs):
        raise ReachedTheEmulator

    monkeypatch.setattr(local_command, "running_emulator", emulator)
    with pytest.raises(ReachedTheEmulator):
        main(["local", "--out", str(out_dir), *big_job(tmp_path), "-c", "memory_size=1216"])


def test_local_refuses_more_workers_than_the_reservation_before_starting_anything(tmp_path, out_dir, capsys):
    code = main(["local", "--out", str(out_dir), "--workers", "21", "--granularity", "epoch"])
    assert_one_line_error(
        capsys,
        code,
        "workers 21 is more than the trainer's reserved concurrency of 20",
        "or rerun with -c reserved_concurrency=21 or more",
    )
    assert not out_dir.exists()


def test_start_refuses_before_uploading_anything(tmp_path, monkeypatch):
    """`lnn start` applies the deployed launcher's limits: the memory check and the running-runs limit."""
    from argparse import Namespace
    from types import SimpleNamespace

    from lnn_cli import run_commands
    from lnn_core.launch.launcher import LaunchLimits

    monkeypatch.setattr(
        run_commands, "upload_run_inputs", lambda *args, **kwargs: pytest.fail("something was uploaded")
    )
    running = ["a", "b"]
    table = SimpleNamespace(get_run=lambda run_id: None, run_ids=lambda status=None: running)
    stack = SimpleNamespace(
        launch_limits=lambda: LaunchLimits(max_running_runs=2, trainer_memory_mb=1024),
        launch_defaults=dict,
        ports=SimpleNamespace(table=table, store=SimpleNamespace(read_current=lambda key: None)),  # no sweeps
    )
    args = Namespace(data=big_job(tmp_path)[1], name="big")
    parameters = {**DEMO_PARAMETERS, "neurons": [128, 64, 10], "activations": ["relu", "relu", "softmax"]}
    with pytest.raises(LnnInputError, match="deploy with -c memory_size=1216"):
        run_commands.command_start(args, parameters, stack, console=None)
    with pytest.raises(LnnInputError, match=r"2 runs are already running, the limit \(LNN_MAX_RUNNING_RUNS\) is 2"):
        run_commands.command_start(Namespace(data=str(DEMO_DATA), name="small"), DEMO_PARAMETERS, stack, console=None)
    for concurrency, workers, message in (
        (2, 3, "workers 3 is more than the trainer's reserved concurrency of 2"),
        (1, 2, "concurrency of 1: .*; use at most 1 worker, or"),
    ):
        stack.launch_limits = lambda concurrency=concurrency: LaunchLimits(trainer_concurrency=concurrency)
        with pytest.raises(LnnInputError, match=message):
            run_commands.command_start(
                Namespace(data=str(DEMO_DATA), name="small"),
                {**DEMO_PARAMETERS, "granularity": "epoch", "workers": workers},
                stack,
                console=None,
            )


def test_up_refuses_a_bad_context_pair_and_hands_a_good_one_to_its_background_process(tmp_path, capsys, monkeypatch):
    from lnn_cli.cloud.up import command as up

    state = tmp_path / "state"
    assert_one_line_error(
        capsys,
        main(["up", "--state-dir", str(state), "-c", "reserved_concurrency=0"]),
        "Context parameter 'reserved_concurrency' must be",
        "Fix: lnn up -c reserved_concurrency=20",
    )
    assert not state.exists()  # refused before anything started
    started = {}

    class Child:  # the background process, answering at once that it did not start
        def __init__(self):
            read_end, write_end = os.pipe()  # a real pipe: `lnn up` waits on it with select
            os.write(write_end, b'{"error": "not started by the test", "kind": "input"}\n')
            os.close(write_end)
            self.stdout = os.fdopen(read_end, "rb")

        def wait(self, timeout=None):
            return 2

    def popen(command, **kwargs):
        started["command"] = command
        return Child()

    monkeypatch.setattr(up.subprocess, "Popen", popen)
    assert_one_line_error(
        capsys, main(["up", "--state-dir", str(state), "-c", "memory_size=1769"]), "not started by the test"
    )
    command = started["command"]
    assert json.loads(command[command.index("--context-json") + 1]) == {"memory_size": "1769"}
