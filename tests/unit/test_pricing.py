"""The dollar estimate (`lnn_core.aws.pricing`) against hand computations, and its display by every command."""

import io
import json
from types import SimpleNamespace

import pytest
from rich.console import Console

from lnn_core.aws import pricing
from lnn_core.aws.codec import item_write_units
from lnn_core.protocol import end_message

# 3 deliveries of 1,234 ms at 1,769 MB; 20 DynamoDB requests (14 writes of the run record, 6 reads), epoch items of
# 5 write units in transactions; 9 S3 requests (4 GETs and HEADs, 2 deletes, 3 PUTs), 2 invokes, 1 publish.
USAGE = {
    "usage_deliveries": 3,
    "usage_mb_ms": 3 * 1234 * 1769,
    "usage_requests_dynamodb": 20,
    "usage_dynamodb_writes": 14,
    "usage_dynamodb_item_units": 5,
    "usage_requests_s3": 9,
    "usage_s3_reads": 4,
    "usage_s3_deletes": 2,
    "usage_requests_lambda": 2,
    "usage_requests_sns": 1,
    "usage_s3_bytes": 10_000,
}


def a_run(**fields):
    """A run record of 3 write units without `fields` (2,300 bytes of padding, its usage and the rest under 3 KB)."""
    run = {
        "run_id": "r1",
        "status": "succeeded",
        "config": {"epochs": 3, "granularity": "auto"},
        "progress_epoch": 3,
        "created_at": "2026-12-05T01:00:00.000Z",
        "pad": "x" * 2300,
        **USAGE,
        **fields,
    }
    return run


def test_run_cost_is_the_hand_computation():
    assert item_write_units(a_run()) == 3  # the premise: each write of the record costs 3 units
    cost = pricing.run_cost(a_run())
    gb_seconds = 6_548_838 / 1024 / 1000  # 3 x 1,234 ms x 1,769 MB = 6,548,838 MB-ms = 6.3953 GB-s
    lambda_dollars = gb_seconds * 0.0000133334 + 3 * 0.20e-6  # arm64, us-east-1; a request per delivery
    write_units = 14 * 3 + 2 * 5  # the record's 3 units a write; the items' units twice (transactions)
    read_units = 6 * 1  # a strongly consistent read of a 3 KB record: 1 unit (4 KB each)
    dynamodb_dollars = write_units * 0.625e-6 + read_units * 0.125e-6
    s3_dollars = 3 * 0.005 / 1000 + 4 * 0.0004 / 1000  # PUTs and GETs; deletes and in-region transfer free
    sns_dollars = 1 * 0.50e-6
    assert cost["lambda_gb_seconds"] == pytest.approx(6.395349609375, abs=1e-12)
    assert cost["dollars_by_service"] == pytest.approx(
        {"lambda": lambda_dollars, "dynamodb": dynamodb_dollars, "s3": s3_dollars, "sns": sns_dollars}, abs=1e-15
    )
    # in millionths of a dollar: Lambda 6.3953496 x 13.3334 + 0.6 = 85.8718; DynamoDB 52 x 0.625 + 6 x 0.125 = 33.25;
    # S3 3 x 5 + 4 x 0.4 = 16.6; SNS 0.5: 136.2218 in all
    assert cost["dollars"] == pytest.approx(136.2218e-6, abs=1e-10)
    assert cost["dollars"] == pytest.approx(lambda_dollars + dynamodb_dollars + s3_dollars + sns_dollars, abs=1e-15)
    assert cost["requests"] == {"dynamodb": 20, "s3": 9, "lambda": 2, "sns": 1}
    assert cost["dynamodb_units"] == {"write": 52, "read": 6}
    assert cost["s3_bytes"] == 10_000 and cost["deliveries"] == 3
    assert cost["usage"] == {key[len("usage_") :]: value for key, value in USAGE.items()}
    assert cost["price_table"] == "us-east-1-arm64"
    assert cost["label"] == "AWS estimate for the measured usage, us-east-1 arm64 list prices of 2026-12-05"


def test_other_tables_and_the_local_label():
    x86 = pricing.run_cost(a_run(), table="us-east-1-x86_64")
    arm = pricing.run_cost(a_run())
    assert x86["dollars_by_service"]["lambda"] - arm["dollars_by_service"]["lambda"] == pytest.approx(
        6.395349609375 * (0.0000166667 - 0.0000133334), abs=1e-15
    )
    ireland = pricing.run_cost(a_run(), table="eu-west-1")  # a bare region: its arm64 table
    assert ireland["price_table"] == "eu-west-1-arm64"
    assert ireland["dollars_by_service"]["dynamodb"] == pytest.approx(52 * 0.7068e-6 + 6 * 0.1415e-6, abs=1e-15)
    local = pricing.run_cost(a_run(), local=True)
    assert (
        local["label"].startswith("AWS estimate for the locally measured usage (moto)")
        and local["dollars"] == arm["dollars"]
    )
    with pytest.raises(ValueError, match="no price table 'mars-1'; known: us-east-1-arm64"):
        pricing.run_cost(a_run(), table="mars-1")


