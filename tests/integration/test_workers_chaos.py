"""Rounds of K = 3 shard workers under chaos: every schedule ends bit for bit like the clean run.

A round is K shard deliveries, then K slice deliveries, the last of which to join commits it. At concurrency 1 a
seed is a schedule; at concurrency 4 duplicates really run at the same time as their twins. Every fault kind (lose,
delay, duplicate: of shard and of slice events; a crash before or after every effect of a shard, of a slice and of
the slice that commits) is hit at every site of a round, and of the finish's K fit deliveries.
"""

from collections import Counter

import pytest

from lnn_cli.cloud.chaos import ChaosPlan
from lnn_cli.cloud.local import run_local
from tests.integration.conftest import dataset, lnn_statuses, model_arrays
from tests.support.runs import THREE_WORKERS, reference

PARAMETERS = THREE_WORKERS
SERIAL, CONCURRENT = 200, 20
SERIAL_EVERY_LOOP, CONCURRENT_EVERY_LOOP = (
    0,
    0,
)  # in slices, all marked slow (make test has those reduced in the shard): `make slow` and CI run them
REPUBLISH_SITES = ("after notifier.publish", "before table.mark_notified")
# The crash rate of the tests that must reach every site: a delivery draws a crash (at half the rate) before and
# after each of its effects, and the last effects of the slice that commits a round come some 20 draws in: at 0.5
# a given one of them is reached about once in a thousand such deliveries, at 0.12 about once in 60.
REACHING_CRASH = 0.12
ROUND_STATES = ("shard", "slice")  # the states of a round's deliveries
ROUND_SITES = {
    "shard": (  # its sums, its place and loss in the barrier; the completing one claims and sends the K slices
        "table.mark_started",
        "store.put_bytes",
        "table.join_barrier",
        "table.claim_slices",
        "invoker.invoke_async",
    ),
    "slice": (  # its rows of the new state, its place in the barrier; the completing one claims the commit, commits
        "table.mark_started",
        "store.put_bytes",
        "table.join_slices",
        "table.claim_commit",
        "table.put_epoch_items",
        "table.transition",
        "invoker.invoke_async",
        "table.mark_invoked",
        "store.delete_keys",
    ),
}


def plan(seed: int, **overrides) -> ChaosPlan:
    return ChaosPlan(**{"duplicate": 0.25, "crash": 0.15, "delay": 0.25, "lose": 0.03, "seed": seed, **overrides})


@pytest.fixture(scope="module")
def clean(stack, tmp_path_factory):
    session, outputs = stack
    with open(tmp_path_factory.mktemp("clean-workers") / "lambda.log", "w") as stream:
        return run_local(session, outputs, PARAMETERS, dataset()[0], run_id="clean-workers", log_stream=stream)


@pytest.fixture(scope="module")
def tally():
    totals = Counter()
    yield totals
    print(f"\nworkers chaos: {dict(sorted(totals.items()))}")


def assert_like_clean(result, clean):
    assert result.status == "succeeded", result.run.get("reason")
    model, reference = model_arrays(result.model), model_arrays(clean.model)
    assert all(model[name].tobytes() == reference[name].tobytes() for name in reference if name.startswith(("W", "b")))
    assert result.costs == clean.costs and [item["epoch"] for item in result.epochs] == [1, 2]
    assert result.run["invocations"] == clean.run["invocations"]  # committed steps: start, 6 rounds, finish
    republished = sum(result.chaos["crash_sites"].get(site, 0) for site in REPUBLISH_SITES)
    statuses = lnn_statuses(result.notifications)
    assert statuses == ["succeeded"] * (1 + republished), result.notifications


def test_the_clean_run_equals_the_reference_with_three_workers(clean):
    _, X, y = dataset()
    params, costs = reference(PARAMETERS, X, y)
    model = model_arrays(clean.model)
    assert all(model[name].tobytes() == params[name].tobytes() for name in params) and clean.costs == costs


