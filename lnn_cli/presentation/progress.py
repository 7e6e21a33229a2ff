"""The progress of a run: epoch, cost, steps per second, elapsed time and the time left, read from the run record.

On a terminal it is rich's live bar; without one (piped to a log, where rich's bar prints nothing until the end)
it is a plain line at least every PLAIN_SECONDS, printed by a thread, so a long wait is never silent.
"""

import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn

REFRESH_SECONDS = 0.25  # at most this often a read of the run record
PLAIN_SECONDS = 5.0  # without a terminal, a progress line at least this often (half the 10 s a log may stay silent)


def run_progress(console: Console):
    """rich's bar on a terminal, plain lines otherwise; both take `add_task` and `update` as RunProgress uses them."""
    if not console.is_terminal:
        return PlainProgress(console)
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("epoch {task.completed:.0f}/{task.total:.0f}"),
        TextColumn("cost {task.fields[cost]}"),
        TextColumn("{task.fields[rate]} steps/s"),
        TextColumn("{task.fields[timing]}"),
        console=console,
        transient=False,
    )


def clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def run_timing(run: dict[str, Any], now: float | None = None) -> tuple[float | None, float | None]:
    """Seconds since the run was launched (to its finish once it has ended), and while it runs an estimate of the
    seconds left at its pace so far (None before its first epoch; a threshold may end it sooner)."""
    created = run.get("created_epoch_seconds")
    if created is None:
        return None, None
    end = time.time() if now is None else now
    if run.get("status") != "running" and run.get("finished_at"):
        end = datetime.fromisoformat(run["finished_at"].replace("Z", "+00:00")).timestamp()
    elapsed = max(0.0, end - float(created))
    epoch, epochs = int(run.get("progress_epoch") or 0), int((run.get("config") or {}).get("epochs") or 0)
    if run.get("status") != "running" or epoch <= 0 or epochs <= epoch:
        return elapsed, None
    return elapsed, elapsed / epoch * (epochs - epoch)


def timing_text(run: dict[str, Any], now: float | None = None) -> str:
    """ "elapsed 0:01:23, about 0:04:10 left", or "" for a record without its launch time."""
    elapsed, left = run_timing(run, now)
    if elapsed is None:
        return ""
    return f"elapsed {clock(elapsed)}" + (f", about {clock(left)} left" if left is not None else "")


class PlainProgress:
    """A stand-in for rich's Progress without a terminal: one line per task every PLAIN_SECONDS (and at its first
    update), from a thread, so the lines keep coming while the caller waits on a long step or read."""

    def __init__(self, console: Console):
        self.console = console
        self._tasks: dict[int, dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="lnn-progress", daemon=True)

    def __enter__(self) -> "PlainProgress":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()
        self._thread.join()

    def add_task(self, description: str, *, total: float, **fields) -> int:
        with self._lock:
            task = len(self._tasks)
            self._tasks[task] = {"description": description, "total": total, "completed": 0, "shown": False, **fields}
            return task

    def update(self, task: int, **fields) -> None:
        with self._lock:
            self._tasks[task].update(fields)
            first = not self._tasks[task]["shown"]
        if first:
            self._print(task)

    def _print(self, task: int) -> None:
        with self._lock:
            fields = dict(self._tasks[task])
            self._tasks[task]["shown"] = True
        timing = fields.get("timing") or ""
        self.console.print(
            f"{fields['description']}: epoch {fields['completed']:.0f}/{fields['total']:.0f}, cost "
            f"{fields.get('cost', '-')}, {fields.get('rate', '-')} steps/s" + (f", {timing}" if timing else ""),
            markup=False,
            highlight=False,
            soft_wrap=True,
        )

    def _beat(self) -> None:
        while not self._stopped.wait(PLAIN_SECONDS):
            for task in list(self._tasks):
                self._print(task)


class RunProgress:
    """Updates one progress task from run records; `poll()` reads the record at most every REFRESH_SECONDS."""

    def __init__(self, progress, read_run: Callable[[], dict[str, Any] | None], *, epochs: int, label: str):
        self._progress, self._read_run = progress, read_run
        self._task = progress.add_task(label, total=epochs, cost="-", rate="-", timing="")
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
            rate="-" if self._first_step == step else f"{rate:.1f}",
            timing=timing_text(run),
            description=f"{run['run_id']} {run['status']}",
        )


@contextmanager
def waiting(console: Console, text: str):
    """rich's spinner with `text` on a terminal; without one, `text` and then a line every PLAIN_SECONDS with the
    seconds waited so far."""
    if console.is_terminal:
        with console.status(text):
            yield
        return
    started, stopped = time.monotonic(), threading.Event()
    console.print(text, markup=False, highlight=False, soft_wrap=True)

    def beat():
        while not stopped.wait(PLAIN_SECONDS):
            console.print(
                f"  still {text.rstrip('.')} ({time.monotonic() - started:.0f} s)",
                markup=False,
                highlight=False,
                soft_wrap=True,
            )

    thread = threading.Thread(target=beat, name="lnn-waiting", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stopped.set()
        thread.join()
