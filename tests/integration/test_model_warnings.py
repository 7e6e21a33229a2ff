"""A run whose model learned nothing still succeeds, and says so: `final.warnings` in the run record, results.json
and the SNS message (its subject counts them); a run that learned has none. Driven by the local runtime in process.

The collapse is deterministic: LNN 0.0's constant initial weights of 0 leave every relu unit at 0 for every example
(Z = 0), so no weight ever gets a gradient, and the output bias alone learns the class prior (here 1/2, so it stays).
"""

import argparse
import json

import numpy as np
import pytest
from rich.console import Console

from lnn_cli import deployed_stack, run_commands
from lnn_cli.cloud.local import run_local
from lnn_cli.presentation.report import summary_table
from lnn_cli.web.app import create_app
from lnn_core.aws.pricing import DEFAULT_PRICES
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.protocol import end_message
from tests.integration.conftest import dataset

LEARNING = {
    "epochs": 4,
    "learning_rate": 0.5,
    "neurons": [4, 1],
    "activations": ["relu", "sigmoid"],
    "seed": 5,
    "granularity": "epoch",
    "init": "he",
}
COLLAPSING = {**LEARNING, "weight": 0.0, "bias": 0.0}


def train(stack, tmp_path, parameters, run_id):
    session, outputs = stack
    data, _, y = dataset()
    assert y.mean() == 0.5  # the class prior, which the collapsed output keeps
    with open(tmp_path / "lambda.log", "w") as stream:
        result = run_local(session, outputs, parameters, data, run_id=run_id, log_stream=stream)
    record = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter()).get_run(run_id)
    return result, record


def test_a_collapsed_run_succeeds_with_its_warnings_in_the_record_results_json_and_the_message(stack, tmp_path):
    result, record = train(stack, tmp_path, COLLAPSING, "collapsed")
    assert record["status"] == "succeeded"
    warnings = record["final"]["warnings"]
    assert warnings == [
        f"the training cost {np.log(2):.4g} is within 2 % of {np.log(2):.4g}, the cost of always predicting the class "
        "prior: the model learned nothing; try another --seed (this run used 5), a smaller --learning-rate than 0.5, "
        "--optimizer adam or --init lecun.",
        "the model predicts class 0 for all 40 training examples, which have 2 classes; try another --seed (this run "
        "used 5), a smaller --learning-rate than 0.5, --optimizer adam or --init lecun.",
        "4 of the 4 units of hidden layer 1 (relu) are dead, 0 for every training example, and can no longer learn; "
        "try another --seed (this run used 5), a smaller --learning-rate than 0.5, --optimizer adam or --init lecun.",
    ]
    results = result.results()
    assert results["status"] == "succeeded" and results["warnings"] == warnings
    assert json.loads(json.dumps(results))["warnings"] == warnings  # results.json is this dict as JSON
    [message] = result.notifications
    assert message["body"]["final"]["warnings"] == warnings
    assert (
        message["subject"]
        == f"LNN run collapsed succeeded with 3 warnings: cost {record['last_cost']:.4g}, train accuracy 50.0%"
    )
    console = Console(record=True, width=300)
    console.print(summary_table(results))
    shown = console.export_text()
    assert "succeeded with 3 warnings" in shown and all(warning in shown for warning in warnings)

    deployed = deployed_stack.DeployedStack(stack[0], "LnnStack")  # what `lnn status`, `results` and `runs` read
    for command, options in (
        (run_commands.command_status, {"follow": False}),
        (run_commands.command_results, {"csv": False, "weights": False, "plot": None}),
    ):
        console = Console(record=True, width=400)
        assert command(argparse.Namespace(run_id="collapsed", prices=DEFAULT_PRICES, **options), deployed, console) == 0
        shown = console.export_text()
        assert "succeeded" in shown and "3 warnings" in shown
        assert [line for line in shown.splitlines() if line.startswith("⚠ warning: ")] == [
            f"⚠ warning: {w}" for w in warnings
        ]
    console = Console(record=True, width=400)
    assert run_commands.command_runs(argparse.Namespace(prices=DEFAULT_PRICES), deployed, console) == 0
    [row] = [line for line in console.export_text().splitlines() if "collapsed" in line]
    assert "⚠ 3" in row
    assert (
        create_app(deployed).test_client().get("/api/runs/collapsed").json["final"]["warnings"] == warnings
    )  # the page's


def test_a_run_that_learned_has_no_warnings(stack, tmp_path):
    result, record = train(stack, tmp_path, LEARNING, "learned")
    assert record["status"] == "succeeded" and record["final"]["train_accuracy"] > 0.9
    assert record["final"]["warnings"] == [] and result.results()["warnings"] == []
    [message] = result.notifications
    assert message["body"]["final"]["warnings"] == []
    assert message["subject"].startswith("LNN run learned succeeded: cost ")
    assert end_message.warning_count(record["final"]) == ""


@pytest.mark.parametrize(("count", "text"), [(0, ""), (1, "1 warning"), (2, "2 warnings")])
def test_the_warning_count_reads_as_english(count, text):
    assert end_message.warning_count({"warnings": ["w"] * count}) == text
    assert end_message.warning_count(None) == ""
