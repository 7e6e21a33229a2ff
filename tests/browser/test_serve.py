"""`lnn serve` in a real browser: Debian's Chromium driven by Playwright against a stack deployed by cdk on moto.

A run trains through the local runtime in a background thread while the page follows it; then the page predicts
an uploaded image with the run's model and shows one clear message for each bad input. The tests skip, saying
why, where Chromium or Playwright is missing, unless LNN_REQUIRE_BROWSER=1: then they fail (.ci/run sets it, and
installs Debian's chromium), so that CI cannot pass without them.
"""

import io
import json
import os
import shutil
import threading
import time

import boto3
import numpy as np
import pytest

from lnn_cli.cloud.local import drive, local_runtime
from lnn_cli.deployed_stack import DeployedStack
from lnn_cli.main import main
from lnn_cli.web.app import percent
from lnn_core.aws.run_table import RunTable
from lnn_core.aws.sdk import IoCounter
from tests.support.web import serving

SHAPE = (8, 8, 3)
EPOCHS, EVAL_EVERY = 8, 2
TRAIN = [
    "--epochs",
    str(EPOCHS),
    "--neurons",
    "4,1",
    "--activations",
    "relu,sigmoid",
    "--learning-rate",
    "0.5",
    "--seed",
    "3",
    "--eval-every",
    str(EVAL_EVERY),
    "--granularity",
    "layer",
]
DELIVERY_PAUSE = 0.12  # seconds per delivery, so that the page sees the run while it trains
SCREENSHOT = "/tmp/lnn-serve.png"
REQUIRE_BROWSER = (
    "LNN_REQUIRE_BROWSER"  # "1": a missing Chromium or Playwright fails the tests instead of skipping them
)

pytestmark = pytest.mark.slow  # about 70 s, most of it cdk deploy: `make slow` runs it, CI runs both


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def served(deployed):
    """`lnn serve`'s app on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    with serving(DeployedStack(boto3.Session(), "LnnStack")) as url:
        yield url


def unavailable(reason: str):
    """Skip, saying why; where LNN_REQUIRE_BROWSER=1 (CI, .ci/run), fail instead: CI is not green without them."""
    if os.environ.get(REQUIRE_BROWSER) == "1":
        pytest.fail(f"{reason}; {REQUIRE_BROWSER}=1 requires the browser tests to run", pytrace=False)
    pytest.skip(f"{reason} (set {REQUIRE_BROWSER}=1 to fail instead, as CI does)")


@pytest.fixture(scope="module")
def browser():
    path = chromium_path()
    if path is None:
        unavailable("no Chromium installed (the browser tests drive Debian's `chromium`: apt-get install -y chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        unavailable("playwright is not installed (pip install -r requirements-dev.txt)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def images(rng: np.random.Generator, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Small uint8 RGB images: reddish ones (class 0, "red") and bluish ones (class 1, "blue")."""
    y = np.arange(count) % 2
    X = rng.integers(0, 90, size=(count, *SHAPE), dtype=np.uint8)
    X[y == 0, :, :, 0] += 150
    X[y == 1, :, :, 2] += 150
    return X.reshape(count, -1), y


@pytest.fixture(scope="module")
def image_data(tmp_path_factory) -> str:
    rng = np.random.default_rng(5)
    X, y = images(rng, 48)
    X_test, y_test = images(rng, 16)
    path = tmp_path_factory.mktemp("data") / "colors.npz"
    np.savez(
        path, X=X, y=y, X_test=X_test, y_test=y_test, classes=np.array(["red", "blue"]), example_shape=np.array(SHAPE)
    )
    return str(path)


def start_run(deployed, name: str, data: str, *, pause: float = 0.0):
    """`lnn start`, then the launcher's delivery; returns the local runtime holding the run's chain."""
    emulator, outputs = deployed
    assert main(["start", "--name", name, "--data", data, *TRAIN]) == 0
    session = emulator.session()

    def slowly(record):
        time.sleep(pause)

    runtime = local_runtime(session, outputs, log_stream=io.StringIO(), on_delivery=slowly if pause else None)
    event = {
        "version": "0",
        "source": "aws.s3",
        "detail-type": "Object Created",
        "region": "us-east-1",
        "detail": {"bucket": {"name": outputs.bucket}, "object": {"key": f"runs/{name}/parameters.json"}},
    }
    assert runtime.invoke("launcher", event) == {"run_id": name, "status": "running"}
    return runtime


