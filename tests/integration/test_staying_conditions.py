"""Workers that stay: the conditions of their rounds, each against its mutant (tests/mutants.py), with deliveries
in threads against in-process moto."""

import threading
import time

import pytest

from lnn_cli.cloud.runtime import atomic_requests
from lnn_core.protocol import sending, staying
from tests.conftest import blobs
from tests.integration.test_lost_answers import World
from tests.support.deliveries import WAIT_SECONDS, Delivery, context
from tests.support.runs import THREE_WORKERS, reference

ROUNDS = {**THREE_WORKERS, "reduce": "workers", "workers": 2}  # 40 examples of 16: 3 rounds an epoch, 2 epochs


class Hold:
    """Holds the `nth` call of a port method (1 is the first) until the test opens it; with `dies`, that call fails
    instead (a function error: Lambda retries the event)."""

    def __init__(self, port, method: str, nth: int, *, dies: bool = False):
        self.reached, self.opened, self.calls = threading.Event(), threading.Event(), 0
        original = getattr(port, method)

        def held(*args, **kwargs):
            self.calls += 1
            if self.calls == nth:
                self.reached.set()
                if dies:
                    raise RuntimeError("the worker died here")
                assert self.opened.wait(WAIT_SECONDS), "the test never opened the hold"
            return original(*args, **kwargs)

        setattr(port, method, held)


@pytest.fixture
def rounds(aws):
    with atomic_requests():
        world = World(aws)
        world.launch(ROUNDS)
        world.trainer().handle(world.queue.events.popleft(), context("request-start"))
        yield world


def workers(world, events, holds=None, remaining=None):
    """A delivery of each shard event, in threads, each in a container of its own: `holds` maps a shard to the
    `Hold` arguments of its container's port method, `remaining` to its invocation's seconds left (300)."""
    deliveries = []
    for event in events:
        trainer = staying_trainer(world)
        for port, method, nth, dies in (holds or {}).get(event["shard"], []):
            trainer.hold = Hold(getattr(trainer.ports, port), method, nth, dies=dies)
        seconds = (remaining or {}).get(event["shard"], 300.0)
        deliveries.append(Delivery(trainer, event, context(f"request-{event['shard']}", remaining_seconds=seconds)))
    for delivery in deliveries:
        delivery.start()
    return deliveries


def staying_trainer(world):
    """A trainer whose waits move the test's clock and end after 20 s (a peer that never comes)."""
    trainer = world.trainer()
    trainer.wait_seconds, trainer.ports.wait = 20.0, paced(world.clock)
    return trainer


def paced(clock):
    """A wait that also moves the test's clock (`FakeClock`) by its pause."""

    def wait(seconds):
        time.sleep(max(seconds, 0.005))  # the others' turn: in-process moto serves one request at a time
        clock.advance(max(seconds, 0.005))

    return wait


def reference_costs():
    return reference(ROUNDS, *blobs(40))[1]


def test_a_commit_that_keeps_the_workers_leaves_no_send_for_a_late_copy_to_claim(rounds):
    """Mutant: the keeping commit does not record the next round as sent. Worker 0 is held before round 3's
    barrier, after round 2's commit kept the workers: a late copy that finds round 2 committed (a copy whose own
    commit lost) must find nothing to re-send, else K more workers join the K that stay."""
    events = [rounds.queue.events.popleft() for _ in range(2)]
    first, second = workers(rounds, events, {0: [("table", "join_barrier", 3, False)]})
    trainer0 = first.trainer
    assert trainer0.hold.reached.wait(WAIT_SECONDS)
    record = rounds.record()
    assert (record["committed_step"], record["staying_step"], record["invoked_step"]) == (3, 4, 4)
    late = rounds.trainer()
    assert sending.claim_next_send(late.ports, record, claimant="late copy") is None
    assert not rounds.queue.events
    trainer0.hold.opened.set()
    assert first.finish() in ("committed", "slice") and second.finish() in ("committed", "slice")
    assert rounds.record()["status"] == "running" and [event["state"] for event in rounds.queue.events] == ["fit"] * 2


def test_a_worker_that_died_in_its_rounds_is_replaced_by_its_retry_which_joins_its_peers(rounds):
    """Mutant: a retry of a staying worker's event is a duplicate. Worker 0 dies before joining round 3's barrier
    (after round 2's commit kept the workers); worker 1 waits in round 3; Lambda's retry of worker 0's event (step
    2, committed) joins round 3 for shard 0, and the two finish the run's rounds bit for bit."""
    events = [rounds.queue.events.popleft() for _ in range(2)]
    first, second = workers(rounds, events, {0: [("table", "join_barrier", 3, True)]})
    assert first.finish().startswith("raised RuntimeError")
    retry = Delivery(staying_trainer(rounds), events[0], context("request-0"))
    retry.start()
    assert retry.finish() in ("committed", "slice") and second.finish() in ("committed", "slice")
    assert [event["state"] for event in rounds.queue.events] == ["fit"] * 2
    rounds.drain(rounds.trainer())
    result = rounds.record()
    assert result["status"] == "succeeded", result.get("reason")
    assert [item["cost"] for item in rounds.trainer().ports.table.epoch_items("r1")] == reference_costs()


