"""A sweep on the stack (moto's CloudFormation of the synthesized template, the local runtime): trials run as normal
runs within the limit, every trial holds out the same validation rows, a repeated start starts nothing twice, the
results rank the trials and name the sweep's model."""

import io
from argparse import Namespace

import pytest
from rich.console import Console

from lnn_cli.cloud.local import local_runtime
from lnn_cli.sweeps.commands import show_results
from lnn_cli.sweeps.local import run_sweep
from lnn_cli.sweeps.record import SweepStore
from lnn_cli.sweeps.spec import parse_spec
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import LnnInputError
from lnn_core.ml import metrics
from lnn_core.ml.validation import split_indices
from lnn_core.sweep import results as sweep_table
from lnn_core.sweep.controller import halted
from lnn_core.sweep.record import SweepRecord
from tests.integration.conftest import dataset, model_arrays
from tests.support.sweeps import SWEEP_TRIAL

BASE = {"epochs": 4, **SWEEP_TRIAL, "validation_split": 0.25, "validation_seed": 3, "eval_every": 2}


@pytest.fixture(scope="module")
def swept(stack):
    """A 6-trial sweep (2 optimizers x 3 seeds) run at most 2 at once; the stack, its record, and what ran."""
    session, outputs = stack
    data, X, y = dataset(m=40)
    spec = parse_spec({"base": BASE, "parameters": {"optimizer": ["gd", "adam"]}, "seeds": [1, 2, 3]}, source="s.json")
    record, created = SweepStore(session.client("s3"), outputs.bucket).create(
        SweepRecord.new("sw", spec, spec.generate("sw"), data, 2), data
    )
    assert created
    table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
    most = []

    def watch(_delivery):
        most.append(sum(1 for run in table.list_runs("running") if run["run_id"].startswith("sw-")))

    runtime = local_runtime(session, outputs, on_delivery=watch)
    run_sweep(runtime, table, record, Console(file=io.StringIO()))
    return session, outputs, record, table, runtime, most, (data, X, y)


def test_every_trial_ran_as_a_run_and_never_more_than_the_limit_at_once(swept):
    _, _, record, table, runtime, most, _ = swept
    runs = [table.get_run(run_id) for run_id in record.run_ids]
    assert record.run_ids == [f"sw-t00{index}" for index in range(1, 7)]
    assert all(run["status"] == "succeeded" for run in runs), [run.get("reason") for run in runs]
    assert max(most) == 2  # --parallel 2: two at once, never three
    assert [(run["config"]["optimizer"], run["config"]["seed"]) for run in runs] == [
        ("gd", 1),
        ("gd", 2),
        ("gd", 3),
        ("adam", 1),
        ("adam", 2),
        ("adam", 3),
    ]


def test_every_trial_holds_out_the_same_validation_rows(swept):
    session, outputs, record, table, _, _, (_, X, y) = swept
    training_rows, held = split_indices(40, 0.25, 3)
    for run_id in record.run_ids:
        run = table.get_run(run_id)
        assert run["examples"] == 30
        model = model_arrays(
            session.client("s3").get_object(Bucket=outputs.bucket, Key=f"runs/{run_id}/model.npz")["Body"].read()
        )
        params = {name: model[name] for name in model if name[0] in "Wb" and name[1:].isdigit()}
        assert run["final"]["validation_accuracy"] == metrics.accuracy(params, X[held], y[held], BASE["activations"])
        assert run["final"]["train_accuracy"] == metrics.accuracy(
            params, X[training_rows], y[training_rows], BASE["activations"]
        )


def test_a_repeated_start_starts_nothing_twice(swept):
    session, outputs, record, table, runtime, _, (data, _, _) = swept
    launches = sum(1 for delivery in runtime.deliveries if delivery.role == "launcher")
    before = {run_id: table.get_run(run_id)["committed_step"] for run_id in record.run_ids}
    store = SweepStore(session.client("s3"), outputs.bucket)
    again, created = store.create(
        SweepRecord.new(
            "sw", parse_spec(record.spec, source="s"), parse_spec(record.spec, source="s").generate("sw"), data, 2
        ),
        data,
    )
    assert not created and again.trials == record.trials
    run_sweep(runtime, table, again, Console(file=io.StringIO()))
    assert sum(1 for delivery in runtime.deliveries if delivery.role == "launcher") == launches
    assert {run_id: table.get_run(run_id)["committed_step"] for run_id in record.run_ids} == before
    with pytest.raises(
        LnnInputError, match="a sweep named sw already exists with other trials or data; choose another"
    ):
        store.create(
            SweepRecord.new(
                "sw",
                parse_spec(record.spec, source="s"),
                parse_spec(record.spec, source="s").generate("sw"),
                data + b"x",
                2,
            ),
            data + b"x",
        )


