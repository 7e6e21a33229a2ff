"""The bounds of a run's steps: the step bound stops a runaway run, and an auto step trains whole epochs up to its cap
or until the invocation's remaining time would not leave room for its commit."""

import time

from tests.conftest import QueueInvoker
from tests.integration.test_run_control import PARAMETERS, deliver_all, launch


def test_step_bound_stops_a_runaway_run(aws):
    queue = QueueInvoker()
    trainer = launch(aws, queue)
    table = trainer.ports.table
    table._table.update_item(
        Key={"run_id": "r1", "epoch": 0}, UpdateExpression="SET step_bound = :b", ExpressionAttributeValues={":b": 2}
    )
    outcomes = deliver_all(trainer, queue)
    assert outcomes == ["committed", "committed", "failed"]
    assert "exceeds the run's bound" in table.get_run("r1")["reason"]
    assert len(aws.messages()) == 1


class Context:
    def __init__(self, remaining_seconds):
        self.aws_request_id, self.remaining = "request-1", remaining_seconds

    def get_remaining_time_in_millis(self):
        return int(self.remaining * 1000)


class EpochClock:
    """The step bodies' `time`: its `monotonic` moves only when an epoch is trained, by `seconds` per epoch (the rest
    of the module is the real one)."""

    def __init__(self, seconds: float):
        self.now, self.seconds, self.epochs = 1_000.0, seconds, 0

    def monotonic(self) -> float:
        return self.now

    def __getattr__(self, name):
        return getattr(time, name)

    def train_epoch(self, train_epoch):
        def timed(*args, **kwargs):
            self.epochs += 1
            self.now += self.seconds
            return train_epoch(*args, **kwargs)

        return timed


def test_auto_steps_are_bounded_in_epochs_and_leave_time_to_commit(aws, monkeypatch):
    """An auto step trains whole epochs until its cap, or until one more epoch (budgeted as two of its slowest) and
    the commit of its items would pass the invocation's remaining time less `AUTO_SAFETY_SECONDS`. Epochs take a
    known time on a fake clock, so the epochs of each step are computed from the budget, not measured."""
    from lnn_core.protocol import results
    from lnn_core.protocol import steps as engine

    clock = EpochClock(seconds=0.02)
    monkeypatch.setattr(engine, "time", clock)
    monkeypatch.setattr(engine.training, "train_epoch", clock.train_epoch(engine.training.train_epoch))
    units = []
    epoch_write_units = engine.epoch_write_units
    monkeypatch.setattr(engine, "epoch_write_units", lambda item: units.append(epoch_write_units(item)) or units[-1])

    queue = QueueInvoker()
    tiny = {**PARAMETERS, "epochs": engine.AUTO_MAX_EPOCHS_PER_STEP + 100, "granularity": "auto"}
    trainer = launch(aws, queue, parameters=tiny)
    trainer.handle(queue.events.popleft(), Context(remaining_seconds=3600))  # 2,500 epochs take 50 s of the 3,590
    assert clock.epochs == engine.AUTO_MAX_EPOCHS_PER_STEP
    assert queue.events[0]["epoch"] == engine.AUTO_MAX_EPOCHS_PER_STEP + 1  # the cap, not the clock, ended the step

    event = queue.events.popleft()
    budget = 0.5  # seconds left for epochs and the commit, once AUTO_SAFETY_SECONDS is set aside
    clock.epochs = 0
    assert (
        trainer.handle(event, Context(remaining_seconds=engine.AUTO_SAFETY_SECONDS + budget))["outcome"] == "committed"
    )
    per_epoch = units[-1]  # the write units of the two items an epoch is stored as
    assert len(per_epoch) == 2

    def fits(epochs):  # after `epochs`, one more (budgeted as two) and the commit of epochs + 1 items still fit
        return epochs * clock.seconds + 2 * clock.seconds + results.commit_seconds(epochs + 1, per_epoch) <= budget

    expected = 1
    while fits(expected):
        expected += 1
    assert 1 < expected < engine.AUTO_MAX_EPOCHS_PER_STEP  # the budget, not the cap, ends this step
    assert clock.epochs == expected  # exactly the epochs the budget admits: one fewer wastes it, one more overruns it
    assert expected * clock.seconds + results.commit_seconds(expected, per_epoch) <= budget  # computed and committed
    assert queue.events[0]["epoch"] == event["epoch"] + expected  # within the invocation, and the chain goes on