def png(color: tuple[int, int, int], size: int = 32) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def test_follow_a_run_then_predict_in_the_browser(
    browser, deployed, served, image_data
):  # browser first: a skip costs no deploy
    from playwright.sync_api import (
        expect,  # the browser fixture has skipped if playwright is missing
    )

    emulator, outputs = deployed
    table = RunTable(emulator.session().resource("dynamodb").Table(outputs.table), IoCounter())
    start_run(deployed, "web-waiting", image_data)  # its chain is never delivered: running, no model
    runtime = start_run(deployed, "web-colors", image_data, pause=DELIVERY_PAUSE)
    trainer = threading.Thread(target=drive, args=(runtime, table, "web-colors"), daemon=True)
    trainer.start()

    page = browser.new_page(viewport={"width": 1280, "height": 860})
    page.goto(f"{served}/#run=web-colors")
    rows = page.locator("#runs tbody tr")
    rows.filter(has_text="web-waiting").wait_for()
    assert "running" in rows.filter(has_text="web-waiting").inner_text()

    # the page follows the run: points appear while it is still running, then it succeeds with every epoch drawn
    page.wait_for_function(
        """() => document.querySelector('#run-status').textContent === 'running'
                              && Number(document.querySelector('#curve').dataset.points) >= 1""",
        timeout=30_000,
    )
    page.wait_for_function("document.querySelector('#run-status').textContent === 'succeeded'", timeout=60_000)
    trainer.join(timeout=30)
    page.wait_for_function(f"document.querySelector('#curve').dataset.points === '{EPOCHS}'")
    assert page.locator("#curve").get_attribute("data-test-points") == str(EPOCHS // EVAL_EVERY)
    assert page.locator("#curve canvas").count() == 1  # drawn by uPlot
    figures = page.locator("#figures").inner_text()
    assert "train accuracy" in figures and "test accuracy" in figures and "final cost" in figures
    run = table.get_run("web-colors")
    assert percent(run["final"]["train_accuracy"]) in figures
    # the table's row follows the panel; a runs poll already in flight may show the old row until the next one
    expect(rows.filter(has_text="web-colors")).to_contain_text("succeeded", timeout=8_000)
    assert "images 8×8×3" in page.locator("#model-line").inner_text()

    # a red image, four times the model's size: resized to 8x8x3, scaled by 1/255, predicted from model.npz
    page.set_input_files("#image", files=[{"name": "red.png", "mimeType": "image/png", "buffer": png((220, 30, 40))}])
    page.click("#predict-button")
    page.locator("#prediction").wait_for()
    prediction = page.locator("#prediction").inner_text()
    assert prediction.startswith("class red (label 0), probability ")
    assert "model.npz" in page.locator("#predict-source").inner_text()
    assert page.locator("#predict-error").is_hidden()
    page.screenshot(path=SCREENSHOT, full_page=True)

    page.set_input_files("#image", files=[{"name": "blue.png", "mimeType": "image/png", "buffer": png((20, 40, 230))}])
    page.click("#predict-button")
    page.wait_for_function("document.querySelector('#prediction').textContent.startsWith('class blue')")

    def error_for(**given) -> str:
        page.set_input_files("#image", files=given.get("files", []))
        page.fill("#row", given.get("row", ""))
        page.click("#predict-button")
        message = page.locator("#predict-error")
        message.wait_for()
        assert page.locator("#prediction").is_hidden()
        text = message.inner_text()
        assert "Traceback" not in text and "\n" not in text.strip()
        return text

    not_image = [{"name": "notes.png", "mimeType": "image/png", "buffer": b"these are words, not pixels"}]
    assert "notes.png is not an image Pillow can read" in error_for(files=not_image)
    assert "the row holds 3 numbers but the model of run web-colors takes 192 features" in error_for(row="1, 2, 3")
    assert "value 2 of the row, 'two', is not a number" in error_for(row="1 two 3")
    assert "choose an image or paste a row" in error_for()

    rows.filter(has_text="web-waiting").click()
    page.wait_for_function("document.querySelector('#model-line').textContent.includes('no model yet')")
    assert (
        page.locator("#run-id").inner_text() == "web-waiting" and page.locator("#run-status").inner_text() == "running"
    )
    assert "run web-waiting is running and has no model yet" in error_for(row="1 2 3")
    page.close()


def test_api_errors_are_json(deployed, served):
    """Every error is {"error": one sentence}: an unknown run, a request for another host, an unknown page."""
    from lnn_cli.web.app import create_app

    client = create_app(DeployedStack(boto3.Session(), "LnnStack")).test_client()
    missing = client.get("/api/runs/no-such-run", base_url="http://127.0.0.1:8765")
    assert missing.status_code == 404 and "no run named 'no-such-run'" in missing.get_json()["error"]
    bad_id = client.post("/api/runs/Bad%20Id!/predict", data={"row": "1"}, base_url="http://127.0.0.1:8765")
    assert bad_id.status_code == 400 and set(bad_id.get_json()) == {"error"}
    rebound = client.get("/api/runs", base_url="http://attacker.example:8765")
    assert rebound.status_code == 400 and "127.0.0.1 and localhost only" in rebound.get_json()["error"]
    unknown = client.get("/nothing-here", base_url="http://localhost:8765")
    assert unknown.status_code == 404 and "Not Found" in unknown.get_json()["error"]
    listed = client.get("/api/runs", base_url="http://localhost:8765").get_json()
    assert listed["stack"] == "LnnStack" and isinstance(listed["runs"], list)
    page = client.get("/", base_url="http://localhost:8765")
    assert b"/static/lnn.js" in page.data and b"http" not in page.data.split(b"<body", 1)[1].replace(
        b"http://www.w3.org", b""
    )
    assert json.loads(json.dumps(listed))  # plain JSON, no Decimals
