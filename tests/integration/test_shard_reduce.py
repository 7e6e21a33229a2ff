"""A round of small parameters reduced in the shard that completes it (parameter `reduce`: `shard`, or `auto` below
`SHARD_REDUCE_MIB`): K deliveries a round instead of 2 K, the same bytes at the same keys as its K slices write, so
every run still equals `training.train_reference(..., workers=K)` bit for bit, whatever happens to its events."""

import io
import json

import numpy as np
import pytest

from lnn_core import run_control
from lnn_core.aws.codec import arrays_to_npz
from lnn_core.aws.ports import CONCURRENT_REQUESTS
from lnn_core.errors import LnnInputError
from lnn_core.handlers import build_launcher, build_trainer
from lnn_core.launch.budget import inspect_npz, parameter_copies
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.parameters import SHARD_REDUCE_MAX_WORKERS, SHARD_REDUCE_MIB
from lnn_core.protocol.round_steps import EVERY_SLICE, reduces_in_shard
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.integration.test_workers import (
    PARAMETERS,
    ROUNDS,
    Died,
    assert_like_reference,
    concurrent_trainer,
    drain,
    dying_at,
    launch,
    members,
)

IN_SHARD = {**PARAMETERS, "reduce": "shard"}
K = IN_SHARD["workers"]


@pytest.fixture
def world(aws):
    X, y = blobs(40)
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    return aws, X, y, QueueInvoker(), FakeClock()


def delivered(trainer, queue):
    """Deliver every queued event, first in first out: the (state, outcome) of each."""
    outcomes = []
    while queue.events:
        event = queue.events.popleft()
        outcomes.append((event["state"], trainer.handle(event)["outcome"]))
    return outcomes


@pytest.mark.parametrize(
    "change",
    [
        {},
        {"granularity": "auto"},
        {"reduce": "auto"},  # 4 features, neurons [4, 1]: a few hundred bytes
        {"dtype": "float32", "workers": 2},
        {"optimizer": "momentum", "l2": 0.0, "workers": 2},
    ],
    ids=["epoch", "auto granularity", "reduce auto", "float32", "momentum"],
)
def test_a_round_reduced_in_its_shard_takes_k_deliveries_and_equals_the_reference(world, change):
    aws, X, y, queue, clock = world
    parameters = {**IN_SHARD, **change}
    trainer = launch(aws, queue, clock, parameters)
    outcomes = delivered(trainer, queue)
    workers = parameters["workers"]
    assert not [state for state, _ in outcomes if state == "slice"]  # no slice event was ever sent
    assert outcomes.count(("shard", "committed")) == ROUNDS  # the shard that completes a round commits it
    assert outcomes.count(("shard", "shard")) == (workers - 1) * ROUNDS
    assert outcomes.count(("fit", "fit")) == workers - 1 and outcomes.count(("fit", "committed")) == 1
    assert len(outcomes) == workers * (ROUNDS + 1) + 1  # the start, K shards a round, the finish's K fits
    assert_like_reference(aws, trainer, X, y, parameters)


@pytest.mark.parametrize("site", ["put_bytes", "claim_commit", "transition"])
def test_a_shard_that_died_while_reducing_its_round_is_finished_by_resume_in_slices(world, site):
    """The completing shard dies after its claim on the slices (writing the slices' outputs, claiming the commit or
    committing): `lnn resume` (or the watchdog, once it sees the stall) sends the K slice events, and they finish
    the round in slices: the same bytes, the same run."""
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock, IN_SHARD)
    trainer.handle(queue.events.popleft())  # the start: round 1's K shards
    last_shard = queue.events.pop()
    drain(trainer, queue)
    dying = build_trainer(session=aws.session, invoker=QueueInvoker(), clock=clock)
    port = dying.ports.store if site == "put_bytes" else dying.ports.table
    puts = []
    dying_at(port, site, armed=lambda: site != "put_bytes" or puts.append(1) or len(puts) > 2)  # a slice's output
    with pytest.raises(Died):
        dying.handle(json.loads(json.dumps(last_shard)))
    run = trainer.ports.table.get_run("r1")
    assert (run["committed_step"] == 2) == (site == "transition")
    if run["committed_step"] == 2:  # it died after its commit: the next round's shards are owed, not slices
        run_control.resume_run(trainer.ports, "r1")
        assert members(queue) == [("shard", shard, 2) for shard in range(K)]
    else:  # no slice joined the round's slice barrier: all K are owed
        run_control.resume_run(trainer.ports, "r1")
        assert members(queue) == [("slice", slice_, 1) for slice_ in range(K)]
    drain(trainer, queue)
    if site == "claim_commit":  # the dead shard's claim on the commit holds the completing slice back until it expires
        assert trainer.ports.table.get_run("r1")["committed_step"] == 1
        clock.advance(60)
        run_control.resume_run(trainer.ports, "r1")
        assert members(queue) == [("slice", 0, 1)]  # every slice is in: one slice event claims the commit
        drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y, IN_SHARD)


