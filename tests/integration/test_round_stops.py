"""Stops and resumes in a round's slice phase (session 29's review): a stop in a later batch keeps the last
epoch's model from its slices; a stop that beats a claimed commit leaves the claim released for `lnn resume`."""

import json

from lnn_core import run_control
from tests.integration.test_stop_resume import ROUNDS, World, assert_params
from tests.integration.test_stop_resume import reference as stop_reference
from tests.support.deliveries import context


def to_round_2_of_epoch_2_slices(world):
    """Train to epoch 2's second round (batch 2: the state before it is epoch 2's batch 1, not epoch 1's) and
    deliver its shards: return its two slice events, taken off the queue."""
    world.deliver(until=lambda run: run["progress_epoch"] == 1 and run["next_event"]["batch"] == 2)
    for _ in range(2):
        world.outcomes.append(world.trainer().handle(world.queue.events.popleft(), context())["outcome"])
    slices = list(world.queue.events)
    world.queue.events.clear()
    assert [(event["state"], event["slice"], event["batch"], event["epoch"]) for event in slices] == [
        ("slice", 0, 2, 2),
        ("slice", 1, 2, 2),
    ]
    return slices


def test_a_stop_in_the_slice_phase_of_a_later_batch_keeps_the_last_epochs_model_and_resumes(aws):
    world = World(aws, ROUNDS)
    slices = to_round_2_of_epoch_2_slices(world)
    assert world.trainer().handle(slices[0], context("slice-0"))["outcome"] == "slice"
    run_control.stop_run(world.cli(), "r1")
    assert world.trainer().handle(slices[1], context("slice-1"))["outcome"] == "stopped"
    stopped = world.record()
    assert stopped.get("model_epoch") == 1, stopped.get("reason")  # the model of epoch 1, from its slices
    assert_params(world.model(), stop_reference(ROUNDS, epochs=1)[0])
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    assert [(event["state"], event.get("slice")) for event in world.queue.events] == [("slice", 1)]
    world.deliver(twins=True)
    run = world.record()
    assert run["status"] == "succeeded", run.get("reason")
    params, costs = stop_reference(ROUNDS)
    assert_params(world.model(), params)
    assert [item["cost"] for item in world.trainer().ports.table.committed_epochs(run)] == costs


def test_a_quick_resume_after_a_stop_that_beat_a_claimed_commit_leaves_nothing_in_flight(aws):
    """A slice claims the round's commit; before it commits, a duplicate delivery of another slice applies a
    `lnn stop`, and the committer's transition loses: it releases its claim (`release_commit`), so that the slice
    event that `lnn resume` sends within the lease's 30 s claims the commit, and the run goes on (had the claim
    stayed, nothing would be in flight and the run would sit uncommitted until the watchdog's stall)."""
    world = World(aws, ROUNDS)
    slices = to_round_2_of_epoch_2_slices(world)
    assert world.trainer().handle(json.loads(json.dumps(slices[0])), context("slice-0"))["outcome"] == "slice"
    committer = world.trainer()
    claim_commit = committer.ports.table.claim_commit

    def claim_then_stop_lands(*args, **kwargs):
        claimed = claim_commit(*args, **kwargs)
        run_control.stop_run(world.cli(), "r1")  # `lnn stop`, and a duplicate of slice 0 applies it
        assert world.trainer().handle(json.loads(json.dumps(slices[0])), context("slice-0-dup"))["outcome"] == "stopped"
        return claimed

    committer.ports.table.claim_commit = claim_then_stop_lands
    assert committer.handle(json.loads(json.dumps(slices[1])), context("slice-1"))["outcome"] in ("duplicate", "resent")
    assert world.record()["status"] == "stopped"
    world.clock.advance(5)  # the user resumes a few seconds later
    assert run_control.resume_run(world.cli(), "r1")["outcome"] == "continued"
    world.deliver()
    run = world.record()
    # the resumed slice claimed the commit at once: the run went on to its end, as the clean run does
    assert run["status"] == "succeeded", (run["status"], run["committed_step"], list(world.queue.events))
    params, costs = stop_reference(ROUNDS)
    assert_params(world.model(), params)
    assert [item["cost"] for item in world.trainer().ports.table.committed_epochs(run)] == costs
