"""The barrier item of a round reduced in K slices (`lnn_core.aws.round_barrier`): the shards join with their loss
sums (and the round's penalty), the completing shard claims the sending of the K slice events, the slices join, the
completing slice claims the commit; and `S3ObjectStore.get_range`, by which a slice reads its part of each shard's
results. Each operation through boto3 and through the simulator's direct client (the same moto backend)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from lnn_cli.simulate.aws.direct_clients import DirectDynamoClient, DirectS3Client, DirectTable
from lnn_core.aws.ports import S3ObjectStore
from lnn_core.aws.round_barrier import RoundProgress, barrier_epoch
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import RunFailure

TABLE = "lnn-results"
STEP = 7
K = 3
CLAIMS = ("claim_slices", "claim_commit")
NOW, LEASE = 1_800_000_000.0, 60.0


@pytest.fixture(params=["boto", "direct"])
def table(aws, request):
    """The run table through boto3's resource, or through the simulator's direct client."""
    if request.param == "boto":
        return RunTable(aws.session.resource("dynamodb").Table(TABLE), IoCounter())
    return RunTable(DirectTable(TABLE, DirectDynamoClient()), IoCounter())


def raw_item(aws, step=STEP):
    """The barrier item as DynamoDB holds it: attribute -> {type: value}."""
    key = {"run_id": {"S": "r1"}, "epoch": {"N": str(barrier_epoch(step))}}
    return aws.session.client("dynamodb").get_item(TableName=TABLE, Key=key, ConsistentRead=True).get("Item", {})


def completing(joined, befores, k=K):
    """The joins whose answer shows the other k - 1 members and not their own."""
    return [member not in before and len(before) == k - 1 for member, before in zip(joined, befores)]


def test_join_barrier_answers_the_set_before_its_write_and_one_join_completes(table):
    order = (2, 0, 2, 1, 0, 1)  # every shard twice: the second of each a twin's or a lost answer's retry
    befores = [table.join_barrier("r1", STEP, shard, loss=float(shard)) for shard in order]
    assert befores == [set(), {2}, {0, 2}, {0, 2}, {0, 1, 2}, {0, 1, 2}]
    assert completing(order, befores) == [False, False, False, True, False, False]
    progress = table.round_progress("r1", STEP)
    assert progress.shards_done == frozenset({0, 1, 2}) and progress.slices_done == frozenset()
    assert progress.losses == {0: 0.0, 1: 1.0, 2: 2.0}
    assert table.round_progress("r1", STEP + 1) == RoundProgress(frozenset(), frozenset(), {}, None)
    assert table.round_progress("r1", STEP).shards_done == {0, 1, 2}


def test_a_retried_join_leaves_one_member_and_the_same_loss_text(aws, table):
    first = table.join_barrier("r1", STEP, 1, loss=0.1 + 0.2, penalty=1e-300)
    item = raw_item(aws)
    again = table.join_barrier("r1", STEP, 1, loss=0.1 + 0.2, penalty=1e-300)
    assert (first, again) == (set(), {1})
    assert raw_item(aws) == item
    assert item["shards_done"] == {"NS": ["1"]}
    assert item["loss_1"] == {"S": repr(0.1 + 0.2)} and item["penalty"] == {"S": "1e-300"}  # text, not a number


def test_of_k_joins_in_any_order_with_duplicates_exactly_one_completes(table):
    rng = np.random.RandomState(3)
    for step, k in enumerate((1, 2, 5, 9), start=1):
        order = [int(shard) for shard in rng.permutation(np.repeat(np.arange(k), 3))]
        befores = [table.join_barrier("r1", step, shard, loss=1.5) for shard in order]
        assert sum(completing(order, befores, k)) == 1, (k, order)
        assert all(before <= set(range(k)) for before in befores)
        assert table.round_progress("r1", step).shards_done == frozenset(range(k))


LOSSES = {
    0: -0.0,
    1: 1e-300,  # a DynamoDB number would make it 0 (its numbers end at 1e-130)
    2: 0.1 + 0.2,  # 0.30000000000000004: 17 significant digits
    3: float(np.float32(1 / 3)),  # a float32's widening
    4: np.float32(2 / 3),  # a float32 scalar as a step may give it
    5: np.float64(123456.789e200),
    6: 5e-324,  # the smallest subnormal
}


def test_losses_and_the_penalty_read_back_exactly(aws, table):
    for shard, loss in LOSSES.items():
        table.join_barrier("r1", STEP, shard, loss=loss, penalty=np.float32(0.01) * 0.5)
    progress = table.round_progress("r1", STEP)
    assert set(progress.losses) == set(LOSSES)
    for shard, loss in LOSSES.items():
        assert type(progress.losses[shard]) is float
        assert progress.losses[shard] == float(loss) and repr(progress.losses[shard]) == repr(float(loss)), shard
    assert math.copysign(1.0, progress.losses[0]) == -1.0  # -0.0, not 0.0 (== cannot tell them apart)
    assert progress.penalty == float(np.float32(0.01) * 0.5) and type(progress.penalty) is float
    assert all(raw_item(aws)[f"loss_{shard}"] == {"S": repr(float(loss))} for shard, loss in LOSSES.items())


def test_the_penalty_is_none_until_a_shard_gives_one(table):
    table.join_barrier("r1", STEP, 0, loss=1.0)
    assert table.round_progress("r1", STEP).penalty is None
    table.join_barrier("r1", STEP, 1, loss=2.0, penalty=0.25)
    table.join_barrier("r1", STEP, 2, loss=3.0)  # a join without the penalty leaves the one given in place
    assert table.round_progress("r1", STEP).penalty == 0.25


def test_join_slices_answers_the_set_before_its_write_and_one_join_completes(aws, table):
    for shard in range(K):
        table.join_barrier("r1", STEP, shard, loss=1.0)
    order = (1, 1, 2, 0, 2, 0)
    befores = [table.join_slices("r1", STEP, slice_) for slice_ in order]
    assert befores == [set(), {1}, {1}, {1, 2}, {0, 1, 2}, {0, 1, 2}]
    assert completing(order, befores) == [False, False, False, True, False, False]
    progress = table.round_progress("r1", STEP)
    assert progress.slices_done == frozenset({0, 1, 2}) and progress.shards_done == frozenset({0, 1, 2})
    assert sorted(raw_item(aws)["slices_done"]["NS"]) == ["0", "1", "2"]
    # the slices leave the shards' set and losses as they were, and a late shard's twin leaves the slices'
    assert table.join_barrier("r1", STEP, 0, loss=1.0) == {0, 1, 2}
    assert table.round_progress("r1", STEP).slices_done == frozenset({0, 1, 2})


@pytest.mark.parametrize("claim", CLAIMS)
def test_a_claim_goes_to_one_claimant_while_its_lease_lives(table, claim):
    table.join_barrier("r1", STEP, 0, loss=1.0)  # the barrier item exists before any claim
    claim = getattr(table, claim)
    assert claim("r1", STEP, claimant="a", now=NOW, until=NOW + LEASE)
    assert not claim("r1", STEP, claimant="b", now=NOW + 1, until=NOW + 1 + LEASE)  # the lease is live
    assert claim("r1", STEP, claimant="a", now=NOW + 2, until=NOW + LEASE)  # a's retry (its answer was lost)
    assert not claim("r1", STEP, claimant="b", now=NOW + LEASE - 1, until=NOW + 2 * LEASE)
    assert claim("r1", STEP, claimant="b", now=NOW + LEASE + 1, until=NOW + 2 * LEASE)  # expired: b's turn
    assert not claim("r1", STEP, claimant="a", now=NOW + LEASE + 2, until=NOW + 3 * LEASE)  # b's now
    assert claim("r1", STEP + 1, claimant="c", now=NOW, until=NOW + LEASE) is False  # no barrier item: no claim


def test_the_claims_are_independent_of_each_other(aws, table):
    table.join_barrier("r1", STEP, 0, loss=1.0)
    for claim, claimant in zip(CLAIMS, "ab"):  # b claims the commit while a's lease on the slices lives
        assert getattr(table, claim)("r1", STEP, claimant=claimant, now=NOW, until=NOW + LEASE), claim
    for claim in CLAIMS:
        assert not getattr(table, claim)("r1", STEP, claimant="z", now=NOW + 1, until=NOW + LEASE), claim
    item = raw_item(aws)
    assert [item[f"{what}_by"]["S"] for what in ("slices", "commit")] == ["a", "b"]
    assert [float(item[f"{what}_lease"]["N"]) for what in ("slices", "commit")] == [NOW + LEASE] * 2
    assert not {"reduce_by", "reduce_lease"} & set(item)  # the one claim of a reduce delivery is gone


def test_every_write_and_read_is_counted(table):
    counter = table._counter
    table.join_barrier("r1", STEP, 0, loss=1.0, penalty=0.5)
    table.join_slices("r1", STEP, 0)
    table.claim_slices("r1", STEP, claimant="a", now=NOW, until=NOW + LEASE)
    table.claim_commit("r1", STEP, claimant="a", now=NOW, until=NOW + LEASE)
    assert (counter.requests["dynamodb"], counter.priced["dynamodb_writes"]) == (4, 4)
    table.round_progress("r1", STEP)
    assert (counter.requests["dynamodb"], counter.priced["dynamodb_writes"]) == (5, 4)


class RecordingClient:
    """An S3 client that records each request it passes on."""

    def __init__(self, inner):
        self.inner, self.requests = inner, []

    def get_object(self, **request):
        self.requests.append(request)
        return self.inner.get_object(**request)


BODY = bytes(range(256)) * 4


@pytest.fixture(params=["boto", "direct"])
def s3_client(aws, request):
    if request.param == "boto":
        return RecordingClient(aws.s3)
    from moto.s3.models import s3_backends

    from lnn_cli.simulate.aws.world import ACCOUNT

    backend = s3_backends[ACCOUNT]["aws"] if "aws" in s3_backends[ACCOUNT] else s3_backends[ACCOUNT]["global"]
    return RecordingClient(DirectS3Client(SimpleNamespace(s3=backend)))


def test_get_range_reads_a_range_with_or_without_the_etag(aws, s3_client):
    etag = aws.s3.put_object(Bucket=aws.bucket, Key="slices/shard-0", Body=BODY)["ETag"]
    store = S3ObjectStore(s3_client, aws.bucket, IoCounter())
    assert store.get_range("slices/shard-0", 10, 300) == BODY[10:300]
    assert "IfMatch" not in s3_client.requests[-1] and s3_client.requests[-1]["Range"] == "bytes=10-299"
    assert store.get_range("slices/shard-0", 1000, 1024, etag=etag) == BODY[1000:]
    assert s3_client.requests[-1]["IfMatch"] == etag
    assert store.get_range("slices/shard-0", 0, 1) == BODY[:1]
    assert store._counter.requests["s3"] == 3 and store._counter.s3_bytes_in == 290 + 24 + 1


def test_get_range_of_a_changed_or_missing_object_is_a_run_failure(aws, s3_client):
    etag = aws.s3.put_object(Bucket=aws.bucket, Key="slices/shard-0", Body=BODY)["ETag"]
    aws.s3.put_object(Bucket=aws.bucket, Key="slices/shard-0", Body=BODY[::-1])
    store = S3ObjectStore(s3_client, aws.bucket, IoCounter())
    with pytest.raises(RunFailure, match="changed during the run"):
        store.get_range("slices/shard-0", 0, 16, etag=etag)
    with pytest.raises(RunFailure, match="slices/shard-9 is missing"):
        store.get_range("slices/shard-9", 0, 16)
    with pytest.raises(RunFailure, match="is missing"):
        store.get_range("slices/shard-9", 0, 16, etag=etag)


class NoClient:
    def __getattr__(self, name):
        raise AssertionError(f"an empty range sent a request ({name})")


def test_an_empty_range_is_empty_bytes_without_a_request():
    store = S3ObjectStore(NoClient(), "lnn-test-bucket", IoCounter())
    before = store._counter.snapshot()
    assert store.get_range("slices/shard-0", 0, 0) == b"" and store.get_range("anything", 512, 512, etag='"x"') == b""
    assert store._counter.snapshot() == before
    with pytest.raises(ValueError, match="ends before it starts"):
        store.get_range("slices/shard-0", 5, 4)
