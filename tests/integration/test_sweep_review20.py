"""Review (review20) of the stack-driven sweep (issue 20, branch s24-sweepd). A test named test_review_<...> whose
docstring says REVIEW FINDING fails on s24-sweepd as reviewed and passes once the finding is fixed; one that says
REVIEW COVERAGE passes now and covers a branch no sweep test reached. They drive the watchdog's sweep controller
and the CLI's commands against moto (the `aws` fixture), with the run records and epoch items a sweep's trials
would have written."""

import hashlib
from decimal import Decimal

import pytest

from lnn_cli import deployed_stack
from lnn_cli.main import main
from lnn_cli.sweeps.record import SweepStore
from lnn_cli.sweeps.spec import parse_spec
from lnn_core.aws.codec import to_dynamo
from lnn_core.aws.table_access import RUN_RECORD_EPOCH
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.handlers import build_launcher, build_watchdog
from lnn_core.ml.config import TrainingConfig
from lnn_core.sweep.record import SweepRecord, trial_data_key
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.support.arrays import npz_bytes
from tests.support.sweeps import SWEEP_TRIAL, cli_stack, record_sweep, start_sweep

BASE = {"epochs": 20, **SWEEP_TRIAL, "validation_split": 0.25, "eval_every": 10}


def data_file(seed: int) -> bytes:
    X, y = blobs(40, features=3, seed=seed)
    return npz_bytes(X=X, y=y)


def watchdog(aws):
    launches = QueueInvoker()
    return build_watchdog(
        session=aws.session, invoker=QueueInvoker(), clock=FakeClock(), functions={"launcher": launches}
    ), launches


def put_run(aws, run_id: str, *, progress_epoch: int, status: str = "running") -> None:
    table = aws.session.resource("dynamodb").Table("lnn-results")
    table.put_item(
        Item=to_dynamo(
            {
                "run_id": run_id,
                "epoch": RUN_RECORD_EPOCH,
                "status": status,
                "progress_epoch": progress_epoch,
                "stop_requested": False,
                "config": {"sweep": run_id.rsplit("-", 1)[0]},
            }
        )
    )


def put_rung_item(aws, run_id: str, epoch: int, *, validation_cost: float, finished_at: str) -> None:
    """A committed epoch item's figures (the run's partition, at its epoch), with its validation cost."""
    table = aws.session.resource("dynamodb").Table("lnn-results")
    table.put_item(
        Item={
            "run_id": run_id,
            "epoch": epoch,
            "cost": Decimal("0.5"),
            "validation_cost": Decimal(str(validation_cost)),
            "finished_at": finished_at,
        }
    )
    table.update_item(
        Key={"run_id": run_id, "epoch": RUN_RECORD_EPOCH},
        UpdateExpression="SET progress_epoch = :e",
        ExpressionAttributeValues={":e": epoch},
    )


def test_review_halving_decisions_do_not_change_when_an_earlier_finished_rung_commits_late(aws):
    """REVIEW FINDING (review20, medium): halving orders a rung's arrivals by the epoch item's `finished_at`, but an
    item becomes visible only when its step commits, which (granularity auto: many epochs per step; or a slow
    commit) can be after a later-finished item of another trial. keep 0.5 (grace 2), rung 10:
    pass 1 sees A (1.0, finished :10) and B (2.0, :11): B ranks 2 of 2, 1 continues -> B is stopped (enforced).
    Then C's item commits: 3.0, finished :09 (earlier than both). Pass 2 recomputes from scratch with C first:
    C is within the grace (1 arrived), A is 1 of 2, B is 2 of 3 with 2 kept -> nothing is decided. So B was
    stopped for a ranking the sweep no longer holds (its "halving @10" reason is gone from the table), and C, the
    worst at the rung, is never stopped: the decisions differ between passes and are revised by a later arrival,
    against docs/sweeps.md ("a decision is never revised", "every pass makes the same ones"). Fixed when C, which
    arrived third and worst of three, is stopped by pass 2 (e.g. decisions recorded once, in order of visibility)."""
    content = {"base": BASE, "seeds": [1, 2, 3], "halving": {"rungs": [10], "keep": 0.5}}
    record = record_sweep(aws.s3, aws.bucket, "hv", content, data_file(0), None)
    a, b, c = record.run_ids
    for run_id in record.run_ids:
        put_run(aws, run_id, progress_epoch=0)
    put_rung_item(aws, a, 10, validation_cost=1.0, finished_at="2026-12-05T10:00:10.000Z")
    put_rung_item(aws, b, 10, validation_cost=2.0, finished_at="2026-12-05T10:00:11.000Z")
    dog, _ = watchdog(aws)

    first = dog.sweeps.reconcile("hv")
    assert set(first["stopped"]) == {b}  # B: 2nd of 2 at rung 10

    # B's stop lands; C's step, which finished its rung epoch before A's and B's, commits now.
    aws.session.resource("dynamodb").Table("lnn-results").update_item(
        Key={"run_id": b, "epoch": RUN_RECORD_EPOCH},
        UpdateExpression="SET #s = :stopped",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":stopped": "stopped"},
    )
    put_rung_item(aws, c, 10, validation_cost=3.0, finished_at="2026-12-05T10:00:09.000Z")

    second = dog.sweeps.reconcile("hv")
    assert c in second["stopped"], (
        f"C ranks 3rd of the 3 trials seen at rung 10 (1.0, 2.0, 3.0) after B was stopped as 2nd of 2, yet pass 2 "
        f"stopped {second['stopped']}"
    )


