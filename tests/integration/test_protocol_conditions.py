"""One interleaving per condition of the protocol that no other concurrency test needs: each test fails, by an
assertion, when that one condition is removed (a mutant of `make mutants`, named in the test's docstring), and
passes as the protocol is.

The in-process tests' clock does not move inside a delivery, so a lease of 0 s looks live to every twin that comes
at the same instant: here a twin comes a second later. And a condition that a read before it already checks (a
claim's `invoked_step`, `notified`) matters only when the record changes between that read and the claim: here a
delivery is held at a gate after its read, so that it claims later, at a later clock (a gate at the claim itself
would hold a request whose clock reading was taken before the gate).
"""

import json

import pytest

from lnn_cli.cloud.runtime import atomic_requests
from lnn_core import run_control
from tests.integration.test_lost_answers import World
from tests.support.deliveries import Delivery, Gate, context, deliver_failing_at


@pytest.fixture(autouse=True)
def atomic():
    """Deliveries run in threads against in-process moto: each request runs alone, as AWS executes it."""
    with atomic_requests():
        yield


@pytest.fixture
def world(aws):
    return World(aws)


def copy(event):
    return json.loads(json.dumps(event))


def steps(world):
    return [event["step"] for event in world.queue.events]


# ---- leases: a twin that comes a second later ---------------------------------------------------------------------


def test_a_twin_that_comes_a_second_after_the_commit_sends_nothing_while_the_winner_sends(world):
    """Mutant: a lease of 0 s. The winner's commit holds the send for the lease's length; a twin a second later,
    while the winner is between its commit and its invoke, must find the lease live and not start a second chain."""
    world.launch()
    event = world.queue.events.popleft()
    winner, twin = world.trainer(), world.trainer()
    sending = Gate(winner.ports.invoker, "invoke_async")  # the winner committed step 1, step 2 not yet sent
    first = Delivery(winner, event, context("request-winner"))
    first.start()
    sending.wait_reached()
    world.clock.advance(1)
    assert twin.handle(copy(event), context("request-twin"))["outcome"] == "duplicate"
    assert steps(world) == [], "a twin re-sent step 2 while the winner's lease was live"
    sending.opened.set()
    assert first.finish() == "committed"
    assert steps(world) == [2]


def test_a_twin_of_the_finish_that_comes_a_second_later_publishes_nothing_while_the_finisher_publishes(world):
    """Mutant: a lease of 0 s. The finisher's notification claim holds for the lease's length."""
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    finisher, twin = world.trainer(), world.trainer()
    publishing = Gate(finisher.ports.notifier, "publish")  # the finisher committed and claimed the message
    first = Delivery(finisher, finish, context("request-1"))
    first.start()
    publishing.wait_reached()
    world.clock.advance(1)
    assert twin.handle(copy(finish), context("request-1"))["outcome"] == "ignored"
    assert world.messages() == []
    publishing.opened.set()
    assert first.finish() == "committed"
    assert [message["status"] for message in world.messages()] == ["succeeded"]


# ---- claims whose record changed between the read and the claim ----------------------------------------------------


def test_a_late_twin_that_read_the_successor_unsent_does_not_re_send_it_once_it_was_sent(world):
    """Mutant: claim_send without `invoked_step < :next`. The winner died between its commit and its invoke; its
    retry re-sends step 2. A twin that read the record before that, and claims only after the retry's lease
    expired, must find step 2 recorded as sent."""
    world.launch()
    event = world.queue.events.popleft()
    deliver_failing_at(world.trainer(), "invoker.invoke_async", event)
    world.clock.advance(60)  # the commit's lease expired
    late, retry = world.trainer(), world.trainer()
    reading = Gate(late.ports.table, "get_run", after=True)  # the twin read the record: step 2 unsent
    twin = Delivery(late, event, context("request-2"))
    twin.start()
    reading.wait_reached()
    assert retry.handle(copy(event), context("request-1"))["outcome"] == "resent"
    assert world.record()["invoked_step"] == 2
    world.clock.advance(60)  # the retry's lease expired too
    reading.opened.set()  # the twin claims the re-send now
    assert twin.finish() == "duplicate"
    assert steps(world) == [2], "step 2 was sent twice: two chains"


def test_a_duplicate_of_the_last_committed_step_a_minute_later_re_sends_nothing(world):
    """Mutant: mark_invoked writing nothing. Once the commit's lease expired only `invoked_step` tells a late
    duplicate that the successor was sent."""
    world.launch()
    event = world.queue.events.popleft()
    assert world.trainer().handle(copy(event), context("request-1"))["outcome"] == "committed"
    assert steps(world) == [2]
    world.clock.advance(60)
    assert world.trainer().handle(copy(event), context("request-2"))["outcome"] == "duplicate"
    assert steps(world) == [2], "a late duplicate re-sent step 2"