def test_a_run_without_usage_has_no_estimate():
    run = {key: value for key, value in a_run().items() if not key.startswith("usage_")}
    assert pricing.run_cost(run) is None
    assert pricing.cost_text(None) == "no usage recorded (a run of an earlier release)"


def test_cost_text_is_one_line_with_the_dollars():
    text = pricing.cost_text(pricing.run_cost(a_run()))
    assert text.startswith("$0.000136 (6.395 Lambda GB-s, 3 deliveries; AWS estimate for the measured usage, ")
    assert "\n" not in text


# ---- the display: status, results, runs, lnn local's summary, the SNS message, the web app's JSON -------------


class FakeTable:
    def __init__(self, run):
        self._run = run

    def get_run(self, run_id):
        return self._run

    def epoch_figures(self, run, *, after=0, attributes=None):
        return [
            {"epoch": epoch, "cost": 0.5 / epoch, "learning_rate": 0.1, "finished_at": "t"}
            for epoch in (1, 2, 3)
            if epoch > after
        ]

    def list_runs(self):
        return [self._run]


def fake_stack(run):
    stack = SimpleNamespace(table=FakeTable(run), outputs=SimpleNamespace(stack_name="LnnStack", bucket="b"))
    stack.run = lambda run_id: run
    return stack


def shown(command, run, monkeypatch, **arguments) -> str:
    from lnn_cli import run_commands

    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    out = io.StringIO()
    args = SimpleNamespace(
        run_id="r1", follow=False, csv=False, weights=False, plot=None, prices=pricing.DEFAULT_PRICES
    )
    vars(args).update(arguments)
    getattr(run_commands, command)(args, fake_stack(run), Console(file=out, width=300))
    return out.getvalue()


def test_status_and_results_show_the_estimate(monkeypatch):
    run = a_run(
        final={"cost": 0.1, "seconds": 2.0, "invocations": 3, "model_key": "runs/r1/model.npz"},
        committed_step=3,
        step_bound=3,
        last_cost=0.1,
    )
    line = f"AWS cost: {pricing.cost_text(pricing.run_cost(run))}"
    assert line in shown("command_status", run, monkeypatch)
    assert line in shown("command_results", run, monkeypatch)
    ireland = shown("command_status", run, monkeypatch, prices="eu-west-1-arm64")
    assert "eu-west-1 arm64 list prices" in ireland


def test_runs_has_a_dollar_column(monkeypatch):
    run = a_run(last_cost=0.1)
    text = shown("command_runs", run, monkeypatch)
    assert "AWS $" in text and f"{pricing.run_cost(run)['dollars']:.6f}" in text
    assert "us-east-1 arm64 list prices of 2026-12-05" in text
    old = {key: value for key, value in run.items() if not key.startswith("usage_")}
    assert "AWS $" in shown("command_runs", old, monkeypatch)  # a run of an earlier release: "-", not an error


def test_on_the_local_stack_the_label_says_so(monkeypatch):
    from lnn_cli import run_commands

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    assert "locally measured usage" in run_commands.run_cost(a_run())["label"]


def test_local_summary_and_the_message_and_the_web_json():
    from lnn_cli.presentation.report import summary_table
    from lnn_cli.web.app import summary

    run = a_run()
    cost = pricing.run_cost(run, local=True)
    results = {
        "run_id": "r1",
        "status": "succeeded",
        "epochs": 3,
        "costs": [0.3, 0.2, 0.1],
        "seconds": 1.0,
        "invocations": 3,
        "deliveries": 4,
        "aws_requests": {"dynamodb": 20},
        "s3_bytes_in": 1,
        "s3_bytes_out": 2,
        "aws_cost": json.loads(json.dumps(cost)),
    }  # as results.json holds it
    out = io.StringIO()
    Console(file=out, width=300).print(summary_table(results))
    assert pricing.cost_text(cost) in out.getvalue()
    assert end_message.message(run)["aws_cost"] == pricing.cost_text(pricing.run_cost(run))
    assert summary(run)["cost"] == pricing.run_cost(run)
