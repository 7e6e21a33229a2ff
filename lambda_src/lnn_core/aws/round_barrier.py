"""A round's barrier (the run table's item at a negative epoch, `barrier_epoch`): the set of shards done, of which
exactly one write completes the round, and the claim on sending its reduce event.
"""

from lnn_core.aws.table_access import TableAccess, outlasting_conflicts


class RoundBarrierOperations(TableAccess):
    """The run table's operations on the barrier items of a run's rounds."""

    def join_barrier(self, run_id: str, step: int, shard: int) -> set[int]:
        """Add `shard` to the set of shards done in the round that step `step` reduces; returns the set as it was
        before this write. The ADD of a set member is idempotent and atomic: of all writes, exactly one finds the
        other K - 1 shards and not its own, and that one completes the round."""
        self._count_write()
        answer = outlasting_conflicts(
            self._table.update_item,
            Key={"run_id": run_id, "epoch": barrier_epoch(step)},
            UpdateExpression="ADD shards_done :shard",
            ExpressionAttributeValues={":shard": {shard}},
            ReturnValues="ALL_OLD",
        )
        return {int(done) for done in answer.get("Attributes", {}).get("shards_done", set())}

    def claim_reduce(self, run_id: str, step: int, *, claimant: str, now: float, until: float) -> bool:
        """Claim the sending of a complete round's reduce event until `until`: the write that completed the round
        claims it first (and the SDK's retry of that claim finds its own name); a retry of its event (it died
        before sending) claims again once the lease expired; its twins and the duplicates of other shards find
        the lease live and send nothing."""
        return self._conditional_update(
            run_id,
            "SET reduce_lease = :until, reduce_by = :claimant",
            "attribute_not_exists(reduce_lease) OR reduce_lease < :now OR reduce_by = :claimant",
            {":until": until, ":now": now, ":claimant": claimant},
            epoch=barrier_epoch(step),
        )

    def shards_done(self, run_id: str, step: int) -> set[int]:
        """The shards whose results are in for the round that step `step` reduces."""
        self._counter.count("dynamodb")
        item = self._table.get_item(Key={"run_id": run_id, "epoch": barrier_epoch(step)}, ConsistentRead=True).get(
            "Item"
        )
        return {int(done) for done in (item or {}).get("shards_done", set())}


def barrier_epoch(step: int) -> int:
    """The sort key of a round's barrier item: negative, apart from the run record (0) and the epoch items (1...)."""
    return -step