def test_a_round_of_staying_workers_that_misses_a_shard_is_resumed_with_every_worker(rounds):
    """Mutant: the resume of staying workers sends only the missing shards. Those already in the barrier waited
    out and ended; each worker makes its own slice, so a resume that sent shard 1 alone would leave slice 0 to the
    next stall."""
    ports = rounds.trainer().ports
    ports.table.join_barrier("r1", 2, 0, loss=0.5)
    assert [event["shard"] for event in sending.pending(ports, rounds.record())] == [0, 1]


def test_a_worker_whose_time_runs_short_hands_its_shard_over_and_the_run_goes_on(rounds):
    """Mutant: a hand-over that invokes nothing. Worker 1's invocation has 20 s left, less than a round more
    needs (`END_MARGIN_SECONDS` and three rounds), when worker 0's commit of round 1 keeps the workers: worker 1
    invokes its shard event of round 2 and ends; that delivery joins round 2 and the two finish the rounds."""
    events = [rounds.queue.events.popleft() for _ in range(2)]
    first, second = workers(
        rounds, events, {0: [("table", "join_slices", 1, False)]}, remaining={1: staying.END_MARGIN_SECONDS}
    )
    assert first.trainer.hold.reached.wait(WAIT_SECONDS)  # worker 0's slice joins last: it commits round 1
    ports = rounds.trainer().ports
    deadline = time.monotonic() + WAIT_SECONDS
    while ports.table.round_progress("r1", 2).slices_done != {1} and time.monotonic() < deadline:
        time.sleep(0.01)
    first.trainer.hold.opened.set()
    assert second.finish() == "handed over"
    assert rounds.queue.events, "worker 1 handed nothing over"
    handed = rounds.queue.events.popleft()
    assert (handed["state"], handed["shard"], handed["step"]) == ("shard", 1, 3)
    successor = Delivery(staying_trainer(rounds), handed, context("request-1b"))
    successor.start()
    assert successor.finish() in ("committed", "slice") and first.finish() in ("committed", "slice")
    rounds.drain(rounds.trainer())
    result = rounds.record()
    assert result["status"] == "succeeded", result.get("reason")
    assert [item["cost"] for item in rounds.trainer().ports.table.epoch_items("r1")] == reference_costs()


def test_a_worker_makes_its_slice_only_once_every_shard_is_in(rounds):
    """Mutant: a staying worker's waits end one worker short. Worker 1 is held before its sums' first PUT: worker 0,
    in the barrier alone, computes and writes no slice (it would read sums that are not there)."""
    events = [rounds.queue.events.popleft() for _ in range(2)]
    first, second = workers(rounds, events, {1: [("store", "put_bytes", 1, False)]})
    assert second.trainer.hold.reached.wait(WAIT_SECONDS)
    ports = rounds.trainer().ports
    deadline = time.monotonic() + 10
    while ports.table.round_progress("r1", 2).shards_done != {0} and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.5)  # worker 0 polls the barrier meanwhile
    progress, record = ports.table.round_progress("r1", 2), rounds.record()
    assert progress.shards_done == {0} and not progress.slices_done and record["status"] == "running"
    second.trainer.hold.opened.set()
    assert first.finish() in ("committed", "slice") and second.finish() in ("committed", "slice")


def test_staying_workers_leave_the_objects_of_a_round_in_slices(rounds, aws):
    """Mutant: a worker ends without its commits' cleanup. Every obsolete object is deleted (the committers'
    cleanup, made while they next wait, or at their end): the run leaves what the same run's rounds in slices
    leave (the kept state, the model, the data). Worker 0 makes every commit, so it never waits for another's:
    its cleanup is all made at its end."""
    events = [rounds.queue.events.popleft() for _ in range(2)]
    committer, other = staying_trainer(rounds), staying_trainer(rounds)
    join = committer.ports.table.join_slices

    def join_last(run_id, step, slice_):  # worker 0 joins each slice barrier after worker 1: it makes every commit
        deadline = time.monotonic() + WAIT_SECONDS
        while other.ports.table.round_progress(run_id, step).slices_done != {1} and time.monotonic() < deadline:
            time.sleep(0.005)
        return join(run_id, step, slice_)

    committer.ports.table.join_slices = join_last
    deliveries = [
        Delivery(trainer, event, context(f"request-{n}"))
        for n, (trainer, event) in enumerate(zip((committer, other), events))
    ]
    for delivery in deliveries:
        delivery.start()
    assert [delivery.finish() for delivery in deliveries] == ["committed", "slice"]
    rounds.drain(rounds.trainer())
    X, y = blobs(40)
    aws.upload_data("runs/r2/data.npz", X=X, y=y)
    parameters = {**ROUNDS, "reduce": "slices"}
    assert rounds.launcher().handle({"run_id": "r2", "parameters": parameters})["status"] == "running"
    rounds.drain(rounds.trainer())

    def left(run_id):
        listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix=f"runs/{run_id}/")
        return sorted(item["Key"].removeprefix(f"runs/{run_id}/") for item in listed.get("Contents", []))

    assert rounds.record()["status"] == "succeeded" and left("r1") == left("r2")
