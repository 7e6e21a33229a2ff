"""`lnn up` / `lnn down`: a local stack that stays up, for the deployed-stack commands.

`lnn up` starts a detached background process (`lnn_cli.cloud.up.server`) that starts the moto server, deploys the
stack with the real CDK CLI (as `lnn local` does) and serves a proxy endpoint in front of moto that runs the
stack's Lambda invokes, S3 -> EventBridge events and schedules in the local runtime. It waits for it to be ready
(at most `START_TIMEOUT_SECONDS`; then it stops it) and prints the environment to paste. `lnn down` stops that
process, found by the process id recorded in the state directory, after checking that it is ours.

Each stack up is also recorded in the user's registry (registry.py), so that `lnn down` from another
directory finds it. The state directory (default `.lnn`) holds `up.json` (pid, port, endpoint, stack), `up.lock`
(an exclusive lock held by the background process for as long as it lives: a second `lnn up` cannot take it) and
the logs: `up.log` (the background process: proxy, events, schedules), `emulator.log` (moto), `deploy.log` (the CDK
CLI), `lambda.log` (the handlers).
"""

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console

from lnn_cli.cloud.deploy import DeployError
from lnn_cli.cloud.deploy_context import deploy_context
from lnn_cli.cloud.emulator import FAKE_CREDENTIALS, REGION
from lnn_cli.cloud.up import registry
from lnn_cli.cloud.up.registry import LOCK_FILE, SERVER_MODULE, STATE_FILE, command_line, is_ours, stacks_up, try_lock
from lnn_cli.presentation.progress import waiting
from lnn_core.errors import LnnInputError

DEFAULT_STATE_DIR = ".lnn"
LOGS = ("up.log", "emulator.log", "deploy.log", "lambda.log")
START_TIMEOUT_SECONDS = 600  # a first synth bundles the NumPy layer
STOP_TIMEOUT_SECONDS = 20


def paste_lines(endpoint: str) -> list[str]:
    """The shell lines that point the AWS SDKs (and so every `lnn` command) at the local stack."""
    return [
        "unset AWS_PROFILE AWS_SESSION_TOKEN",
        f"export AWS_ENDPOINT_URL={endpoint}",
        f"export AWS_ACCESS_KEY_ID={FAKE_CREDENTIALS['AWS_ACCESS_KEY_ID']}",
        f"export AWS_SECRET_ACCESS_KEY={FAKE_CREDENTIALS['AWS_SECRET_ACCESS_KEY']}",
        f"export AWS_DEFAULT_REGION={REGION}",
    ]


