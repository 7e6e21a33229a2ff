"""Adversarial review of issue 17's usage ADD: the meter must never turn a clean refusal into a crash."""

import pytest

from lnn_core.handlers import build_launcher
from tests.conftest import QueueInvoker


@pytest.mark.parametrize("detail", [{"object": "runs/r1/parameters.json"}, {"object": ["x"]}, {"object": 7}])
def test_a_malformed_upload_event_is_rejected_not_raised(aws, detail):
    """detail["object"] not a dict: `_parameters_from_upload` (pre-existing, launcher.py:244) calls .get on it and
    raises AttributeError instead of a one-line rejection; the new `_named_run` in the usage `finally` repeats the
    same .get, so fixing only the first still raises from the `finally`. Lambda retries (twice, then the DLQ)."""
    launcher = build_launcher(session=aws.session, invoker=QueueInvoker())
    outcome = launcher.handle({"source": "aws.s3", "detail-type": "Object Created", "detail": detail})
    assert outcome["status"] == "rejected"
