"""The simulation tests' shared fixture."""

import pytest

from lnn_cli.simulate.search import runner


@pytest.fixture
def world():
    """One in-process AWS for the test's schedules, closed after it (other tests start their own mock_aws)."""
    runner.world()
    yield
    runner.close_world()