def read_state(state_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _write_state(state_dir: Path, state: dict[str, Any]) -> None:
    temporary = state_dir / f".{STATE_FILE}.tmp"
    temporary.write_text(json.dumps(state, indent=2) + "\n")
    temporary.replace(state_dir / STATE_FILE)


def _state_dir(args) -> Path:
    state_dir = Path(args.state_dir).expanduser().resolve()
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise LnnInputError(
            f"--state-dir {state_dir} cannot be created ({error.strerror}); choose another directory"
        ) from None
    return state_dir


def _already_up(state_dir: Path) -> LnnInputError:
    state = read_state(state_dir) or {}
    where = f" (pid {state['pid']}, {state['endpoint']})" if "pid" in state else " (it is starting)"
    return LnnInputError(
        f"a local stack is already up in {state_dir}{where}; use it, stop it with `lnn down --state-dir "
        f"{state_dir}`, or start another with another --state-dir"
    )


def command_up(args, console: Console) -> int:
    if args.port is not None and not 0 <= args.port <= 65535:
        raise LnnInputError(f"--port must be from 1 to 65535 (0: a free one); got {args.port}")
    context = deploy_context(args.context, command="lnn up")  # a bad -c is refused before anything starts
    state_dir = _state_dir(args)
    lock = try_lock(state_dir / LOCK_FILE)
    if lock is None:
        raise _already_up(state_dir)
    try:
        stale = read_state(state_dir)
        if stale is not None:
            (state_dir / STATE_FILE).unlink(missing_ok=True)
            console.print(
                f"note: cleaned a stale state in {state_dir}: pid {stale.get('pid')} "
                f"({stale.get('endpoint')}) is no longer running"
            )
        for name in LOGS:
            (state_dir / name).write_bytes(b"")
        command = [
            sys.executable,
            "-m",
            SERVER_MODULE,
            "--state-dir",
            str(state_dir),
            "--port",
            str(args.port or 0),
            "--stack",
            args.stack,
            "--concurrency",
            str(args.concurrency),
            "--container-cpus",
            str(args.container_cpus),
            "--lock-fd",
            str(lock.fileno()),
            "--context-json",
            json.dumps(context.pairs),
        ]
        environment = {key: value for key, value in os.environ.items() if key != "AWS_ENDPOINT_URL"}
        with open(state_dir / "up.log", "ab") as up_log:
            child = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=up_log,
                pass_fds=(lock.fileno(),),
                start_new_session=True,
                env=environment,
            )
        try:
            with waiting(
                console, f"starting the moto server and deploying {args.stack} (cdk synth, bootstrap, deploy)..."
            ):
                line = _ready_line(child, START_TIMEOUT_SECONDS)
        except KeyboardInterrupt:
            _stop_started(child)
            raise
        child.stdout.close()
        if line is None:
            _stop_started(child)
            raise LnnInputError(
                f"the local stack did not start within {START_TIMEOUT_SECONDS} s (moto server, cdk synth and deploy) "
                f"and was stopped; see {state_dir / 'up.log'} and {state_dir / 'deploy.log'}, then run `lnn up` again"
            )
        ready = (
            json.loads(line)
            if line.startswith("{")
            else {"error": f"the local stack did not start; see {state_dir / 'up.log'}"}
        )
        if "error" in ready:
            try:
                child.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
            if ready.get("kind") == "input":
                raise LnnInputError(ready["error"])
            raise DeployError(ready["error"])
        state = {**ready, "state_dir": str(state_dir), "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        _write_state(state_dir, state)
        registry.record(state)
    finally:
        lock.close()  # the background process holds the lock through its own descriptor
    phases = ", ".join(f"{phase} {seconds:.1f} s" for phase, seconds in ready["deploy_seconds"].items())
    console.print(
        f"local stack {args.stack} is up: pid {ready['pid']}, endpoint {ready['endpoint']} "
        f"(deployed with {ready['deploy_method']}: {phases}); state and logs in {state_dir}"
    )
    for note in ready.get("notes", []):
        console.print(f"  note: {note}")
    console.print(
        "Paste these lines into your shell; then lnn start, status, results, runs, stop, resume and predict "
        "use the local stack:"
    )
    for line in paste_lines(ready["endpoint"]):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    console.print(f"Stop it with `lnn down{_state_flag(args)}` (and unset AWS_ENDPOINT_URL to talk to AWS again).")
    return 0


def _ready_line(child: subprocess.Popen, seconds: float) -> str | None:
    """The background process's readiness line ("" if it died first), or None when none came within `seconds`."""
    deadline = time.monotonic() + seconds
    received = b""
    while not received.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([child.stdout], [], [], remaining)[0]:
            return None
        chunk = os.read(child.stdout.fileno(), 65536)
        if not chunk:  # EOF: the process died without a word
            break
        received += chunk
    return received.decode().strip()


def _stop_started(child: subprocess.Popen) -> None:
    """Stop the background process, then whatever it started that outlived it (its session's process group: the
    moto server, the CDK CLI)."""
    child.terminate()
    try:
        child.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait()


def _state_flag(args) -> str:
    return "" if args.state_dir == DEFAULT_STATE_DIR else f" --state-dir {args.state_dir}"


def _described(state: dict[str, Any]) -> str:
    return f"{state['state_dir']} (pid {state['pid']}, {state['endpoint']})"


def command_down(args, console: Console) -> int:
    """Stop the stack up in --state-dir; with the default one empty, the only stack this user has up elsewhere."""
    state_dir = Path(args.state_dir).expanduser().resolve()
    if _stop(state_dir, console):
        return 0
    elsewhere = [state for state in stacks_up() if Path(state["state_dir"]) != state_dir]
    if not elsewhere:
        console.print(f"no local stack is up in {state_dir}, nor anywhere else for this user")
        return 0
    if args.state_dir == DEFAULT_STATE_DIR and len(elsewhere) == 1:
        console.print(
            f"no local stack is up in {state_dir}; stopping the one up in {_described(elsewhere[0])}", soft_wrap=True
        )  # paths whole, never broken at the terminal's width
        _stop(Path(elsewhere[0]["state_dir"]), console)
        return 0
    raise LnnInputError(
        f"no local stack is up in {state_dir}; up: {'; '.join(map(_described, elsewhere))}. Stop one with "
        f"`lnn down --state-dir {elsewhere[0]['state_dir']}`"
    )


def _stop(state_dir: Path, console: Console) -> bool:
    """Stop the stack up in `state_dir`; False when none is (a stale state is cleaned)."""
    if not state_dir.is_dir():
        return False
    state = read_state(state_dir)
    lock = try_lock(state_dir / LOCK_FILE)
    if lock is not None:  # nobody holds it: no background process lives
        lock.close()
        _clean(state_dir)
        if state is not None:
            console.print(
                f"note: cleaned a stale state in {state_dir}: pid {state.get('pid')} ({state.get('endpoint')}) "
                "was no longer running"
            )
        return False
    if state is None or "pid" not in state:
        raise LnnInputError(f"a local stack is starting in {state_dir}; wait for `lnn up` to finish, then `lnn down`")
    pid = int(state["pid"])
    if not is_ours(pid, state_dir):
        raise LnnInputError(
            f"pid {pid} recorded in {state_dir / STATE_FILE} is not the `lnn up` process of {state_dir} "
            f"(its command line is {command_line(pid) or 'gone'}); not stopping it. Stop the stack's process "
            "yourself, then run `lnn down` again"
        )
    os.kill(pid, signal.SIGTERM)
    if not _wait_unlocked(state_dir, STOP_TIMEOUT_SECONDS):
        if is_ours(pid, state_dir):
            os.kill(pid, signal.SIGKILL)
        if not _wait_unlocked(state_dir, 5):
            raise LnnInputError(f"pid {pid} did not stop; see {state_dir / 'up.log'}")
    _clean(state_dir)
    console.print(
        f"stopped the local stack {state.get('stack', '')} (pid {pid}, {state['endpoint']}); logs kept in {state_dir}. "
        "Unset AWS_ENDPOINT_URL to talk to AWS again.",
        soft_wrap=True,
    )
    return True


def _wait_unlocked(state_dir: Path, seconds: float) -> bool:
    """Wait until the background process has exited (its lock is free); True when it has."""
    deadline = time.monotonic() + seconds
    while True:
        lock = try_lock(state_dir / LOCK_FILE)
        if lock is not None:
            lock.close()
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _clean(state_dir: Path) -> None:
    (state_dir / STATE_FILE).unlink(missing_ok=True)
    registry.forget(state_dir)
