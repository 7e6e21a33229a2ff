"""Data-parallel rounds through the trainer (issue 12): K shard workers per update, one barrier, one reduce.

Every run with K workers equals `training.train_reference(..., workers=K)` bit for bit, whatever happens to its shard
and reduce events: duplicates, late shards, crashed shards, lost events, twins at the same instant.
"""

import io
import json
import threading
import time

import numpy as np
import pytest

from lnn_core import run_control
from lnn_core.errors import LnnInputError
from lnn_core.handlers import build_launcher, build_trainer
from lnn_core.ml import training
from lnn_core.ml.config import TrainingConfig
from tests.conftest import FakeClock, QueueInvoker, blobs

EXAMPLES = 40
PARAMETERS = {
    "epochs": 3,
    "learning_rate": 0.05,
    "neurons": [4, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 5,
    "batch_size": 16,
    "optimizer": "adam",
    "l2": 0.01,
    "workers": 3,
    "granularity": "epoch",
}
ROUNDS = 3 * 3  # 3 epochs of batches 16, 16, 8


@pytest.fixture
def world(aws):
    X, y = blobs(EXAMPLES)
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    queue, clock = QueueInvoker(), FakeClock()
    return aws, X, y, queue, clock


def launch(aws, queue, clock, parameters=PARAMETERS):
    answer = build_launcher(session=aws.session, invoker=queue, clock=clock).handle(
        {"run_id": "r1", "parameters": parameters}
    )
    assert answer["status"] == "running", answer
    return build_trainer(session=aws.session, invoker=queue, clock=clock)


def drain(trainer, queue, *, order=None):
    """Deliver every queued event (in `order`'s choice of the queue, default first in first out)."""
    outcomes = []
    while queue.events:
        index = order(list(queue.events)) if order else 0
        event = queue.events[index]
        del queue.events[index]
        outcomes.append(trainer.handle(event)["outcome"])
    return outcomes


def reference(X, y, parameters=PARAMETERS):
    options = {k: parameters[k] for k in ("batch_size", "optimizer", "l2", "workers", "dtype") if k in parameters}
    return training.train_reference(
        X,
        y,
        neurons=parameters["neurons"],
        activations=parameters["activations"],
        learning_rate=parameters["learning_rate"],
        epochs=parameters["epochs"],
        seed=parameters["seed"],
        **options,
    )


def assert_like_reference(aws, trainer, X, y, parameters=PARAMETERS):
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded", run.get("reason")
    params, costs = reference(X, y, parameters)
    with np.load(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key="runs/r1/model.npz")["Body"].read())) as npz:
        assert all(npz[name].tobytes() == params[name].tobytes() for name in params)
    assert [item["cost"] for item in trainer.ports.table.committed_epochs(run)] == costs
    assert run["committed_step"] == ROUNDS + 2  # start, one reduce per round, finish
    assert [json.loads(m["Body"])["status"] for m in aws.messages()] == ["succeeded"]


@pytest.mark.parametrize("granularity", ["epoch", "auto"])
def test_a_run_with_k_workers_equals_the_reference_bit_for_bit(world, granularity):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock, {**PARAMETERS, "granularity": granularity})
    outcomes = drain(trainer, queue)
    assert outcomes.count("shard") == 2 * ROUNDS and outcomes.count("round complete") == ROUNDS
    assert outcomes.count("committed") == ROUNDS + 2
    assert_like_reference(aws, trainer, X, y, {**PARAMETERS, "granularity": granularity})


@pytest.mark.parametrize("granularity", ["epoch", "auto"])
def test_float32_rounds_of_two_workers_move_float32_and_equal_the_float32_reference(world, granularity):
    aws, X, y, queue, clock = world
    parameters = {**PARAMETERS, "workers": 2, "dtype": "float32", "granularity": granularity}
    trainer = launch(aws, queue, clock, parameters)
    written = {}
    put_bytes = trainer.ports.store.put_bytes

    def recording(key, data, **kwargs):
        with np.load(io.BytesIO(data)) as npz:
            written[key] = {name: npz[name].dtype for name in npz.files if npz[name].ndim}  # scalars: sums and t
        put_bytes(key, data, **kwargs)

    trainer.ports.store.put_bytes = recording
    outcomes = drain(trainer, queue)
    assert outcomes.count("shard") == ROUNDS and outcomes.count("round complete") == ROUNDS
    assert_like_reference(aws, trainer, X, y, parameters)
    shards = [arrays for key, arrays in written.items() if "/shard-" in key]
    assert len(shards) == 2 * ROUNDS
    for arrays in [*shards, *(arrays for key, arrays in written.items() if "/params-e" in key)]:
        assert set(arrays.values()) == {np.dtype("float32")}