def test_review_a_queued_trial_never_starts_on_data_other_than_the_sweeps(aws):
    """REVIEW FINDING (review20, high): the controller copies runs/<sweep>/data.npz to each trial as it starts it,
    hours after `lnn sweep start`, without checking that it is still the data the sweep was recorded with
    (`SweepRecord.data_md5`). That key is not the sweep's alone: `lnn start --name <sweep>` (a run of the sweep's
    name: no run record of that name exists, so the CLI uploads) or a concurrent `lnn sweep start` of the same name
    with other data (next test) overwrite it. The trials queued after that train on the other data, and the sweep
    ranks them with the rest. Fixed when a trial is only started on the recorded data (a conditional copy, or an
    md5/ETag check that refuses with one clear line)."""
    data = data_file(0)
    record = record_sweep(aws.s3, aws.bucket, "dq", {"base": BASE, "seeds": [1, 2]}, data, 1)
    # e.g. `lnn start --name dq --data other.npz`, an hour into the sweep (before `lnn start` refused a sweep's name)
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/dq/data.npz", Body=data_file(7))
    dog, launches = watchdog(aws)
    try:
        dog.sweeps.reconcile("dq")
    except (LnnInputError, RunFailure):
        pass  # refusing to start the trial is a fix
    for event in launches.events:
        copied = aws.s3.get_object(Bucket=aws.bucket, Key=trial_data_key(event["run_id"]))["Body"].read()
        assert hashlib.md5(copied).hexdigest() == record.data_md5, (
            f"{event['run_id']} was launched on data that is not its sweep's"
        )


def test_review_a_refused_concurrent_start_leaves_the_sweeps_data_alone(aws):
    """REVIEW FINDING (review20, medium): `SweepStore.create` uploads runs/<sweep>/data.npz unconditionally before
    its conditional put of the record. Two `lnn sweep start --name s` at once with different data: A records its
    sweep; B (which read "no sweep" before A's record existed) overwrites A's data, then loses the record's
    If-None-Match and is refused ("already exists with other trials or data"). A's sweep now holds B's data, and
    every trial the stack starts after that copies it (previous test). Fixed when the refused start leaves A's data
    in place (e.g. the record first and the data only by its creator, or the data under a key of its md5)."""
    data_a, data_b = data_file(0), data_file(7)
    record_sweep(aws.s3, aws.bucket, "race", {"base": BASE, "seeds": [1, 2]}, data_a, 1)

    class ReadBeforeTheOther(SweepStore):
        """B's start: its read came before A's record existed."""

        reads = 0

        def read(self, sweep_id):
            self.reads += 1
            return None if self.reads == 1 else super().read(sweep_id)

    spec = parse_spec({"base": BASE, "seeds": [1, 2]}, source="s.json")
    with pytest.raises(LnnInputError, match="already exists with other trials or data"):
        ReadBeforeTheOther(aws.s3, aws.bucket).create(
            SweepRecord.new("race", spec, spec.generate("race"), data_b, 1), data_b
        )
    recorded = SweepStore(aws.s3, aws.bucket).read("race")
    kept = aws.s3.get_object(Bucket=aws.bucket, Key=recorded.data_key)["Body"].read()
    assert kept == data_a, "the refused start replaced the recorded sweep's data"


