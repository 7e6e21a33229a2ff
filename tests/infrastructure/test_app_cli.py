"""app.py and the CDK CLI: a bad context value stops synth with exit status 2 and just the message."""

import json
import os
import subprocess
import sys

import pytest

from tests.infrastructure.conftest import PROJECT_DIR

CDK = PROJECT_DIR / "node_modules" / ".bin" / "cdk"


def run_app(tmp_path, context: dict) -> subprocess.CompletedProcess:
    environment = {**os.environ, "CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "app.py"], cwd=PROJECT_DIR, env=environment, capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    ("context", "message"),
    [
        (
            {"memory_size": "abc"},
            "Context parameter 'memory_size' must be an integer from 128 to 10240 (MB); "
            "got 'abc'. Fix: cdk synth -c memory_size=1024",
        ),
        (
            {"architecture": "arm"},
            "Context parameter 'architecture' must be one of arm64, x86_64; got 'arm'. "
            "Fix: cdk synth -c architecture=x86_64",
        ),
    ],
)
def test_app_exits_2_with_only_the_message(tmp_path, context, message):
    result = run_app(tmp_path, context)
    assert (result.returncode, result.stderr, result.stdout) == (2, message + "\n", "")


@pytest.mark.slow  # two whole syntheses; test_settings checks the warning and when it is given in a millisecond
def test_synth_without_an_email_warns_in_exactly_one_line(tmp_path):
    result = run_app(tmp_path, {"aws:cdk:bundling-stacks": []})
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "notification_email" in line]
    assert lines == [
        "Warning: no notification_email: run results, failed events and alarms reach the SNS topic, but nobody "
        "is subscribed to it. Fix: cdk deploy -c notification_email=you@example.com"
    ]
    with_email = run_app(tmp_path, {"aws:cdk:bundling-stacks": [], "notification_email": "ops@example.com"})
    assert with_email.returncode == 0, with_email.stderr
    assert "notification_email" not in with_email.stderr


def test_the_cli_shows_the_message_of_a_bad_c_value(tmp_path):
    result = subprocess.run(
        [str(CDK), "synth", "--quiet", "-o", str(tmp_path), "-c", "timeout=0"],
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert "Context parameter 'timeout' must be an integer from 1 to 900 (seconds); got '0'." in result.stderr
    assert "Traceback" not in result.stderr
