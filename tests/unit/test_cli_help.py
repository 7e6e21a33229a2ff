"""`lnn --help` and each command's: a description for every command, a default for every option that has one;
`lnn --version`; `lnn results` with the test set's figures (table, CSV, plot)."""

import argparse
import csv
import io
from argparse import Namespace
from types import SimpleNamespace

import pytest
from rich.console import Console

from lnn_cli import run_commands
from lnn_cli.main import main
from lnn_cli.parser import build_parser
from lnn_cli.parser_options import add_run_options
from lnn_core.aws.epoch_items import EPOCH_FIGURES

COMMANDS = {
    "start",
    "status",
    "results",
    "runs",
    "stop",
    "resume",
    "predict",
    "up",
    "down",
    "serve",
    "local",
    "convert",
    "sweep",
}


def subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    return next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction)).choices


def test_every_command_has_a_description():
    commands = subcommands()
    assert set(commands) == COMMANDS
    assert [name for name, command in commands.items() if not command.description] == []


def test_every_option_says_its_default():
    """Flags (on or off) and a required choice (predict's --data or --image) have none; the training parameters'
    flags (add_run_options) get theirs from the parameter table."""
    training = argparse.ArgumentParser()
    add_run_options(training)
    training_options = {option for action in training._actions for option in action.option_strings}
    missing = []
    for name, command in subcommands().items():
        required_choices = {
            action for group in command._mutually_exclusive_groups if group.required for action in group._group_actions
        }
        for action in command._actions:
            if (
                not action.option_strings
                or isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction))
                or action in required_choices
                or (name in ("local", "start") and action.option_strings[0] in training_options)
            ):
                continue
            if "default" not in (action.help or ""):
                missing.append(f"{name} {action.option_strings[0]}")
    assert missing == []


def test_every_sweep_option_says_its_default():
    training = argparse.ArgumentParser()
    add_run_options(training)
    training_options = {option for action in training._actions for option in action.option_strings}
    sweep = subcommands()["sweep"]
    actions = next(action for action in sweep._actions if isinstance(action, argparse._SubParsersAction)).choices
    assert set(actions) == {"start", "status", "results"}
    missing = [
        f"sweep {name} {action.option_strings[0]}"
        for name, command in actions.items()
        for action in command._actions
        if action.option_strings
        and not isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction))
        and action.option_strings[0] not in training_options
        and "default" not in (action.help or "")
    ]
    assert missing == [] and all(command.description for command in actions.values())


def test_version_from_the_package_metadata(capsys):
    import importlib.metadata

    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"lnn {importlib.metadata.version('lnn')}\n"


def evaluated_run(tmp_path):
    """A run that evaluated its test set every 2 epochs (results.epoch_item's keys)."""
    epochs = [
        {"epoch": 1, "cost": 0.69, "learning_rate": 0.1, "started_at": "a", "finished_at": "b"},
        {
            "epoch": 2,
            "cost": 0.5,
            "learning_rate": 0.1,
            "started_at": "b",
            "finished_at": "c",
            "test_cost": 0.55,
            "test_accuracy": 0.875,
        },
    ]
    run = {"run_id": "r1", "status": "running", "config": {"epochs": 4, "granularity": "epoch"}, "progress_epoch": 2}
    asked = []  # the attributes of each read

    def epoch_figures(record, after=0, attributes=EPOCH_FIGURES):
        asked.append(attributes)
        return [
            {key: value for key, value in item.items() if key in attributes} for item in epochs if item["epoch"] > after
        ]

    table = SimpleNamespace(epoch_figures=epoch_figures, asked=asked)
    return SimpleNamespace(run=lambda run_id: run, table=table, outputs=SimpleNamespace(bucket="b"))


def test_results_show_the_test_set_figures(tmp_path, capsys, monkeypatch):
    stack = evaluated_run(tmp_path)
    console = Console(file=io.StringIO(), record=True, width=200)
    arguments = dict(run_id="r1", csv=False, weights=False, plot=None, prices="us-east-1-arm64")
    assert run_commands.command_results(Namespace(**arguments), stack, console) == 0
    table = console.export_text()
    assert "test cost" in table and "test accuracy" in table and "0.550000" in table and "87.5%" in table
    assert table.split("\n")[-3].split() == [
        "2",
        "0.500000",
        "0.550000",
        "87.5%",
        "0.1",
        "c",
    ]  # learning rate, finished at
    assert "started_at" not in stack.table.asked[-1]  # the table does not show it: not read

    assert run_commands.command_results(Namespace(**{**arguments, "csv": True}), stack, console) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(row["test_cost"], row["test_accuracy"]) for row in rows] == [("", ""), ("0.55", "0.875")]
    assert [row["started_at"] for row in rows] == ["a", "b"]

    plotted = {}
    monkeypatch.setattr(run_commands, "plot_costs", lambda costs, path, **kwargs: plotted.update(costs=costs, **kwargs))
    assert (
        run_commands.command_results(Namespace(**{**arguments, "plot": str(tmp_path / "c.png")}), stack, console) == 0
    )
    assert plotted == {"costs": [0.69, 0.5], "run_id": "r1", "test_costs": {2: 0.55}}
