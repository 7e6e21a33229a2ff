"""The table of training parameters (lnn_core/ml/parameters.py) and what it drives: validation, the flags and their
help, the CDK context defaults, docs/parameters.md, and the effective configuration the CLI prints."""

import dataclasses
import io

import pytest
from rich.console import Console

from lnn_cli import parameters_doc
from lnn_cli.parser import build_parser
from lnn_cli.presentation.configuration import (
    configuration_lines,
    show_launched_configuration,
)
from lnn_core.errors import LnnInputError
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.parameters import KNOWN_KEYS, PARAMETERS, TABLE
from lnn_stack.settings.training import TRAINING_PARAMETERS, TrainingDefaults


def test_the_committed_docs_table_is_the_generated_one():
    assert parameters_doc.DOC.read_text() == parameters_doc.markdown(), "run: python -m lnn_cli.parameters_doc"
    assert parameters_doc.main(["--check"]) == 0


def test_every_row_is_in_the_docs():
    doc = parameters_doc.markdown()
    for row in TABLE:
        assert f"| `{row.name}` |" in doc


@pytest.mark.parametrize("command", ["local", "start"])
def test_every_flag_comes_from_the_table_with_its_help_and_default(command):
    parser = build_parser()
    subparser = parser._subparsers._group_actions[0].choices[command]
    actions = {action.dest: action for action in subparser._actions}
    for row in TABLE:
        if not row.flag:
            assert row.name not in actions
            continue
        action = actions[row.name]
        assert action.option_strings == [row.flag_name] and action.default is None  # None: not given, defaults apply
        assert row.help in action.help and f"(default: {row.default_text})" in action.help
        if row.choices and row.kind == "choice":
            assert tuple(action.choices) == row.choices


def test_the_configuration_keys_and_defaults_are_the_table_s():
    assert KNOWN_KEYS == {row.name for row in TABLE} | {"data"}
    fields = {field.name: field.default for field in dataclasses.fields(TrainingConfig)}
    for row in TABLE:
        if row.name in fields and fields[row.name] is not dataclasses.MISSING:
            assert fields[row.name] == row.default, row.name  # one home per default
        if row.default is not None and row.kind in ("integer", "number", "choice"):
            assert row.check(row.default) == row.default


def test_the_context_defaults_are_the_table_s():
    assert list(TRAINING_PARAMETERS) == [row.name for row in TABLE if row.flag]
    defaults = TrainingDefaults()
    for row in TABLE:
        if row.flag:
            assert getattr(defaults, row.name) == (row.default if row.stack_default else None), row.name
            assert TRAINING_PARAMETERS[row.name].example and TRAINING_PARAMETERS[row.name].accepts.startswith(
                row.accepts
            )


def test_a_required_parameter_has_no_engine_default():
    for name in ("epochs", "learning_rate", "neurons", "activations"):
        assert PARAMETERS[name].required and PARAMETERS[name].stack_default
    with pytest.raises(LnnInputError, match="epochs must be an integer from 1 to 1000000; got None"):
        TrainingConfig.from_parameters(
            {"learning_rate": 0.1, "neurons": [1], "activations": ["sigmoid"], "data": "runs/a/d.npz"}
        )


def config(**changes) -> dict:
    parameters = {**TrainingDefaults().to_parameters(), "data": "runs/a/d.npz", **changes}
    return TrainingConfig.from_parameters(parameters).to_parameters()


def test_the_effective_configuration_is_two_lines_with_the_defaults():
    assert configuration_lines(config(seed=7), seed_drawn=True) == [
        "network: neurons 20,7,5,1, activations relu,relu,relu,sigmoid, init lecun, seed 7 (drawn by the launcher)",
        "training: epochs 100, learning_rate 0.0075, optimizer gd, granularity layer",
    ]
    assert configuration_lines(config(seed=7), seed_drawn=False)[0].endswith("init lecun, seed 7")
    assert configuration_lines(config())[0].endswith("init lecun, seed drawn by the launcher")


def test_the_options_line_names_what_differs_from_the_defaults_and_its_optimizer_s_settings():
    lines = configuration_lines(config(seed=1, optimizer="adam", batch_size=64, l2=0.5, eval_every=10))
    assert lines[1] == "training: epochs 100, learning_rate 0.0075, optimizer adam, granularity layer"
    assert lines[2] == "options: batch_size 64, beta1 0.9, beta2 0.999, epsilon 1e-08, l2 0.5, eval_every 10"
    momentum = configuration_lines(config(seed=1, optimizer="momentum", threshold=0.01))
    assert momentum[2] == "options: beta 0.9, threshold 0.01"
    assert len(lines) == 3 and all("None" not in line for line in lines + momentum)


def console_text() -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, width=200), buffer


def test_start_prints_a_given_seed_without_waiting_for_the_launcher():
    console, buffer = console_text()
    show_launched_configuration(console, config(seed=3), lambda: pytest.fail("read the run record"))
    assert "init lecun, seed 3\n" in buffer.getvalue()


def test_start_prints_the_seed_the_launcher_drew_once_the_record_has_it():
    console, buffer = console_text()
    records = iter([None, None, {"config": config(seed=123), "seed_drawn": True}])
    show_launched_configuration(console, config(), lambda: next(records), wait_seconds=10)
    assert "seed 123 (drawn by the launcher)" in buffer.getvalue()


def test_start_says_when_the_launcher_has_not_recorded_the_run_in_time():
    console, buffer = console_text()
    show_launched_configuration(console, config(), lambda: None, wait_seconds=0)
    shown = buffer.getvalue()
    assert "seed drawn by the launcher" in shown and "`lnn status` shows its seed" in shown