def test_a_twin_of_the_finish_that_claims_after_the_message_was_sent_publishes_nothing(world):
    """Mutant: claim_notification without `notified = :no`. A twin of the finish reads the record while the
    finisher publishes, and claims after the finisher recorded the message and its lease expired."""
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    finisher, late = world.trainer(), world.trainer()
    publishing = Gate(finisher.ports.notifier, "publish")
    first = Delivery(finisher, finish, context("request-1"))
    first.start()
    publishing.wait_reached()
    reading = Gate(late.ports.table, "get_run", after=True)  # the twin read the record: the message not sent
    twin = Delivery(late, finish, context("request-2"))
    twin.start()
    reading.wait_reached()
    publishing.opened.set()
    assert first.finish() == "committed"
    assert world.record()["notified"] is True
    world.clock.advance(60)  # the finisher's claim expired
    reading.opened.set()  # the twin claims the message now
    assert twin.finish() == "ignored"
    assert [message["status"] for message in world.messages()] == ["succeeded"], "the message was sent twice"


# ---- the commit ---------------------------------------------------------------------------------------------------


def test_a_delivery_that_computed_while_the_run_was_stopped_does_not_commit(world):
    """Mutant: the commit without `#status = :running`. A delivery computes step 1 while a stop ends the run (a twin
    of the same event finds the stop request); its commit must fail, and it sends nothing."""
    world.launch()
    event = world.queue.events.popleft()
    assert event["state"] == "start"  # a step without epoch items: only the commit's own condition guards it
    computing, stopping = world.trainer(), world.trainer()
    committing = Gate(computing.ports.table, "transition")
    late = Delivery(computing, event, context("request-1"))
    late.start()
    committing.wait_reached()
    run_control.stop_run(stopping.ports, "r1")
    assert stopping.handle(copy(event), context("request-2"))["outcome"] == "stopped"
    committing.opened.set()
    assert late.finish() == "duplicate"
    record = world.record()
    assert record["status"] == "stopped" and record["committed_step"] == 0, "a stopped run committed a step"
    assert steps(world) == [], "a stopped run sent its next step"
    assert [message["status"] for message in world.messages()] == ["stopped"]


def test_a_loser_whose_commit_fails_after_the_winner_died_before_sending_sends_the_next_step(world):
    """Mutant: a losing twin that does not catch up. The winner committed and died before its invoke; the twin
    whose commit then fails, once the winner's lease expired, is the one that sends the next step."""
    world.launch()
    event = world.queue.events.popleft()
    loser, dying = world.trainer(), world.trainer()
    committing = Gate(loser.ports.table, "transition")  # the loser computed step 1 and is about to commit
    late = Delivery(loser, event, context("request-loser"))
    late.start()
    committing.wait_reached()
    # committed step 1, died before sending step 2
    deliver_failing_at(dying, "invoker.invoke_async", event, "request-winner")
    world.clock.advance(60)
    committing.opened.set()
    assert late.finish() == "resent"
    assert steps(world) == [2]
    world.drain(world.trainer())
    assert world.record()["status"] == "succeeded"


# ---- the watchdog -------------------------------------------------------------------------------------------------


def test_the_watchdog_does_not_resume_a_run_whose_step_started_since_it_read_it(world):
    """Mutant: record_resume without its heartbeat condition. The watchdog judges the run stalled from a record
    read before a (long throttled) delivery started the step; its resume must fail on the changed heartbeat."""
    world.launch()
    event = world.queue.events.popleft()  # step 1's event waits, throttled
    world.clock.advance(901)
    watchdog = world.watchdog()
    judged = watchdog.ports.table.list_runs("running")  # stalled: no life for 901 s
    trainer = world.trainer()
    computing = Gate(trainer.steps, "execute")  # the delivery started step 1 (its heartbeat) and computes
    delivery = Delivery(trainer, event, context("request-1"))
    delivery.start()
    computing.wait_reached()
    watchdog.ports.table.list_runs = lambda status: judged
    outcomes = watchdog.handle()["stalled"]
    assert [outcome["outcome"] for outcome in outcomes] == ["moved on"], outcomes
    computing.opened.set()
    assert delivery.finish() == "committed"
    assert steps(world) == [2], "the watchdog re-sent a step that a delivery was computing"
    assert world.record().get("resumes", 0) == 0


def test_the_watchdog_sends_the_message_of_a_run_whose_claimant_died(world):
    """Mutant: the watchdog not sweeping the messages owed. The finisher committed, claimed the message and died
    before publishing; its retry came inside the claim's lease and left it (test_lost_answers' case). Once the
    lease expired, the watchdog's sweep is what sends the message, once."""
    world.launch()
    finish = world.run_until(world.trainer(), "finish")
    deliver_failing_at(world.trainer(), "notifier.publish", finish)
    world.clock.advance(1)
    assert world.trainer().handle(copy(finish), context("request-1"))["outcome"] == "ignored"  # the lease is live
    world.clock.advance(60)
    world.watchdog().handle()
    world.watchdog().handle()
    assert [message["status"] for message in world.messages()] == ["succeeded"], "the message owed was not sent once"
    assert world.record()["notified"] is True and world.model_published()
