"""The TrainerLambda's protocol: one step of a run per invocation, exactly once in effect.

A step is a computation over inputs addressed by (run_id, step position), followed by effects keyed by that step:

  1. read the run record (epoch 0 of the results table);
  2. drop the delivery unless this is the run's next step (`step == committed_step + 1`), and record that a
     delivery started it (a conditional write: the watchdog's proof of life, and a late twin's cue to stop);
  3. compute the step's outputs (`steps`): pure functions of immutable inputs, so every attempt computes the same bytes;
  4. write the outputs to S3 and the epoch items to DynamoDB (overwrites with identical content are harmless; an
     item is written only while its step is uncommitted, so none changes after the commit);
  5. commit: one conditional write moves `committed_step` from step - 1 to step and gives the winner a lease on
     sending the next event. Exactly one delivery wins;
  6. the winner sends the next step's event and records `invoked_step`, as the delivery's last requests (after
     its cleanup and its usage ADD, so that its container is free by the time Lambda dispatches that event); a
     delivery that finds the step committed but the next event unsent re-sends it only after winning a
     conditional claim, once no live lease holds it, so duplicates cannot start a second chain;
  7. a terminal step publishes the model (the finish, or a stop, wrote it aside before its commit), then claims,
     publishes and records the ending's one SNS message.

A round of K > 1 workers (one `reduce` step) is 2K deliveries before its commit: K shards, each of which writes its
gradient sums and joins the round's barrier (the write that completes it claims the sending of the K slice events),
then K slices, each of which writes its rows of the new training state and joins the slice barrier (the write that
completes it claims the commit, and commits as above). Every shard and slice output is addressed by the round. In a
round of small parameters (`round_steps.reduces_in_shard`) the shard whose claim would send the slices computes them
itself instead, writes the same bytes and claims the commit as the completing slice does: K deliveries a round.
The finish of K > 1 workers is K fit deliveries: each writes the final model's outputs over its part and joins the
finish's barrier; the write that completes it claims the commit, and that delivery finishes the run over the K.

Every claim names its claimant (unique per delivery), so the SDK's retry of a claim whose answer was lost finds
its own name and wins again, where a twin's claim fails.

See the README's "Exactly once" section for the invariant and its one inherent limit.
"""

import dataclasses
import time
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from lnn_core.aws.codec import arrays_to_npz
from lnn_core.aws.ports import Ports
from lnn_core.aws.run_record import send_lease
from lnn_core.aws.sdk import now
from lnn_core.aws.usage import DEFAULT_MEMORY_MB, DeliveryMeter
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.ml import batching
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol import ending, sending, staying
from lnn_core.protocol.events import (
    FIT,
    MEMBER_STEP,
    StepEvent,
    make_event,
    parse_event,
    schedule_mismatch,
)
from lnn_core.protocol.round_members import RoundMembers
from lnn_core.protocol.schedule import Position, next_position
from lnn_core.protocol.staying import StayingWorkers
from lnn_core.protocol.steps import StepBodies, StepResult


