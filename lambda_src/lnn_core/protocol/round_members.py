"""The trainer's deliveries that are members of a step made by K > 1 workers (`Trainer` inherits them): a round's
shards and slices, and the finish's fits. Each writes its outputs, then joins its step's barrier (`round_barrier`);
the write that completes a barrier claims what follows it: the slices' sending (or, in a round of small parameters,
their work), or the step's commit, which `Trainer._commit` makes as any step's. See `trainer` for the protocol.
"""

import dataclasses
from typing import Any

from lnn_core.errors import RunFailure
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.parameters import STAYING_WORKERS
from lnn_core.protocol import ending, sending, staying
from lnn_core.protocol.events import MEMBER_STEP, StepEvent
from lnn_core.protocol.round_steps import EVERY_SLICE, reduces_in_shard
from lnn_core.protocol.steps import StepResult


class RoundMembers:
    """The joins of a step's K members and the claimed commit that follows them; the protocol's own methods
    (`_still_next`, `_put_outputs`, `_execute`, `_commit`) and `ports` are the `Trainer`'s."""

    def _join_round(
        self,
        step_event: StepEvent,
        config: TrainingConfig,
        run: dict,
        result: StepResult,
        claimant: str,
        context: Any,
    ) -> dict[str, Any]:
        """A shard worker's effects: its sums to S3, then its place in the round's barrier, with its loss sum. A
        write whose answer shows every shard in (its own included) claims the sending of the K slice events (or,
        in a round of small parameters, their work: `_reduce_here`): the completing write first, or later a retry
        of it that died before sending."""
        if not self._still_next(step_event.run_id, step_event.step):
            return {"outcome": "duplicate"}  # a late twin: its round was committed while it computed
        self._put_outputs(result, scratch=True)
        before = self.ports.table.join_barrier(step_event.run_id, step_event.step, step_event.shard, **result.barrier)
        if config.reduce == STAYING_WORKERS:  # it makes its slice itself, once every shard is in (`_stay`)
            return {"outcome": "shard", staying.JOINED: True}
        if len(before | {step_event.shard}) < step_event.shards:
            return {"outcome": "shard"}
        if not self.ports.table.claim_slices(
            step_event.run_id,
            step_event.step,
            claimant=claimant,
            now=self.ports.clock(),
            until=sending.lease_until(self.ports, context),
        ):
            return {"outcome": "shard"}  # the slices are on their way
        if reduces_in_shard(config, run["features"]):
            return self._reduce_here(step_event, config, run, claimant, context)
        slices = sending.slice_events(run["next_event"])
        return {"outcome": "round complete", "send": sending.Send(step_event.run_id, slices, None)}

    def _reduce_here(
        self, step_event: StepEvent, config: TrainingConfig, run: dict, claimant: str, context: Any
    ) -> dict[str, Any]:
        """The K slices of a round of small parameters, computed by the shard holding the claim to send them: the
        same bytes at the same keys as K slice deliveries, written at once, then the commit claimed as the
        completing slice claims it. It joins no slice barrier (a write on the round's path that nothing needs):
        after a crash, the shard event's retry reduces the round again once the claim expired, or `lnn resume` and
        the watchdog send the K slice events, which write the same bytes and commit as any round in slices."""
        if not self.ports.table.mark_started(step_event.run_id, step_event.step, at=self.ports.clock()):
            return {"outcome": "duplicate"}  # this body's fence: the round was committed since the shard's own
        every_slice = dataclasses.replace(step_event.position, state=EVERY_SLICE, shard=None)
        try:
            result = self._execute(every_slice, config, run, context)
        except RunFailure as failure:  # a round committed meanwhile (its sums deleted) ends as a duplicate there
            return ending.fail_run(self.ports, run, str(failure), claimant=claimant, context=context)
        if not self._still_next(step_event.run_id, step_event.step):
            return {"outcome": "duplicate"}  # committed while it computed: its rows may be obsolete, and deleted
        self._put_outputs(result, scratch=True)
        return self._claim_commit(step_event, config, run, claimant, context, lost="round complete")

    def _join_slices(
        self,
        step_event: StepEvent,
        config: TrainingConfig,
        run: dict,
        result: StepResult,
        claimant: str,
        context: Any,
        *,
        keep_workers: bool = False,
    ) -> dict[str, Any]:
        """A slice's effects: its rows of the new state to S3, then its place in the round's slice barrier. A write
        whose answer shows every slice in claims the round's commit (as a shard claims the slices' sending), runs
        the commit's body and commits as any step does: the conditional commit admits one."""
        if not self._still_next(step_event.run_id, step_event.step):
            return {"outcome": "duplicate"}
        self._put_outputs(result, scratch=True)
        before = self.ports.table.join_slices(step_event.run_id, step_event.step, step_event.slice)
        if len(before | {step_event.slice}) < step_event.shards:
            return {"outcome": "slice"}
        return self._claim_commit(step_event, config, run, claimant, context, lost="slice", keep_workers=keep_workers)

    def _join_fit(
        self,
        step_event: StepEvent,
        config: TrainingConfig,
        run: dict,
        result: StepResult,
        claimant: str,
        context: Any,
    ) -> dict[str, Any]:
        """A fit worker's effects: its outputs to S3, then its place in the finish's barrier. A write whose answer
        shows every fit worker in claims the finish's commit (as the completing slice claims a round's), runs the
        finish's body over the K outputs and commits as any step does."""
        if not self._still_next(step_event.run_id, step_event.step):
            return {"outcome": "duplicate"}  # a late twin: the finish committed while it computed
        self._put_outputs(result, scratch=True)
        before = self.ports.table.join_fit(step_event.run_id, step_event.step, step_event.shard)
        if len(before | {step_event.shard}) < config.workers:
            return {"outcome": "fit"}
        return self._claim_commit(step_event, config, run, claimant, context, lost="fit")

    def _claim_commit(
        self,
        step_event: StepEvent,
        config: TrainingConfig,
        run: dict,
        claimant: str,
        context: Any,
        *,
        lost: str,
        keep_workers: bool = False,
    ) -> dict[str, Any]:
        """With every slice (or fit worker) in: claim the step's commit and make it; `lost` is the outcome when
        another holds it."""
        if not self.ports.table.claim_commit(
            step_event.run_id,
            step_event.step,
            claimant=claimant,
            now=self.ports.clock(),
            until=sending.lease_until(self.ports, context),
        ):
            return {"outcome": lost}  # the commit is on its way
        outcome = self._commit_round(step_event, config, run, claimant, context, keep_workers=keep_workers)
        if outcome["outcome"] != "committed":  # a stop or another ending came first: a resume's slice may claim now
            self.ports.table.release_commit(step_event.run_id, step_event.step, claimant=claimant)
        return outcome

    def _commit_round(
        self,
        step_event: StepEvent,
        config: TrainingConfig,
        run: dict,
        claimant: str,
        context: Any,
        *,
        keep_workers: bool = False,
    ) -> dict[str, Any]:
        """The claimed commit of a round (or of the finish of K > 1 workers): the run read again (a claimant whose
        lease expired may have committed meanwhile), the commit's body, the commit (`keep_workers`: by a staying
        worker with time for more rounds, `Trainer._commit`)."""
        if not self._still_next(step_event.run_id, step_event.step):
            return {"outcome": "duplicate"}
        commit = dataclasses.replace(step_event.position, state=MEMBER_STEP[step_event.position.state], slice=None)
        try:
            committed = self._execute(commit, config, run, context)
        except RunFailure as failure:
            if not self._still_next(step_event.run_id, step_event.step):
                return {"outcome": "duplicate"}
            return ending.fail_run(self.ports, run, str(failure), claimant=claimant, context=context)
        return self._commit(step_event, config, run, committed, claimant, context, keep_workers=keep_workers)
