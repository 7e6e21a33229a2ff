"""The local runtime and the chaos harness, in process: the synthesized stack created by CloudFormation under
`mock_aws`."""

import json

import numpy as np
import pytest

from lnn_cli.cloud.chaos import ChaosPlan
from lnn_cli.cloud.inbox import NotificationInbox
from lnn_cli.cloud.local import drive, local_runtime, run_local
from lnn_cli.cloud.runtime import PayloadTooLarge
from lnn_core import run_control
from lnn_core.aws.run_record import MESSAGE_DUE, MESSAGE_DUE_VALUE
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from lnn_core.errors import LnnInputError
from lnn_core.ml import training
from tests.integration.conftest import dataset, model_arrays

REGION = "us-east-1"
PARAMETERS = {
    "epochs": 4,
    "learning_rate": 0.5,
    "neurons": [4, 1],
    "activations": ["relu", "sigmoid"],
    "seed": 5,
    "granularity": "layer",
    "init": "he",
}


@pytest.fixture(scope="module")
def clean(stack, tmp_path_factory):
    session, outputs = stack
    data, _, _ = dataset()
    with open(tmp_path_factory.mktemp("clean") / "lambda.log", "w") as stream:
        return run_local(session, outputs, PARAMETERS, data, run_id="clean", log_stream=stream)


def test_clean_run_results_match_dynamodb_and_plain_numpy(stack, clean):
    session, outputs = stack
    results = clean.results()
    assert results["status"] == "succeeded"
    table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
    items = table.list_epochs("clean")
    assert [item["epoch"] for item in items] == [1, 2, 3, 4]
    assert results["costs"] == [item["cost"] for item in items]
    _, X, y = dataset()
    params, costs = training.train_reference(
        X, y, neurons=[4, 1], activations=["relu", "sigmoid"], learning_rate=0.5, epochs=4, init="he", seed=5
    )
    assert results["costs"] == costs  # each epoch's cost is computed before that epoch's update
    model = model_arrays(clean.model)
    assert model["W1"].shape == (4, 3) and model["b1"].shape == (4, 1) and model["W2"].shape == (1, 4)
    for name, array in params.items():
        assert np.array_equal(model[name], array), name
    assert set(results) >= {
        "run_id",
        "status",
        "epochs",
        "costs",
        "train_accuracy",
        "test_accuracy",
        "seconds",
        "invocations",
        "aws_requests",
        "s3_bytes_in",
        "s3_bytes_out",
    }
    assert results["epochs"] == 4 and results["invocations"] == 4 * 5 + 1
    assert results["deliveries"] == results["invocations"] + 1  # and the launch
    requests = results["aws_requests"]
    assert set(requests) == {"dynamodb", "s3", "sns", "lambda"}
    assert requests["lambda"] == results["invocations"]  # the launch's invoke and one per step but the last
    assert results["per_epoch"]["aws_requests"]["lambda"] == requests["lambda"] / 4
    assert results["busiest_step"]["lambda"] == 1 and results["busiest_step"]["s3"] >= 1
    assert requests["sns"] == 1 and results["s3_bytes_out"] > 0 and results["s3_bytes_in"] > 0
    assert 0.5 <= results["train_accuracy"] <= 1 and results["test_accuracy"] is not None
    [message] = clean.notifications
    assert (
        message["attributes"] == {"status": "succeeded", "message_id": "lnn-run-clean"}
        and message["body"]["final"]["epochs"] == 4
    )
    assert "succeeded" in message["subject"]


def test_a_rejected_launch_raises_the_launchers_reason(stack, log):
    session, outputs = stack
    data, _, _ = dataset()
    with pytest.raises(LnnInputError, match="learning_rate"):
        run_local(session, outputs, {**PARAMETERS, "learning_rate": 99}, data, run_id="rejected", log_stream=log)


def test_a_message_still_owed_when_the_queue_drains_is_sent_by_a_scheduled_watchdog_pass(stack, log):
    """An ended run whose message is still owed (its sender gave up its claim, or died after the commit, and its
    retries are spent) is the watchdog's on AWS: `drive` runs that scheduled pass, past the claim's lease, instead
    of returning a succeeded run without its message (and model)."""
    session, outputs = stack
    data, _, _ = dataset()
    run_local(session, outputs, PARAMETERS, data, run_id="owed", log_stream=log)
    dynamo_table = session.resource("dynamodb").Table(outputs.table)
    table = RunTable(dynamo_table, IoCounter())
    dynamo_table.update_item(
        Key={"run_id": "owed", "epoch": 0},
        UpdateExpression=f"SET notified = :no, {MESSAGE_DUE} = :due",
        ExpressionAttributeValues={":no": False, ":due": MESSAGE_DUE_VALUE},
    )
    inbox = NotificationInbox(session, outputs.topic_arn)
    try:
        runtime = local_runtime(session, outputs, log_stream=log)
        drive(runtime, table, "owed")
        messages = [message["body"] for message in inbox.read() if message["body"].get("run_id") == "owed"]
    finally:
        inbox.close()
    assert table.get_run("owed")["notified"] is True
    assert [body["status"] for body in messages] == ["succeeded"]


