"""A sweep on the page of `lnn serve`, in Chromium: its trials ranked (the best first and marked), the overlaid cost
curves, a queued trial, and a trial opened from its row. The sweep's record and its trials' runs are written as
`lnn sweep start` and the functions write them (tests/browser/test_page.py's runs). Screenshot: /tmp/lnn-shots/."""

import json
from dataclasses import asdict

from lnn_cli.sweeps.spec import parse_spec
from lnn_core.sweep.record import SweepRecord, sweep_key
from tests.browser.test_page import SHOTS, served, stack, write_run  # noqa: F401  (fixtures)
from tests.browser.test_serve import browser  # noqa: F401  (the Chromium fixture)

BASE = {
    "epochs": 40,
    "learning_rate": 0.3,
    "neurons": [20, 7, 5, 1],
    "activations": ["relu", "relu", "relu", "sigmoid"],
    "validation_split": 0.2,
}


def write_sweep(stack):  # noqa: F811
    spec = parse_spec({"base": BASE, "parameters": {"optimizer": ["gd", "adam"]}, "seeds": [1, 2]}, source="s")
    record = SweepRecord.new("pagesweep", spec, spec.generate("pagesweep"), b"data", 2)
    stack.session.client("s3").put_object(
        Bucket=stack.outputs.bucket, Key=sweep_key("pagesweep"), Body=json.dumps(asdict(record)).encode()
    )
    for index, (accuracy, ran) in enumerate(((0.71, 40), (0.93, 40), (0.55, 25)), start=1):
        run_id = f"pagesweep-t00{index}"
        status = "succeeded" if ran == 40 else "running"
        final = (
            None
            if status == "running"
            else {
                "cost": 0.1 * index,
                "train_accuracy": 0.9,
                "validation_accuracy": accuracy,
                "test_accuracy": accuracy - 0.05,
                "epochs": 40,
                "seconds": 12.0,
                "invocations": 41,
                "model_key": f"runs/{run_id}/model.npz",
                "warnings": [
                    "the model predicts class 0 for all 167 training examples, which have 2 classes; try another seed."
                ]
                if index == 1
                else [],
            }
        )
        write_run(
            stack, run_id, status=status, epochs=40, ran=ran, extra={"model_epoch": 40} if final else None, final=final
        )
    return record  # the fourth trial is queued: no run yet


def test_a_sweep_as_the_page_shows_it(browser, stack, served):  # noqa: F811
    write_sweep(stack)
    page = browser.new_page(viewport={"width": 1280, "height": 1100})
    page.goto(f"{served}/")
    page.wait_for_selector("#sweep-list a.sweep-link")
    assert page.locator("#sweep-list a").all_inner_texts() == ["pagesweep"]
    page.click("#sweep-list a")
    page.wait_for_function("document.querySelectorAll('#sweep-trials tbody tr').length === 4")
    rows = page.locator("#sweep-trials tbody tr")
    assert [rows.nth(i).locator("td").first.inner_text() for i in range(4)] == [
        "pagesweep-t002",
        "pagesweep-t001",
        "pagesweep-t003",
        "pagesweep-t004",
    ]  # by validation accuracy; then the rest
    assert "best" in rows.nth(0).get_attribute("class")
    headers = page.locator("#sweep-trials thead th").all_inner_texts()
    assert headers[:6] == ["trial", "optimizer", "seed", "status", "epochs", "cost"]
    assert "validation accuracy" in headers and "test accuracy" in headers
    assert rows.nth(0).inner_text().split("\t")[6] == "93.0 %"
    assert "⚠ 1 collapsed" in rows.nth(1).inner_text()  # the collapsed trial is marked, as `lnn sweep status` marks it
    assert rows.nth(3).locator("td").nth(3).inner_text() == "queued"
    line = page.locator("#sweep-line").inner_text()
    assert line.startswith("4 trials, in progress (2 succeeded, 1 running, 1 queued)")
    assert "best pagesweep-t002" in line
    page.wait_for_function("document.querySelector('#sweep-curves canvas') !== null")
    assert page.locator("#sweep-curves").get_attribute("data-series") == "3"  # every trial that ran an epoch
    SHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SHOTS / "sweep.png"), full_page=True)
    rows.nth(1).click()  # open a trial: the run panel shows it
    page.wait_for_function("document.querySelector('#run-id').textContent === 'pagesweep-t001'")
    page.wait_for_function("document.querySelector('#run-status').textContent === 'succeeded'")
    page.close()


def test_an_unknown_sweep_is_one_sentence(browser, stack, served):  # noqa: F811
    page = browser.new_page()
    page.goto(f"{served}/#sweep=nosuch")
    page.wait_for_function("!document.querySelector('#sweep-error').hidden")
    assert page.locator("#sweep-error").inner_text().startswith("no sweep named 'nosuch' in stack LnnStack")
    page.close()
