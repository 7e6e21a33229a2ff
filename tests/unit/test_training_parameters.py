"""Issue 11's training parameters through the CLI: the flags, and LNN 0.0's and 1.0's parameters.json verbatim."""

import json

import pytest

import lnn_cli.main as cli_main
from lnn_cli.inputs import DEMO_CONFIG, DEMO_DATA, validate_run
from lnn_cli.main import main
from lnn_core.ml.config import TrainingConfig
from lnn_stack.settings.training import TrainingDefaults
from tests.support.cli import assert_one_line_error

STACK_DEFAULTS = TrainingDefaults().to_parameters()  # a stack deployed with an empty context

# ../shared/seed/lnn-parameters-examples.md, verbatim
LNN_0_0 = """{
    "epochs": 20,
    "layers": 1,
    "activations": {
        "layer1": "sigmoid"
    },
    "neurons": {
        "layer1": 1
    },
    "weight": 0,
    "bias": 0,
    "learning_rate": 0.005
}"""
LNN_1_0 = """{
    "epochs": 5000,
    "layers": 4,
    "activations": {
        "layer1": "relu",
        "layer2": "relu",
        "layer3": "relu",
        "layer4": "sigmoid"
    },
    "neurons": {
        "layer1": 20,
        "layer2": 7,
        "layer3": 5,
        "layer4": 1
    },
    "learning_rate": 0.0075,
    "batch_size": 64,
    "threshold": 0.0019
}"""


@pytest.fixture
def local_config(monkeypatch):
    """Run `lnn local ARGS` up to its validated inputs (no emulator): returns the TrainingConfig it would train."""
    seen = {}

    def fake_local(args, parameters, console):
        seen["config"] = validate_run(
            parameters, args.data, defaults=STACK_DEFAULTS, label_column=args.label_column
        ).config
        return 0

    monkeypatch.setattr(cli_main, "command_local", fake_local)

    def run(*arguments) -> TrainingConfig:
        assert main(["local", *arguments]) == 0
        return seen["config"]

    return run


def default_config(**changes) -> TrainingConfig:
    return TrainingConfig.from_parameters({**changes, "data": "runs/check/data.npz"}, defaults=STACK_DEFAULTS)


def test_lnn_local_has_the_stack_defaults_and_the_demo_sets_its_own(local_config):
    config = local_config()
    assert config == default_config()
    assert (config.epochs, config.learning_rate, config.neurons, config.init, config.seed) == (
        100,
        0.0075,
        (20, 7, 5, 1),
        "lecun",
        None,
    )
    assert (config.batch_size, config.optimizer, config.l2, config.threshold, config.eval_every) == (
        None,
        "gd",
        0.0,
        None,
        0,
    )
    demo = local_config(
        "--config", str(DEMO_CONFIG)
    )  # `make demo`: what it trained when these were lnn local's defaults
    assert (demo.epochs, demo.learning_rate, demo.neurons, demo.init, demo.seed) == (60, 0.3, (20, 7, 5, 1), "he", 1)
    assert (demo.activations, demo.granularity, demo.optimizer) == (("relu", "relu", "relu", "sigmoid"), "layer", "gd")


def test_every_training_flag_reaches_the_config(local_config):
    config = local_config(
        "--batch-size",
        "32",
        "--shuffle-seed",
        "9",
        "--optimizer",
        "adam",
        "--beta",
        "0.8",
        "--beta1",
        "0.85",
        "--beta2",
        "0.99",
        "--epsilon",
        "1e-7",
        "--l2",
        "0.7",
        "--threshold",
        "0.01",
        "--eval-every",
        "5",
    )
    assert config == default_config(
        batch_size=32,
        shuffle_seed=9,
        optimizer="adam",
        beta=0.8,
        beta1=0.85,
        beta2=0.99,
        epsilon=1e-7,
        l2=0.7,
        threshold=0.01,
        eval_every=5,
    )


