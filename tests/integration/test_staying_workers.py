"""Workers that stay (parameter `reduce` workers): K shard deliveries that make their round's slices and the next
rounds, bit for bit the reference, under every fault of the concurrent chaos harness."""

from collections import Counter

import pytest

from lnn_cli.cloud.local import run_local
from lnn_core.protocol import staying
from tests.integration.conftest import dataset, model_arrays
from tests.integration.test_workers_chaos import assert_like_clean, plan
from tests.support.runs import THREE_WORKERS, reference

STAYING = {**THREE_WORKERS, "reduce": "workers"}
CONTAINERS = 5  # the three workers at once, and room for a twin or a retry beside them
CONCURRENT, CONCURRENT_EVERY_LOOP = 24, 0  # all in make slow: make test keeps the conditions, the clean run


@pytest.fixture(scope="module")
def clean(stack, tmp_path_factory):
    session, outputs = stack
    records = []
    with open(tmp_path_factory.mktemp("staying") / "lambda.log", "w") as stream:
        result = run_local(
            session,
            outputs,
            STAYING,
            dataset()[0],
            run_id="staying",
            log_stream=stream,
            concurrency=CONTAINERS,
            on_delivery=records.append,
        )
    return result, [record for record in records if record.role == "trainer"]


def test_staying_workers_train_the_reference_bit_for_bit(clean):
    result, _ = clean
    assert result.status == "succeeded", result.run.get("reason")
    _, X, y = dataset()
    params, costs = reference(STAYING, X, y)
    model = model_arrays(result.model)
    assert all(model[name].tobytes() == params[name].tobytes() for name in params) and result.costs == costs


def test_three_deliveries_make_every_round(clean):
    """Six rounds (two epochs of three batches) by the three workers of one delivery each: no slice event, no
    shard event after the first round's, every worker's rounds counted."""
    result, trainer = clean
    by_state = Counter(record.result["state"] for record in trainer)
    assert by_state == {"start": 1, "shard": 3, "fit": 3}, by_state
    workers = [record.result for record in trainer if record.result["state"] == "shard"]
    assert sorted(worker["shard"] for worker in workers) == [0, 1, 2]
    assert all(worker["rounds"] == 6 for worker in workers), workers
    assert sorted(worker["outcome"] for worker in workers) == ["committed", "slice", "slice"]
    assert result.run["invocations"] == 8  # committed steps: start, six rounds, finish


@pytest.mark.parametrize(
    "seed", [s if s < CONCURRENT_EVERY_LOOP else pytest.param(s, marks=pytest.mark.slow) for s in range(CONCURRENT)]
)
def test_concurrent_schedule_of_staying_workers_ends_like_the_clean_run(stack, clean, log, seed):
    session, outputs = stack
    result = run_local(
        session,
        outputs,
        STAYING,
        dataset()[0],
        run_id=f"staying-c{seed}",
        chaos=plan(seed, pause=0.3, distinct_ids=0.5),
        log_stream=log,
        concurrency=CONTAINERS,
    )
    assert_like_clean(result, clean[0])


def test_a_commit_without_time_for_more_rounds_sends_the_next_workers_and_its_own_end(stack, log, monkeypatch):
    """Mutant: workers go on whatever the commit did. With no commit keeping them (too little time left), every
    round is K new worker deliveries, each making one round; the ones before end instead of joining them."""
    monkeypatch.setattr(staying, "END_MARGIN_SECONDS", 1e9)
    session, outputs = stack
    records = []
    result = run_local(
        session,
        outputs,
        STAYING,
        dataset()[0],
        run_id="staying-short",
        log_stream=log,
        concurrency=CONTAINERS,
        on_delivery=records.append,
    )
    assert result.status == "succeeded", result.run.get("reason")
    shards = [record.result for record in records if record.role == "trainer" and record.result["state"] == "shard"]
    assert len(shards) == 3 * 6 and all(shard["rounds"] == 1 for shard in shards), shards


@pytest.mark.slow  # the one object a slice is also tests/unit/test_state_slices.py's
def test_staying_workers_with_gd_write_one_object_a_slice_and_train_the_reference(stack, log, monkeypatch):
    """With gd a slice's rows and its update count go in one object: a PUT a slice fewer each round."""
    from lnn_core.aws.ports import S3ObjectStore

    written, put = [], S3ObjectStore.put_bytes
    monkeypatch.setattr(
        S3ObjectStore, "put_bytes", lambda store, key, *a, **k: (written.append(key), put(store, key, *a, **k))[1]
    )
    session, outputs = stack
    gd = {**STAYING, "optimizer": "gd", "workers": 2, "learning_rate": 0.5}
    result = run_local(session, outputs, gd, dataset()[0], run_id="staying-gd", log_stream=log, concurrency=CONTAINERS)
    assert result.status == "succeeded", result.run.get("reason")
    _, X, y = dataset()
    params, costs = reference(gd, X, y)
    model = model_arrays(result.model)
    assert all(model[name].tobytes() == params[name].tobytes() for name in params) and result.costs == costs
    slices = [key for key in written if "/params-" in key and key.endswith(".npz") and "-0" in key.rsplit("/", 1)[1]]
    assert not [key for key in written if "/optimizer-" in key], "gd wrote an optimizer object"
    assert len(slices) == 2 * (1 + 6), slices  # the start's and six rounds' two slices
