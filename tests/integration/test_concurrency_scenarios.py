"""The interleavings a concurrent review found, each reproduced deterministically: deliveries in threads, each with its
own `Trainer` (its own ports and warm cache, as separate Lambda containers have), ordered by events, not sleeps.

Each test fails on the code before the fix it names (issue 9, defects 1-7). Every test runs under `atomic_moto`:
in-process moto is not thread-safe, and AWS executes each request atomically.
"""

import io
import json
import threading
from types import SimpleNamespace

import numpy as np
import pytest
from botocore.exceptions import ClientError

from lnn_cli.cloud.runtime.atomic import REQUEST_LOCK
from lnn_core import run_control
from lnn_core.aws.epoch_items import epoch_write_units
from lnn_core.handlers import build_launcher, build_trainer
from lnn_core.ml import training
from lnn_core.protocol import results
from tests.conftest import FakeClock, QueueInvoker, blobs
from tests.support.deliveries import WAIT_SECONDS, Delivery, Gate, context, deliver_failing_at

pytestmark = pytest.mark.usefixtures("atomic_moto")

UNSEEDED = {"epochs": 3, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"]}


@pytest.fixture
def world(aws):
    """An unseeded run's data and launcher, a shared clock and queue, and a factory of containers."""
    X, y = blobs()
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    clock, queue = FakeClock(), QueueInvoker()

    def container():
        invoker = SimpleNamespace(invoke_async=queue.invoke_async)  # each container's own, onto the shared queue
        return build_trainer(session=aws.session, invoker=invoker, clock=clock)

    def launch(parameters=UNSEEDED):
        launcher = build_launcher(session=aws.session, invoker=queue, clock=clock)
        assert launcher.handle({"run_id": "r1", "parameters": parameters})["status"] == "running"

    def run_until(state):
        """Deliver queued events to one container until the next one is of `state`; that one is returned, not
        delivered."""
        trainer = container()
        while queue.events[0]["state"] != state:
            trainer.handle(queue.events.popleft(), context())
        return queue.events.popleft()

    return SimpleNamespace(
        aws=aws, X=X, y=y, clock=clock, queue=queue, container=container, launch=launch, run_until=run_until
    )


def drain(trainer, queue):
    deliveries = 0
    while queue.events:
        trainer.handle(queue.events.popleft(), context(f"chain-{deliveries}"))
        deliveries += 1
    return deliveries


def model(aws):
    body = aws.s3.get_object(Bucket=aws.bucket, Key="runs/r1/model.npz")["Body"].read()
    with np.load(io.BytesIO(body)) as npz:
        return {name: npz[name] for name in npz.files if name.startswith(("W", "b"))}


def reference(world, run, epochs=3):
    config = run["config"]
    params, costs = training.train_reference(
        world.X,
        world.y,
        neurons=list(config["neurons"].values()),
        activations=list(config["activations"].values()),
        learning_rate=config["learning_rate"],
        epochs=epochs,
        seed=config["seed"],
    )
    return params, costs


@pytest.mark.parametrize("granularity", ["layer", "epoch"])
def test_1_an_unseeded_run_draws_its_seed_once_so_a_late_twin_writes_the_same_weights(world, granularity):
    """Twins of step 1 each initialize; the loser writes its parameters after the winner's chain read them."""
    world.launch({**UNSEEDED, "granularity": granularity})
    event = world.queue.events.popleft()
    loser, winner = world.container(), world.container()
    gate = Gate(loser.ports.store, "put_bytes")  # the loser has started the step and computed, not yet written
    late = Delivery(loser, event, context("request-loser"))
    late.start()
    gate.wait_reached()
    assert winner.handle(json.loads(json.dumps(event)), context("request-winner"))["outcome"] == "committed"
    winner.handle(world.queue.events.popleft(), context("request-2"))  # the chain reads the initial parameters
    gate.opened.set()  # ... and only now the loser overwrites them
    assert late.finish() == "duplicate"
    drain(winner, world.queue)

    run = winner.ports.table.get_run("r1")
    assert run["status"] == "succeeded" and run["seed_drawn"] and isinstance(run["config"]["seed"], int)
    params, costs = reference(world, run)
    got = model(world.aws)
    assert all(got[name].tobytes() == params[name].tobytes() for name in params)
    assert [item["cost"] for item in winner.ports.table.committed_epochs(run)] == costs
    message = json.loads(world.aws.messages()[0]["Body"])
    assert message["seed"] == run["config"]["seed"]


@pytest.mark.parametrize("same_request_id", [True, False])
def test_2_twins_of_the_finish_step_send_one_message_whatever_their_request_ids(world, same_request_id):
    world.launch()
    event = world.run_until("finish")
    first, twin = world.container(), world.container()
    gate = Gate(first.ports.notifier, "publish")  # the first has committed and claimed the message
    a = Delivery(first, event, context("request-1"))
    a.start()
    gate.wait_reached()
    b = Delivery(twin, event, context("request-1" if same_request_id else "request-2"))
    b.start()
    assert b.finish() in ("duplicate", "ignored")
    gate.opened.set()
    assert a.finish() == "committed"
    assert [json.loads(m["Body"])["status"] for m in world.aws.messages()] == ["succeeded"]


def test_every_request_of_the_delivery_threads_runs_alone_and_a_gated_thread_holds_no_lock(world, monkeypatch):
    """What this module's `atomic_moto` gives: each moto request, in any thread, is dispatched holding REQUEST_LOCK;
    a delivery held at a Gate (between two requests) does not hold it, so its twin runs to its end meanwhile."""
    from moto.core.botocore_stubber import BotocoreStubber

    process, requests = BotocoreStubber.process_request, []

    def recording(self, request):
        requests.append((threading.current_thread().name, REQUEST_LOCK._is_owned()))
        return process(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", recording)
    world.launch()
    event = world.run_until("finish")
    first, twin = world.container(), world.container()
    gate = Gate(first.ports.notifier, "publish")
    a = Delivery(first, event, context("request-1"))
    a.start()
    gate.wait_reached()
    assert REQUEST_LOCK.acquire(timeout=WAIT_SECONDS)  # the gated thread holds no lock ...
    REQUEST_LOCK.release()
    b = Delivery(twin, event, context("request-1"))
    b.start()
    assert b.finish() in ("duplicate", "ignored")  # ... and its twin's requests ran
    gate.opened.set()
    assert a.finish() == "committed"
    threads = {name for name, _ in requests}
    assert {a.name, b.name} <= threads and all(owned for _, owned in requests), [r for r in requests if not r[1]]


def test_2_a_claimant_that_died_before_publishing_is_finished_by_its_retry(world):
    world.launch()
    event = world.run_until("finish")
    deliver_failing_at(world.container(), "notifier.publish", event)
    twin = world.container()
    assert twin.handle(json.loads(json.dumps(event)), context("request-1"))["outcome"] == "ignored"  # lease live
    assert world.aws.messages() == []
    world.clock.advance(60)  # Lambda's retry of the died event, a minute later
    retry = world.container()
    retry.handle(json.loads(json.dumps(event)), context("request-1"))
    assert [json.loads(m["Body"])["status"] for m in world.aws.messages()] == ["succeeded"]


def test_3_a_duplicate_whose_commit_fails_while_the_winner_sends_starts_no_shadow_chain(world):
    world.launch({**UNSEEDED, "seed": 4})
    clean_world_deliveries = 3 * 5 + 2  # steps of 3 epochs at layer granularity, plus finish
    event = world.queue.events.popleft()
    winner, loser = world.container(), world.container()
    started = Gate(loser.ports.table, "transition")  # the loser computed step 1 and is about to commit
    sending = Gate(winner.ports.invoker, "invoke_async")  # the winner committed and is about to send step 2
    late = Delivery(loser, event, context("request-loser"))
    late.start()
    started.wait_reached()
    first = Delivery(winner, event, context("request-winner"))
    first.start()
    sending.wait_reached()
    started.opened.set()  # the loser's commit fails inside the winner's window: step 2 committed? no, not sent
    assert late.finish() == "duplicate"  # before the fix: "resent", the start of a second chain
    sending.opened.set()
    assert first.finish() == "committed"
    deliveries = 2 + drain(winner, world.queue)
    assert deliveries <= clean_world_deliveries + 2
    assert winner.ports.table.get_run("r1")["status"] == "succeeded"
    assert len(world.aws.messages()) == 1


def test_3_a_winner_that_died_between_commit_and_send_is_resent_once_its_lease_expired(world):
    world.launch({**UNSEEDED, "seed": 4})
    event = world.queue.events.popleft()
    deliver_failing_at(world.container(), "invoker.invoke_async", event)
    twin = world.container()
    assert twin.handle(json.loads(json.dumps(event)), context("request-1"))["outcome"] == "duplicate"  # lease live
    assert not world.queue.events
    world.clock.advance(60)
    assert twin.handle(json.loads(json.dumps(event)), context("request-1"))["outcome"] == "resent"
    assert twin.handle(json.loads(json.dumps(event)), context("request-1"))["outcome"] == "duplicate"  # sent: once
    assert len(world.queue.events) == 1


def test_4_manual_resumes_of_a_live_run_never_fail_it(world):
    world.launch({**UNSEEDED, "seed": 4})
    trainer = world.container()
    trainer.handle(world.queue.events.popleft(), context())
    for _ in range(2 * run_control.MAX_RESUMES):
        assert run_control.resume_run(trainer.ports, "r1")["outcome"] == "resumed"
    assert trainer.ports.table.get_run("r1")["status"] == "running"
    drain(trainer, world.queue)
    assert trainer.ports.table.get_run("r1")["status"] == "succeeded"


def test_5_epochs_written_but_never_committed_are_not_shown(world):
    """A delivery writes epoch 2's item, then dies before its commit; the run is stopped before its retry."""
    world.launch({**UNSEEDED, "seed": 4, "granularity": "epoch"})
    trainer = world.container()
    trainer.handle(world.queue.events.popleft(), context())
    event = world.queue.events.popleft()
    deliver_failing_at(world.container(), "table.transition", event)
    run_control.stop_run(trainer.ports, "r1")
    world.clock.advance(60)
    assert trainer.handle(json.loads(json.dumps(event)), context("request-1"))["outcome"] == "stopped"
    table = trainer.ports.table
    run = table.get_run("r1")
    assert [item["epoch"] for item in table.list_epochs("r1")] == [1, 2]  # the uncommitted item is there ...
    assert [item["epoch"] for item in table.committed_epochs(run)] == [1]  # ... and no reader shows it


def test_5_a_checkpoint_epoch_item_is_the_same_whichever_step_writes_it(aws):
    """A large network's item of a checkpoint epoch names the kept parameters even when its step ran past it."""
    X, y = blobs(m=40, features=30)
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    queue, clock = QueueInvoker(), FakeClock()
    parameters = {
        "epochs": 130,
        "learning_rate": 0.1,
        "neurons": [64, 1],
        "activations": ["tanh", "sigmoid"],
        "granularity": "auto",
        "seed": 3,
    }  # 2,049 parameters: items hold norms
    build_launcher(session=aws.session, invoker=queue, clock=clock).handle({"run_id": "r1", "parameters": parameters})
    trainer = build_trainer(session=aws.session, invoker=queue, clock=clock)
    assert trainer.handle(queue.events.popleft(), context(remaining_seconds=3600))["outcome"] == "committed"
    items = {item["epoch"]: item for item in trainer.ports.table.epoch_items("r1")}
    assert len(items) == 130  # one step ran through epoch 100 to the last
    key = "runs/r1/state/params-e0000100.npz"
    assert items[100]["checkpoint_key"] == key and "checkpoint_key" not in items[99]
    assert aws.s3.get_object_tagging(Bucket=aws.bucket, Key=key)["TagSet"] == []  # kept, not scratch
    with np.load(io.BytesIO(aws.s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read())) as npz:
        kept = {name: npz[name] for name in npz.files}
    params, _ = training.train_reference(
        X, y, neurons=[64, 1], activations=["tanh", "sigmoid"], learning_rate=0.1, epochs=100, seed=3
    )
    assert all(kept[name].tobytes() == params[name].tobytes() for name in params)


def test_6_the_auto_commit_budget_counts_write_units_of_large_items():
    """A 1,975-parameter network's epoch is stored as two items, its weights about 21 KB: 1,400 epochs need at least
    29 s of one partition, and 2,800 items 29 transactions."""
    config = SimpleNamespace(learning_rate=0.01, layers=2, epochs=5000)
    rng = np.random.RandomState(0)
    params = {"W1": rng.randn(42, 45), "b1": rng.randn(42, 1), "W2": rng.randn(1, 42), "b2": rng.randn(1, 1)}
    assert sum(a.size for a in params.values()) == 1_975
    item = results.epoch_item(config, 7, 0.123456789, params, "2026-01-01T00:00:00.000Z")
    units = epoch_write_units(item)
    assert units[0] == 1 and 20 <= units[1] <= 24  # the figures, the weights
    seconds = results.commit_seconds(1_400, units)
    assert seconds >= 1_400 * 22 / 1_000 + 29 * results.WRITE_REQUEST_SECONDS  # 42.4 s; the old budget gave 5.6 s


def refuse_the_notified_write(publisher, monkeypatch) -> list:
    """Make `publisher`'s `mark_notified` write fail as after all the SDK's retries; returns the refused keys."""
    table = publisher.ports.table._table
    update = table.update_item
    refused = []

    def refusing(**request):
        if request.get("UpdateExpression", "").startswith("SET notified = :yes"):
            refused.append(request["Key"])
            raise ClientError(
                {"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "UpdateItem"
            )
        return update(**request)

    monkeypatch.setattr(table, "update_item", refusing)
    return refused


def publish_with_the_notified_write_refused(world, monkeypatch):
    """Run to the finish; a container publishes its message but its `notified` write is refused. Returns the
    finish event and the publisher."""
    world.launch({**UNSEEDED, "seed": 4})
    event = world.run_until("finish")
    publisher = world.container()
    refused = refuse_the_notified_write(publisher, monkeypatch)
    assert publisher.handle(json.loads(json.dumps(event)), context("request-1"))["outcome"] == "committed"  # no error
    assert refused and len(world.aws.messages()) == 1  # published; the write that records it was refused
    assert publisher.ports.table.get_run("r1")["notified"] is False
    return event, publisher


def test_7_a_message_whose_notified_write_fails_is_not_published_again_inside_its_lease(world, monkeypatch):
    """The delivery that published ends normally although its `mark_notified` write was refused; Lambda may still
    deliver the finish event again at once (a duplicate, or a retry, with the same request id), to the same
    container or another: none of these deliveries publishes a second message while the claim's lease is live."""
    event, publisher = publish_with_the_notified_write_refused(world, monkeypatch)
    for again in (publisher, world.container()):
        assert again.handle(json.loads(json.dumps(event)), context("request-1"))["outcome"] == "ignored"
        assert world.aws.messages() == [], "a delivery of the finish event published the message again"


def test_7_after_the_lease_a_message_whose_notified_write_failed_is_sent_once_more_with_the_same_key(
    world, monkeypatch
):
    """Once the lease expired, a record whose `notified` write was refused looks exactly like one whose claimant
    died before publishing (which must be published): the README's documented at-least-once case. The second copy
    carries the same `message_id`, and it is the last: its own `notified` write goes through."""
    event, _ = publish_with_the_notified_write_refused(world, monkeypatch)
    world.clock.advance(60)  # Lambda's retry comes a minute later, when the claim's 30 s lease has expired
    assert world.container().handle(json.loads(json.dumps(event)), context("request-1"))["outcome"] == "ignored"
    [copy] = [json.loads(message["Body"]) for message in world.aws.messages()]
    assert copy["message_id"] == "lnn-run-r1" and copy["status"] == "succeeded"
    assert world.container().ports.table.get_run("r1")["notified"] is True
    world.clock.advance(60)
    world.container().handle(json.loads(json.dumps(event)), context("request-1"))
    assert world.aws.messages() == []


def test_7_obsolete_scratch_is_deleted_when_a_commit_answer_was_lost(world):
    world.launch({**UNSEEDED, "seed": 4})
    trainer = world.container()
    for _ in range(4):  # start, forward 1, forward 2, backward 2
        trainer.handle(world.queue.events.popleft(), context())
    event = world.queue.events.popleft()  # backward 1: the update, whose commit makes epoch 1's scratch obsolete
    twin = world.container()
    twin.ports.table.transition = lambda *args, **kwargs: (trainer.ports.table.transition(*args, **kwargs), False)[1]
    assert twin.handle(event, context())["outcome"] == "committed"  # its own commit, found by re-reading the record
    listed = world.aws.s3.list_objects_v2(Bucket=world.aws.bucket, Prefix="runs/r1/state/e0000001/")
    assert listed.get("KeyCount", 0) == 0
