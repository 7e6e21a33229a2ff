"""The judge of `make mutants` (a pytest plugin: `-p tests.mutant_judge`): what made each test fail.

A mutant counts as caught only when a test fails by an assertion or a violated invariant: an exception that is an
`AssertionError` (or a subclass), or whose class is named like an invariant's (`...Invariant...`, or a
`Violation` of `lnn_cli.simulate.checks.invariants`). A test that fails by any other exception (a DynamoDB
`ValidationException`, a `TypeError`, a gate's time-out in a fixture, an error in set-up) catches nothing. Nor does
an assertion that follows an ill-formed request: every DynamoDB or S3 request that the service rejects as malformed
(`ValidationException`, a client-side `ParamValidationError`, ...) and every programming error (`TypeError`,
`NameError`, ...) that escapes a handler is counted per test, and a test that met more of them than it does
unmutated is "tainted": its assertion may only restate that the edit broke the request, not the protocol.

Environment (all optional; without LNN_MUTANT_REPORT the plugin only watches):
  LNN_MUTANT_REPORT     a file to append one JSON line per test to (xdist workers append to the same file)
  LNN_MUTANT_BASELINE   a JSON file {nodeid: ill-formed count} of the unmutated run (for the taint)
  LNN_MUTANT_STOP_AFTER stop the session after this many tests caught the mutant (0 or unset: run everything)
  LNN_MUTANT_FIRST      comma-separated fragments of test ids to run first (their order only; the verdict is
                        the same whichever test runs first)
  LNN_MUTANT_ASSEMBLY   an already synthesized cloud assembly for the `assembly` fixture of tests/integration: the
                        mutants edit only lambda_src, which the in-process stack runs from PYTHONPATH, not from
                        the assembly, so the unmutated run's synthesis serves every mutant (`cdk synth` takes
                        20-40 s per test process)
"""

import json
import os
import threading
import time
import traceback
from pathlib import Path

import pytest

REPORT = "LNN_MUTANT_REPORT"
BASELINE = "LNN_MUTANT_BASELINE"
STOP_AFTER = "LNN_MUTANT_STOP_AFTER"
FIRST = "LNN_MUTANT_FIRST"
ASSEMBLY = "LNN_MUTANT_ASSEMBLY"

# Error codes by which AWS (and moto) reject a request as malformed, not as a failed condition.
ILL_FORMED_CODES = {
    "ValidationException",
    "ValidationError",
    "SerializationException",
    "InvalidRequest",
    "InvalidParameterValue",
    "InvalidParameterException",
    "InvalidArgument",
}
# Exceptions that, escaping a handler, say the code is broken rather than the protocol.
PROGRAMMING_ERRORS = (TypeError, NameError, AttributeError, KeyError, IndexError, ZeroDivisionError, RecursionError)