def test_the_results_rank_the_trials_by_validation_accuracy(swept, capsys):
    _, _, record, table, _, _, _ = swept
    runs = {run_id: table.get_run(run_id) for run_id in record.run_ids}
    rows = sweep_table.trial_rows(record, runs, prices=None, local=True)
    order = sweep_table.ranked(rows)
    accuracies = [row.final["validation_accuracy"] for row in order]
    assert accuracies == sorted(accuracies, reverse=True)
    assert sweep_table.best(rows) is order[0]
    show_results(Namespace(csv=True, plot=None, prices=None), record, runs, Console(), curves=lambda run: [])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("trial,optimizer,seed,status,epochs,cost,validation_accuracy,validation_cost")
    assert [line.split(",")[0] for line in lines[1:]] == [row.trial["run_id"] for row in order]
    total = sweep_table.totals(record, rows, clock=0.0)
    assert total["done"] and total["dollars"] == pytest.approx(sum(row.dollars for row in rows))


def test_ranking_without_a_validation_split_is_by_the_final_cost():
    spec = parse_spec({"base": {**BASE, "validation_split": 0}, "seeds": [1, 2, 3]}, source="s")
    record = SweepRecord.new("x", spec, spec.generate("x"), b"", None)
    runs = {
        "x-t001": {"run_id": "x-t001", "status": "succeeded", "final": {"cost": 0.5, "model_key": "k", "epochs": 4}},
        "x-t002": {"run_id": "x-t002", "status": "failed", "last_cost": 0.1},
        "x-t003": {"run_id": "x-t003", "status": "succeeded", "final": {"cost": 0.2, "model_key": "k", "epochs": 4}},
    }
    rows = sweep_table.trial_rows(record, runs, prices=None, local=True)
    assert [row.trial["run_id"] for row in sweep_table.ranked(rows)] == ["x-t003", "x-t001", "x-t002"]
    assert sweep_table.best(rows).trial["run_id"] == "x-t003"


def test_successive_halving_stops_the_worst_trials_and_they_keep_their_model(stack):
    session, outputs = stack
    data, _, _ = dataset(m=40)
    content = {
        "base": {**BASE, "epochs": 12, "eval_every": 2},
        "parameters": {"learning_rate": [0.5, 1.0, 0.001, 0.01]},
        "seeds": [1],
        "halving": {"rungs": [4], "keep": 0.5},
    }
    spec = parse_spec(content, source="s.json")
    record, _ = SweepStore(session.client("s3"), outputs.bucket).create(
        SweepRecord.new("hv", spec, spec.generate("hv"), data, None), data
    )
    table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
    said = io.StringIO()
    runtime = local_runtime(session, outputs)
    run_sweep(runtime, table, record, Console(file=said))
    runs = {run_id: table.get_run(run_id) for run_id in record.run_ids}
    decided = halted(runtime.handler("watchdog").ports, record, runs)
    assert set(decided) == {"hv-t003", "hv-t004"}  # the small learning rates arrive last and worst at rung 4
    for run_id, run in runs.items():
        if run_id in decided:
            assert run["status"] == "stopped" and run["model_epoch"] >= 4  # it keeps the model of its last epoch
            assert f"{run_id}: stopped by successive halving at epoch 4" in said.getvalue()
        else:
            assert run["status"] == "succeeded" and run["progress_epoch"] == 12
    reports = {
        run_id: {item["epoch"]: item["validation_cost"] for item in table.epoch_figures(run) if item["epoch"] == 4}
        for run_id, run in runs.items()
    }
    kept = [run_id for run_id in runs if run_id not in decided]
    assert min(reports[run_id][4] for run_id in kept) <= min(reports[run_id][4] for run_id in decided)
