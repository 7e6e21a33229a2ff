"""A delivery that sends the next step makes that send its last requests: the invokes, then only the `mark_invoked`
write (the K slice invokes by the shard that completes its round: nothing after them). Its cleanup and its usage ADD
come before, so that its container is free again when Lambda dispatches the event it sent, and the chain stays in
one warm container with its cached state (docs/performance.md, "Why K = 1's epoch intervals swing"). And every
delivery, whatever path it takes, adds its usage exactly once.
"""

from types import SimpleNamespace

import pytest

from lnn_core.aws.usage import USAGE_PREFIX
from lnn_core.handlers import build_launcher, build_trainer
from tests.conftest import QueueInvoker, blobs

CONTEXT = SimpleNamespace(aws_request_id="req", memory_limit_in_mb=1769, get_remaining_time_in_millis=lambda: 900_000)
CHAIN = {"epochs": 3, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "seed": 1}
RUNS = {
    "epoch": {**CHAIN, "granularity": "epoch"},
    "layer": {**CHAIN, "granularity": "layer"},
    "layer, mini-batches": {**CHAIN, "granularity": "layer", "batch_size": 16},
    "K = 2": {**CHAIN, "granularity": "epoch", "batch_size": 16, "workers": 2, "reduce": "slices"},
    "K = 2, reduced in the shard": {**CHAIN, "granularity": "epoch", "batch_size": 16, "workers": 2, "reduce": "shard"},
}
MARK_INVOKED = "SET invoked_step = :step"
USAGE_ADD = "ADD " + USAGE_PREFIX


class RecordingInvoker:
    """The tests' queue of events, recording each invoke in the requests of the delivery that makes it."""

    def __init__(self, queue: QueueInvoker, requests: list):
        self.queue, self.requests = queue, requests

    def invoke_async(self, payload):
        self.requests.append(("lambda", "Invoke", payload["state"]))
        self.queue.invoke_async(payload)


class RecordingKick:
    """The watchdog's invoker: a sweep trial's kick, recorded in the requests of the delivery that makes it."""

    def __init__(self, requests: list):
        self.requests, self.kicks = requests, []

    def invoke_async(self, payload):
        self.requests.append(("lambda", "Invoke", "watchdog"))
        self.kicks.append(payload)


def recording_trainer(aws, queue: QueueInvoker):
    """A trainer whose every request, SDK or invoke, is appended in order to the list returned with it: (service,
    operation, detail), the detail being an UpdateItem's expression or an invoked event's state."""
    requests: list = []
    trainer = build_trainer(
        session=aws.session,
        invoker=RecordingInvoker(queue, requests),
        functions={"watchdog": RecordingKick(requests)},
    )

    def recorded(params, model, **_):
        service = model.service_model.service_name
        requests.append((service, model.name, params.get("UpdateExpression") if service == "dynamodb" else None))

    for client in (trainer.ports.table._table.meta.client, trainer.ports.store._client):
        client.meta.events.register("before-parameter-build", recorded, unique_id=f"send-last-{id(client)}")
    return trainer, requests


def launched(aws, parameters):
    X, y = blobs(40)
    aws.upload_data("runs/r1/data.npz", X=X, y=y)
    queue = QueueInvoker()
    answer = build_launcher(session=aws.session, invoker=queue).handle({"run_id": "r1", "parameters": parameters})
    assert answer["status"] == "running", answer
    return queue


def usage(trainer) -> dict:
    run = trainer.ports.table.get_run("r1")
    return {key[len(USAGE_PREFIX) :]: int(value) for key, value in run.items() if key.startswith(USAGE_PREFIX)}


