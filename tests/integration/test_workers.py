"""Data-parallel rounds through the trainer (issue 12): K shard workers per update, then K slices of its reduce.

A round of K > 1 workers (the run's `reduce` step) is K shard deliveries, each of which writes its gradient sums as
two raw objects and joins the round's barrier (the completing one sends the K slice events), then K slice
deliveries, each of which updates its rows of the training state and joins the slice barrier (the completing one
commits the round). Every run with K workers equals `training.train_reference(..., workers=K)` bit for bit, whatever
happens to its shard and slice events: duplicates, late shards, crashed shards and slices, lost events, twins at the
same instant.
"""

import io
import json
import re
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
    "epochs": 2,
    "learning_rate": 0.05,
    "neurons": [4, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 5,
    "batch_size": 16,
    "optimizer": "adam",
    "l2": 0.01,
    "workers": 3,
    "granularity": "epoch",
    "reduce": "slices",  # K slice deliveries a round (test_shard_reduce.py: a round reduced in its shard)
}
ROUNDS = 2 * 3  # 2 epochs of batches 16, 16, 8


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


def slice_events_of_round_1(trainer, queue):
    """Deliver the start and round 1's K shards (the last sends the K slice events); take those events off the
    queue and return them."""
    trainer.handle(queue.events.popleft())
    for _ in range(PARAMETERS["workers"]):
        trainer.handle(queue.events.popleft())
    slices = list(queue.events)
    assert [(event["state"], event["slice"]) for event in slices] == [("slice", 0), ("slice", 1), ("slice", 2)]
    queue.events.clear()
    return slices


def members(queue):
    """The queued events as (state, shard or slice, batch)."""
    return [(event["state"], event.get("shard", event.get("slice")), event["batch"]) for event in queue.events]


ROUND_2_SHARDS = [("shard", 0, 2), ("shard", 1, 2), ("shard", 2, 2)]


@pytest.mark.parametrize("granularity", ["epoch", "auto"])
def test_a_run_with_k_workers_equals_the_reference_bit_for_bit(world, granularity):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock, {**PARAMETERS, "granularity": granularity})
    outcomes = drain(trainer, queue)
    assert outcomes.count("shard") == 2 * ROUNDS and outcomes.count("round complete") == ROUNDS
    assert outcomes.count("slice") == 2 * ROUNDS and outcomes.count("committed") == ROUNDS + 2
    assert_like_reference(aws, trainer, X, y, {**PARAMETERS, "granularity": granularity})


@pytest.mark.parametrize("granularity", ["epoch", "auto"])
def test_float32_rounds_of_two_workers_move_float32_and_equal_the_float32_reference(world, granularity):
    aws, X, y, queue, clock = world
    parameters = {**PARAMETERS, "workers": 2, "dtype": "float32", "granularity": granularity}
    trainer = launch(aws, queue, clock, parameters)
    sums, states = {}, {}
    put_bytes = trainer.ports.store.put_bytes

    def recording(key, data, **kwargs):
        if key.endswith(".bin"):  # a shard's sums: raw values, no header
            sums[key] = len(data)
        elif "/params-e" in key:  # the training state: in slices, and whole at the checkpoint
            with np.load(io.BytesIO(data)) as npz:
                states[key] = {npz[name].dtype for name in npz.files if npz[name].ndim}  # not adam's scalar t
        put_bytes(key, data, **kwargs)

    trainer.ports.store.put_bytes = recording
    outcomes = drain(trainer, queue)
    assert outcomes.count("shard") == ROUNDS and outcomes.count("round complete") == ROUNDS
    assert outcomes.count("slice") == ROUNDS and outcomes.count("committed") == ROUNDS + 2
    assert_like_reference(aws, trainer, X, y, parameters)
    # 4 features, neurons [4, 1]: slice 0 owns rows 0-1 of layer 1 and the row of layer 2, (2 + 1) * (4 + 1) values
    # in object 0; slice 1 rows 2-3 of layer 1, 2 * (4 + 1) values in object 1; 4 bytes each
    assert len(sums) == 2 * 2 * ROUNDS
    assert {(key[-6:], size) for key, size in sums.items()} == {("-0.bin", 15 * 4), ("-1.bin", 10 * 4)}
    slices = [key for key in states if re.search(r"/params-e\d+(-b\d+)?/(params|optimizer)-\d{3}\.npz$", key)]
    assert len(slices) == 2 * 2 * (1 + ROUNDS)  # the initial state's and every round's, parameters and optimizer
    assert all(dtypes == {np.dtype("float32")} for dtypes in states.values()), states


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


