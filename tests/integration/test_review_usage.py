"""Adversarial review of issue 17's usage ADD: the meter must never turn a clean refusal into a crash."""

import pytest

from lnn_core.handlers import build_launcher
from tests.conftest import QueueInvoker


@pytest.mark.parametrize("detail", [{"object": "runs/r1/parameters.json"}, {"object": ["x"]}, {"object": 7}])
def test_a_malformed_upload_event_is_rejected_not_raised(aws, detail):
    """`_named_run` (the launcher's `finally`) calls .get on detail["object"] when it is not a dict: an
    AttributeError escapes the `finally`, so a launch that `_handle` had rejected in one line raises instead, and
    Lambda retries it (twice, then the dead-letter queue)."""
    launcher = build_launcher(session=aws.session, invoker=QueueInvoker())
    outcome = launcher.handle({"source": "aws.s3", "detail-type": "Object Created", "detail": detail})
    assert outcome["status"] == "rejected"