@pytest.mark.parametrize("run", RUNS)
def test_the_invoke_of_the_next_step_is_followed_only_by_its_mark_invoked(aws, run):
    queue = launched(aws, RUNS[run])
    trainer, requests = recording_trainer(aws, queue)
    sends, deliveries = [], 0
    while queue.events:
        requests.clear()
        outcome = trainer.handle(queue.events.popleft(), CONTEXT)["outcome"]
        deliveries += 1
        invokes = [index for index, request in enumerate(requests) if request[:2] == ("lambda", "Invoke")]
        adds = [index for index, request in enumerate(requests) if str(request[2]).startswith(USAGE_ADD)]
        assert len(adds) == 1, (outcome, requests)  # the delivery's usage, once
        if not invokes:
            continue
        first = invokes[0]
        sent, tail = requests[first : invokes[-1] + 1], requests[invokes[-1] + 1 :]
        assert all(request[:2] == ("lambda", "Invoke") for request in sent), requests  # the invokes together
        assert adds[0] < first, requests  # the usage before the send
        assert not [request for request in requests[first:] if request[1] == "DeleteObjects"], requests
        if outcome == "round complete":  # the shard that completed the round invokes the K slices, and is done
            assert [request[2] for request in sent] == ["slice", "slice"] and tail == [], requests
        else:
            assert outcome == "committed", (outcome, requests)
            assert tail == [("dynamodb", "UpdateItem", MARK_INVOKED)], requests
        sends.append((outcome, tuple(request[2] for request in sent)))
    assert trainer.ports.table.get_run("r1")["status"] == "succeeded"
    assert sends and usage(trainer)["deliveries"] == deliveries + 1  # and the launch's
    if run == "K = 2":  # a round's shards send its slices; the slice that commits it sends the next round's shards
        assert ("round complete", ("slice", "slice")) in sends
        assert ("committed", ("shard", "shard")) in sends
    if run == "K = 2, reduced in the shard":  # the shard that completes a round commits it and sends the next's
        assert {outcome for outcome, _ in sends} == {"committed"} and ("committed", ("shard", "shard")) in sends


def test_a_commit_deletes_its_obsolete_state_before_it_sends(aws):
    """The step that completes epoch 2 deletes epoch 1's state: before it invokes step 3."""
    queue = launched(aws, RUNS["epoch"])
    trainer, requests = recording_trainer(aws, queue)
    trainer.handle(queue.events.popleft(), CONTEXT)
    requests.clear()
    assert trainer.handle(queue.events.popleft(), CONTEXT)["outcome"] == "committed"
    operations = [request[1] for request in requests]
    assert operations.index("DeleteObjects") < operations.index("Invoke")
    assert [request for request in requests if str(request[2]).startswith(USAGE_ADD)] == [requests[-3]]


def test_a_sweep_trial_kicks_the_watchdog_before_it_sends(aws):
    """An epoch with a validation cost kicks the sweep's reconciliation: before the invoke of the next step."""
    queue = launched(aws, {**RUNS["epoch"], "validation_split": 0.25, "eval_every": 1, "sweep": "s1"})
    trainer, requests = recording_trainer(aws, queue)
    requests.clear()
    assert trainer.handle(queue.events.popleft(), CONTEXT)["outcome"] == "committed"
    states = [request[2] for request in requests if request[:2] == ("lambda", "Invoke")]
    assert states == ["watchdog", "start"] and requests[-1] == ("dynamodb", "UpdateItem", MARK_INVOKED)
    assert trainer.ports.functions["watchdog"].kicks == [{"sweep": "s1", "epoch": 1}]


def test_the_usage_counts_the_send_it_precedes(aws):
    """The ADD comes before the invoke and its mark: it counts both (as the ports count them), and no more."""
    queue = launched(aws, RUNS["epoch"])
    trainer, requests = recording_trainer(aws, queue)
    before = usage(trainer)
    requests.clear()
    trainer.handle(queue.events.popleft(), CONTEXT)
    made = [request[0] for request in requests]
    after = usage(trainer)
    assert made[-2:] == ["lambda", "dynamodb"] and after["requests_lambda"] - before["requests_lambda"] == 1
    assert after["requests_dynamodb"] - before["requests_dynamodb"] == made.count("dynamodb")  # the ADD, the mark
    assert after["requests_s3"] - before["requests_s3"] == made.count("s3")


def test_every_path_adds_its_usage_once(aws, monkeypatch):
    """Committed, duplicate, resent (a retry of a committed step whose send was lost), rejected, crashed mid-step
    and crashed in the send: one ADD each."""
    queue = launched(aws, RUNS["epoch"])
    trainer, requests = recording_trainer(aws, queue)

    def deliver(event, *, raises=None):
        requests.clear()
        before = usage(trainer)["deliveries"]
        if raises is None:
            outcome = trainer.handle(event, CONTEXT)["outcome"]
        else:
            with pytest.raises(raises):
                trainer.handle(event, CONTEXT)
            outcome = "crashed"
        assert usage(trainer)["deliveries"] == before + 1, outcome
        assert len([request for request in requests if str(request[2]).startswith(USAGE_ADD)]) == 1, outcome
        return outcome

    step1 = queue.events.popleft()
    assert deliver(step1) == "committed"
    assert deliver(dict(step1)) == "duplicate"
    step2 = queue.events.popleft()

    def crash(*args, **kwargs):
        raise MemoryError("the step died")

    with monkeypatch.context() as patch:  # crashed mid-step: before any effect of its own
        patch.setattr(trainer.steps, "execute", crash)
        assert deliver(dict(step2), raises=MemoryError) == "crashed"

    with monkeypatch.context() as patch:  # crashed in the send, after its commit and its ADD
        patch.setattr(trainer.ports.invoker, "invoke_async", crash)
        assert deliver(dict(step2), raises=MemoryError) == "crashed"
    assert not queue.events and trainer.ports.table.get_run("r1")["committed_step"] == 2
    trainer.ports.clock = lambda: 4e9  # Lambda's retry comes after the commit's send lease expired
    assert deliver(dict(step2)) == "resent" and len(queue.events) == 1
    assert deliver({"run_id": "r1", "step": "x"}) == "failed"  # a malformed event fails the run it names
    assert deliver({"run_id": "r1", "step": "y"}) == "rejected"  # and is rejected once the run ended
    assert deliver(queue.events.popleft()) == "ignored"


