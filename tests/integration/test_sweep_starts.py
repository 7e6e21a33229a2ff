"""A sweep's starts and kicks against moto's services alone (the `aws` fixture: a backend of each test's own, which
cannot share a module with the `stack` fixture's): a trial's ending invokes the watchdog with its sweep, a run that
is no trial's does not; two passes at once start a trial once; a start the launcher never recorded is started
again after a while, and after MAX_START_ATTEMPTS it ends "not started"."""

import json
import time

from lnn_cli.sweeps.record import SweepStore
from lnn_cli.sweeps.spec import parse_spec
from lnn_cli.sweeps.table import summary_line
from lnn_core.handlers import build_launcher, build_trainer, build_watchdog
from lnn_core.sweep import results
from lnn_core.sweep.controller import not_started
from lnn_core.sweep.record import MAX_START_ATTEMPTS, NOT_STARTED, PENDING_SECONDS, SweepRecord
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.integration.test_sweep_controller import BASE
from tests.support.arrays import npz_bytes


def test_a_trials_ending_kicks_the_watchdog_with_its_sweep_and_another_runs_does_not(aws):
    """The kick: the ending of a run whose parameters name its sweep (and its epochs with a validation cost)."""
    X, y = blobs(40)
    steps, kicks, clock = QueueInvoker(), QueueInvoker(), FakeClock()
    launcher = build_launcher(session=aws.session, invoker=steps, clock=clock)
    trainer = build_trainer(session=aws.session, invoker=steps, clock=clock, functions={"watchdog": kicks})
    parameters = {**BASE, "seed": 1}
    for run_id, extra in (("sw-t001", {"sweep": "sw"}), ("alone", {})):
        aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
        assert launcher.handle({"run_id": run_id, "parameters": {**parameters, **extra}})["status"] == "running"
        while steps.events:
            trainer.handle(steps.events.popleft())
        assert trainer.ports.table.get_run(run_id)["status"] == "succeeded"
    assert list(kicks.events) == [{"sweep": "sw"}]
    assert trainer.ports.table.get_run("sw-t001")["config"]["sweep"] == "sw"

    # A trial that records its validation cost every epoch kicks at each such epoch too, naming it (a halving rung
    # may judge it), and at its end: epochs 1, 2 and 3 (the finish is a step of its own), then the ending.
    kicks.events.clear()
    aws.upload_data("runs/sw-t002/data.npz", X=X, y=y)
    rungs = {**parameters, "sweep": "sw", "eval_every": 1}
    assert launcher.handle({"run_id": "sw-t002", "parameters": rungs})["status"] == "running"
    while steps.events:
        trainer.handle(steps.events.popleft())
    assert list(kicks.events) == [{"sweep": "sw", "epoch": epoch} for epoch in (1, 2, 3)] + [{"sweep": "sw"}]


def test_two_passes_that_read_at_once_start_a_trial_once(aws):
    """Two passes both see trial 1 unmarked (their reads came before either wrote): the start mark, created only if
    absent, lets one of them launch it."""
    X, y = blobs(40)
    data = npz_bytes(X=X, y=y)
    spec = parse_spec({"base": BASE, "seeds": [1, 2]}, source="s.json")
    store = SweepStore(aws.s3, aws.bucket)
    store.create(SweepRecord.new("race", spec, spec.generate("race"), data, 1), data)
    launches, clock = QueueInvoker(), FakeClock()
    first, second = (
        build_watchdog(session=aws.session, invoker=QueueInvoker(), clock=clock, functions={"launcher": launches})
        for _ in range(2)
    )
    second.sweeps._start_marks = lambda record, runs: {}  # its reads of the marks came before the first's write
    assert first.sweeps.reconcile("race")["started"] == ["race-t001"]
    assert second.sweeps.reconcile("race")["started"] == []
    assert [event["run_id"] for event in launches.events] == ["race-t001"]


def test_a_start_the_launcher_never_recorded_is_started_again_after_a_while(aws):
    """The launch of trial 1 is lost (or refused: the stack was full): within PENDING_SECONDS its place is held,
    after it the next pass launches it again, once, under an If-Match on its mark."""
    X, y = blobs(40)
    data = npz_bytes(X=X, y=y)
    spec = parse_spec({"base": BASE, "seeds": [1, 2]}, source="s.json")
    SweepStore(aws.s3, aws.bucket).create(SweepRecord.new("again", spec, spec.generate("again"), data, 1), data)
    launches, clock = QueueInvoker(), FakeClock(time.time())
    passes = [
        build_watchdog(session=aws.session, invoker=QueueInvoker(), clock=clock, functions={"launcher": launches})
        for _ in range(2)
    ]
    assert passes[0].sweeps.reconcile("again")["started"] == ["again-t001"]
    launches.events.clear()  # lost
    clock.advance(PENDING_SECONDS / 2)
    assert [watchdog.sweeps.reconcile("again")["started"] for watchdog in passes] == [[], []]  # it holds its place
    clock.advance(PENDING_SECONDS)
    stale = passes[1].sweeps._start_marks  # the second pass read the stale mark before the first replaced it
    marks = stale(
        SweepRecord.from_json(aws.s3.get_object(Bucket=aws.bucket, Key="runs/again/sweep.json")["Body"].read()), {}
    )
    passes[1].sweeps._start_marks = lambda record, runs: marks
    assert [watchdog.sweeps.reconcile("again")["started"] for watchdog in passes] == [["again-t001"], []]
    assert [event["run_id"] for event in launches.events] == ["again-t001"]
    mark = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key="runs/again-t001/trial.json")["Body"].read())
    assert mark["attempt"] == 2


