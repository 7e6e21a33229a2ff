"""The page of `lnn serve` in Chromium (Playwright) over run records written straight into the table.

The app runs on in-process moto (the `aws` fixture's bucket, table and topic, and a CloudFormation stack that names
them in its outputs, as `lnn_cli.deployed_stack.DeployedStack` reads a deployed stack's). The runs are written as the
functions write them: a record at epoch 0 and one item per epoch, with weights. The tests check what the page draws
and says (the curve over the epochs that ran, the log scale, percentages, warnings, dollars, the model's epoch, a
stopped run, the predictor's name), that it polls only the epochs it lacks, and that the runs table fits a 390 px
phone and a 1280 px screen. Screenshots go to /tmp/lnn-shots/. Skipped, saying why, without Chromium or Playwright
(failed instead where LNN_REQUIRE_BROWSER=1).
"""

import io
import json
from pathlib import Path

import numpy as np
import pytest

from lnn_cli.deployed_stack import DeployedStack
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter, now
from lnn_core.ml import network
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.results import epoch_item
from tests.browser.test_serve import browser  # noqa: F401  (the Chromium fixture)
from tests.support.web import serving

SHOTS = Path("/tmp/lnn-shots")
PREDICTOR = "lnn-test-PredictLambda-ABC123"
WARNINGS = [
    "The training cost stayed within 2 % of the class prior's: the model learned nothing; try another seed or "
    "a smaller learning rate.",
    "Layer 1 has 12 of its 20 units dead (0 for every example); try `lecun` init or adam.",
]
COST = {
    "dollars": 0.000187,
    "label": "AWS estimate (us-east-1, arm64) for the locally measured durations",
    "lambda_gb_seconds": 11.2,
    "requests": {"lambda": 301},
    "s3_bytes": 1000,
    "price_table": "aws-2026-11",
}


def stack_template(outputs: dict[str, str]) -> str:
    return json.dumps(
        {
            "Resources": {"Marker": {"Type": "AWS::SNS::Topic"}},
            "Outputs": {key: {"Value": value} for key, value in outputs.items()},
        }
    )


@pytest.fixture
def stack(aws):
    """A stack whose outputs name the `aws` fixture's resources (and a PredictLambda), read as `lnn serve` reads one."""
    outputs = {
        "BucketName": aws.bucket,
        "TableName": "lnn-results",
        "TopicArn": aws.topic_arn,
        "TrainerFunctionName": "lnn-trainer",
        "LaunchFunctionName": "lnn-launcher",
        "WatchdogFunctionName": "lnn-watchdog",
        "PredictFunctionName": PREDICTOR,
    }
    aws.session.client("cloudformation").create_stack(StackName="LnnStack", TemplateBody=stack_template(outputs))
    return DeployedStack(aws.session, "LnnStack")


@pytest.fixture
def served(stack):
    with serving(stack) as url:
        yield url


def write_run(
    stack: DeployedStack,
    run_id: str,
    *,
    status: str,
    epochs: int,
    ran: int,
    eval_every: int = 0,
    extra: dict | None = None,
    final: dict | None = None,
) -> RunTable:
    """A run of a 30-20-7-5-1 network with `ran` of its `epochs` committed; a model.npz when `final` names one."""
    table = RunTable(stack.session.resource("dynamodb").Table("lnn-results"), IoCounter())
    config = TrainingConfig.from_parameters(
        {
            "epochs": epochs,
            "learning_rate": 0.3,
            "neurons": [20, 7, 5, 1],
            "activations": ["relu", "relu", "relu", "sigmoid"],
            "seed": 1,
            "eval_every": eval_every,
            "data": f"runs/{run_id}/data.npz",
        }
    )
    table.create_run(
        run_id,
        {
            "status": "running",
            "config": config.to_parameters(),
            "committed_step": 0,
            "progress_epoch": 0,
            "invocations": 0,
            "created_at": now(),
        },
        token="test",
    )
    params = network.init_params([30, *config.neurons], "he", 1)
    items = [
        epoch_item(
            config,
            epoch,
            0.7 * 0.9**epoch + 0.01,
            params,
            now(),
            {"test_cost": 0.8 * 0.9**epoch + 0.02, "test_accuracy": 0.9}
            if eval_every and epoch % eval_every == 0
            else None,
        )
        for epoch in range(1, ran + 1)
    ]
    assert table.put_epoch_items(run_id, items, step=1)
    fields = {"progress_epoch": ran, "last_cost": items[-1]["cost"], **(extra or {})}
    if final is not None:
        fields["final"] = final
        buffer = io.BytesIO()
        np.savez(buffer, **params, activations=np.array(list(config.activations)))
        stack.session.client("s3").put_object(
            Bucket=stack.outputs.bucket, Key=final["model_key"], Body=buffer.getvalue()
        )
    assert table.transition(run_id, seen_step=0, new_step=ran + 1, fields={**fields, "status": status})
    return table


def finished_run(stack, run_id="page-learned"):
    """A succeeded run that stopped early: 30 of 100 epochs, test figures every 5, warnings, dollars, its model."""
    return write_run(
        stack,
        run_id,
        status="succeeded",
        epochs=100,
        ran=30,
        eval_every=5,
        extra={"model_epoch": 30},
        final={
            "cost": 0.03,
            "train_accuracy": 0.99996,
            "test_accuracy": 1.0,
            "epochs": 30,
            "seconds": 42.0,
            "invocations": 31,
            "model_key": f"runs/{run_id}/model.npz",
            "stopped_early_at": 30,
            "warnings": WARNINGS,
        },
    )


