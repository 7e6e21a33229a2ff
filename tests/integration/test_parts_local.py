"""Data in parts through the local runtime, as `lnn local --workers K` runs it (`run_local(..., parts=...)`): the
client's split, uploaded before the launch, trains bit for bit like the reference, and so does every chaos schedule."""

import pytest

from lnn_cli.cloud.chaos import ChaosPlan
from lnn_cli.cloud.local import run_local
from lnn_cli.datafiles import data_in_parts
from tests.integration.conftest import dataset, model_arrays
from tests.support.runs import THREE_WORKERS, reference

PARAMETERS = THREE_WORKERS


@pytest.fixture(scope="module")
def clean(stack, tmp_path_factory):
    session, outputs = stack
    data = dataset()[0]
    with open(tmp_path_factory.mktemp("clean-parts") / "lambda.log", "w") as stream:
        return run_local(
            session, outputs, PARAMETERS, data, run_id="clean-parts", log_stream=stream, parts=data_in_parts(data, 3)
        )


def test_the_clean_run_on_parts_equals_the_reference(clean):
    _, X, y = dataset()
    assert clean.status == "succeeded", clean.run.get("reason")
    assert clean.run["config"]["data"] == "runs/clean-parts/data/" and clean.run["part_examples"] == [14, 13, 13]
    params, costs = reference(PARAMETERS, X, y, parts=[14, 13, 13])
    model = model_arrays(clean.model)
    assert all(model[name].tobytes() == params[name].tobytes() for name in params)
    assert clean.costs == costs


@pytest.mark.parametrize(
    "seed, concurrency",
    [pytest.param(1, 1, marks=pytest.mark.slow), pytest.param(2, 1, marks=pytest.mark.slow), (3, 4)],
)
def test_chaos_on_parts_ends_like_the_clean_run(stack, clean, log, seed, concurrency):
    session, outputs = stack
    data = dataset()[0]
    plan = ChaosPlan(duplicate=0.25, crash=0.15, delay=0.25, lose=0.03, seed=seed)
    result = run_local(
        session,
        outputs,
        PARAMETERS,
        data,
        run_id=f"parts-{seed}",
        chaos=plan,
        log_stream=log,
        concurrency=concurrency,
        parts=data_in_parts(data, 3),
    )
    assert result.status == "succeeded", result.run.get("reason")
    model, reference = model_arrays(result.model), model_arrays(clean.model)
    assert all(model[name].tobytes() == reference[name].tobytes() for name in reference if name.startswith(("W", "b")))
    assert result.costs == clean.costs
