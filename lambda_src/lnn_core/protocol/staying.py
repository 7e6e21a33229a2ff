"""Workers that stay (parameter `reduce` workers): a round of K > 1 workers whose K shard deliveries make the round's
slices themselves and go on to the next rounds, instead of ending after their sums (docs/protocol.md, "Workers
that stay").

Worker j's delivery, once it joined round r's barrier as any shard does (`RoundMembers._join_round`):

  1. waits until every shard is in, reading the round's barrier item (`wait_for`);
  2. computes slice j, writes it and joins the slice barrier, as a slice delivery does; the write that completes
     the barrier claims the commit and makes it (`_claim_commit`);
  3. waits for the commit (committed_step = r), reading the round's new parameters into its cache once every slice
     is in. A commit by a staying worker with time left for more rounds keeps the workers: it records the next
     round as sent (`invoked_step`) and as the staying workers' (`STAYING_FIELD`), and sends nothing. Then every
     worker goes on with round r + 1's shard j as a shard delivery does (the stop, the step bound, its sums, the
     barrier; the read that showed the commit is its fence). Any other commit sent the next step's events (the fits
     of the finish, or a new set of K workers), and the workers end.

Nothing here is a new effect but the hand-over: outputs are pure functions of the committed state at keys addressed
by the round, the barriers are set ADDs and the commit is conditional, so a copy of a worker (a twin, a retry)
writes the same bytes and cannot commit twice. A worker that has too little time for another round once a commit
kept the workers hands its shard over: it invokes the next round's shard event, whose delivery joins that round.
A worker that waits `WAIT_SECONDS`, or until its invocation's end, ends (a peer died, or the round stalled): the
dead worker's Lambda retry joins the round its peers wait in (`rejoined`), or the watchdog re-sends what the round
misses (`sending.pending`), once the commits stop refreshing the run's heartbeat.
"""

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.parameters import STAYING_WORKERS
from lnn_core.protocol import ending
from lnn_core.protocol.events import SHARD, SLICE, StepEvent, parse_event, shard_event
from lnn_core.protocol.steps import remaining_seconds

JOINED = "joined"  # an outcome's mark: a staying worker's shard joined its round's barrier, and the round goes on
STAYING_FIELD = "staying_step"  # the run record's step the staying workers make next (set by a commit that kept them)
WAIT_SECONDS = 300.0  # a wait for peers ends after this: about Lambda's two retries of a failed worker (1, 2 minutes)
END_MARGIN_SECONDS = 20.0  # a worker starts a round only with this much time left after three rounds more
FAST_POLLS = 64  # a wait's first reads go back to back (on AWS 0.5 s or more: a round's waits are shorter), then
SLOW_POLL_SECONDS = (0.05, 5.0)  # it pauses, from the first pause to the longest, each half as long again as the last
# The strongly consistent reads a second the K workers' waits make at most on the run's partition (DynamoDB serves
# 3,000 there; the rest is the rounds' own requests): with K workers each read at least K / this apart
POLL_READS_PER_SECOND = 2000.0

Answer = TypeVar("Answer")


def wait_for(
    ports: Any,
    read: Callable[[], Answer],
    done: Callable[[Answer], bool],
    *,
    seconds: float,
    readers: int = 1,
) -> Answer | None:
    """`read()` until `done` says its answer is what was awaited: `FAST_POLLS` reads back to back (each at least
    `readers / POLL_READS_PER_SECOND` after the one before, `readers` polling the same partition), then with pauses
    growing from and to `SLOW_POLL_SECONDS` (`ports.wait`); None when `seconds` passed first (on the ports'
    clock). The whole wait is within `ports.waiting()`."""
    with ports.waiting():
        deadline, pause, spacing = ports.clock() + seconds, SLOW_POLL_SECONDS[0], readers / POLL_READS_PER_SECOND
        reads = 0
        while True:
            reads, before = reads + 1, ports.clock()
            answer = read()
            if done(answer):
                return answer
            now = ports.clock()
            if now >= deadline:
                return None
            if reads < FAST_POLLS:
                ports.wait(max(0.0, spacing - (now - before)))  # the others' turn too (simulator, local runtime)
            else:
                ports.wait(pause)
                pause = min(pause * 1.5, SLOW_POLL_SECONDS[1])


def moved(run: dict, step: int) -> bool:
    """Whether the run moved on from round `step`: it ended, or the round is committed."""
    return run["status"] != "running" or run["committed_step"] >= step


def rejoined(run: dict, step_event: StepEvent) -> StepEvent | None:
    """A staying worker's event for a committed step (its Lambda retry after it died in the middle of its rounds,
    or its own hand-over): the event of the round its peers are in, for its shard; None for any other event of a
    committed step."""
    following = run.get("next_event")
    if (
        step_event.position.state != SHARD
        or not following
        or run.get(STAYING_FIELD) != run["committed_step"] + 1
        or run["config"].get("reduce") != STAYING_WORKERS
    ):
        return None
    return parse_event(shard_event(following, step_event.shard))