class Trainer(StayingWorkers, RoundMembers):
    def __init__(self, ports: Ports, *, logger, metrics=None, memory_mb: int = DEFAULT_MEMORY_MB):
        self.ports, self.log, self.metrics = ports, logger, metrics
        self.steps = StepBodies(ports, memory_mb)  # the step bodies, with this warm container's caches

    # ---- the protocol -------------------------------------------------------------------------------------

    def handle(self, event: Any, context: Any = None) -> dict[str, Any]:
        meter, send = DeliveryMeter(self.ports.counter), None
        try:
            outcome = self._handle(event, context)
            send = outcome.pop("send", None)  # the next step's invocations, if this delivery sends them
        finally:  # every delivery is paid for, a crashed one and a duplicate too: before its send, counting it
            run_id = event.get("run_id") if isinstance(event, dict) else None
            meter.record(self.ports.table, run_id, context, self.log, ahead=send.requests() if send else None)
        if send:  # the delivery's last requests: the invokes, then the record that they were sent
            send(self.ports)
        costs = outcome.pop("epoch_costs", [])  # one per epoch this step completed (thousands in auto granularity)
        if costs:
            outcome |= {"epochs_completed": len(costs), "cost": costs[-1]}
        io = self.ports.counter.since(meter.before)
        log = self.log.error if outcome["outcome"] in ("failed", "rejected") else self.log.info  # a reason to read
        log("step", extra={**outcome, "duration_ms": round((time.monotonic() - meter.started) * 1000, 1), "io": io})
        if self.metrics is not None:
            for cost in costs:  # Powertools flushes every 100 values on its own
                self.metrics.add_metric(name="Cost", unit="None", value=cost)
            self.metrics.add_metric(name="Steps", unit="Count", value=1)  # last, so the final flush is never empty
            self.metrics.flush_metrics()
        return outcome

    def _handle(self, event: Any, context: Any) -> dict[str, Any]:
        # Claims are held per delivery, not per request id: AWS does not promise twins distinct request ids.
        claimant = f"{getattr(context, 'aws_request_id', None) or 'direct'}/{uuid.uuid4().hex[:12]}"
        try:
            step_event = parse_event(event)
        except LnnInputError as error:
            return self._reject(event, f"bad event: {error}", claimant, context)
        ports, run_id = self.ports, step_event.run_id
        summary = {
            "run_id": run_id,
            "step": step_event.step,
            "state": step_event.position.state,
            "epoch": step_event.position.epoch,
            "batch": step_event.position.batch,
            "layer": step_event.position.layer,
        }
        if step_event.shard is not None:
            summary["shard"] = step_event.shard
        if step_event.slice is not None:
            summary["slice"] = step_event.slice
        run = ports.table.get_run(run_id)
        if run is None:
            return {**summary, "outcome": "rejected", "reason": f"unknown run {run_id}; nothing was touched"}
        if run["status"] != "running":
            ending.catch_up(ports, run, claimant=claimant, context=context)
            return {**summary, "outcome": "ignored", "reason": f"run is {run['status']}"}
        committed = run["committed_step"]
        if step_event.step <= committed:
            rejoined = staying.rejoined(run, step_event)
            if rejoined is None:
                resend = (
                    ending.catch_up(ports, run, claimant=claimant, context=context)
                    if step_event.step == committed
                    else None
                )
                return {**summary, "outcome": "resent" if resend else "duplicate", "send": resend}
            step_event = rejoined  # a staying worker's retry: it joins the round its peers are in
            summary |= {"step": step_event.step, "epoch": step_event.position.epoch, "batch": step_event.position.batch}
        started = ports.clock()
        outcome = self._proceed(step_event, run, claimant, context)
        if outcome.pop(staying.JOINED, False):  # a staying worker's shard: the rest of the round, and the next ones
            outcome = self._stay(step_event, run, claimant, context, started=started)
        return {**summary, **outcome}

    def _proceed(
        self, step_event: StepEvent, run: dict, claimant: str, context: Any, *, fenced: bool = False
    ) -> dict[str, Any]:
        """The run's next step (`run` as read before it): checked against the run, fenced (unless `fenced`: a staying
        worker that read the record just now, with the step the next and no request since), computed, and its
        effects."""
        ports, run_id = self.ports, step_event.run_id
        mismatch = schedule_mismatch(step_event, run)
        if mismatch:
            return ending.fail_run(ports, run, f"bad event: {mismatch}", claimant=claimant, context=context)
        if run.get("stop_requested"):
            return self._stop(run, claimant, context)
        if step_event.step > run["step_bound"]:
            return ending.fail_run(
                ports, run, f"step {step_event.step} exceeds the run's bound", claimant=claimant, context=context
            )
        if not fenced and not ports.table.mark_started(run_id, step_event.step, at=ports.clock()):
            return {"outcome": "duplicate"}  # a twin committed it meanwhile
        config = TrainingConfig.from_parameters(run["config"])
        try:
            result = self._execute(step_event.position, config, run, context)
        except RunFailure as failure:
            if not self._still_next(run_id, step_event.step):
                return {"outcome": "duplicate"}  # a late twin read what the winner already cleaned up
            return ending.fail_run(ports, run, str(failure), claimant=claimant, context=context)
        if step_event.position.state == FIT:
            return self._join_fit(step_event, config, run, result, claimant, context)
        if step_event.shard is not None:
            return self._join_round(step_event, config, run, result, claimant, context)
        if step_event.slice is not None:
            return self._join_slices(step_event, config, run, result, claimant, context)
        return self._commit(step_event, config, run, result, claimant, context)

    def _commit(
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
        ports, run_id, position = self.ports, step_event.run_id, step_event.position
        position = dataclasses.replace(position, state=MEMBER_STEP.get(position.state, position.state))  # its step's
        self._put_outputs(result)
        if result.epoch_items and not ports.table.put_epoch_items(run_id, result.epoch_items, step=step_event.step):
            return self._commit_lost(step_event, result, claimant, context)  # a twin committed, or the run ended
        batches = batching.batch_count(run["examples"], config.batch_size)
        following = next_position(
            position, config, batches=batches, last_epoch_done=result.last_epoch_done, stop=result.stop
        )
        clock = ports.clock()
        fields = {
            **result.fields,
            "next_event": make_event(run_id, config, following, batches=batches) if following else None,
            "heartbeat_at": clock,
            "committed_at": clock,
            "committed_by": claimant,
        }
        keep_workers = keep_workers and following is not None and following.state == "reduce"
        if keep_workers:  # the staying workers are the next round's send: recorded sent, nothing to send
            fields |= {"invoked_step": following.step, staying.STAYING_FIELD: following.step}
        elif following:  # the commit is the winner's claim on sending the next event
            fields["send_lease"] = send_lease(
                following.step, claimant=claimant, until=sending.lease_until(ports, context)
            )
        if result.final is not None:
            fields |= {
                "status": "succeeded",
                "final": result.final,
                "finished_at": now(),
                "model_staged": True,
                "model_epoch": result.final["epochs"],
                **ending.message_owed(),
            }
        if not ports.table.transition(run_id, seen_step=run["committed_step"], new_step=step_event.step, fields=fields):
            # A twin committed first, or our commit was applied and only its answer lost (boto3 then retried it)
            latest = ports.table.get_run(run_id)
            if latest["committed_step"] != step_event.step or latest.get("committed_by") != claimant:
                return self._commit_lost(step_event, result, claimant, context, latest=latest)
        # Ours. All that is left comes before the send, which `handle` makes last, after the usage ADD: no later
        # step reads the obsolete keys, nor does a retry, a twin or a re-send of the next step (docs/protocol.md)
        if result.obsolete and not keep_workers:  # a staying worker deletes them while it next waits (`_stay`)
            self._delete_obsolete(run_id, result.obsolete)
        validated = [item["epoch"] for item in result.epoch_items if item.get("validation_cost") is not None]
        if following and validated:  # a sweep trial's validation cost: a halving rung can judge it now
            ending.kick_sweep(ports, run, epoch=int(validated[-1]))
        if result.final is not None:
            ending.ensure_notified(ports, {**run, **fields}, claimant=claimant, context=context)
        outcome = {"outcome": "committed"}
        if keep_workers:  # the staying worker goes on with the record its commit wrote
            outcome |= {"record": {**run, **fields, "committed_step": step_event.step}, "obsolete": result.obsolete}
        elif following:  # the commit holds our lease on sending
            outcome["send"] = sending.next_send(run_id, fields["next_event"], own_shard=step_event.shard)
        if result.epoch_items:
            outcome["epoch_costs"] = [item["cost"] for item in result.epoch_items]
        return outcome

    def _put_outputs(self, result: StepResult, *, scratch: bool | None = None) -> None:
        """A step's outputs to S3 at once: arrays as .npz, bytes as they are; scratch unless kept (`checkpoints`)."""
        self.ports.fan_out.map(
            lambda key: self.ports.store.put_bytes(
                key,
                encoded(result.outputs[key]),
                scratch=key not in result.checkpoints if scratch is None else scratch,
            ),
            list(result.outputs),
        )

    def _commit_lost(
        self, step_event: StepEvent, result: StepResult, claimant: str, context: Any, latest: dict | None = None
    ) -> dict[str, Any]:
        """Another delivery committed the step (or the run ended first): finish what that one may have left undone."""
        latest = latest or self.ports.table.get_run(step_event.run_id)
        if latest["status"] == "running" and latest["committed_step"] != step_event.step:
            return {"outcome": "duplicate"}
        if result.obsolete and latest["committed_step"] == step_event.step:  # the same keys whoever committed it
            self._delete_obsolete(step_event.run_id, result.obsolete)
        resent = ending.catch_up(self.ports, latest, claimant=claimant, context=context)
        return {"outcome": "resent" if resent else "duplicate", "send": resent}

    def _delete_obsolete(self, run_id: str, keys: list[str]) -> None:
        """A committed step's cleanup before its send (the winner's, or a loser's before its re-send), best effort:
        an S3 error is logged, not raised, so that it never holds back the next step (a failed delivery would wait
        for Lambda's retry); the scratch expiry removes what it leaves."""
        try:
            self.ports.store.delete_keys(keys)
        except (ClientError, BotoCoreError) as error:
            self.log.warning("obsolete state not deleted", extra={"run_id": run_id, "error": str(error)[:200]})

    def _stop(self, run: dict, claimant: str, context: Any) -> dict[str, Any]:
        """End the run stopped at its committed step, keeping the model of its last committed epoch: staged (kept,
        not scratch) before the commit, published after it, as a finish's model is. Every delivery that stops the
        run at this step stages the same bytes at the same key."""
        fields, reason = {}, "stopped on request"
        if run.get("progress_epoch"):
            try:
                key, model = self.steps.stopped_model(TrainingConfig.from_parameters(run["config"]), run)
            except RunFailure as failure:
                if not self._still_next(run["run_id"], run["committed_step"] + 1):
                    return {"outcome": "duplicate"}  # a twin moved the run on: the next epoch's step removed the state
                reason = f"stopped on request, without a model: {failure}"
            else:
                self.ports.store.put_bytes(key, arrays_to_npz(model))
                fields = {"model_staged": True, "model_epoch": run["progress_epoch"]}
        outcome = ending.end_run(
            self.ports, run, status="stopped", reason=reason, claimant=claimant, context=context, fields=fields
        )
        if fields and outcome["outcome"] == "duplicate":
            latest = self.ports.table.get_run(run["run_id"])
            if not (
                latest
                and latest["status"] == "stopped"
                and latest.get("model_staged")
                and latest.get("model_epoch") == run["progress_epoch"]
            ):  # not an ending that still needs it
                self.ports.store.delete_keys([key])  # a late twin: no orphan staged model once the run moved on
        return outcome

    def _reject(self, event: Any, reason: str, claimant: str, context: Any = None) -> dict[str, Any]:
        """A malformed event: fail its run if it names a running one, touch nothing else."""
        run_id = event.get("run_id") if isinstance(event, dict) else None
        run = self.ports.table.get_run(run_id) if isinstance(run_id, str) and run_id else None
        if run is None or run["status"] != "running":
            return {"run_id": run_id, "outcome": "rejected", "reason": reason}
        return {"run_id": run_id, **ending.fail_run(self.ports, run, reason, claimant=claimant, context=context)}

    def _still_next(self, run_id: str, step: int) -> bool:
        run = self.ports.table.get_run(run_id)
        return run is not None and run["status"] == "running" and run["committed_step"] == step - 1

    def _execute(self, position: Position, config: TrainingConfig, run: dict, context: Any) -> StepResult:
        return self.steps.execute(position, config, run, context)


def encoded(output: dict | bytes) -> bytes:
    """An output's bytes: arrays as an .npz, raw bytes (a shard's sums) as they are."""
    return output if isinstance(output, bytes) else arrays_to_npz(output)
