"""A round's barrier (the run table's item at a negative epoch, `barrier_epoch`): the set of shards done, of which
exactly one write completes the round, with every shard's loss sum and the round's penalty; the claim on sending
its slice events; the set of slices done, of which exactly one write completes the
reduce; and the claim on its commit. The finish of K > 1 workers has one too: its fit workers done, and the claim
on its commit.

The losses and the penalty are stored as the text `repr(float)`: a DynamoDB number would make a magnitude under
1e-130 zero, and `float(repr(x)) == x` holds for every finite float, -0.0 included (inf too; NaN reads back as
NaN).
"""

import re
from dataclasses import dataclass

from lnn_core.aws.table_access import TableAccess, outlasting_conflicts

LOSS_ATTRIBUTE = re.compile(r"loss_(\d+)")  # a shard's loss sum: loss_<shard>


@dataclass(frozen=True)
class RoundProgress:
    """A round's barrier item as read at once: the shards and slices done, the shards' loss sums by shard, and the
    round's penalty (None until a shard gave one)."""

    shards_done: frozenset[int]
    slices_done: frozenset[int]
    losses: dict[int, float]
    penalty: float | None


class RoundBarrierOperations(TableAccess):
    """The run table's operations on the barrier items of a run's rounds."""

    def join_barrier(
        self, run_id: str, step: int, shard: int, *, loss: float, penalty: float | None = None
    ) -> set[int]:
        """Add `shard` to the set of shards done in the round that step `step` reduces, and in the same write set
        its loss sum `loss_<shard>` (and the round's `penalty`, when given); returns the set as it was before this
        write. The ADD of a set member is idempotent and atomic: of all writes, exactly one finds the other K - 1
        shards and not its own, and that one completes the round. A retry writes the same values again (the step
        is deterministic), so the write stays idempotent."""
        update, values = "ADD shards_done :shard", {":shard": {int(shard)}, ":loss": _text(loss)}
        sets = [f"loss_{int(shard)} = :loss"]
        if penalty is not None:
            sets.append("penalty = :penalty")
            values[":penalty"] = _text(penalty)
        update += " SET " + ", ".join(sets)
        return self._add_to_set(run_id, step, update, values, "shards_done")

    def claim_slices(self, run_id: str, step: int, *, claimant: str, now: float, until: float) -> bool:
        """Claim the sending of a complete round's K slice events until `until`: the write that completed the round
        claims it first (and the SDK's retry of that claim finds its own name); a retry of its event (it died
        before sending) claims again once the lease expired; its twins and the duplicates of other shards find
        the lease live and send nothing."""
        return self._conditional_update(
            run_id,
            "SET slices_lease = :until, slices_by = :claimant",
            "attribute_not_exists(slices_lease) OR slices_lease < :now OR slices_by = :claimant",
            {":until": until, ":now": now, ":claimant": claimant},
            epoch=barrier_epoch(step),
        )

    def join_fit(self, run_id: str, step: int, shard: int) -> set[int]:
        """Add fit worker `shard` (its outputs written) to the set of those done in the finish `step` of K > 1
        workers; returns the set as it was before this write: as for a round's shards, exactly one write finds the
        other K - 1 and not its own, and that one claims the finish's commit."""
        return self._add_to_set(run_id, step, "ADD shards_done :shard", {":shard": {int(shard)}}, "shards_done")

    def join_slices(self, run_id: str, step: int, slice_: int) -> set[int]:
        """Add slice `slice_` (its outputs written) to the set of slices done in the reduce of step `step`'s round;
        returns the set as it was before this write: as for the shards, exactly one write finds the other K - 1
        slices and not its own, and that one completes the reduce."""
        return self._add_to_set(run_id, step, "ADD slices_done :slice", {":slice": {int(slice_)}}, "slices_done")

    def claim_commit(self, run_id: str, step: int, *, claimant: str, now: float, until: float) -> bool:
        """Claim the commit of a round whose slices are all done until `until`, in the form of `claim_slices`
        (`commit_lease`, `commit_by`): the completing slice's write first, or its own retry, or after the lease
        expired a retry of its event."""
        return self._conditional_update(
            run_id,
            "SET commit_lease = :until, commit_by = :claimant",
            "attribute_not_exists(commit_lease) OR commit_lease < :now OR commit_by = :claimant",
            {":until": until, ":now": now, ":claimant": claimant},
            epoch=barrier_epoch(step),
        )

    def release_commit(self, run_id: str, step: int, *, claimant: str) -> None:
        """Give up this claimant's commit claim (its commit lost: a stop or another ending came first), so that the
        slice event a `lnn resume` sends claims it at once instead of waiting for the lease to expire. Only the
        claimant's own claim goes; a later claimant's stays."""
        self._conditional_update(
            run_id,
            "REMOVE commit_lease, commit_by",
            "commit_by = :claimant",
            {":claimant": claimant},
            epoch=barrier_epoch(step),
        )

    def round_progress(self, run_id: str, step: int) -> RoundProgress:
        """The barrier item of the round that step `step` reduces, in one strongly consistent read (an absent item:
        nothing done yet)."""
        self._counter.count("dynamodb")
        item = (
            self._table.get_item(Key={"run_id": run_id, "epoch": barrier_epoch(step)}, ConsistentRead=True).get("Item")
            or {}
        )
        losses = {
            int(match[1]): float(value) for name, value in item.items() if (match := LOSS_ATTRIBUTE.fullmatch(name))
        }
        # In the shards' order, whatever order the writes came in: equal items read as equal values (and reprs)
        penalty = item.get("penalty")
        return RoundProgress(
            shards_done=frozenset(sorted(int(done) for done in item.get("shards_done", set()))),
            slices_done=frozenset(sorted(int(done) for done in item.get("slices_done", set()))),
            losses=dict(sorted(losses.items())),
            penalty=None if penalty is None else float(penalty),
        )

    def _add_to_set(self, run_id: str, step: int, update: str, values: dict, attribute: str) -> set[int]:
        """One UpdateItem `update` of the barrier item (an ADD to the number set `attribute`, maybe with SETs):
        the set as it was before the write."""
        self._count_write()
        answer = outlasting_conflicts(
            self._table.update_item,
            Key={"run_id": run_id, "epoch": barrier_epoch(step)},
            UpdateExpression=update,
            ExpressionAttributeValues=values,
            ReturnValues="ALL_OLD",
        )
        return {int(done) for done in answer.get("Attributes", {}).get(attribute, set())}


def _text(value: float) -> str:
    """A loss or penalty as the text that reads back as the identical float (`float(_text(x)) == x`): the repr of
    a Python float (a numpy scalar's repr is `np.float64(...)`; a float32's widening to float is exact)."""
    return repr(float(value))


def barrier_epoch(step: int) -> int:
    """The sort key of a round's barrier item: negative, apart from the run record (0) and the epoch items (1...)."""
    return -step
