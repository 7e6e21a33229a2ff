"""The local stacks of `lnn up` this user has started, wherever their state directory is.

`lnn up` records its stack here (state directory, pid, endpoint, stack) and `lnn down` forgets it, so that
`lnn down` run from another directory finds the stack to stop, and an error about a dead AWS_ENDPOINT_URL can
name the endpoint that is up. The file is `$LNN_HOME/stacks.json` (default `~/.lnn/stacks.json`); an entry is only
a hint: `stacks_up` checks that its process is alive and ours before it trusts it.
"""

import fcntl
import json
import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REGISTRY_FILE, REGISTRY_LOCK = "stacks.json", "stacks.lock"
# In a stack's own state directory: its state (pid, endpoint, stack) and the lock its background process holds.
STATE_FILE, LOCK_FILE = "up.json", "up.lock"
SERVER_MODULE = "lnn_cli.cloud.up.server"  # the background process of `lnn up`


def registry_dir() -> Path:
    return Path(os.environ.get("LNN_HOME") or "~/.lnn").expanduser()


def entries() -> dict[str, dict[str, Any]]:
    """The recorded stacks by state directory (an unreadable registry is an empty one: it holds hints only)."""
    try:
        recorded = json.loads((registry_dir() / REGISTRY_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return recorded if isinstance(recorded, dict) else {}


def record(state: dict[str, Any]) -> None:
    with _changing() as recorded:
        recorded[state["state_dir"]] = state


def forget(*state_dirs: Path) -> None:
    with _changing() as recorded:
        for state_dir in state_dirs:
            recorded.pop(str(state_dir), None)


@contextmanager
def _changing():
    """The recorded stacks, to change in place; written back atomically under an exclusive lock. A registry that
    cannot be written is skipped: `lnn up` and `lnn down` work without it, from their state directory."""
    try:
        directory = registry_dir()
        directory.mkdir(parents=True, exist_ok=True)
        lock = open(directory / REGISTRY_LOCK, "a")
    except OSError:
        yield {}
        return
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        recorded = entries()
        yield recorded
        temporary = directory / f".{REGISTRY_FILE}.{os.getpid()}.tmp"
        try:
            temporary.write_text(json.dumps(recorded, indent=2) + "\n")
            temporary.replace(directory / REGISTRY_FILE)
        except OSError:
            temporary.unlink(missing_ok=True)


def try_lock(path: Path):
    """The state directory's lock, open and held, or None when another process holds it."""
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        return None
    return handle


def command_line(pid: int) -> str | None:
    """The process's command line, or None when there is no such process."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None
    except OSError:
        return None
    result = subprocess.run(["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True)
    return result.stdout.strip() or None


def is_ours(pid: int, state_dir: Path) -> bool:
    """Whether `pid` is the background process of `lnn up` for this state directory."""
    line = command_line(pid)
    return bool(line) and SERVER_MODULE in line and f"--state-dir {state_dir}" in line


def stacks_up() -> list[dict[str, Any]]:
    """The states of this user's local stacks that are up (their process alive and ours); the registry's entries
    of stacks that are not are forgotten."""
    alive, gone = [], []
    for state_dir, state in entries().items():
        lock = try_lock(Path(state_dir) / LOCK_FILE) if Path(state_dir).is_dir() else None
        if lock is not None or not Path(state_dir).is_dir() or not is_ours(int(state.get("pid", 0)), Path(state_dir)):
            if lock is not None:
                lock.close()
            gone.append(state_dir)
        else:
            alive.append(state)
    if gone:
        forget(*gone)
    return alive
