"""The local stacks of `lnn up` this user has started, wherever their state directory is.

`lnn up` records its stack here (state directory, pid, endpoint, stack) and `lnn down` forgets it, so that
`lnn down` run from another directory finds the stack to stop, and an error about a dead AWS_ENDPOINT_URL can
name the endpoint that is up. The file is `$LNN_HOME/stacks.json` (default `~/.lnn/stacks.json`); an entry is only
a hint: up.py checks that its process is alive and ours before it trusts it.
"""

import fcntl
import json
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REGISTRY_FILE, REGISTRY_LOCK = "stacks.json", "stacks.lock"


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
