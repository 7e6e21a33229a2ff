"""Load: 20 runs started at once on one stack, through one local runtime with 4 containers per function.

Every run succeeds, bit for bit equal to the same run alone, and the watchdog's query lists all 20 while they run.
A run alone (at concurrency 1) takes about 1-2 s here, so `ALONE` of them are run alone and shown equal, bit for
bit, to plain NumPy (`training.train_reference`), which then stands for the run alone of every seed.
`pytest -s` prints the wall time and the request counts.
"""

import time

import pytest

from lnn_cli.cloud.local import LocalJob, run_local, run_many
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.ml import training
from tests.integration.conftest import dataset, model_arrays

pytestmark = pytest.mark.slow  # 20 runs at once and 4 alone: about 30 s

RUNS = 20
CONCURRENCY = 4
ALONE = 4


def parameters(seed: int) -> dict:
    return {
        "epochs": 3,
        "learning_rate": 0.5,
        "neurons": [3, 1],
        "activations": ["tanh", "sigmoid"],
        "seed": seed,
        "granularity": "layer",
    }


@pytest.fixture(scope="module")
def room_for_twenty(stack):
    """The launcher admits LNN_MAX_RUNNING_RUNS running runs (10 by default): 20 here, for this module."""
    session, outputs = stack
    client = session.client("lambda")
    variables = client.get_function_configuration(FunctionName=outputs.launch_function)["Environment"]["Variables"]
    client.update_function_configuration(
        FunctionName=outputs.launch_function,
        Environment={"Variables": {**variables, "LNN_MAX_RUNNING_RUNS": str(RUNS)}},
    )
    yield
    client.update_function_configuration(FunctionName=outputs.launch_function, Environment={"Variables": variables})


def plain_numpy(seed: int) -> tuple[dict, list[float]]:
    _, X, y = dataset()
    config = parameters(seed)
    return training.train_reference(
        X,
        y,
        neurons=config["neurons"],
        activations=config["activations"],
        learning_rate=config["learning_rate"],
        epochs=config["epochs"],
        init="lecun",
        seed=seed,
    )


@pytest.fixture(scope="module")
def alone(stack, tmp_path_factory):
    """Plain NumPy for every seed, shown equal to the run alone (concurrency 1) for the first `ALONE` seeds."""
    session, outputs = stack
    data = dataset()[0]
    started = time.monotonic()
    references = {seed: plain_numpy(seed) for seed in range(RUNS)}
    with open(tmp_path_factory.mktemp("alone") / "lambda.log", "w") as stream:
        for seed in range(ALONE):
            run = run_local(session, outputs, parameters(seed), data, run_id=f"alone-{seed}", log_stream=stream)
            assert run.status == "succeeded" and run.run["config"]["init"] == "lecun"
            params, costs = references[seed]
            model = model_arrays(run.model)
            assert run.costs == costs and all(model[name].tobytes() == params[name].tobytes() for name in params)
    print(f"\nload: {ALONE} runs alone at concurrency 1: {time.monotonic() - started:.2f} s")
    return references


def test_twenty_runs_at_once_end_like_each_run_alone(stack, room_for_twenty, alone, log):
    session, outputs = stack
    data = dataset()[0]
    table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
    jobs = [LocalJob(parameters(seed), data, run_id=f"load-{seed}") for seed in range(RUNS)]
    listed: dict[str, list[str]] = {}

    def at_launch(runtime):
        listed["launched"] = table.run_ids("running")

    trainer_deliveries = []

    def watch(record):  # the watchdog's query, a fifth of the way through
        if record.role == "trainer":
            trainer_deliveries.append(record)
            if len(trainer_deliveries) == RUNS * 3:
                listed["midway"] = [run["run_id"] for run in table.list_runs("running")]

    started = time.monotonic()
    results = run_many(
        session, outputs, jobs, log_stream=log, concurrency=CONCURRENCY, on_delivery=watch, on_launched=at_launch
    )
    wall = time.monotonic() - started

    names = {job.run_id for job in jobs}
    assert names <= set(listed["launched"])
    assert "midway" in listed and len(names & set(listed["midway"])) >= RUNS // 2, listed.get("midway")
    for seed, result in enumerate(results):
        params, costs = alone[seed]
        assert result.status == "succeeded", (result.run_id, result.run.get("reason"))
        assert result.costs == costs, result.run_id
        model = model_arrays(result.model)
        assert all(model[name].tobytes() == params[name].tobytes() for name in params), result.run_id
        assert result.run["invocations"] == results[0].run["invocations"]  # committed steps: each exactly once
        assert [n["attributes"]["status"] for n in result.notifications] == ["succeeded"]
    requests: dict[str, int] = {}
    for result in results:
        for service, count in result.io["requests"].items():
            requests[service] = requests.get(service, 0) + count
    deliveries = sum(result.deliveries for result in results)
    print(
        f"\nload: {RUNS} runs at once, concurrency {CONCURRENCY}: {wall:.2f} s wall, {deliveries} deliveries, "
        f"requests {dict(sorted(requests.items()))}, per run {results[0].io['requests']}; "
        f"watchdog query listed {len(listed['launched'])} running at launch, {len(listed['midway'])} midway"
    )
