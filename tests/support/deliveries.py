"""Delivering events to handlers in tests: a Lambda context, deliveries in threads held at gates, and a process
that dies mid-invocation."""

import json
import threading
from types import SimpleNamespace

import pytest

WAIT_SECONDS = 30  # a gate that is never reached fails the test instead of hanging it


class SandboxDied(BaseException):
    """The process died mid-invocation (out of memory, a timeout): no `except Exception` in a handler catches it."""


class Gate:
    """Holds one thread at a port method (before or after the call) until the test opens it."""

    def __init__(self, port, method: str, *, after: bool = False, times: int = 1):
        self.reached, self.opened = threading.Event(), threading.Event()
        original = getattr(port, method)

        def gated(*args, **kwargs):
            nonlocal times
            hold = times > 0
            times -= 1
            if hold and not after:
                self._hold()
            result = original(*args, **kwargs)
            if hold and after:
                self._hold()
            return result

        setattr(port, method, gated)

    def _hold(self):
        self.reached.set()
        assert self.opened.wait(WAIT_SECONDS), "the test never opened the gate"

    def wait_reached(self):
        assert self.reached.wait(WAIT_SECONDS), "no delivery reached the gate"


class Delivery(threading.Thread):
    """One delivery of an event to one container, in its own thread; `outcome` is the handler's, or its error."""

    def __init__(self, trainer, event, context=None):
        super().__init__(daemon=True)
        self.trainer, self.event, self.context = trainer, json.loads(json.dumps(event)), context
        self.outcome = None

    def run(self):
        try:
            self.outcome = self.trainer.handle(self.event, self.context)["outcome"]
        except Exception as error:  # reported to the test
            self.outcome = f"raised {error!r}"

    def finish(self):
        self.join(WAIT_SECONDS)
        assert not self.is_alive(), "the delivery did not finish"
        return self.outcome


def context(request_id="request-1", remaining_seconds=300.0):
    return SimpleNamespace(
        aws_request_id=request_id, get_remaining_time_in_millis=lambda: int(remaining_seconds * 1000)
    )


def deliver_failing_at(
    handler, site: str, event, request_id: str = "request-1", *, failure: BaseException | None = None
):
    """Deliver a copy of `event` (as JSON, as Lambda does) to `handler`, whose port method `site` (e.g.
    "store.copy") raises `failure` instead of running (default: the process dies there); the delivery ends with it."""
    port, method = site.split(".")
    failure = failure or SandboxDied()

    def fail(*args, **kwargs):
        raise failure

    setattr(getattr(handler.ports, port), method, fail)
    with pytest.raises(type(failure)):
        handler.handle(json.loads(json.dumps(event)), context(request_id))