@pytest.mark.parametrize(
    "seed", [s if s < SERIAL_EVERY_LOOP else pytest.param(s, marks=pytest.mark.slow) for s in range(SERIAL)]
)
def test_serial_schedule_with_three_workers(stack, clean, log, tally, seed):
    session, outputs = stack
    result = run_local(
        session, outputs, PARAMETERS, dataset()[0], run_id=f"workers-{seed}", chaos=plan(seed), log_stream=log
    )
    assert_like_clean(result, clean)
    tally.update(
        {
            f"serial {kind}": result.chaos[kind]
            for kind in ("duplicates", "delays", "crashes_before", "crashes_after", "losses")
        }
    )
    tally["serial schedules"] += 1


@pytest.mark.parametrize(
    "seed", [s if s < CONCURRENT_EVERY_LOOP else pytest.param(s, marks=pytest.mark.slow) for s in range(CONCURRENT)]
)
def test_concurrent_schedule_with_three_workers(stack, clean, log, tally, seed):
    session, outputs = stack
    result = run_local(
        session,
        outputs,
        PARAMETERS,
        dataset()[0],
        run_id=f"workers-c{seed}",
        chaos=plan(seed, pause=0.3, distinct_ids=0.5),
        log_stream=log,
        concurrency=4,
    )
    assert_like_clean(result, clean)
    tally.update(
        {
            f"concurrent {kind}": result.chaos[kind]
            for kind in ("duplicates", "distinct_ids", "delays", "crashes_before", "crashes_after", "losses")
        }
    )
    tally["concurrent schedules"] += 1


@pytest.mark.slow
def test_every_fault_kind_hits_every_site_of_a_round(stack, clean, log):
    session, outputs = stack
    seen = Counter()
    wanted = {f"{kind} {state}" for kind in ("lose", "delay", "duplicate") for state in ROUND_STATES}
    wanted |= {
        f"crash {state} {when} {site}"
        for state, sites in ROUND_SITES.items()
        for site in sites
        for when in ("before", "after")
    }
    for seed in range(40):
        eager = plan(1000 + seed, duplicate=0.4, crash=REACHING_CRASH, delay=0.4, lose=0.1)
        result = run_local(
            session, outputs, PARAMETERS, dataset()[0], run_id=f"workers-cover-{seed}", chaos=eager, log_stream=log
        )
        assert_like_clean(result, clean)
        seen.update(result.chaos["by_state"])
        if wanted <= set(seen):
            break
    assert not wanted - set(seen), sorted(wanted - set(seen))


@pytest.mark.slow  # 40-odd seconds: make slow and CI run it
def test_crashes_inside_a_committing_slices_concurrent_invokes_end_like_the_clean_run(stack, clean, log):
    """At concurrency 4 the slice that commits a round sends the next round's K shard events together (as the shard
    that completes a round sends its K slice events), from threads of its own (`RequestFanOut`): the harness's crash
    reaches them (one per delivery, its state shared by the delivery's threads), before and after an invoke, and
    every such schedule ends like the clean run."""
    session, outputs = stack
    seen, in_threads = Counter(), 0
    wanted = {f"crash {state} {when} invoker.invoke_async" for state in ROUND_STATES for when in ("before", "after")}
    for seed in range(12):
        eager = plan(2000 + seed, duplicate=0.0, delay=0.0, lose=0.0, crash=REACHING_CRASH)
        result = run_local(
            session,
            outputs,
            PARAMETERS,
            dataset()[0],
            run_id=f"workers-fan-{seed}",
            chaos=eager,
            log_stream=log,
            concurrency=4,
        )
        assert_like_clean(result, clean)
        crashes = result.chaos["crashes_before"] + result.chaos["crashes_after"]
        assert crashes == sum(count for where, count in result.chaos["by_state"].items() if where.startswith("crash"))
        seen.update(result.chaos["by_state"])
        in_threads += result.chaos["crashes_in_fan_outs"]
        if wanted <= set(seen) and in_threads:
            break
    assert not wanted - set(seen), sorted(wanted - set(seen))
    assert in_threads  # in the fan-out's own threads, not only in the delivery's (a finish event goes out alone)