def test_a_trial_the_launcher_refuses_for_good_ends_not_started_and_the_sweep_ends(aws):
    """Trial 1's launch never makes a run (the launcher refuses it every time): after MAX_START_ATTEMPTS starts, each
    left PENDING_SECONDS, it counts as ended, not started (why: the launcher refused it); trial 2 takes its place,
    and once it ends the sweep is done and its message sent, which counts the trial not started."""
    X, y = blobs(40)
    data = npz_bytes(X=X, y=y)
    spec = parse_spec({"base": BASE, "seeds": [1, 2]}, source="s.json")
    record, _ = SweepStore(aws.s3, aws.bucket).create(
        SweepRecord.new("nope", spec, spec.generate("nope"), data, 1), data
    )
    steps, launches, clock = QueueInvoker(), QueueInvoker(), FakeClock(time.time())
    watchdog = build_watchdog(session=aws.session, invoker=steps, clock=clock, functions={"launcher": launches})
    for _ in range(MAX_START_ATTEMPTS):  # (a mark's age is read against S3's LastModified: the wall clock)
        assert watchdog.sweeps.reconcile("nope")["started"] == ["nope-t001"]
        launches.events.clear()  # refused: no run record
        clock.seconds = time.time() + PENDING_SECONDS / 2
        assert watchdog.sweeps.reconcile("nope")["started"] == []  # it holds its place meanwhile
        assert not not_started(watchdog.ports, record, watchdog.sweeps.runs(record))
        clock.seconds = time.time() + PENDING_SECONDS + 1
    runs = watchdog.sweeps.runs(record)
    assert not_started(watchdog.ports, record, runs) == {"nope-t001": NOT_STARTED}

    outcome = watchdog.sweeps.reconcile("nope")
    assert outcome["started"] == ["nope-t002"] and outcome["outcome"] == "in progress"
    launcher = build_launcher(session=aws.session, invoker=steps, clock=clock)
    trainer = build_trainer(session=aws.session, invoker=steps, clock=clock)
    assert launcher.handle(launches.events.popleft())["status"] == "running"
    while steps.events:
        trainer.handle(steps.events.popleft())
    outcome = watchdog.sweeps.reconcile("nope")
    assert (outcome["outcome"], outcome["started"], outcome["message_sent"]) == ("done", [], True)
    body = json.loads(aws.s3.get_object(Bucket=aws.bucket, Key="runs/nope/sweep-message.json")["Body"].read())
    assert body["sent"]
    rows = results.trial_rows(
        record, watchdog.sweeps.runs(record), prices=None, local=True, not_started={"nope-t001": NOT_STARTED}
    )
    assert [row.status for row in rows] == ["not started", "succeeded"]
    assert summary_line(record, rows, time.time()).endswith(
        "; nope-t001 not started: the launcher refused it 3 times; see the launcher's log or the dead-letter queue"
    )


class CountedReads:
    """The run records a pass reads."""

    def __init__(self, table):
        self.table, self.run_ids = table, []
        self.get_run = table.get_run
        table.get_run = self.read

    def read(self, run_id):
        self.run_ids.append(run_id)
        return self.get_run(run_id)


def test_an_epoch_kick_reconciles_only_at_a_halving_rung(aws):
    """A trial kicks at every epoch with a validation cost; the watchdog reads the sweep's record alone and returns,
    unless the sweep has halving and the epoch is one of its rungs. An ending's kick always reconciles."""
    X, y = blobs(40)
    data = npz_bytes(X=X, y=y)
    store = SweepStore(aws.s3, aws.bucket)
    for sweep_id, extra in (("plain", {}), ("halved", {"halving": {"rungs": [2], "keep": 0.5}})):
        spec = parse_spec({"base": {**BASE, "eval_every": 1}, "seeds": [1, 2], **extra}, source="s.json")
        store.create(SweepRecord.new(sweep_id, spec, spec.generate(sweep_id), data, 1), data)
    watchdog = build_watchdog(
        session=aws.session, invoker=QueueInvoker(), clock=FakeClock(), functions={"launcher": QueueInvoker()}
    )
    reads = CountedReads(watchdog.ports.table)

    assert watchdog.handle({"sweep": "plain", "epoch": 2}) == {
        "sweep_id": "plain",
        "outcome": "no halving rung at epoch 2",
    }
    assert watchdog.handle({"sweep": "halved", "epoch": 1})["outcome"] == "no halving rung at epoch 1"
    assert reads.run_ids == []
    assert watchdog.handle({"sweep": "halved", "epoch": 2})["started"] == ["halved-t001"]
    assert watchdog.handle({"sweep": "plain"})["started"] == ["plain-t001"]
    assert set(reads.run_ids) == {"halved-t001", "halved-t002", "plain-t001", "plain-t002"}