def test_shards_in_any_order_and_every_one_twice_end_like_the_reference(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    rng = np.random.RandomState(0)
    outcomes = []
    while queue.events:
        event = queue.events[rng.randint(len(queue.events))]
        queue.events.remove(event)
        outcomes += [trainer.handle(json.loads(json.dumps(event)))["outcome"] for _ in range(2)]
    assert outcomes.count("round complete") == ROUNDS  # a duplicate shard never completes a round again
    assert_like_reference(aws, trainer, X, y)


def test_the_barrier_admits_each_shard_once_and_one_write_completes(world):
    aws, *_ = world
    table = build_trainer(session=aws.session, invoker=QueueInvoker()).ports.table
    befores = [table.join_barrier("r1", 7, shard) for shard in (2, 0, 2, 1, 0, 1)]
    completing = [shard not in before and len(before) == 2 for shard, before in zip((2, 0, 2, 1, 0, 1), befores)]
    assert completing == [False, False, False, True, False, False]
    assert table.shards_done("r1", 7) == {0, 1, 2} and table.shards_done("r1", 8) == set()


def test_lost_shard_and_lost_reduce_events_are_resent_exactly_as_missing(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    trainer.handle(queue.events.popleft())  # start: scatters round 1
    shards = list(queue.events)
    assert [event["shard"] for event in shards] == [0, 1, 2]
    queue.events.clear()
    trainer.handle(shards[0])  # shards 1 and 2 are lost
    run_control.resume_run(trainer.ports, "r1")
    assert sorted(event["shard"] for event in queue.events) == [1, 2]  # only what is missing
    trainer.handle(queue.events.popleft())
    trainer.handle(queue.events.popleft())  # completes the round: sends the reduce ...
    assert [event["state"] for event in queue.events] == ["reduce"]
    queue.events.clear()  # ... which is lost
    run_control.resume_run(trainer.ports, "r1")
    assert [event["state"] for event in queue.events] == ["reduce"]
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


class Died(BaseException):
    """The sandbox died mid-invocation."""


@pytest.mark.parametrize("site", ["put_bytes", "join_barrier", "claim_reduce", "invoke_async"])
def test_a_shard_that_died_at_any_effect_is_finished_by_its_retry(world, site):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    trainer.handle(queue.events.popleft())
    last_shard = queue.events.pop()
    drain(trainer, queue)  # shards 0 and 1
    dying = build_trainer(session=aws.session, invoker=QueueInvoker(), clock=clock)
    port = {
        "put_bytes": dying.ports.store,
        "join_barrier": dying.ports.table,
        "claim_reduce": dying.ports.table,
        "invoke_async": dying.ports.invoker,
    }[site]
    original = getattr(port, site)

    def die(*args, **kwargs):
        original(*args, **kwargs)  # the effect happened; the process dies before it could go on
        raise Died()

    setattr(port, site, die)
    with pytest.raises(Died):
        dying.handle(json.loads(json.dumps(last_shard)))
    clock.advance(60)
    # Lambda's retry comes a minute later: whatever the died delivery did (its reduce event, if sent, went to a queue
    # this test drops), its claim has expired and the retry sends the reduce
    assert trainer.handle(json.loads(json.dumps(last_shard)))["outcome"] == "round complete"
    assert [event["state"] for event in queue.events] == ["reduce"]
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


def test_a_late_shard_after_the_reduce_changes_nothing(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    trainer.handle(queue.events.popleft())
    early = json.loads(json.dumps(queue.events[0]))
    drain(trainer, queue)
    assert trainer.handle(early)["outcome"] in ("duplicate", "ignored")
    assert not queue.events
    assert_like_reference(aws, trainer, X, y)


@pytest.mark.usefixtures("atomic_moto")  # four threads against in-process moto: each request alone, as on AWS
def test_twin_shards_at_the_same_instant_complete_the_round_once(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    trainer.handle(queue.events.popleft())
    shards = list(queue.events)
    queue.events.clear()
    trainer.handle(shards[0])
    trainer.handle(shards[1])
    barrier = threading.Barrier(4)
    containers = [build_trainer(session=aws.session, invoker=queue, clock=clock) for _ in range(4)]
    outcomes = []

    def deliver(container):
        barrier.wait()
        outcomes.append(container.handle(json.loads(json.dumps(shards[2])))["outcome"])

    threads = [threading.Thread(target=deliver, args=(container,)) for container in containers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert sorted(outcomes) == ["round complete", "shard", "shard", "shard"]
    assert [event["state"] for event in queue.events] == ["reduce"]
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


@pytest.mark.parametrize(
    "change, fragment",
    [
        ({"workers": 0}, "workers must be an integer from 1 to 256"),
        ({"workers": 257}, "workers must be an integer from 1 to 256"),
        ({"workers": True}, "workers must be an integer"),
        ({"workers": 2, "granularity": "layer"}, "needs granularity epoch or auto"),
    ],
)
def test_bad_workers_values_are_refused(change, fragment):
    with pytest.raises(LnnInputError, match=fragment):
        TrainingConfig.from_parameters({**PARAMETERS, **change, "data": "runs/r1/data.npz"})


def test_a_late_twin_shard_that_computed_while_its_round_was_reduced_writes_nothing(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    trainer.handle(queue.events.popleft())
    twin_event = json.loads(json.dumps(queue.events[0]))
    late = build_trainer(session=aws.session, invoker=queue, clock=clock)
    execute = late.steps.execute

    def slow_execute(*args, **kwargs):
        result = execute(*args, **kwargs)  # the twin has started and computed its shard ...
        for _ in range(4):  # ... while the three shards and the reduce run elsewhere
            trainer.handle(queue.events.popleft())
        clock.advance(60)  # and the reduce's claim has long expired
        return result

    late.steps.execute = slow_execute
    assert late.handle(twin_event)["outcome"] == "duplicate"
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="runs/r1/state/e0000001/b000001/")
    assert listed.get("KeyCount", 0) == 0  # no orphaned shard result
    assert all(event["state"] == "shard" and event["batch"] == 2 for event in queue.events)  # no stale reduce
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


def test_the_memory_estimate_counts_the_reduce_and_one_wave_of_shard_results_and_no_kept_states():
    from lnn_core.launch.budget import parameter_copies

    def copies(**change):
        return parameter_copies(TrainingConfig.from_parameters({**PARAMETERS, "data": "runs/r1/data.npz", **change}))

    # adam state, serialized state, the sum and one shard, and the serialized shards of one wave of GETs (64 at most)
    assert copies(workers=3) == 2 + 6 + 2 + 3 and copies(workers=256) == copies(workers=64) == 2 + 6 + 2 + 64
    assert copies(workers=3, granularity="auto", epochs=2500) == copies(workers=3)  # rounds keep no states


# ---- the round's requests sent together (issue 19): K GETs and K invokes in one wave, summed in shard order ----


def concurrent_trainer(aws, queue, clock, width=16):
    """A trainer container whose independent requests go out together, as in Lambda (`Ports.fan_out`)."""
    from lnn_core.aws.ports import RequestFanOut

    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    trainer.ports.fan_out = RequestFanOut(width)
    return trainer


@pytest.mark.usefixtures("atomic_moto")  # the reduce's GETs run in threads against in-process moto
def test_a_reduce_adds_its_shards_in_shard_order_whatever_order_their_gets_complete_in(world):
    aws, X, y, queue, clock = world
    parameters = {**PARAMETERS, "workers": 5}
    launch(aws, queue, clock, parameters)
    trainer = concurrent_trainer(aws, queue, clock)
    get_bytes, completed = trainer.ports.store.get_bytes, []

    def last_shard_first(key, **kwargs):  # shard i's GET answers after shard i + 1's
        shard = int(key.rsplit("-", 1)[-1].split(".")[0]) if "/shard-" in key else None
        if shard is not None:
            time.sleep(0.03 * (parameters["workers"] - shard))
        data = get_bytes(key, **kwargs)
        completed.append(shard)
        return data

    trainer.ports.store.get_bytes = last_shard_first
    drain(trainer, queue)
    assert completed[completed.index(4) :][:5] == [4, 3, 2, 1, 0]  # the GETs did complete last shard first ...
    assert_like_reference(aws, trainer, X, y, parameters)  # ... and the sums are those of shard order


@pytest.mark.usefixtures("atomic_moto")
def test_a_rounds_sequential_s3_round_trips_do_not_grow_with_k(world):
    aws, X, y, queue, clock = world

    def reduce_round_trips(workers, width):
        queue.events.clear()
        run_id = f"trips-{workers}-{width}"
        aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
        answer = build_launcher(session=aws.session, invoker=queue, clock=clock).handle(
            {"run_id": run_id, "parameters": {**PARAMETERS, "workers": workers, "data": f"runs/{run_id}/data.npz"}}
        )
        assert answer["status"] == "running", answer
        shards = build_trainer(session=aws.session, invoker=queue, clock=clock)
        reducer = concurrent_trainer(aws, queue, clock, width)
        trips = []
        while queue.events:
            event = queue.events.popleft()
            if event["state"] != "reduce":
                shards.handle(event)  # in other containers than the reduce's, as in Lambda
                continue
            before = reducer.ports.counter.snapshot()
            reducer.handle(event)
            io = reducer.ports.counter.since(before)
            trips.append((io["round_trips"]["s3"], io["requests"]["s3"]))
        return trips

    # per reduce: its K GETs in one wave, the state's PUT, the round's delete; the first reduce also GETs the data
    # and the state the start step wrote (later ones wrote it themselves: cached)
    two, eight = reduce_round_trips(2, 16), reduce_round_trips(8, 16)
    assert [trip for trip, _ in two] == [trip for trip, _ in eight] == [5] + [3] * (ROUNDS - 1)
    assert [requests for _, requests in eight] == [8 + 4] + [8 + 2] * (ROUNDS - 1)
    assert [trip for trip, _ in reduce_round_trips(8, 1)] == [8 + 4] + [8 + 2] * (ROUNDS - 1)  # one after another


@pytest.mark.usefixtures("atomic_moto")
def test_a_reduce_whose_shard_invokes_failed_midway_is_finished_by_its_retry(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    trainer.handle(queue.events.popleft())  # start: scatters round 1
    for _ in range(3):
        trainer.handle(queue.events.popleft())  # round 1's shards; the last sends the reduce
    reduce_event = queue.events.popleft()
    assert reduce_event["state"] == "reduce" and not queue.events
    dying = concurrent_trainer(aws, queue, clock)
    invoke = queue.invoke_async

    class Refused(Exception):
        pass

    def refusing(payload):
        if payload.get("shard") == 1:
            time.sleep(0.02)  # the others are accepted first
            raise Refused("invoke of shard 1 failed")
        invoke(payload)

    dying.ports.invoker = type("Invoker", (), {"invoke_async": staticmethod(refusing)})()
    raised = None
    try:  # (not pytest.raises: `make mutants` counts assertions only)
        dying.handle(reduce_event)  # round 1 reduced and committed; round 2's shards sent, but for shard 1
    except Refused as error:
        raised = error
    assert sorted(event["shard"] for event in queue.events) == [0, 2]  # sent together: the others went out
    assert trainer.ports.table.get_run("r1")["invoked_step"] < reduce_event["step"] + 1  # not recorded as sent
    assert isinstance(raised, Refused)  # Lambda sees the delivery fail
    drain(trainer, queue)  # shards 0 and 2 join the barrier; the round waits for shard 1
    clock.advance(60)  # Lambda's retry of the reduce event a minute later: the lease has expired
    assert trainer.handle(reduce_event)["outcome"] == "resent"
    assert [event["shard"] for event in queue.events] == [1]  # only what is missing
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)