def test_stop_halts_at_the_next_step_with_one_message(stack, log):
    session, outputs = stack
    data, _, _ = dataset()
    table = RunTable(session.resource("dynamodb").Table(outputs.table), IoCounter())
    delivered = []

    def stop_after_five(record):
        delivered.append(record)
        if len(delivered) == 5:
            run_control.stop_run(control_ports(session, outputs), "stopped")

    result = run_local(
        session, outputs, PARAMETERS, data, run_id="stopped", log_stream=log, on_delivery=stop_after_five
    )
    assert result.status == "stopped" and table.get_run("stopped")["committed_step"] <= 5
    [message] = result.notifications
    assert (
        message["attributes"] == {"status": "stopped", "message_id": "lnn-run-stopped"}
        and message["body"]["status"] == "stopped"
    )


def control_ports(session, outputs):
    from lnn_cli.deployed_stack import DeployedStack

    return DeployedStack(session, outputs.stack_name).ports


class Probe:
    """A stand-in handler that records what it receives and fails a given number of times."""

    def __init__(self, failures: int):
        self.failures, self.calls = failures, []

    def handle(self, event, context):
        self.calls.append(
            (
                event,
                context.aws_request_id,
                context.function_name,
                context.invoked_function_arn,
                context.memory_limit_in_mb,
                context.get_remaining_time_in_millis(),
            )
        )
        if len(self.calls) <= self.failures:
            raise RuntimeError(f"failure {len(self.calls)}")
        return {"ok": True}


@pytest.mark.parametrize("concurrency", [1, 4])
def test_async_semantics_round_trip_context_retries_and_destination(stack, log, concurrency):
    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=concurrency)
    trainer = runtime.functions["trainer"]
    configuration = session.client("lambda").get_function_configuration(FunctionName=outputs.trainer_function)
    invoke_config = session.client("lambda").get_function_event_invoke_config(FunctionName=outputs.trainer_function)
    assert trainer.retry_attempts == invoke_config["MaximumRetryAttempts"]
    assert trainer.on_failure == invoke_config["DestinationConfig"]["OnFailure"]["Destination"] == outputs.topic_arn
    assert (
        trainer.environment["LNN_TABLE"] == outputs.table
        and trainer.environment["AWS_LAMBDA_FUNCTION_NAME"] == trainer.name
    )

    probe = Probe(failures=trainer.retry_attempts)  # fails every attempt but the last: succeeds in the end
    trainer.handler = probe
    runtime.invoke_async(trainer, {"pair": (1, 2), "number": 1.5})
    runtime.run()
    attempts = trainer.retry_attempts + 1
    assert len(probe.calls) == attempts
    event, request_id, name, arn, memory, remaining = probe.calls[0]
    assert event == {"pair": [1, 2], "number": 1.5}  # the JSON round trip: a tuple arrives as a list
    assert {call[1] for call in probe.calls} == {request_id}  # retries keep the request id
    assert name == outputs.trainer_function and arn == configuration["FunctionArn"]
    assert memory == configuration["MemorySize"] and 0 < remaining <= configuration["Timeout"] * 1000
    assert runtime.clock >= 60 + 120  # the retries waited 1 and 2 minutes on the delivery clock
    assert runtime.failed_events == []

    inbox = NotificationInbox(session, outputs.topic_arn)
    try:
        trainer.handler = Probe(failures=attempts)  # fails every attempt
        runtime.invoke_async(trainer, {"doomed": True})
        runtime.run()
        [record] = runtime.failed_events
        assert record["requestContext"]["condition"] == "RetriesExhausted"
        assert record["requestContext"]["approximateInvokeCount"] == attempts
        assert record["requestPayload"] == {"doomed": True} and "failure" in record["responsePayload"]["errorMessage"]
        [message] = inbox.read()
        assert message["body"]["requestContext"]["functionArn"].startswith(configuration["FunctionArn"])
    finally:
        inbox.close()


