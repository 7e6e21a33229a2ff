"""A run's progress as `lnn status`, `lnn local` and `lnn up` show it: the time elapsed and left, and plain lines
when the output is a pipe (rich's bar prints nothing there until the end)."""

import os
import time
from argparse import Namespace
from types import SimpleNamespace

import pytest
from rich.console import Console

from lnn_cli import run_commands
from lnn_cli.presentation import progress
from lnn_cli.presentation.progress import (
    RunProgress,
    run_progress,
    run_timing,
    timing_text,
    waiting,
)

NOW = 1_800_000_000.0


def record(**fields):
    return {
        "run_id": "r1",
        "status": "running",
        "config": {"epochs": 100, "granularity": "layer"},
        "progress_epoch": 25,
        "committed_step": 125,
        "step_bound": 501,
        "last_cost": 0.5,
        "created_epoch_seconds": NOW - 100,
        **fields,
    }


def test_elapsed_and_time_left():
    assert run_timing(record(), now=NOW) == (100.0, 300.0)  # 25 epochs in 100 s: 75 more take 300 s
    assert timing_text(record(), now=NOW) == "elapsed 0:01:40, about 0:05:00 left"
    assert run_timing(record(progress_epoch=0), now=NOW) == (100.0, None)  # no pace yet
    ended = record(
        status="succeeded",
        progress_epoch=100,
        finished_at="2027-01-15T08:01:40.000Z",
        created_epoch_seconds=1_800_000_000 - 3600,
    )  # 2027-01-15T08:00:00Z is 1,800,000,000
    assert timing_text(ended, now=NOW + 10_000) == "elapsed 1:01:40"  # to its finish, not to now
    assert timing_text({"status": "running"}) == ""  # an old record without its launch time


def test_status_without_follow_is_a_line_with_the_epoch_cost_and_time_and_one_with_dollars(monkeypatch):
    monkeypatch.setattr(progress.time, "time", lambda: NOW)
    console = Console(record=True, width=300)
    stack = SimpleNamespace(run=lambda run_id: record())
    assert (
        run_commands.command_status(Namespace(run_id="r1", follow=False, prices="us-east-1-arm64"), stack, console) == 0
    )
    shown = console.export_text().strip().splitlines()
    assert shown == [
        "run r1: running, epoch 25/100, step 125/501, granularity layer, cost 0.500000, "
        "elapsed 0:01:40, about 0:05:00 left",  # no bar, no "0.0 steps/s 0:00:00"
        "AWS cost: no usage recorded (a run of an earlier release)",
    ]


def read_pipe(reader: int) -> list[str]:
    with os.fdopen(reader) as pipe:
        return pipe.read().splitlines()


def test_a_run_on_a_pipe_prints_plain_lines_while_waiting(monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_SECONDS", 0.05)
    reader, writer = os.pipe()
    with os.fdopen(writer, "w") as pipe:
        console = Console(file=pipe)
        assert not console.is_terminal
        with run_progress(console) as shown:
            bar = RunProgress(shown, lambda: record(progress_epoch=30), epochs=100, label="r1")
            bar.show(record(created_epoch_seconds=time.time() - 100))
            time.sleep(0.5)  # the caller blocked (a long step): the thread keeps printing
    lines = read_pipe(reader)
    assert lines[0].startswith("r1 running: epoch 25/100, cost 0.5000, - steps/s, elapsed 0:01:40"), lines
    assert len(lines) >= 3 and all("epoch 25/100" in line for line in lines)


def test_a_wait_on_a_pipe_prints_a_line_every_few_seconds(monkeypatch):
    monkeypatch.setattr(progress, "PLAIN_SECONDS", 0.05)
    reader, writer = os.pipe()
    with os.fdopen(writer, "w") as pipe:
        with waiting(Console(file=pipe), "deploying the stack..."):
            time.sleep(0.5)
    lines = read_pipe(reader)
    assert lines[0] == "deploying the stack..." and len(lines) >= 3
    assert lines[1].startswith("  still deploying the stack (") and lines[1].endswith(" s)")


def test_the_plain_interval_is_at_most_ten_seconds():
    assert progress.PLAIN_SECONDS <= 10


@pytest.mark.parametrize("terminal", [True, False])
def test_a_terminal_gets_the_live_bar(terminal):
    console = Console(force_terminal=terminal, file=open(os.devnull, "w"))
    assert isinstance(run_progress(console), progress.PlainProgress) is not terminal