def test_a_failed_cleanup_delete_does_not_hold_back_the_next_step(aws, monkeypatch):
    """The delete before the send is best effort: an S3 error is logged and step k + 1 is sent at once (raising
    would leave it to Lambda's retry a minute later). Review 25."""
    from botocore.exceptions import ClientError

    queue = launched(aws, RUNS["epoch"])
    trainer, _ = recording_trainer(aws, queue)
    trainer.handle(queue.events.popleft(), CONTEXT)  # step 1 (epoch 1)

    def slow_down(keys):
        raise ClientError(
            {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "DeleteObjects"
        )

    monkeypatch.setattr(trainer.ports.store, "delete_keys", slow_down)
    assert trainer.handle(queue.events.popleft(), CONTEXT)["outcome"] == "committed"  # step 2 deletes epoch 1's state
    assert trainer.ports.table.get_run("r1")["committed_step"] == 2
    assert [event["step"] for event in queue.events] == [3]


def test_a_resend_comes_after_the_usage_add(aws, monkeypatch):
    """catch_up claims a re-send and the delivery makes it last: claim, ADD, invokes, mark. Review 25."""
    queue = launched(aws, RUNS["epoch"])
    trainer, requests = recording_trainer(aws, queue)
    step1 = queue.events.popleft()
    with monkeypatch.context() as patch:  # the winner dies in its send, after its commit and its ADD
        patch.setattr(trainer.ports.invoker, "invoke_async", lambda payload: (_ for _ in ()).throw(MemoryError()))
        with pytest.raises(MemoryError):
            trainer.handle(dict(step1), CONTEXT)
    trainer.ports.clock = lambda: 4e9  # Lambda's retry, past the send lease
    requests.clear()
    assert trainer.handle(dict(step1), CONTEXT)["outcome"] == "resent"
    add = [i for i, request in enumerate(requests) if str(request[2]).startswith(USAGE_ADD)]
    invoke = [i for i, request in enumerate(requests) if request[:2] == ("lambda", "Invoke")]
    assert add and invoke and add[-1] < invoke[0], requests
    assert requests[invoke[-1] + 1 :] == [("dynamodb", "UpdateItem", MARK_INVOKED)], requests


def test_a_loser_whose_cleanup_delete_fails_still_resends(aws, monkeypatch):
    """A twin that loses the commit to a winner who died in its send deletes the obsolete state (best effort, as
    the winner) and then re-sends step k + 1: a failed delete holds nothing back."""
    from botocore.exceptions import ClientError

    queue = launched(aws, RUNS["epoch"])
    loser, _ = recording_trainer(aws, queue)
    winner, _ = recording_trainer(aws, queue)
    loser.handle(queue.events.popleft(), CONTEXT)  # step 1 (epoch 1)
    step2 = queue.events.popleft()
    real_transition = loser.ports.table.transition

    def winner_first(*args, **kwargs):  # the winner commits step 2 first, then dies in its send
        with monkeypatch.context() as patch:
            patch.setattr(winner.ports.invoker, "invoke_async", lambda payload: (_ for _ in ()).throw(MemoryError()))
            with pytest.raises(MemoryError):
                winner.handle(dict(step2), CONTEXT)
        loser.ports.clock = lambda: 4e9  # past the winner's send lease
        return real_transition(*args, **kwargs)

    def slow_down(keys):
        raise ClientError(
            {"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}}, "DeleteObjects"
        )

    monkeypatch.setattr(loser.ports.table, "transition", winner_first)
    monkeypatch.setattr(loser.ports.store, "delete_keys", slow_down)
    assert loser.handle(dict(step2), CONTEXT)["outcome"] == "resent"
    assert [event["step"] for event in queue.events] == [3]