@pytest.mark.parametrize("concurrency", [1, 4])
def test_async_payload_limit(stack, log, concurrency):
    session, outputs = stack
    runtime = local_runtime(session, outputs, log_stream=log, concurrency=concurrency)
    with pytest.raises(PayloadTooLarge, match="1048576"):
        runtime.invoke_async(runtime.functions["trainer"], {"blob": "x" * 1_048_576})
    assert runtime.pending == 0


@pytest.mark.slow  # 12 s: make slow and CI run it (test_concurrency_1_keeps_the_order_of_a_seed stays in make test)
def test_a_seed_is_a_schedule(stack, log):
    session, outputs = stack
    data, _, _ = dataset()
    plan = ChaosPlan(duplicate=0.4, crash=0.3, delay=0.4, seed=99)
    first = run_local(session, outputs, PARAMETERS, data, run_id="same-1", chaos=plan, log_stream=log)
    second = run_local(session, outputs, PARAMETERS, data, run_id="same-2", chaos=plan, log_stream=log)
    assert first.chaos == second.chaos and first.chaos["faults"] > 0
    assert first.deliveries == second.deliveries


def test_a_clean_run_at_concurrency_4_is_the_clean_run(stack, clean, log):
    session, outputs = stack
    result = run_local(session, outputs, PARAMETERS, dataset()[0], run_id="clean-4", log_stream=log, concurrency=4)
    assert result.status == "succeeded" and result.costs == clean.costs
    model, reference = model_arrays(result.model), model_arrays(clean.model)
    assert all(model[name].tobytes() == reference[name].tobytes() for name in reference if name.startswith(("W", "b")))
    results, expected = result.results(), clean.results()
    for key in ("invocations", "deliveries"):
        assert results[key] == expected[key], key
    for service in ("dynamodb", "lambda", "sns"):
        assert results["aws_requests"][service] == expected["aws_requests"][service], service
    # Each container has its own warm cache, and the next step may start in another container while the one that
    # invoked it is finishing: S3 reads can only be more than with one container.
    assert results["aws_requests"]["s3"] >= expected["aws_requests"]["s3"]


def test_results_json_is_json(clean):
    assert json.loads(json.dumps(clean.results()))["costs"] == clean.costs


def test_the_files_lnn_local_writes(clean, tmp_path):
    """results.json, model.npz and cost.png of a finished run, as `lnn local` leaves them in its --out directory."""
    from lnn_cli.presentation.report import write_outputs

    written = write_outputs(tmp_path, clean.results(), clean.model)
    assert written == [tmp_path / "results.json", tmp_path / "model.npz", tmp_path / "cost.png"]
    assert json.loads(written[0].read_text()) == json.loads(json.dumps(clean.results()))
    assert written[1].read_bytes() == clean.model
    assert written[2].read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("concurrency", [1, 4])
@pytest.mark.parametrize("granularity", ["epoch", "auto"])
def test_granularities_report_the_clean_runs_costs(stack, clean, log, granularity, concurrency):
    session, outputs = stack
    data, _, _ = dataset()
    result = run_local(
        session,
        outputs,
        {**PARAMETERS, "granularity": granularity},
        data,
        run_id=f"g-{granularity}-{concurrency}",
        log_stream=log,
        concurrency=concurrency,
    )
    results = result.results()
    assert results["granularity"] == granularity and results["costs"] == clean.costs
    assert results["invocations"] < clean.results()["invocations"]  # fewer, larger steps
    assert results["aws_requests"]["s3"] < clean.results()["aws_requests"]["s3"]


@pytest.mark.parametrize("workers, granularity", [(1, "layer"), (2, "epoch")])
def test_a_float32_run_of_the_local_runtime_equals_the_float32_reference_bit_for_bit(stack, log, workers, granularity):
    session, outputs = stack
    data, X, y = dataset()
    parameters = {**PARAMETERS, "dtype": "float32", "workers": workers, "granularity": granularity, "batch_size": 16}
    result = run_local(session, outputs, parameters, data, run_id=f"float32-{workers}", log_stream=log, concurrency=2)
    results = result.results()
    assert results["status"] == "succeeded", results.get("reason")
    params, costs = training.train_reference(
        X,
        y,
        neurons=[4, 1],
        activations=["relu", "sigmoid"],
        learning_rate=0.5,
        epochs=4,
        init="he",
        seed=5,
        batch_size=16,
        workers=workers,
        dtype="float32",
    )
    assert results["costs"] == costs
    model = model_arrays(result.model)
    assert all(
        model[name].dtype == np.float32 and model[name].tobytes() == array.tobytes() for name, array in params.items()
    )