def test_a_shard_event_retried_after_its_reduce_died_reduces_the_round_itself(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock, IN_SHARD)
    trainer.handle(queue.events.popleft())
    last_shard = queue.events.pop()
    drain(trainer, queue)
    dying = build_trainer(session=aws.session, invoker=QueueInvoker(), clock=clock)
    execute = dying._execute

    def dies_reducing(position, *args):
        if position.state == EVERY_SLICE:
            raise Died()
        return execute(position, *args)

    dying._execute = dies_reducing
    with pytest.raises(Died):
        dying.handle(json.loads(json.dumps(last_shard)))
    clock.advance(60)  # Lambda's retry, a minute later: the claim expired
    assert trainer.handle(json.loads(json.dumps(last_shard)))["outcome"] == "committed"
    assert sorted(members(queue)) == [("shard", shard, 2) for shard in range(K)]
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y, IN_SHARD)


def test_every_event_twice_in_any_order_ends_like_the_reference_with_one_commit_a_round(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock, IN_SHARD)
    rng = np.random.RandomState(2)
    pool, outcomes = [], []
    while queue.events or pool:
        while queue.events:
            event = queue.events.popleft()
            pool += [event, json.loads(json.dumps(event))]
        event = pool.pop(rng.randint(len(pool)))
        outcomes.append((event["state"], trainer.handle(event)["outcome"]))
    assert_like_reference(aws, trainer, X, y, IN_SHARD)
    assert outcomes.count(("shard", "committed")) == ROUNDS
    assert not [state for state, _ in outcomes if state == "slice"]


def test_a_round_whose_slices_a_resume_sent_meanwhile_commits_once(world):
    """A round reduced both ways at once: the completing shard's claim expired while it computed (a slow
    container), a resume sent the K slice events, and both paths write the same bytes; one commit wins."""
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock, IN_SHARD)
    trainer.handle(queue.events.popleft())
    last_shard = queue.events.pop()
    drain(trainer, queue)
    slow = build_trainer(session=aws.session, invoker=QueueInvoker(), clock=clock)
    execute, slice_outcomes = slow._execute, []

    def slices_meanwhile(position, *args):
        if position.state == EVERY_SLICE:
            clock.advance(60)
            run_control.resume_run(trainer.ports, "r1")
            assert members(queue) == [("slice", slice_, 1) for slice_ in range(K)]
            slice_outcomes.extend(trainer.handle(queue.events.popleft())["outcome"] for _ in range(K))
        return execute(position, *args)

    slow._execute = slices_meanwhile
    # its sums were deleted: the run it would fail for that has moved on, so its ending's conditional write fails
    assert slow.handle(json.loads(json.dumps(last_shard)))["outcome"] == "duplicate"
    assert slice_outcomes.count("committed") == 1
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y, IN_SHARD)


def config(neurons, *, workers=2, dtype="float64", reduce="auto"):
    return TrainingConfig.from_parameters(
        {
            "epochs": 1,
            "learning_rate": 0.1,
            "neurons": list(neurons),
            "activations": ["relu"] * (len(neurons) - 1) + ["softmax"],
            "workers": workers,
            "dtype": dtype,
            "reduce": reduce,
            "granularity": "epoch",
            "data": "runs/r/data.npz",
        }
    )


def test_auto_reduces_a_round_in_its_shard_while_the_k_shards_sums_total_at_most_the_limit():
    small, large = (128, 64, 10), (1024, 512, 10)  # issue 19's two jobs on 784 features: G 0.88 MB and 10.7 MB
    assert reduces_in_shard(config(small), 784) and not reduces_in_shard(config(large), 784)
    assert not reduces_in_shard(config(small, reduce="slices"), 784) and reduces_in_shard(
        config(large, reduce="shard"), 784
    )
    g = 8 * (128 * 785 + 64 * 129 + 10 * 65)  # the small job's sums, float64
    largest = SHARD_REDUCE_MIB * 2**20 // g  # the most workers whose K sums fit the limit
    assert reduces_in_shard(config(small, workers=largest), 784)
    assert not reduces_in_shard(config(small, workers=largest + 1), 784)
    assert reduces_in_shard(config(small, workers=largest + 1, dtype="float32"), 784)  # half the bytes
    tiny = (4, 2)  # a few hundred bytes: K bounds it, so that the shard's reads stay one wave
    assert reduces_in_shard(config(tiny, workers=SHARD_REDUCE_MAX_WORKERS), 4)
    assert not reduces_in_shard(config(tiny, workers=SHARD_REDUCE_MAX_WORKERS + 1), 4)


def test_reduce_shard_beyond_its_workers_is_refused_with_the_fix():
    with pytest.raises(LnnInputError, match=r"reduce shard takes at most 16 workers .* not 17; use reduce auto or"):
        config((4, 2), workers=SHARD_REDUCE_MAX_WORKERS + 1, reduce="shard")
    with pytest.raises(LnnInputError, match="reduce must be one of auto, shard, slices"):
        config((4, 2), reduce="inline")


