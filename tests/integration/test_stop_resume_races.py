"""Adversarial review of issue 17's stop and resume: interleavings of a stop's twins with `lnn resume`."""

import json

import pytest

from lnn_core import run_control
from lnn_core.errors import LnnInputError
from lnn_core.protocol import sending
from lnn_core.protocol.layout import model_key, staged_model_key
from tests.integration.test_iam_scope import allowed_statements, permitted
from tests.integration.test_stop_resume import (
    LAYER_STEPS,
    LAYERS,
    World,
    assert_like_an_uninterrupted_run,
    resume_dying_before_its_write,
    stop_dying_before_publishing,
    to_the_stop,
)
from tests.support.deliveries import Delivery, Gate, context

pytestmark = pytest.mark.usefixtures("atomic_moto")


def test_a_late_twin_of_the_stop_does_not_stop_the_run_again_after_lnn_resume(aws):
    """Twins A and B of the event after `lnn stop` both read stop_requested. A stops the run; the user resumes it;
    then B (slow: it was computing the stop's model) reaches its ending write. The run is running again at the very
    step B read, so B's transition (committed_step = seen AND status = running) applies: one `lnn stop` stops the
    run twice, undoes the user's `lnn resume`, and sends a second "stopped" message."""
    world = World(aws, LAYERS)
    event = to_the_stop(world)
    late = world.trainer()
    gate = Gate(late.ports.table, "transition")
    twin_b = Delivery(late, event, context("stop-twin-b"))
    twin_b.start()
    gate.wait_reached()  # B read the run running with stop_requested, staged the model, is about to end it
    assert world.trainer().handle(json.loads(json.dumps(event)), context("stop-twin-a"))["outcome"] == "stopped"
    assert [m["status"] for m in world.messages()] == ["stopped"]
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    gate.opened.set()
    twin_b.join(30)
    run = world.record()
    messages = world.messages()
    assert run["status"] == "running", f"a late twin of one stop stopped the resumed run again ({twin_b.outcome})"
    assert messages == []
    world.deliver()
    assert_like_an_uninterrupted_run(world, LAYER_STEPS)


def test_a_finished_runs_model_is_not_replaced_by_its_stops_older_model(aws):
    """The stop's model is copied only under the stop's notification claim, which `lnn resume` takes too. A
    delivery C holds that claim and is slow to copy: `lnn resume` refuses in one line until C is done. A twin B of
    the stop event, which read the run before the stop and was slow, stages epoch 1's model again after the run
    continued and finished: its ending write fails, nobody copies its file (it holds no claim), and it removes it.
    model.npz stays the finished run's epoch 3."""
    world = World(aws, LAYERS)
    event = to_the_stop(world)
    slow_twin = world.trainer()
    stager = Gate(slow_twin.ports.store, "put_bytes")
    twin_b = Delivery(slow_twin, event, context("stop-twin-b"))
    twin_b.start()
    stager.wait_reached()  # B read the run running with stop_requested and computed epoch 1's model
    stopper = world.trainer()
    copier = Gate(stopper.ports.store, "copy")
    stop_c = Delivery(stopper, event, context("stop-c"))
    stop_c.start()
    copier.wait_reached()  # C committed the stop, claimed its message and is about to publish the stop's model
    with pytest.raises(LnnInputError, match="try `lnn resume r1` again"):
        run_control.resume_run(world.cli(), "r1")
    copier.opened.set()
    stop_c.join(30)
    assert int(world.model()["epoch"]) == 1 and [m["status"] for m in world.messages()] == ["stopped"]
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    world.deliver()
    assert world.record()["status"] == "succeeded" and int(world.model()["epoch"]) == 3
    stager.opened.set()
    twin_b.join(30)
    run = world.record()
    assert run["model_epoch"] == 3 and twin_b.outcome == "duplicate", twin_b.outcome
    assert int(world.model()["epoch"]) == 3, f"model.npz was replaced by epoch {int(world.model()['epoch'])}'s"
    assert not world.has(staged_model_key("r1", 1)), "an orphan staged model of a continued stop is left behind"


def test_a_late_mark_of_the_stops_message_does_not_swallow_the_next_endings_message(aws):
    """Kills a survivor: `mark_notified` without its ending condition passes every test of test_stop_resume.py.
    The stop's delivery publishes its message and is slow to record it; `lnn resume` continues the run; the finish
    commits and dies before it claims its message (the watchdog's sweep owes it). The stop's late mark must not
    record the finish's message as sent."""
    from lnn_core.aws.run_table import RunTable
    from lnn_core.handlers import build_watchdog

    world = World(aws, LAYERS)
    event = to_the_stop(world)
    stopper = world.trainer()
    gate = Gate(stopper.ports.table, "mark_notified")
    stop = Delivery(stopper, event, context("stop"))
    stop.start()
    gate.wait_reached()
    assert [m["status"] for m in world.messages()] == ["stopped"]
    world.clock.advance(sending.LEASE_SECONDS + 1)  # the dead claimant's lease on the stop's message expires
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"

    def dies(*args, **kwargs):
        raise ConnectionError("the finisher died after its commit")

    original = RunTable.claim_notification
    RunTable.claim_notification = dies
    try:
        while world.queue.events:
            try:
                world.trainer().handle(world.queue.events.popleft(), context("after-resume"))
            except ConnectionError:
                pass
    finally:
        RunTable.claim_notification = original
    assert world.record()["status"] == "succeeded" and world.messages() == []
    gate.opened.set()
    stop.join(30)
    world.clock.advance(3600)
    build_watchdog(session=aws.session, invoker=world.queue, clock=world.clock).handle({})
    assert [(m["status"], m["message_id"]) for m in world.messages()] == [("succeeded", "lnn-run-r1/continued-1")]