def test_review_a_sweep_named_as_an_existing_run_leaves_that_runs_data_alone(aws, tmp_path):
    """REVIEW FINDING (review20, high): sweeps and runs share the `runs/<id>/` namespace, and `lnn sweep start`
    uploads the sweep's data to runs/<sweep>/data.npz after checking only for a sweep of that name, never for a run.
    A sweep named as an existing run (a user's run `exp`, or a trial `cats-t001` of another sweep) overwrites that
    run's training data; a running run's steps read the data of the ETag it was created with, so it fails, and a
    finished one can no longer be resumed. Fixed when the start refuses the name (one clear line) or keeps its data
    elsewhere: the run's data is unchanged either way."""
    steps, launches = QueueInvoker(), QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=steps, clock=FakeClock())
    run_data = data_file(0)
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/exp/data.npz", Body=run_data)
    assert launcher.handle({"run_id": "exp", "parameters": {**BASE, "seed": 1}})["status"] == "running"

    dog = build_watchdog(session=aws.session, invoker=steps, clock=FakeClock(), functions={"launcher": launches})
    try:
        start_sweep(tmp_path, cli_stack(aws, dog), "exp", {"base": BASE, "seeds": [1, 2]}, data_file(7), parallel=1)
    except LnnInputError:
        pass  # refusing the name is a fix
    kept = aws.s3.get_object(Bucket=aws.bucket, Key="runs/exp/data.npz")["Body"].read()
    assert kept == run_data, "`lnn sweep start --name exp` replaced the data of the run exp"


def test_review_lnn_sweep_status_of_a_sweep_whose_data_is_gone_is_one_clean_line(aws, monkeypatch, capsys):
    """REVIEW FINDING (review20, low): `lnn sweep status` runs a pass of the controller, which raises `RunFailure`
    ("sweep ...'s data ... is missing; ... start the sweep again under another name") when it would start a queued
    trial and runs/<sweep>/data.npz is gone. `lnn_cli.main` turns LnnInputError, DeployError and AWS errors into one
    line, not RunFailure: the user gets a traceback. Fixed when the command ends with one `lnn: error:` line."""
    record_sweep(aws.s3, aws.bucket, "gone", {"base": BASE, "seeds": [1, 2]}, data_file(0), 1)
    aws.s3.delete_object(Bucket=aws.bucket, Key=SweepStore(aws.s3, aws.bucket).read("gone").data_key)
    dog, _ = watchdog(aws)
    stack = cli_stack(aws, dog)
    monkeypatch.setattr(deployed_stack, "open_stack", lambda *_: stack)
    status = main(["sweep", "status", "gone"])
    error = capsys.readouterr().err.strip().splitlines()
    assert status != 0 and len(error) == 1 and error[0].startswith("lnn: error:"), error


@pytest.mark.parametrize("value", ["", "a" * 59, "bad name", "x\n", 5, ["a"]])
def test_review_coverage_a_bad_sweep_parameter_is_one_clear_line(value):
    """REVIEW COVERAGE (review20; passes on s24-sweepd): the new parameter `sweep` (kind SWEEP) is checked, but no
    test gave it a bad value: with its check removed, the parameter tests all passed."""
    parameters = {**BASE, "data": "runs/x/data.npz", "sweep": value}
    with pytest.raises(LnnInputError, match=r"^sweep must be a sweep's name: 1-58 letters"):
        TrainingConfig.from_parameters(parameters, defaults={})
    assert TrainingConfig.from_parameters({**parameters, "sweep": "a" * 58}, defaults={}).sweep == "a" * 58


def test_review_a_new_sweep_never_takes_an_existing_run_for_one_of_its_trials(aws, tmp_path):
    """REVIEW FINDING (review20, medium): a trial has started when a run of its id exists, and a new sweep's trial
    ids (<sweep>-t001, ...) are never checked against the runs that exist. A user's run `exp-t001` (other
    parameters, other data), then `lnn sweep start --name exp`: the sweep never launches its own trial 1, counts
    the user's run as it, ranks it (its model may become `lnn predict exp`'s), and successive halving may stop it.
    Fixed when the start refuses (one clear line naming exp-t001) or names its trials so that they cannot clash."""
    steps, launches = QueueInvoker(), QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=steps, clock=FakeClock())
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/exp-t001/data.npz", Body=data_file(3))
    foreign = {**BASE, "seed": 9, "learning_rate": 0.05}
    assert launcher.handle({"run_id": "exp-t001", "parameters": foreign})["status"] == "running"

    dog = build_watchdog(session=aws.session, invoker=steps, clock=FakeClock(), functions={"launcher": launches})
    try:
        start_sweep(tmp_path, cli_stack(aws, dog), "exp", {"base": BASE, "seeds": [1, 2]}, data_file(0), parallel=2)
    except LnnInputError as error:
        assert "exp-t001" in str(error)
        return
    record = SweepStore(aws.s3, aws.bucket).read("exp")
    assert "exp-t001" not in record.run_ids, "the sweep took the user's run exp-t001 for its trial 1"