class _Watch:
    """What the current test met: ill-formed requests and programming errors (all threads of the process: one test
    runs at a time in a process, and its deliveries' threads report here)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with self.lock:
            self.ill_formed: list[str] = []

    def note(self, what: str):
        with self.lock:
            if len(self.ill_formed) < 50:
                self.ill_formed.append(what[:300])
            else:
                self.ill_formed.append("...")
                del self.ill_formed[50:-1]


WATCH = _Watch()
_installed = False


def _install_watches() -> None:
    """Wrap botocore's error classes and the handlers' entry points so that what the current test met is counted."""
    global _installed
    if _installed:
        return
    _installed = True
    from botocore import exceptions

    client_init = exceptions.ClientError.__init__

    def client_error_init(self, error_response, operation_name, *args, **kwargs):
        client_init(self, error_response, operation_name, *args, **kwargs)
        error = (error_response or {}).get("Error", {}) if isinstance(error_response, dict) else {}
        if error.get("Code") in ILL_FORMED_CODES:
            WATCH.note(f"{operation_name}: {error.get('Code')}: {error.get('Message', '')}")

    exceptions.ClientError.__init__ = client_error_init

    param_init = exceptions.ParamValidationError.__init__

    def param_error_init(self, *args, **kwargs):
        param_init(self, *args, **kwargs)
        WATCH.note(f"ParamValidationError: {kwargs.get('report', '')}")

    exceptions.ParamValidationError.__init__ = param_error_init

    from lnn_core import run_control
    from lnn_core.launch import launcher
    from lnn_core.protocol.trainer import Trainer

    for owner, name in ((Trainer, "handle"), (launcher.Launcher, "handle"), (run_control.Watchdog, "handle")):
        _watch_method(owner, name)


def _watch_method(owner, name):
    method = getattr(owner, name)

    def watched(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except PROGRAMMING_ERRORS as error:
            where = traceback.extract_tb(error.__traceback__)[-1]
            WATCH.note(
                f"{owner.__name__}.{name} raised {type(error).__name__}: {str(error)[:150]} "
                f"({Path(where.filename).name}:{where.lineno})"
            )
            raise

    watched.__wrapped__ = method
    setattr(owner, name, watched)


def is_assertion(error_type) -> bool:
    """An assertion, or a violated invariant (the simulator's)."""
    for klass in getattr(error_type, "__mro__", ()):
        if klass is AssertionError or "Invariant" in klass.__name__:
            return True
        if klass.__name__.endswith("Violation") and "invariant" in (klass.__module__ or ""):
            return True
    return False


def first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


# ---- the plugin ---------------------------------------------------------------------------------------------------


def pytest_configure(config):
    _install_watches()
    config._mutant_judge = {"caught": 0, "baseline": _baseline()}


def _baseline() -> dict:
    path = os.environ.get(BASELINE)
    if not path or not Path(path).exists():
        return {}
    return json.loads(Path(path).read_text())


def pytest_plugin_registered(plugin, manager):
    """Point the conftest's `synthesize` at the assembly already synthesized (see LNN_MUTANT_ASSEMBLY)."""
    assembly = os.environ.get(ASSEMBLY)
    if assembly and getattr(plugin, "__name__", "") == "tests.integration.conftest" and hasattr(plugin, "synthesize"):
        plugin.synthesize = lambda *args, **kwargs: Path(assembly)


def pytest_collection_modifyitems(session, config, items):
    fragments = [fragment for fragment in os.environ.get(FIRST, "").split(",") if fragment]
    if not fragments:
        return

    def rank(item):
        for index, fragment in enumerate(fragments):
            if fragment in item.nodeid:
                return index
        return len(fragments)

    items.sort(key=rank)  # stable: within a rank, the collected order
    for fragment in fragments:
        if not any(fragment in item.nodeid for item in items):
            _append(
                {
                    "nodeid": "<first>",
                    "unmatched": fragment,
                    "seconds": 0.0,
                    "failures": [],
                    "ill_formed": [],
                    "ill_formed_unmutated": 0,
                    "tainted": False,
                }
            )


@pytest.fixture(autouse=True)
def _mutant_judge_atomic_requests(request):
    """Threaded tests of tests/integration enter the atomicity the local runtime enters (each moto request alone):
    in-process moto is not thread-safe, and a torn request is neither the protocol's fault nor an assertion's."""
    if "tests/integration/" not in request.node.nodeid:
        yield
        return
    import moto.core.botocore_stubber  # noqa: F401 - loaded, so that atomic_requests wraps it

    from lnn_cli.cloud.runtime import atomic_requests

    with atomic_requests():
        yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    WATCH.reset()
    item._mutant_failures = []
    started = time.monotonic()
    yield
    judge = item.config._mutant_judge
    ill_formed = list(WATCH.ill_formed)
    unmutated = judge["baseline"].get(item.nodeid, 0)
    tainted = len(ill_formed) > unmutated
    for failure in item._mutant_failures:
        failure["counted"] = failure["assertion"] and failure["when"] == "call" and not tainted
    record = {
        "nodeid": item.nodeid,
        "seconds": round(time.monotonic() - started, 2),
        "failures": item._mutant_failures,
        "ill_formed": ill_formed,
        "ill_formed_unmutated": unmutated,
        "tainted": tainted,
    }
    _append(record)
    if any(failure["counted"] for failure in item._mutant_failures):
        judge["caught"] += 1
        stop_after = int(os.environ.get(STOP_AFTER) or 0)
        if stop_after and judge["caught"] >= stop_after:
            item.session.shouldstop = f"the mutant is caught (by {item.nodeid})"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if not report.failed:
        return
    if call.excinfo is not None:
        error = call.excinfo.value
        failure = {
            "when": call.when,
            "type": type(error).__name__,
            "module": type(error).__module__,
            "assertion": is_assertion(type(error)),
            "message": first_line(str(error)) or type(error).__name__,
        }
    else:  # e.g. a strict xfail that passed
        failure = {
            "when": call.when,
            "type": "failed without an exception",
            "module": "",
            "assertion": False,
            "message": first_line(getattr(report, "longreprtext", "") or ""),
        }
    getattr(item, "_mutant_failures", []).append(failure)


def pytest_collectreport(report):
    if report.failed:
        _append(
            {
                "nodeid": report.nodeid,
                "seconds": 0.0,
                "ill_formed": [],
                "ill_formed_unmutated": 0,
                "tainted": False,
                "failures": [
                    {
                        "when": "collect",
                        "type": "collection error",
                        "module": "",
                        "assertion": False,
                        "counted": False,
                        "message": first_line(str(report.longrepr).splitlines()[-1] if str(report.longrepr) else ""),
                    }
                ],
            }
        )


def pytest_sessionstart(session):
    import lnn_core

    _append(
        {
            "nodeid": "<session>",
            "lnn_core": str(Path(lnn_core.__file__).resolve().parent),
            "seconds": 0.0,
            "failures": [],
            "ill_formed": [],
            "ill_formed_unmutated": 0,
            "tainted": False,
        }
    )


def _append(record: dict) -> None:
    path = os.environ.get(REPORT)
    if not path:
        return
    line = (json.dumps(record, default=str) + "\n").encode()
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(descriptor, line)  # one write of an O_APPEND file: the xdist workers' lines do not interleave
    finally:
        os.close(descriptor)