class StayingWorkers:
    """The rest of a staying worker's rounds, after its shard joined the first one's barrier; the protocol's own
    methods (`_proceed`, `_execute`, `_join_slices`, `_delete_obsolete`, `_still_next`) and `ports` are the
    `Trainer`'s."""

    wait_seconds = WAIT_SECONDS

    def _stay(self, step_event: StepEvent, run: dict, claimant: str, context: Any, *, started: float) -> dict[str, Any]:
        """Worker `step_event.shard`'s rounds from the one whose barrier it joined (`run` as read before it, its
        shard begun at `started`), as the module's docstring says: the outcome of the last, with the rounds it made
        slices of and the epoch costs its commits recorded."""
        ports, run_id, shard, rounds, costs = self.ports, step_event.run_id, step_event.shard, 0, []
        obsolete: list[str] = []  # its keeping commits' cleanup, made while it next waits for another's commit

        def ended(outcome: dict[str, Any]) -> dict[str, Any]:
            if obsolete:
                self._delete_obsolete(run_id, obsolete)
            return {**outcome, "rounds": rounds, "epoch_costs": costs + outcome.get("epoch_costs", [])}

        def handed_over(event: dict[str, Any]) -> dict[str, Any]:
            """Its shard of the next round, to a delivery with the time it lacks: only once the round it made is
            committed, so that a stalled round is the watchdog's to resume, not handed over without end."""
            ports.invoker.invoke_async(event)
            return ended({"outcome": "handed over"})

        while True:
            progress = self._await_barrier(step_event, context, lambda progress: progress.shards_done)
            if progress is None:
                return ended({"outcome": "waited out", "waited_for": "shards"})
            config = TrainingConfig.from_parameters(run["config"])
            slice_event = dataclasses.replace(
                step_event,
                shard=None,
                slice=shard,
                position=dataclasses.replace(step_event.position, state=SLICE, shard=None, slice=shard),
            )
            if len(progress.slices_done) < step_event.shards:  # else a copy of it made its slice: the round is made
                self.steps.remember_round(run_id, step_event.step, progress)
                try:
                    result = self._execute(slice_event.position, config, run, context)
                except RunFailure as failure:
                    if not self._still_next(run_id, step_event.step):
                        return ended({"outcome": "duplicate"})
                    return ended(ending.fail_run(ports, run, str(failure), claimant=claimant, context=context))
                keep = remaining_seconds(context) > END_MARGIN_SECONDS + 3 * (ports.clock() - started)
                outcome = self._join_slices(slice_event, config, run, result, claimant, context, keep_workers=keep)
                rounds += 1
            else:
                outcome = {"outcome": "slice"}
            if outcome.get("send") or outcome["outcome"] not in ("slice", "duplicate", "committed"):
                return ended(outcome)  # its commit or catch-up sent what follows, or the run ended
            fenced = "record" not in outcome  # its wait's last read fences the next round; its own commit's not
            if fenced:  # another's commit (or a copy's of its own claim): wait for it
                if obsolete:  # nothing reads those keys any more, and the commit it waits for takes longer
                    self._delete_obsolete(run_id, obsolete)
                    obsolete = []
                run = self._await_commit(slice_event, config, run, context)
                if run is None:
                    return ended({"outcome": "waited out", "waited_for": "commit"})
            else:  # its commit kept the workers
                run = outcome["record"]
                obsolete += outcome["obsolete"]
                costs += outcome.get("epoch_costs", [])
            if not (
                run["status"] == "running"
                and run["committed_step"] == step_event.step
                and run.get(STAYING_FIELD) == step_event.step + 1
            ):
                return ended({"outcome": outcome["outcome"]})  # the commit sent what follows, or the run ended
            following = shard_event(run["next_event"], shard)
            if remaining_seconds(context) < END_MARGIN_SECONDS + 3 * (ports.clock() - started):
                return handed_over(following)  # a peer's commit kept the workers: it had more time
            try:
                step_event = parse_event(following)
            except LnnInputError as error:  # never written so: the commit wrote the event
                return ended(ending.fail_run(ports, run, f"bad event: {error}", claimant=claimant, context=context))
            started = ports.clock()
            outcome = self._proceed(step_event, run, claimant, context, fenced=fenced)
            if not outcome.pop(JOINED, False):
                return ended(outcome)

    def _await_barrier(self, step_event: StepEvent, context: Any, members: Callable) -> Any:
        """The round's barrier item once `members(progress)` holds every worker, or None after the wait's limit."""
        ports, run_id, step = self.ports, step_event.run_id, step_event.step
        return wait_for(
            ports,
            lambda: ports.table.round_progress(run_id, step),
            lambda progress: len(members(progress)) >= step_event.shards,
            seconds=self._wait_limit(context),
            readers=step_event.shards,
        )

    def _await_commit(self, slice_event: StepEvent, config: TrainingConfig, run: dict, context: Any) -> dict | None:
        """The run record once the round is committed or the run ended, or None after the wait's limit. Once every
        slice is in, and while the commit is made, the round's new parameters are read into the container's cache,
        so that the next round's shard starts at once."""
        ports, run_id, step = self.ports, slice_event.run_id, slice_event.step
        if self._await_barrier(slice_event, context, lambda progress: progress.slices_done) is not None:
            try:
                self.steps.fetch_round_parameters(slice_event.position, config, run)
            except RunFailure:
                pass  # a read ahead only: the round's slices were removed (a stop's ending, a later round's cleanup)
        return wait_for(
            ports,
            lambda: ports.table.get_run(run_id),
            lambda latest: moved(latest, step),
            seconds=self._wait_limit(context),
            readers=slice_event.shards,
        )

    def _wait_limit(self, context: Any) -> float:
        return min(self.wait_seconds, max(0.0, remaining_seconds(context) - 1.0))