def as_s3_answers_the_role(store, statements):
    """What real S3 answers a role without s3:ListBucket on the key's prefix when a CopyObject's source is missing:
    403 AccessDenied, not 404 NoSuchKey (storage.grant_list_runs says the same of GetObject/HeadObject). moto
    answers 404 whatever the role, so the suite cannot see the difference. `statements`: the role's, from the
    synthesized template (test_iam_scope), so that granting s3:ListBucket makes this pass."""
    from botocore.exceptions import ClientError

    client, original = store._client, store._client.copy_object

    def copy_object(**request):
        source = request["CopySource"]["Key"]
        missing = client.list_objects_v2(Bucket=request["Bucket"], Prefix=source).get("KeyCount", 0) == 0
        if missing and not permitted(("s3:ListBucket", "", source), statements):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "CopyObject")
        return original(**request)

    client.copy_object = copy_object


def test_the_watchdog_sends_the_message_of_a_stop_whose_staged_model_a_dead_resume_removed(aws, template):
    """`lnn resume` published the stop's model, removed its staged copy, and died before its write: the run is
    still stopped, its message owed. The watchdog's sweep calls publish_model, whose copy of the missing staged
    model is AccessDenied on AWS (the watchdog has no s3:ListBucket), not the NoSuchKey `S3ObjectStore.copy`
    treats as "already published": the sweep errs for this run at every schedule and the message is never sent."""
    from lnn_core.handlers import build_watchdog

    world = World(aws, LAYERS)
    stop_dying_before_publishing(world, to_the_stop(world))
    resume_dying_before_its_write(world)
    assert not world.has(staged_model_key("r1", 1)) and int(world.model()["epoch"]) == 1
    world.clock.advance(3600)
    watchdog = build_watchdog(session=aws.session, invoker=world.queue, clock=world.clock)
    as_s3_answers_the_role(watchdog.ports.store, allowed_statements(template, "WatchdogLambdaRole"))
    swept = watchdog.handle({})["messages_owed"]
    assert swept == [{"run_id": "r1", "outcome": "message sent", "status": "stopped"}]
    assert [(m["status"], m["message_id"]) for m in world.messages()] == [("stopped", "lnn-run-r1")]


def test_lnn_serve_predicts_with_the_model_the_run_has_now_not_the_one_it_cached(aws):
    """model.npz is no longer written once per run: a stop publishes epoch 1's, the continued run's finish replaces
    it. `lnn serve`'s predict (web/predict.load_model -> deployed_stack.model_params) reads it with
    `S3ObjectStore.get_bytes(key)`, whose cache (for immutable training state) keeps the first bytes for the life
    of the process: after the run finished, the page says "model from epoch 3" and predicts with epoch 1's."""
    from types import SimpleNamespace

    from lnn_cli.web import predict
    from tests.integration.test_stop_resume import assert_params, reference

    world = World(aws, LAYERS)
    world.queue.events.append(to_the_stop(world))
    world.deliver()
    serve = SimpleNamespace(ports=world.cli())  # one `lnn serve` process: its ports live as long as it does
    stopped = predict.load_model(serve, world.record())
    assert_params(stopped.params, reference(LAYERS, epochs=1)[0])
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    world.deliver()
    assert world.record()["status"] == "succeeded" and world.record()["model_epoch"] == 3
    finished = predict.load_model(serve, world.record())
    assert_params(finished.params, reference(LAYERS)[0])


def test_lnn_predict_of_a_stopped_run_whose_model_is_not_published_yet_is_one_line(aws):
    """The stop committed (the record says model_epoch 1) and its delivery died before it copied the staged model:
    model.npz appears only with the retry or the watchdog's sweep. Meanwhile `lnn predict r1` reads
    model.npz with `get_bytes`, whose RunFailure ("s3 object runs/r1/model.npz is missing") is neither an
    LnnInputError nor a botocore error: `lnn` prints a traceback, exit 1."""
    from types import SimpleNamespace

    from lnn_cli import predict_command

    world = World(aws, LAYERS)
    stop_dying_before_publishing(world, to_the_stop(world))
    assert world.record()["model_epoch"] == 1 and not world.has(model_key("r1"))
    stack = SimpleNamespace(run=lambda run_id: world.record(), ports=world.cli())
    args = SimpleNamespace(run_id="r1", data="unused.npz", image=None, remote=False, csv=False, label_column=None)
    with pytest.raises(LnnInputError):
        predict_command.command_predict(args, stack, console=None)
