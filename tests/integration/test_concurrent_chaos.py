"""Exactly once under real concurrency: chaos schedules whose deliveries run at the same time in 4 containers.

Unlike the serial schedules of test_chaos.py, a duplicate here runs in another container at the same instant as
its twin, with short real pauses around every read and every effect so that their requests interleave, and twins
share their request id or not. The runs are unseeded, as deployed runs are by default: each must end with the
model and costs that the seed recorded in its own run record gives, one item per epoch and one message (plus one
per crash at the documented instant between Publish and the `notified` write).
"""

from collections import Counter

import pytest

from lnn_cli.cloud.chaos import ChaosPlan
from lnn_cli.cloud.local import run_local
from lnn_core.ml import training
from tests.integration.conftest import dataset, lnn_statuses, model_arrays

SCHEDULES_PER_GRANULARITY = 20
EVERY_LOOP = 1  # schedules per granularity in `make test`; the rest are marked slow and run by `make slow` (and CI)
CONCURRENCY = 4
PARAMETERS = {"epochs": 3, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"]}
REPUBLISH_SITES = ("after notifier.publish", "before table.mark_notified")  # the one inherent limit (README)
FAULT_KINDS = ("duplicates", "distinct_ids", "delays", "crashes_before", "crashes_after", "losses", "pauses")


def plan(seed: int) -> ChaosPlan:
    return ChaosPlan(duplicate=0.35, crash=0.12, delay=0.2, lose=0.03, pause=0.3, distinct_ids=0.5, seed=seed)


@pytest.fixture(scope="module")
def tally():
    """Faults injected over all schedules of this module, printed at its end (pytest -s)."""
    totals = Counter()
    yield totals
    print(f"\nconcurrent chaos: {dict(totals)}")


def reference(result, X, y):
    config = result.run["config"]
    return training.train_reference(
        X,
        y,
        neurons=list(config["neurons"].values()),
        activations=list(config["activations"].values()),
        learning_rate=config["learning_rate"],
        epochs=config["epochs"],
        seed=config["seed"],
    )


@pytest.mark.parametrize("granularity", ["layer", "epoch", "auto"])
@pytest.mark.parametrize(
    "seed",
    [
        seed if seed < EVERY_LOOP else pytest.param(seed, marks=pytest.mark.slow)
        for seed in range(SCHEDULES_PER_GRANULARITY)
    ],
)
def test_concurrent_schedule_ends_like_the_run_its_recorded_seed_gives(stack, log, tally, granularity, seed):
    session, outputs = stack
    data, X, y = dataset()
    outcomes = []  # list.append is atomic: deliveries report from their threads
    result = run_local(
        session,
        outputs,
        {**PARAMETERS, "granularity": granularity},
        data,
        run_id=f"concurrent-{granularity}-{seed}",
        chaos=plan(seed),
        log_stream=log,
        concurrency=CONCURRENCY,
        on_delivery=lambda record: outcomes.append((record.result or {}).get("outcome", "raised")),
    )

    assert result.status == "succeeded", result.run.get("reason")
    assert result.run["seed_drawn"]
    params, costs = reference(result, X, y)
    model = model_arrays(result.model)
    assert all(model[name].tobytes() == params[name].tobytes() for name in params)
    assert [item["epoch"] for item in result.epochs] == [1, 2, 3]  # one item per committed epoch, no more
    assert result.costs == costs
    republished = sum(result.chaos["crash_sites"].get(site, 0) for site in REPUBLISH_SITES)
    statuses = lnn_statuses(result.notifications)
    assert statuses == ["succeeded"] * (1 + republished), result.notifications

    tally["schedules"] += 1
    tally["deliveries"] += result.deliveries
    tally["committed_steps"] += result.run["invocations"]
    tally["republished"] += republished
    for kind in FAULT_KINDS:
        tally[kind] += result.chaos.get(kind, 0)
    tally.update(f"outcome {outcome}" for outcome in outcomes)


def test_concurrent_schedules_inject_every_fault_kind_and_both_kinds_of_twins(stack, log):
    """The schedules above do inject what they claim to test (counted here, as xdist may split the module)."""
    session, outputs = stack
    seen = Counter()
    for seed in range(8):
        eager = ChaosPlan(duplicate=0.5, crash=0.2, delay=0.3, lose=0.15, pause=0.3, distinct_ids=0.5, seed=seed)
        result = run_local(
            session,
            outputs,
            {**PARAMETERS, "granularity": "layer"},
            dataset()[0],
            run_id=f"concurrent-cover-{seed}",
            chaos=eager,
            log_stream=log,
            concurrency=CONCURRENCY,
        )
        assert result.status == "succeeded"
        seen.update({kind: result.chaos[kind] for kind in FAULT_KINDS})
        if all(seen[kind] for kind in FAULT_KINDS) and seen["duplicates"] > seen["distinct_ids"]:
            break
    assert all(seen[kind] > 0 for kind in FAULT_KINDS), seen
    assert seen["duplicates"] > seen["distinct_ids"] > 0  # twins that share the request id, and twins that do not