def test_slices_in_any_order_and_every_one_twice_end_like_the_reference(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    rng = np.random.RandomState(1)
    pool, outcomes = [], []
    while queue.events or pool:
        while queue.events:  # every event sent is delivered twice, each copy at a random time
            event = queue.events.popleft()
            pool += [event, json.loads(json.dumps(event))]
        event = pool.pop(rng.randint(len(pool)))
        outcomes.append((event["state"], trainer.handle(event)["outcome"]))
    assert_like_reference(aws, trainer, X, y)
    assert outcomes.count(("shard", "round complete")) == ROUNDS
    # a duplicate slice never completes a round: the one write that finds the other K - 1 slices commits it
    assert [outcome for state, outcome in outcomes if state == "slice"].count("committed") == ROUNDS
    assert [outcome for _, outcome in outcomes].count("committed") == ROUNDS + 2


def test_lost_shard_and_slice_events_are_resent_exactly_as_missing(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    trainer.handle(queue.events.popleft())  # start: scatters round 1
    shards = list(queue.events)
    assert [event["shard"] for event in shards] == [0, 1, 2]
    queue.events.clear()
    trainer.handle(shards[0])  # shards 1 and 2 are lost
    run_control.resume_run(trainer.ports, "r1")
    assert members(queue) == [("shard", 1, 1), ("shard", 2, 1)]  # only what is missing
    trainer.handle(queue.events.popleft())
    assert trainer.handle(queue.events.popleft())["outcome"] == "round complete"  # sends the K slices ...
    slices = list(queue.events)
    assert members(queue) == [("slice", 0, 1), ("slice", 1, 1), ("slice", 2, 1)]
    queue.events.clear()  # ... of which slices 0 and 2 are lost
    assert trainer.handle(slices[1])["outcome"] == "slice"
    run_control.resume_run(trainer.ports, "r1")
    assert members(queue) == [("slice", 0, 1), ("slice", 2, 1)]  # only what is missing
    queue.events.clear()  # lost again
    run_control.resume_run(trainer.ports, "r1")
    assert members(queue) == [("slice", 0, 1), ("slice", 2, 1)]
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


class Died(BaseException):
    """The sandbox died mid-invocation."""


def dying_at(port, site, *, armed=lambda: True):
    """Make `port.site` the last request of its container: the effect happens, then the process dies (once
    `armed()`: before, the request is made as usual)."""
    original = getattr(port, site)

    def die(*args, **kwargs):
        answer = original(*args, **kwargs)
        if armed():
            raise Died()
        return answer

    setattr(port, site, die)


@pytest.mark.parametrize("site", ["put_bytes", "join_barrier", "claim_slices", "invoke_async"])
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
        "claim_slices": dying.ports.table,
        "invoke_async": dying.ports.invoker,
    }[site]
    dying_at(port, site)
    with pytest.raises(Died):
        dying.handle(json.loads(json.dumps(last_shard)))
    clock.advance(60)
    # Lambda's retry comes a minute later: whatever the died delivery did (its slice events, if sent, went to a
    # queue this test drops), its claim has expired and the retry sends the K slice events
    assert trainer.handle(json.loads(json.dumps(last_shard)))["outcome"] == "round complete"
    assert members(queue) == [("slice", 0, 1), ("slice", 1, 1), ("slice", 2, 1)]
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


@pytest.mark.parametrize(
    "site, dying_slice, retried",
    [
        # a slice that does not complete the round (its outputs must be in before it joins: another commits it)
        ("join_slices", 0, "duplicate"),
        # the last slice, which completes the round
        ("put_bytes", 2, "committed"),  # the first of its two PUTs
        ("join_slices", 2, "committed"),
        ("claim_commit", 2, "committed"),
        ("get_run", 2, "committed"),  # its re-read of the run after its claim
        ("transition", 2, "resent"),  # the commit: the retry finds it made and re-sends what is missing
        ("invoke_async", 2, "resent"),  # the first of the next round's shard events
    ],
)
def test_a_slice_that_dies_at_each_effect_is_finished_by_its_retry(world, site, dying_slice, retried):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    slices = slice_events_of_round_1(trainer, queue)
    dying = build_trainer(session=aws.session, invoker=QueueInvoker(), clock=clock)
    port = {"put_bytes": dying.ports.store, "invoke_async": dying.ports.invoker}.get(site, dying.ports.table)
    claimed = []
    if site == "get_run":  # the re-read that follows its claim of the commit (`_still_next`), not the reads before
        claim_commit = dying.ports.table.claim_commit

        def claiming(*args, **kwargs):
            claimed.append(claim_commit(*args, **kwargs))
            return claimed[-1]

        dying.ports.table.claim_commit = claiming
    dying_at(port, site, armed=lambda: site != "get_run" or any(claimed))
    died = None
    for event in slices:  # in slice order; the last completes the round
        if event["slice"] != dying_slice:
            assert trainer.handle(json.loads(json.dumps(event)))["outcome"] in ("slice", "committed")
            continue
        try:  # (not pytest.raises: `make mutants` counts assertions only)
            dying.handle(json.loads(json.dumps(event)))
        except Died as error:
            died = error
    assert isinstance(died, Died)
    clock.advance(60)
    # Lambda's retry a minute later: whatever the died delivery did (the events it sent went to a queue this test
    # drops), its claims have expired and the retry finishes the round, or finds it finished
    assert trainer.handle(json.loads(json.dumps(slices[dying_slice])))["outcome"] == retried
    assert members(queue) == ROUND_2_SHARDS
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


def test_a_round_whose_committer_died_after_every_slice_is_finished_by_resume(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    slices = slice_events_of_round_1(trainer, queue)
    for event in slices[:2]:
        assert trainer.handle(event)["outcome"] == "slice"
    dying = build_trainer(session=aws.session, invoker=QueueInvoker(), clock=clock)
    dying_at(dying.ports.table, "claim_commit")
    died = None
    try:  # every slice joined; the committer claimed the commit and died before making it
        dying.handle(slices[2])
    except Died as error:
        died = error
    assert isinstance(died, Died)
    assert trainer.ports.table.get_run("r1")["committed_step"] == 1  # the start only
    clock.advance(60)  # its lease has expired
    run_control.resume_run(trainer.ports, "r1")
    assert members(queue) == [("slice", 0, 1)]  # one slice event, whose delivery claims the commit
    assert trainer.handle(queue.events.popleft())["outcome"] == "committed"
    assert members(queue) == ROUND_2_SHARDS
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
    assert members(queue) == [("slice", 0, 1), ("slice", 1, 1), ("slice", 2, 1)]  # sent once
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


def test_a_late_twin_shard_that_computed_while_its_round_was_committed_writes_nothing(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    trainer.handle(queue.events.popleft())
    twin_event = json.loads(json.dumps(queue.events[0]))
    late = build_trainer(session=aws.session, invoker=queue, clock=clock)
    execute = late.steps.execute

    def slow_execute(*args, **kwargs):
        result = execute(*args, **kwargs)  # the twin has started and computed its shard, while elsewhere the
        # three shards and the three slices of its round run and commit it
        outcomes = [trainer.handle(queue.events.popleft())["outcome"] for _ in range(6)]
        assert outcomes == ["shard", "shard", "round complete", "slice", "slice", "committed"]
        clock.advance(60)  # and every claim of the round has long expired
        return result

    late.steps.execute = slow_execute
    assert late.handle(twin_event)["outcome"] == "duplicate"
    listed = aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix="runs/r1/state/e0000001/b000001/")
    assert listed.get("KeyCount", 0) == 0  # no orphaned sums
    assert members(queue) == ROUND_2_SHARDS  # no stale slice event
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


def test_a_late_twin_slice_that_computed_while_its_state_became_obsolete_writes_nothing(world):
    """The twin of round 1's slice 0 computes while round 1 commits and round 2 commits too, deleting round 1's
    state slices as obsolete: the twin finds its round no longer next and PUTs nothing (its PUT would bring back
    a deleted object, left to the scratch expiry)."""
    from lnn_core.protocol.layout import state_slice_keys

    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    slices = slice_events_of_round_1(trainer, queue)
    late = build_trainer(session=aws.session, invoker=queue, clock=clock)
    execute = late.steps.execute

    def slow_execute(*args, **kwargs):
        result = execute(*args, **kwargs)
        outcomes = [trainer.handle(event)["outcome"] for event in slices]
        outcomes += [trainer.handle(queue.events.popleft())["outcome"] for _ in range(6)]
        assert outcomes == ["slice", "slice", "committed"] + ["shard", "shard", "round complete"] + [
            "slice",
            "slice",
            "committed",
        ]
        return result

    late.steps.execute = slow_execute
    assert late.handle(json.loads(json.dumps(slices[0])))["outcome"] == "duplicate"
    run = trainer.ports.table.get_run("r1")
    config = TrainingConfig.from_parameters(run["config"])
    for key in state_slice_keys(config, 1, 1, 3):  # round 1's new state: obsolete since round 2's commit
        assert aws.s3.list_objects_v2(Bucket=aws.bucket, Prefix=key).get("KeyCount", 0) == 0, key
    assert members(queue) == [("shard", 0, 3), ("shard", 1, 3), ("shard", 2, 3)]
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


def test_a_round_of_workers_diverges_at_the_chains_epoch_with_the_chains_reason(aws):
    """A slice that updates its rows beyond any finite weight fails the run there, as the chain's step does; not a
    round later, at the next cost."""
    X, y = blobs()
    queue = QueueInvoker()
    launcher = build_launcher(session=aws.session, invoker=queue)
    trainer = build_trainer(session=aws.session, invoker=queue)
    diverging = {"epochs": 50, "learning_rate": 10, "neurons": [3, 1], "activations": ["linear", "sigmoid"]}
    reasons = {}
    for run_id, workers, reduce in (("chain", 1, "auto"), ("round", 2, "slices"), ("in-shard", 2, "shard")):
        aws.upload_data(f"runs/{run_id}/data.npz", X=X * 1e4, y=y)
        parameters = {**diverging, "seed": 1, "workers": workers, "granularity": "epoch", "reduce": reduce}
        assert launcher.handle({"run_id": run_id, "parameters": parameters})["status"] == "running"
        try:
            drain(trainer, queue)
        except Exception as error:  # e.g. an epoch item of weights beyond 1e100 that DynamoDB refuses
            raise AssertionError(f"run {run_id}: a delivery raised instead of failing the run: {error!r}") from error
        run = trainer.ports.table.get_run(run_id)
        assert run["status"] == "failed", run
        reasons[run_id] = run["reason"]
    assert "weights diverged" in reasons["chain"]
    assert reasons["round"] == reasons["in-shard"] == reasons["chain"]


def test_the_memory_estimate_of_a_round_is_its_largest_role_whatever_k():
    from lnn_core.aws.codec import arrays_to_npz
    from lnn_core.launch.budget import inspect_npz, parameter_copies

    layout = inspect_npz(io.BytesIO(arrays_to_npz({"X": np.zeros((40, 4)), "y": np.zeros(40)})), source="data.npz")

    def copies(**change):
        config = TrainingConfig.from_parameters({**PARAMETERS, "data": "runs/r1/data.npz", **change})
        return parameter_copies(config, layout)

    # the commit at a checkpoint, the largest role: the parameters' slices beside their assembly (1), the optimizer
    # state (adam: 2 copies) in slices and assembled (2 * 2), and the whole state serialized, a buffer and its
    # bytes (2 * (1 + 2)); a shard or a slice holds less, and nothing of it grows with K
    assert copies(workers=2) == copies(workers=3) == copies(workers=256) == 1 + 2 * 2 + 2 * (1 + 2)
    assert copies(workers=3, optimizer="momentum") == 1 + 2 * 1 + 2 * (1 + 1)
    assert copies(workers=3, optimizer="gd") == 1 + 2 * 0 + 2 * (1 + 0)
    assert copies(workers=3, granularity="auto", epochs=2500) == copies(workers=3)  # rounds keep no states


# ---- a round's requests sent together (issues 19, 29): K GETs and K invokes in one wave, summed in shard order ----


def concurrent_trainer(aws, queue, clock, width=16):
    """A trainer container whose independent requests go out together, as in Lambda (`Ports.fan_out`)."""
    from lnn_core.aws.ports import RequestFanOut

    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    trainer.ports.fan_out = RequestFanOut(width)
    return trainer


def sums_shard(key):
    """The shard of a sums object's key (.../shard-<i>-<o>.bin), else None."""
    name = key.rsplit("/", 1)[-1]
    return int(name.split("-")[1]) if name.startswith("shard-") and name.endswith(".bin") else None


@pytest.mark.usefixtures("atomic_moto")  # the slices' ranged GETs run in threads against in-process moto
def test_a_slice_adds_the_shards_sums_in_shard_order_whatever_order_their_gets_complete_in(world):
    aws, X, y, queue, clock = world
    parameters = {**PARAMETERS, "workers": 5}
    launch(aws, queue, clock, parameters)
    trainer = concurrent_trainer(aws, queue, clock)
    get_range, completed = trainer.ports.store.get_range, []

    def last_shard_first(key, start, stop, **kwargs):  # in round 1, shard i's range answers after shard i + 1's
        shard = sums_shard(key)
        if "/e0000001/b000001/" in key:
            time.sleep(0.04 * (parameters["workers"] - shard))
        data = get_range(key, start, stop, **kwargs)
        if "/e0000001/b000001/" in key:
            completed.append(shard)
        return data

    trainer.ports.store.get_range = last_shard_first
    outcomes = drain(trainer, queue)
    assert outcomes.count("slice") == 4 * ROUNDS and outcomes.count("committed") == ROUNDS + 2
    assert completed == [4, 3, 2, 1, 0] * 5  # each of round 1's 5 slices: its GETs did complete last shard first ...
    assert_like_reference(aws, trainer, X, y, parameters)  # ... and its sums are those of shard order


@pytest.mark.usefixtures("atomic_moto")
def test_a_rounds_sequential_s3_round_trips_do_not_grow_with_k(world):
    aws, X, y, queue, clock = world

    def round_trips(workers, width):
        """Every shard's and every slice's (S3 round trips, S3 requests), in the order delivered, each in a container
        of its own (cold: nothing cached), as in Lambda. Two rounds: the epoch's first batch of 20 examples, and its
        last, which ends the run's one epoch (a checkpoint)."""
        queue.events.clear()
        run_id = f"trips-{workers}-{width}"
        aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
        parameters = {**PARAMETERS, "neurons": [8, 1], "epochs": 1, "batch_size": 20, "workers": workers}
        answer = build_launcher(session=aws.session, invoker=queue, clock=clock).handle(
            {"run_id": run_id, "parameters": {**parameters, "data": f"runs/{run_id}/data.npz"}}
        )
        assert answer["status"] == "running", answer
        trips = {"shard": [], "slice": []}
        while queue.events:
            event = queue.events.popleft()
            container = concurrent_trainer(aws, queue, clock, width)
            before = container.ports.counter.snapshot()
            container.handle(event)
            io = container.ports.counter.since(before)
            if event["state"] in trips:
                trips[event["state"]].append((io["round_trips"].get("s3", 0), io["requests"]["s3"]))
        assert container.ports.table.get_run(run_id)["status"] == "succeeded"
        return trips

    def expected(k, width):
        """(round trips, requests) of the 2 rounds' shards and slices with K = k (neurons [8, 1]: every slice owns
        a row, so that each of its K ranges is a GET)."""
        one = width == 1  # one request after another: every request a round trip
        # a shard: the data; its K parameter slices, in one wave; its two sums objects, in one wave
        shard = (k + 3 if one else 3, k + 3)
        # a slice: its parameter slice, its optimizer slice and its K ranges of the shards' sums, in one wave; its
        # two objects, in one wave
        slice_ = (k + 4 if one else 2, k + 4)
        # the committing slice also deletes the round's obsolete objects; at the epoch's end it also assembles the
        # parameters, then the optimizer state of the checkpoint (K - 1 GETs each, in one wave: its own slices are
        # cached), GETs the data for the epoch's results and PUTs the whole state
        mid, last = (k + 5 if one else 3, k + 5), (3 * k + 5 if one else 7, 3 * k + 5)
        return {"shard": [shard] * 2 * k, "slice": [slice_] * (k - 1) + [mid] + [slice_] * (k - 1) + [last]}

    two, eight = round_trips(2, 16), round_trips(8, 16)
    assert two == expected(2, 16) and eight == expected(8, 16)
    assert {trip for trip, _ in two["shard"] + eight["shard"]} == {3}  # the K parameter slices: one round trip
    assert {trip for trip, _ in two["slice"] + eight["slice"]} == {2, 3, 7}  # the K ranges: one round trip
    assert round_trips(8, 1) == expected(8, 1)  # one after another: they grow with K


@pytest.mark.usefixtures("atomic_moto")
def test_a_committing_slice_whose_shard_invokes_failed_midway_is_finished_by_its_retry(world):
    aws, X, y, queue, clock = world
    trainer = launch(aws, queue, clock)
    slices = slice_events_of_round_1(trainer, queue)
    for event in slices[:2]:
        assert trainer.handle(event)["outcome"] == "slice"
    committing = slices[2]
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
        dying.handle(committing)  # round 1 committed; round 2's shards sent, but for shard 1
    except Refused as error:
        raised = error
    assert members(queue) == [("shard", 0, 2), ("shard", 2, 2)]  # sent together: the others went out
    run = trainer.ports.table.get_run("r1")
    assert run["committed_step"] == committing["step"]
    assert run["invoked_step"] < committing["step"] + 1  # not recorded as sent
    assert isinstance(raised, Refused)  # Lambda sees the delivery fail
    drain(trainer, queue)  # shards 0 and 2 join the barrier; the round waits for shard 1
    clock.advance(60)  # Lambda's retry of the slice event a minute later: the lease has expired
    assert trainer.handle(committing)["outcome"] == "resent"
    assert members(queue) == [("shard", 1, 2)]  # only what is missing
    drain(trainer, queue)
    assert_like_reference(aws, trainer, X, y)


# ---- configurations at the edges of the slices (session 29's review) ---------------------------------------------


def model_equals_reference(aws, trainer, X, y, parameters):
    run = trainer.ports.table.get_run("r1")
    assert run["status"] == "succeeded", run.get("reason")
    params, costs = reference(X, y, {k: v for k, v in parameters.items() if k != "threshold"})
    if "threshold" in parameters:
        options = {
            k: parameters[k]
            for k in ("batch_size", "optimizer", "l2", "workers", "dtype", "threshold")
            if k in parameters
        }
        params, costs = training.train_reference(
            X,
            y,
            neurons=parameters["neurons"],
            activations=parameters["activations"],
            learning_rate=parameters["learning_rate"],
            epochs=parameters["epochs"],
            seed=parameters["seed"],
            **options,
        )
        assert len(costs) < parameters["epochs"], costs  # it did stop early
    with np.load(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key="runs/r1/model.npz")["Body"].read())) as npz:
        for name in params:
            assert npz[name].tobytes() == params[name].tobytes(), name
    assert [item["cost"] for item in trainer.ports.table.committed_epochs(run)] == costs


CONFIGS = {
    "k2-one-neuron": {"workers": 2, "neurons": [1], "activations": ["sigmoid"], "optimizer": "adam", "l2": 0.0},
    "k5-more-than-rows": {"workers": 5, "neurons": [3, 1], "activations": ["relu", "sigmoid"], "optimizer": "momentum"},
    "float32-l2-gd": {"workers": 3, "dtype": "float32", "optimizer": "gd", "l2": 0.1},
    "full-batch": {"workers": 4, "batch_size": None, "optimizer": "adam", "l2": 0.02},
    "threshold": {"workers": 2, "threshold": 0.69, "epochs": 6},
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_configurations_equal_the_reference(world, name):
    aws, X, y, queue, clock = world
    parameters = {**PARAMETERS, **CONFIGS[name]}
    if parameters.get("batch_size") is None:
        parameters.pop("batch_size")
    trainer = launch(aws, queue, clock, parameters)
    drain(trainer, queue)
    model_equals_reference(aws, trainer, X, y, parameters)