def test_flags_override_the_config_file_which_overrides_the_defaults(tmp_path, local_config):
    path = tmp_path / "parameters.json"
    path.write_text(json.dumps({"batch_size": 64, "optimizer": "momentum", "l2": 0.1}))
    config = local_config("--config", str(path), "--batch-size", "16")
    assert (config.batch_size, config.optimizer, config.l2) == (16, "momentum", 0.1)


def test_lnn_0_0_parameters_json_verbatim(tmp_path, local_config):
    path = tmp_path / "parameters.json"
    path.write_text(LNN_0_0)
    config = local_config("--config", str(path))
    assert config == TrainingConfig(
        epochs=20,
        learning_rate=0.005,
        neurons=(1,),
        activations=("sigmoid",),
        data="runs/check/data.npz",
        weight=0.0,
        bias=0.0,
    )


def test_lnn_1_0_parameters_json_verbatim(tmp_path, local_config):
    path = tmp_path / "parameters.json"
    path.write_text(LNN_1_0)
    config = local_config("--config", str(path))
    assert config == TrainingConfig(
        epochs=5000,
        learning_rate=0.0075,
        neurons=(20, 7, 5, 1),
        activations=("relu", "relu", "relu", "sigmoid"),
        data="runs/check/data.npz",
        batch_size=64,
        threshold=0.0019,
    )


def test_lnn_1_0_through_lnn_start_gets_the_stack_defaults_for_the_rest(tmp_path, monkeypatch):
    """`lnn start` has no demo base: what parameters.json leaves out comes from the launcher's defaults."""
    from lnn_cli import deployed_stack, run_commands

    seen = {}

    def fake_start(args, parameters, stack, console):
        seen["config"] = validate_run(
            parameters, args.data, defaults={"init": "lecun", "granularity": "epoch"}, label_column=args.label_column
        ).config
        return 0

    monkeypatch.setattr(deployed_stack, "open_stack", lambda session, name: None)
    monkeypatch.setattr(run_commands, "command_start", fake_start)
    path = tmp_path / "parameters.json"
    path.write_text(LNN_1_0)
    assert main(["start", "--config", str(path), "--data", str(DEMO_DATA), "--optimizer", "adam"]) == 0
    config = seen["config"]
    assert (config.epochs, config.batch_size, config.threshold, config.optimizer) == (5000, 64, 0.0019, "adam")
    assert (config.init, config.granularity, config.seed) == ("lecun", "epoch", None)


@pytest.mark.parametrize(
    "arguments, fragments",
    [
        (["--batch-size", "0"], ["batch_size must be an integer from 1"]),
        (["--shuffle-seed", "-1"], ["shuffle_seed must be an integer from 0"]),
        (["--beta", "1"], ["beta must be a number in [0, 1)"]),
        (["--beta2", "1.5"], ["beta2 must be a number in [0, 1)"]),
        (["--epsilon", "0"], ["epsilon must be a number in (0, 1]"]),
        (["--l2", "-1"], ["l2 must be a number in [0, 1e+06]"]),
        (["--threshold", "0"], ["threshold must be a number in (0, 1e+100]"]),
        (["--eval-every", "-1"], ["eval_every must be an integer from 0"]),
        (["--optimizer", "sgd"], ["--optimizer", "invalid choice", "--help"]),
        (["--batch-size", "many"], ["--batch-size", "invalid int value"]),
        (["--l2", "x"], ["--l2", "invalid float value"]),
    ],
)
def test_bad_training_flags_are_one_line_and_exit_2(tmp_path, capsys, arguments, fragments):
    out_dir = tmp_path / "out"
    try:
        code = main(["local", "--out", str(out_dir), *arguments])
    except SystemExit as exit_info:  # argparse's usage errors
        code = exit_info.code
    assert_one_line_error(capsys, code, *fragments)
    assert not out_dir.exists()
