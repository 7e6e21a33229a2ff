"""The simulation tests' shared fixture."""

import pytest

from lnn_cli.simulate.search import runner


@pytest.fixture
def world():
    """One in-process AWS for the test's schedules, closed after it (other tests start their own mock_aws)."""
    runner.world()
    yield
    runner.close_world()


@pytest.fixture
def mark_started_without_condition(monkeypatch):
    """A mutant of the protocol: `mark_started` whose condition always holds, so that a twin of a committed step
    starts its body again (the fence invariant's case)."""
    from lnn_core.aws.run_table import RunTable

    def mark_started(self, run_id, step, *, at):
        return self._conditional_update(
            run_id,
            "SET started_step = :step, heartbeat_at = :at",
            "#status = :running OR #status <> :running",
            {":step": step, ":at": at, ":running": "running"},
            status=True,
        )

    monkeypatch.setattr(RunTable, "mark_started", mark_started)