def test_the_shard_that_reduces_a_round_makes_as_many_sequential_s3_round_trips_whatever_k(world):
    """Its K state slices and K shards' sums in one wave, its 2 K objects in another: counted from its requests'
    spans, with a delivery's concurrent requests as on Lambda (`CONCURRENT_REQUESTS`)."""
    aws, X, y, queue, clock = world

    def completing_shard_trips(workers):
        queue.events.clear()
        run_id = f"trips-{workers}"
        aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
        parameters = {**IN_SHARD, "neurons": [20, 1], "epochs": 1, "batch_size": 20, "workers": workers}
        parameters |= {"data": f"runs/{run_id}/data.npz"}
        answer = build_launcher(session=aws.session, invoker=queue, clock=clock).handle(
            {"run_id": run_id, "parameters": parameters}
        )
        assert answer["status"] == "running", answer
        trips = []
        while queue.events:
            event = queue.events.popleft()
            container = concurrent_trainer(aws, queue, clock, CONCURRENT_REQUESTS)  # cold: nothing cached
            before = container.ports.counter.snapshot()
            outcome = container.handle(event)["outcome"]
            io = container.ports.counter.since(before)
            if event["state"] == "shard" and outcome == "committed":
                trips.append(io["round_trips"]["s3"])
        assert container.ports.table.get_run(run_id)["status"] == "succeeded"
        return trips

    # the epoch's first round (its data, the K parameter slices, its sums, the K slices' reads, their writes, the
    # obsolete objects' delete), then its last (the epoch's end: its results and the checkpoint): at most 8 a round
    assert completing_shard_trips(2) == completing_shard_trips(SHARD_REDUCE_MAX_WORKERS) == [6, 7]


def test_a_shard_that_reduces_its_round_is_budgeted_for_every_shards_sums():
    layout = inspect_npz(io.BytesIO(arrays_to_npz({"X": np.zeros((6, 784)), "y": np.zeros(6)})), source="data.npz")
    small = (128, 64, 10)
    in_shard = parameter_copies(config(small, workers=8), layout)
    in_slices = parameter_copies(config(small, workers=8, reduce="slices"), layout)
    assert in_slices == 3 and in_shard == 8 + 2 + 2  # every shard's sums, the state before and after, serialized
    assert parameter_copies(config((1024, 512, 10), workers=8), layout) == in_slices  # auto: in slices


def slow_completing_shard(aws, queue, clock):
    """Round 1 with its last shard held back, and a second container to deliver it."""
    trainer = launch(aws, queue, clock, IN_SHARD)
    trainer.handle(queue.events.popleft())
    last_shard = queue.events.pop()
    drain(trainer, queue)
    return trainer, last_shard, build_trainer(session=aws.session, invoker=QueueInvoker(), clock=clock)


def state_keys_of_round_1(aws):
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="runs/r1/state/params-e0000001-b000001/")
    return [item["Key"] for item in listed.get("Contents", [])]


def test_a_shard_whose_round_was_committed_after_its_claim_computes_nothing(world):
    """Between its claim on the slices and its body, a resume's slices committed the round: the body's own fence
    (`mark_started`) ends the delivery before it reads or computes anything."""
    aws, X, y, queue, clock = world
    trainer, last_shard, slow = slow_completing_shard(aws, queue, clock)
    claim_slices, bodies = slow.ports.table.claim_slices, []

    def claim_then_slices_commit(*args, **kwargs):
        claimed = claim_slices(*args, **kwargs)
        run_control.resume_run(trainer.ports, "r1")
        assert [trainer.handle(queue.events.popleft())["outcome"] for _ in range(K)].count("committed") == 1
        return claimed

    execute = slow._execute
    slow.ports.table.claim_slices = claim_then_slices_commit
    slow._execute = lambda position, *args: bodies.append(position.state) or execute(position, *args)
    assert slow.handle(json.loads(json.dumps(last_shard)))["outcome"] == "duplicate"
    assert EVERY_SLICE not in bodies
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y, IN_SHARD)


def test_a_shard_whose_round_was_committed_while_it_computed_writes_nothing(world):
    """The round committed by a resume's slices, and the next round too (which deletes round 1's rows as
    obsolete), while the completing shard computed its slices: it writes none of them back."""
    aws, X, y, queue, clock = world
    trainer, last_shard, slow = slow_completing_shard(aws, queue, clock)
    execute = slow._execute

    def two_rounds_commit_meanwhile(position, *args):
        result = execute(position, *args)
        if position.state == EVERY_SLICE:
            clock.advance(60)
            run_control.resume_run(trainer.ports, "r1")
            for _ in range(2 * K):  # round 1's K slices, then round 2's K shards (its last reduces it)
                trainer.handle(queue.events.popleft())
            assert trainer.ports.table.get_run("r1")["committed_step"] == 3
            assert state_keys_of_round_1(aws) == []  # obsolete once round 2 committed
        return result

    slow._execute = two_rounds_commit_meanwhile
    assert slow.handle(json.loads(json.dumps(last_shard)))["outcome"] == "duplicate"
    assert state_keys_of_round_1(aws) == []  # none of its rows written back after their deletion
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y, IN_SHARD)
