"""Reads show what they need: the epochs' figures without weights (in a partition of their own, read with a projection),
only the epochs after the page's last, never an epoch beyond `progress_epoch`; the weights of one epoch only for
`lnn results --weights`. And the page's run request, its `after` and its percentages."""

import json
import os

import numpy as np
import pytest

from lnn_cli.web.app import epoch_after, page_figures, percent
from lnn_core.aws.epoch_items import EPOCH_FIGURES, weights_partition
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter, now
from lnn_core.errors import LnnInputError
from lnn_core.ml import network
from lnn_core.ml.config import TrainingConfig, check_run_id
from lnn_core.protocol.results import epoch_item

CONFIG = TrainingConfig.from_parameters(
    {
        "epochs": 10,
        "learning_rate": 0.3,
        "neurons": [20, 7, 5, 1],
        "eval_every": 2,
        "activations": ["relu", "relu", "relu", "sigmoid"],
        "data": "runs/r/data.npz",
    }
)


@pytest.fixture
def table(aws):
    """Run r: 6 epoch items of the demo network (weights included), 4 of them committed (progress_epoch 4)."""
    table = RunTable(aws.session.resource("dynamodb").Table("lnn-results"), IoCounter())
    table.create_run(
        "r",
        {
            "status": "running",
            "config": CONFIG.to_parameters(),
            "committed_step": 0,
            "progress_epoch": 0,
            "created_at": now(),
        },
        token="t",
    )
    params = network.init_params([30, 20, 7, 5, 1], "he", 1)
    evaluated = {"test_cost": 0.5, "test_accuracy": 0.75}
    items = [
        epoch_item(CONFIG, epoch, 1.0 / epoch, params, now(), evaluated if epoch % 2 == 0 else None)
        for epoch in range(1, 7)
    ]
    assert table.put_epoch_items("r", items, step=1)
    assert table.transition("r", seen_step=0, new_step=1, fields={"progress_epoch": 4})
    return table


def test_figures_carry_no_weights_and_stop_at_progress_epoch(table):
    run = table.get_run("r")
    figures = table.epoch_figures(run)
    assert [item["epoch"] for item in figures] == [1, 2, 3, 4]  # items 5 and 6 are not committed
    assert all(set(item) <= set(EPOCH_FIGURES) for item in figures)
    assert [item["cost"] for item in figures] == [1.0, 0.5, 1 / 3, 0.25]
    assert figures[1]["test_cost"] == 0.5 and figures[1]["test_accuracy"] == 0.75 and "test_cost" not in figures[0]
    whole = table.committed_epochs(run)
    assert "weights" in whole[0] and all(
        {key: item[key] for key in item if key in EPOCH_FIGURES} == figures[index] for index, item in enumerate(whole)
    )


def test_figures_after_an_epoch(table):
    run = table.get_run("r")
    assert [item["epoch"] for item in table.epoch_figures(run, after=2)] == [3, 4]
    asked = table._counter.requests["dynamodb"]
    assert table.epoch_figures(run, after=4) == [] and table.epoch_figures(run, after=9) == []
    assert table._counter.requests["dynamodb"] == asked  # nothing to read: no request


def test_the_last_committed_item_whole(table):
    last = table.committed_epoch(table.get_run("r"))
    assert last["epoch"] == 4 and np.array(last["weights"]["layer1"]).shape == (20, 30)
    assert last["test_cost"] == 0.5 and last == table.committed_epochs(table.get_run("r"))[-1]
    assert table.committed_epoch({"run_id": "r", "progress_epoch": 0}) is None


def test_figures_and_weights_are_in_partitions_of_their_own(aws, table):
    """The run's partition holds its record and its figures items, no weights (moto walks a whole partition to
    answer a query of its figures); the weights items are at their epochs in the run's weights partition, the
    partition of no run. Every item the steps wrote, committed or not, is there whole."""
    from boto3.dynamodb.conditions import Key

    raw = aws.session.resource("dynamodb").Table("lnn-results")
    partition = raw.query(KeyConditionExpression=Key("run_id").eq("r"))["Items"]
    assert [item["epoch"] for item in partition] == [0, 1, 2, 3, 4, 5, 6]
    assert not any(set(item) & {"weights", "bias"} for item in partition)
    weights = raw.get_item(Key={"run_id": weights_partition("r"), "epoch": 3})["Item"]
    assert set(weights) == {"run_id", "epoch", "weights", "bias"}
    with pytest.raises(LnnInputError):
        check_run_id(weights_partition("r"))
    assert np.array(weights["weights"]["layer2"], dtype=float).shape == (7, 20)
    whole = table.epoch_items("r")
    assert [item["epoch"] for item in whole] == [1, 2, 3, 4, 5, 6] and all("bias" in item for item in whole)
    assert [item["epoch"] for item in table.list_epochs("r")] == [1, 2, 3, 4, 5, 6]
    assert all("weights" not in item for item in table.list_epochs("r"))


