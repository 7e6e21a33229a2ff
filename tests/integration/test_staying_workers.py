"""Workers that stay (parameter `reduce` workers): K shard deliveries that make their slices and the next rounds."""

from lnn_cli.cloud.local import run_local
from tests.integration.conftest import dataset, model_arrays
from tests.support.runs import THREE_WORKERS

STAYING = {**THREE_WORKERS, "reduce": "workers"}


def test_staying_workers_train_the_reference_bit_for_bit(stack, log):
    from lnn_core.ml import training

    session, outputs = stack
    result = run_local(
        session, outputs, STAYING, dataset()[0], run_id="staying", log_stream=log, concurrency=4
    )
    assert result.status == "succeeded", result.run.get("reason")
    _, X, y = dataset()
    params, costs = training.train_reference(
        X, y, neurons=[3, 1], activations=["tanh", "sigmoid"], learning_rate=0.05, epochs=2, seed=4,
        batch_size=16, optimizer="adam", workers=3,
    )
    model = model_arrays(result.model)
    assert all(model[name].tobytes() == params[name].tobytes() for name in params) and result.costs == costs
    print(result.run["invocations"], result.run.get("staying_step"))


def test_probe(stack, log):
    session, outputs = stack
    records = []
    result = run_local(
        session, outputs, STAYING, dataset()[0], run_id="staying-probe", log_stream=log, concurrency=4,
        on_delivery=records.append,
    )
    for r in records:
        if r.role == "trainer" and r.result:
            print(r.result.get("state"), r.result.get("step"), r.result.get("shard"), r.result.get("outcome"), r.result.get("rounds"), round(r.seconds, 3))
