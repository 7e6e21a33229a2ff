"""Exactly once in effect: 200 seeded fault schedules through the chaos harness of the local runtime.

Each schedule mixes duplicate deliveries (at once and late), crashes before and after every effect (each
followed by Lambda's retry of the same event), delayed out-of-order deliveries and lost invocations (resumed as
the watchdog would). Every schedule must end exactly like the clean run.
"""

import pytest

from lnn_cli.chaos import ChaosPlan
from lnn_cli.local import run_local
from tests.integration.conftest import dataset, model_arrays

SCHEDULES = 200
PARAMETERS = {"epochs": 3, "learning_rate": 0.5, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "seed": 2,
              "granularity": "layer"}
# A crash between SNS Publish returning and `notified` being recorded makes the retry publish again: the
# README's one inherent limit. These are the two names of that one instant.
REPUBLISH_SITES = ("after notifier.publish", "before table.mark_notified")


@pytest.fixture(scope="module")
def clean(stack, tmp_path_factory):
    session, outputs = stack
    with open(tmp_path_factory.mktemp("clean") / "lambda.log", "w") as stream:
        return run_local(session, outputs, PARAMETERS, dataset()[0], run_id="clean", log_stream=stream)


@pytest.fixture(scope="module")
def tally():
    """Faults injected over all schedules of this module, reported at its end."""
    totals = {}
    yield totals
    print(f"\nchaos: {totals.pop('schedules', 0)} schedules, faults {totals}")


@pytest.mark.parametrize("seed", range(SCHEDULES))
def test_fault_schedule_ends_like_the_clean_run(stack, clean, log, tally, seed):
    session, outputs = stack
    plan = ChaosPlan(duplicate=0.25, crash=0.15, delay=0.25, lose=0.03, seed=seed)
    result = run_local(session, outputs, PARAMETERS, dataset()[0], run_id=f"chaos-{seed}", chaos=plan, log_stream=log)

    assert result.status == "succeeded", result.run.get("reason")
    chaotic, reference = model_arrays(result.model), model_arrays(clean.model)
    assert chaotic.keys() == reference.keys()
    assert all(chaotic[name].tobytes() == reference[name].tobytes() for name in reference if name.startswith(("W", "b")))
    assert [item["epoch"] for item in result.epochs] == [1, 2, 3]
    assert result.costs == clean.costs
    sites = result.chaos["crash_sites"]
    republished = sum(sites.get(site, 0) for site in REPUBLISH_SITES)
    assert [n["attributes"]["status"] for n in result.notifications] == ["succeeded"] * (1 + republished)
    assert result.chaos["step_bodies"] <= clean.chaos["step_bodies"] + result.chaos["faults"]
    assert result.run["invocations"] == clean.run["invocations"]  # committed steps: exactly the clean run's

    tally["schedules"] = tally.get("schedules", 0) + 1
    for kind in ("duplicates", "delays", "crashes_before", "crashes_after", "losses"):
        tally[kind] = tally.get(kind, 0) + result.chaos[kind]
    tally["republished"] = tally.get("republished", 0) + republished


def test_the_schedules_exercise_every_fault_kind_and_crash_site(stack, log):
    """The probabilities above do reach every kind of fault and every effect, so the 200 schedules mean something."""
    session, outputs = stack
    kinds, sites = set(), set()
    for seed in range(20):
        plan = ChaosPlan(duplicate=0.25, crash=0.15, delay=0.25, lose=0.03, seed=seed)
        result = run_local(session, outputs, PARAMETERS, dataset()[0], run_id=f"cover-{seed}", chaos=plan, log_stream=log)
        kinds |= {kind for kind in ("duplicates", "delays", "crashes_before", "crashes_after", "losses") if result.chaos[kind]}
        sites |= set(result.chaos["crash_sites"])
    assert kinds == {"duplicates", "delays", "crashes_before", "crashes_after", "losses"}
    for effect in ("store.put_bytes", "table.put_epoch_items", "table.transition", "table.mark_invoked", "invoker.invoke_async"):
        assert {f"before {effect}", f"after {effect}"} <= sites, effect
