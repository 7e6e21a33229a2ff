"""The sweep's queue: trials start in order while fewer than the limits run; a repeated start starts nothing twice;
a bad sweep starts nothing."""

from types import SimpleNamespace

import pytest

from lnn_cli.inputs import DEMO_DATA
from lnn_cli.sweeps import commands
from lnn_cli.sweeps.spec import parse_spec
from lnn_core.errors import LnnInputError
from lnn_core.launch.launcher import LaunchLimits
from lnn_core.sweep import results
from lnn_core.sweep.record import PENDING_SECONDS, SweepRecord, stack_limit, trials_to_start
from tests.support.sweeps import start_args

BASE = {"epochs": 3, "learning_rate": 0.01, "neurons": [4, 1], "activations": ["relu", "sigmoid"]}


def record(trials=5, parallel=None):
    spec = parse_spec({"base": BASE, "seeds": list(range(trials))}, source="sweep.json")
    return SweepRecord.new("s", spec, spec.generate("s"), b"data", parallel)


def running(*ids, status="running"):
    return {run_id: {"run_id": run_id, "status": status} for run_id in ids}


def chosen(rec, runs, pending=None, *, stack_running=0, limit=10, clock=100.0):
    picked = trials_to_start(rec, runs, pending or {}, stack_running=stack_running, stack_limit=limit, clock=clock)
    return [trial["run_id"] for trial in picked]


def test_trials_start_in_order_up_to_the_sweeps_parallel():
    rec = record(5, parallel=2)
    assert chosen(rec, {}) == ["s-t001", "s-t002"]
    assert chosen(rec, running("s-t001", "s-t002"), stack_running=2) == []
    ended = {**running("s-t001", status="succeeded"), **running("s-t002")}
    assert chosen(rec, ended, stack_running=1) == ["s-t003"]


def test_the_stacks_limit_counts_every_run_on_the_stack():
    rec = record(5)
    assert chosen(rec, {}, stack_running=8, limit=10) == ["s-t001", "s-t002"]  # 8 runs of others already running
    assert chosen(rec, {}, stack_running=10, limit=10) == []
    assert chosen(rec, {}, stack_running=12, limit=10) == []  # never a negative count


def test_an_upload_not_yet_launched_holds_its_place_for_a_while():
    rec = record(5, parallel=2)
    pending = {"s-t001": 100.0}
    assert chosen(rec, {}, pending, clock=110.0) == ["s-t002"]
    assert chosen(rec, {}, pending, stack_running=0, limit=1, clock=110.0) == []  # the upload takes the stack's place
    late = 100.0 + PENDING_SECONDS + 1  # refused by the launcher (its record never came): started again
    assert chosen(rec, {}, pending, clock=late) == ["s-t001", "s-t002"]


def test_trials_that_have_a_run_are_never_started_again():
    rec = record(4)
    done = {**running("s-t001", "s-t003", status="succeeded"), **running("s-t002", status="failed")}
    assert chosen(rec, done) == ["s-t004"]


def test_the_trainers_reservation_limits_runs_at_once():
    assert stack_limit(10, None, 1) == 10
    assert stack_limit(10, 4, 1) == 4
    assert stack_limit(10, 8, 3) == 2  # a run of 3 shard workers takes 3 of the reservation


def start_offline(tmp_path, limits: LaunchLimits, content: str) -> int:
    """`lnn sweep start --name s` of a sweep file holding `content`, on the demo data, against a stack of `limits`
    whose clients fail the test when asked for: what is refused before anything is written."""
    stack = SimpleNamespace(
        launch_limits=lambda: limits,
        launch_defaults=lambda: {"epochs": 3, "learning_rate": 0.01},
        session=SimpleNamespace(client=lambda *a, **k: pytest.fail("AWS was called")),
    )
    sweep = tmp_path / "sweep.json"
    sweep.write_text(content)
    args = start_args(sweep, DEMO_DATA, name="s", parallel=None)
    return commands.command_sweep_start(args, {}, stack, console=None)


def test_a_bad_sweep_starts_nothing(tmp_path):
    """Every trial is checked before anything is written: the stack's clients are never asked for."""
    with pytest.raises(LnnInputError, match=r"sweep trial 2 \(batch_size=0\) is not a valid run: batch_size must be"):
        start_offline(
            tmp_path,
            LaunchLimits(max_running_runs=2),
            '{"base": {"neurons": [4, 1], "activations": ["relu", "sigmoid"]}, "parameters": {"batch_size": [16, 0]}}',
        )
    with pytest.raises(LnnInputError, match=r"sweep trial 2 \(s-t002\) is not a valid run: workers 3 is more than"):
        start_offline(
            tmp_path,
            LaunchLimits(trainer_concurrency=2),
            '{"base": {"neurons": [4, 1], "activations": ["relu", "sigmoid"], "granularity": "epoch"}, '
            '"parameters": {"workers": [1, 3]}}',
        )


def test_every_trials_memory_is_checked_and_the_first_that_does_not_fit_is_named(tmp_path):
    """Trials differ in their network: the third's step does not fit the trainer's memory, though the first's does;
    the sweep is refused naming it, before AWS is asked anything."""
    with pytest.raises(LnnInputError, match=r"sweep trial 3 \(s-t003\) is not a valid run: .*1024 MB"):
        start_offline(
            tmp_path,
            LaunchLimits(trainer_memory_mb=1024),
            '{"base": {"activations": ["relu", "sigmoid"]}, "parameters": {"neurons": [[4, 1], [8, 1], [100000, 1]]}}',
        )


def test_a_collapsed_trial_ranks_after_every_trial_that_learned():
    """t001 has the best validation accuracy but its model predicts one class: t003 is the sweep's best."""
    rec = record(3)
    rec.trials = [{**trial, "parameters": {**trial["parameters"], "validation_split": 0.2}} for trial in rec.trials]

    def ended(run_id, accuracy, warnings=()):
        final = {"validation_accuracy": accuracy, "model_key": "m", "epochs": 3, "warnings": list(warnings)}
        return {"run_id": run_id, "status": "succeeded", "final": final}

    runs = {
        "s-t001": ended("s-t001", 0.9, ["the model predicts class 0 for all 40 examples: it learned nothing"]),
        "s-t002": ended("s-t002", 0.7),
        "s-t003": ended("s-t003", 0.8),
    }
    rows = results.trial_rows(rec, runs, prices=None, local=True)
    assert [row.trial["run_id"] for row in results.ranked(rows)] == ["s-t003", "s-t002", "s-t001"]
    assert results.best(rows).trial["run_id"] == "s-t003"
    assert [row.collapsed for row in rows] == [True, False, False]