def test_the_figures_of_many_epochs_are_one_request(aws):
    """150 epochs of the demo network: 1.5 MB of weights, which DynamoDB pages by (1 MB a page, of whole items even
    under a projection) when they share the figures' items; apart, the figures are one page."""
    table = RunTable(aws.session.resource("dynamodb").Table("lnn-results"), IoCounter())
    table.create_run(
        "k",
        {
            "status": "running",
            "config": CONFIG.to_parameters(),
            "committed_step": 0,
            "progress_epoch": 0,
            "created_at": now(),
        },
        token="t",
    )
    params = network.init_params([30, 20, 7, 5, 1], "he", 1)
    assert table.put_epoch_items(
        "k", [epoch_item(CONFIG, epoch, 1.0 / epoch, params, now()) for epoch in range(1, 151)], step=1
    )
    assert table.transition("k", seen_step=0, new_step=1, fields={"progress_epoch": 150})
    run, asked = table.get_run("k"), table._counter.requests["dynamodb"]
    assert len(table.epoch_figures(run)) == 150
    assert table._counter.requests["dynamodb"] == asked + 1


def deploy_outputs(aws) -> None:
    from tests.browser.test_page import stack_template

    aws.session.client("cloudformation").create_stack(
        StackName="LnnStack",
        TemplateBody=stack_template(
            {
                "BucketName": aws.bucket,
                "TableName": "lnn-results",
                "TopicArn": aws.topic_arn,
                "TrainerFunctionName": "t",
                "LaunchFunctionName": "l",
                "WatchdogFunctionName": "w",
            }
        ),
    )


def test_lnn_results_builds_no_client_it_does_not_use(aws, table, monkeypatch):
    """`lnn results` reads the stack's outputs and the table: the SNS, Lambda and S3 clients, whose models take
    longer to load than its reads, are built only when a command uses them."""
    from argparse import Namespace

    from rich.console import Console

    from lnn_cli import deployed_stack, run_commands

    deploy_outputs(aws)
    built, client = [], aws.session.client
    monkeypatch.setattr(
        aws.session, "client", lambda service, **kwargs: built.append(service) or client(service, **kwargs)
    )
    stack = deployed_stack.DeployedStack(aws.session, "LnnStack")
    arguments = Namespace(run_id="r", csv=False, weights=False, plot=None, prices=None)
    with open(os.devnull, "w") as sink:
        assert run_commands.command_results(arguments, stack, Console(file=sink)) == 0
    assert sorted(built) == ["cloudformation", "dynamodb"]  # the table resource's client
    assert stack.ports.table is stack.table and sorted(built) == ["cloudformation", "dynamodb", "lambda", "s3", "sns"]


def test_the_page_gets_the_epochs_after_its_last(aws, table):
    from lnn_cli.deployed_stack import DeployedStack
    from lnn_cli.web.app import create_app

    deploy_outputs(aws)
    client = create_app(DeployedStack(aws.session, "LnnStack")).test_client()
    local = {"base_url": "http://127.0.0.1:8765"}
    whole = client.get("/api/runs/r", **local).get_json()
    assert [point["epoch"] for point in whole["curve"]] == [1, 2, 3, 4] and whole["after"] == 0
    assert whole["curve"][1] == {"epoch": 2, "cost": 0.5, "test_cost": 0.5}
    later = client.get("/api/runs/r?after=3", **local).get_json()
    assert [point["epoch"] for point in later["curve"]] == [4] and later["epoch"] == 4
    assert client.get("/api/runs/r?after=4", **local).get_json()["curve"] == []
    refused = client.get("/api/runs/r?after=-1", **local)
    assert refused.status_code == 400 and "after must be an epoch number" in refused.get_json()["error"]
    assert "weights" not in json.dumps(whole)


@pytest.mark.parametrize(
    "fraction, text",
    [
        (1.0, "100 %"),
        (0, "0 %"),
        (0.99996, "99.996 %"),
        (0.656, "65.6 %"),
        (0.99949, "99.9 %"),
        (0.99951, "99.95 %"),
        (0.0004, "0.04 %"),
        (0.9999999, "99.99999 %"),
    ],
)
def test_percentages_are_never_rounded_to_100(fraction, text):
    assert percent(fraction) == text


def test_page_figures():
    assert page_figures({"train_accuracy": 0.99996, "test_accuracy": 1.0, "stopped_early_at": 7}) == [
        ["train accuracy", "99.996 %"],
        ["test accuracy", "100 %"],
        ["stopped early", "after epoch 7, its cost below the threshold"],
    ]
    assert page_figures({"train_rmse": 0.25}) == [["train RMSE", "0.25"]]


def test_after_is_an_epoch_number():
    assert epoch_after(None) == 0 and epoch_after("12") == 12
    with pytest.raises(LnnInputError, match="after must be an epoch number"):
        epoch_after("x")