def with_dollars(route):
    """The run's JSON with the `cost` that `pricing.run_cost` adds to it (the `cost` change of issue 17, not here)."""
    response = route.fetch()
    body = response.json()
    route.fulfill(response=response, json={**body, "cost": COST} if "curve" in body else body)


def open_run(browser, served, run_id: str, width: int = 1280):  # noqa: F811
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.route("**/api/runs/page-learned*", with_dollars)
    page.goto(f"{served}/#run={run_id}")
    page.wait_for_function("document.querySelector('#run-status').textContent !== ''")
    return page


def test_a_finished_run_as_the_page_shows_it(browser, stack, served):  # noqa: F811
    finished_run(stack)
    page = open_run(browser, served, "page-learned")
    curve = page.locator("#curve")
    page.wait_for_function("document.querySelector('#curve canvas') !== null")
    assert curve.get_attribute("data-points") == "30" and curve.get_attribute("data-test-points") == "6"
    # the x axis spans the epochs that ran (1..30), not the 100 configured
    assert float(curve.get_attribute("data-x-min")) == 1 and float(curve.get_attribute("data-x-max")) == 30
    figures = page.locator("#figures").inner_text()
    assert "99.996 %" in figures and "100 %" in figures and "100.0%" not in figures
    warnings = page.locator("#run-warnings p")
    assert warnings.all_inner_texts() == WARNINGS and page.locator("#run-warnings").is_visible()
    assert page.locator("#run-cost").inner_text() == f"$0.000187 — {COST['label']}"
    assert page.locator("#model-line").inner_text().startswith("model from epoch 30: 30 features")
    predictor = page.locator("#predictor")
    assert predictor.inner_text() == "PredictLambda (deployed)" and PREDICTOR in predictor.get_attribute("title")
    assert PREDICTOR not in page.locator("#run-panel").inner_text()

    assert page.evaluate("chart.plot.scales.y.distr") == 1
    page.click("#log-scale")
    assert page.evaluate("chart.plot.scales.y.distr") == 3  # uPlot's logarithmic scale
    assert page.locator("#curve").get_attribute("data-points") == "30"
    page.close()


def test_a_stopped_run_and_the_loading_state(browser, stack, served):  # noqa: F811
    write_run(
        stack,
        "page-stopped",
        status="stopped",
        epochs=50,
        ran=12,
        extra={"model_epoch": 12, "reason": "stopped by request"},
        final={
            "cost": 0.2,
            "train_accuracy": 0.875,
            "epochs": 12,
            "seconds": 9.0,
            "invocations": 13,
            "model_key": "runs/page-stopped/model.npz",
        },
    )
    page = open_run(browser, served, "page-stopped")
    assert page.locator("#run-status").inner_text() == "stopped"
    line = page.locator("#run-line").inner_text()
    assert "stopped after epoch 12 of 50" in line and "reason: stopped by request" in line
    assert page.locator("#model-line").inner_text().startswith("model from epoch 12")
    assert page.locator("#run-warnings").is_hidden() and page.locator("#run-cost").is_hidden()
    # selecting a run shows "loading…" until its first answer
    assert page.evaluate("select('page-stopped'), !document.querySelector('#run-loading').hidden")
    page.wait_for_function("document.querySelector('#run-loading').hidden")
    page.close()


def test_the_page_polls_only_the_epochs_it_lacks(browser, stack, served):  # noqa: F811
    table = write_run(stack, "page-live", status="running", epochs=20, ran=3)
    asked = []
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.on("request", lambda request: asked.append(request.url) if "/api/runs/page-live" in request.url else None)
    page.goto(f"{served}/#run=page-live")
    page.wait_for_function("document.querySelector('#curve').dataset.points === '3'")
    config = TrainingConfig.from_parameters({**table.get_run("page-live")["config"]})
    params = network.init_params([30, 20, 7, 5, 1], "he", 1)
    more = [epoch_item(config, epoch, 0.1, params, now()) for epoch in (4, 5)]
    assert table.put_epoch_items("page-live", more, step=5)  # write_run committed step 4
    assert table.transition("page-live", seen_step=4, new_step=5, fields={"progress_epoch": 5})
    page.wait_for_function("document.querySelector('#curve').dataset.points === '5'")
    assert asked[0].endswith("?after=0") and any(url.endswith("?after=3") for url in asked)
    assert not any(url.endswith("?after=0") for url in asked[1:])
    page.close()


@pytest.mark.parametrize("width", [390, 1280])
def test_the_runs_table_fits_the_screen(browser, stack, served, width):  # noqa: F811
    finished_run(stack)
    for index in range(3):
        write_run(stack, f"run-20261205-0137{index:02d}-a1b2c{index}", status="running", epochs=1000, ran=2)
    page = open_run(browser, served, "page-learned", width)
    page.locator("#runs tbody tr").nth(3).wait_for()
    fits = page.evaluate("""() => {
        const table = document.querySelector('#runs'), panel = document.querySelector('#runs-panel');
        const clipped = [...table.querySelectorAll('td, th')].filter((cell) => cell.offsetParent !== null
            && (cell.scrollWidth > cell.clientWidth + 1
                || cell.getBoundingClientRect().right > panel.getBoundingClientRect().right));
        return {table: table.scrollWidth, panel: panel.clientWidth, page: document.documentElement.scrollWidth,
                clipped: clipped.map((cell) => cell.textContent)};
    }""")
    assert fits["table"] <= fits["panel"] and fits["page"] <= width and fits["clipped"] == [], fits
    created = page.locator("#runs tbody tr").first.locator("td").nth(4)
    assert created.is_visible() and created.inner_text()
    page.wait_for_function("document.querySelector('#curve canvas') !== null")
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / f"page-{width}.png"), full_page=True)
    page.close()
