"""The progress bar of a run: epoch, cost and steps per second, read from the run record."""

import time
from typing import Any, Callable

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

REFRESH_SECONDS = 0.25  # at most this often a read of the run record


def run_progress(console: Console) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("cost {task.fields[cost]}"),
        TextColumn("{task.fields[rate]} steps/s"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


class RunProgress:
    """Updates one progress task from run records; `poll()` reads the record at most every REFRESH_SECONDS."""

    def __init__(self, progress: Progress, read_run: Callable[[], dict[str, Any] | None], *, epochs: int, label: str):
        self._progress, self._read_run = progress, read_run
        self._task = progress.add_task(label, total=epochs, cost="-", rate="-")
        self._started = self._last = time.monotonic()
        self._first_step: int | None = None

    def poll(self, *_ignored, force: bool = False) -> dict[str, Any] | None:
        now = time.monotonic()
        if not force and now - self._last < REFRESH_SECONDS:
            return None
        self._last = now
        run = self._read_run()
        if run is not None:
            self.show(run)
        return run

    def show(self, run: dict[str, Any]) -> None:
        step = run.get("committed_step", 0)
        if self._first_step is None:
            self._first_step, self._started = step, time.monotonic()
        elapsed = time.monotonic() - self._started
        rate = (step - self._first_step) / elapsed if elapsed > 0 else 0.0
        cost = run.get("last_cost")
        self._progress.update(
            self._task,
            completed=run.get("progress_epoch", 0),
            cost="-" if cost is None else f"{cost:.4f}",
            rate=f"{rate:.1f}",
            description=f"{run['run_id']} {run['status']}",
        )