# ---- the same schedules with every round reduced in its shard (parameter `reduce`, the default for small models) ----

IN_SHARD = {**PARAMETERS, "reduce": "shard"}
IN_SHARD_SERIAL, IN_SHARD_CONCURRENT = 50, 10
IN_SHARD_EVERY_LOOP = 1  # serial and concurrent seeds of the default path in `make test`; the rest are slow
IN_SHARD_SITES = (  # the completing shard: its sums and place, the claim, its fence, the slices' rows, the commit
    "table.mark_started",
    "store.put_bytes",
    "table.join_barrier",
    "table.claim_slices",
    "table.claim_commit",
    "table.put_epoch_items",
    "table.transition",
    "invoker.invoke_async",
    "table.mark_invoked",
    "store.delete_keys",
)


@pytest.mark.parametrize(
    "seed", [s if s < IN_SHARD_EVERY_LOOP else pytest.param(s, marks=pytest.mark.slow) for s in range(IN_SHARD_SERIAL)]
)
def test_serial_schedule_of_rounds_reduced_in_their_shard_ends_like_the_clean_run_in_slices(stack, clean, log, seed):
    session, outputs = stack
    result = run_local(
        session, outputs, IN_SHARD, dataset()[0], run_id=f"in-shard-{seed}", chaos=plan(seed), log_stream=log
    )
    assert_like_clean(result, clean)  # the same model, costs and commits as the clean run in slices


@pytest.mark.parametrize(
    "seed",
    [s if s < IN_SHARD_EVERY_LOOP else pytest.param(s, marks=pytest.mark.slow) for s in range(IN_SHARD_CONCURRENT)],
)
def test_concurrent_schedule_of_rounds_reduced_in_their_shard_ends_like_the_clean_run(stack, clean, log, seed):
    session, outputs = stack
    result = run_local(
        session,
        outputs,
        IN_SHARD,
        dataset()[0],
        run_id=f"in-shard-c{seed}",
        chaos=plan(seed, pause=0.3, distinct_ids=0.5),
        log_stream=log,
        concurrency=4,
    )
    assert_like_clean(result, clean)


def assert_every_fault_kind_reaches(stack, clean, log, state: str, sites, *, first_seed: int, seeds: int):
    """Eager chaos schedules of rounds reduced in their shard until every fault kind has hit `state`'s deliveries
    and a crash has come before and after each of its `sites`; each schedule ends like the clean run."""
    session, outputs = stack
    seen = Counter()
    wanted = {f"{kind} {state}" for kind in ("lose", "delay", "duplicate")}
    wanted |= {f"crash {state} {when} {site}" for site in sites for when in ("before", "after")}
    for seed in range(seeds):
        eager = plan(first_seed + seed, duplicate=0.4, crash=REACHING_CRASH, delay=0.4, lose=0.1)
        result = run_local(
            session, outputs, IN_SHARD, dataset()[0], run_id=f"{state}-cover-{seed}", chaos=eager, log_stream=log
        )
        assert_like_clean(result, clean)
        seen.update(result.chaos["by_state"])
        if wanted <= set(seen):
            break
    assert not wanted - set(seen), sorted(wanted - set(seen))


@pytest.mark.slow
def test_every_fault_kind_hits_every_site_of_a_round_reduced_in_its_shard(stack, clean, log):
    assert_every_fault_kind_reaches(stack, clean, log, "shard", IN_SHARD_SITES, first_seed=3000, seeds=40)


FIT_SITES = (  # a fit's outputs and place; the one that completes the finish claims its commit, commits, publishes
    "table.mark_started",
    "store.put_bytes",
    "table.join_fit",
    "table.claim_commit",
    "table.transition",
    "store.delete_keys",
    "table.claim_notification",
    "store.copy",
    "notifier.publish",
    "table.mark_notified",
)


@pytest.mark.slow
def test_every_fault_kind_hits_every_site_of_the_finish_of_k_workers(stack, clean, log):
    assert_every_fault_kind_reaches(stack, clean, log, "fit", FIT_SITES, first_seed=4000, seeds=60)
