"""What the scheduler schedules: a delivery of an event (the event as sent, a duplicate or a retry), the Lambda
context its handler gets, the crash injected into it, and the exhaustive search's symmetry reduction of twins."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lnn_cli.cloud.runtime import SandboxKilled

if TYPE_CHECKING:
    from lnn_cli.simulate.containers import Container
    from lnn_cli.simulate.simulator import Simulator


class InjectedCrash(SandboxKilled):
    """The process died (out of memory, a timeout, a kill): no `except Exception` in a handler catches it."""


@dataclass
class Delivery:
    number: int
    function: str  # launcher, trainer, watchdog, operator
    event: Any
    request_id: str
    due: float
    born: float
    attempt: int = 0
    throttles: int = 0
    started_at: float = 0.0
    frozen_until: float = 0.0
    greenlet: Any = None
    container: Container | None = None
    where: str = "queued"
    may_crash: bool = True
    published: set = field(default_factory=set)  # runs it published a message for
    frozen_long: bool = False  # frozen past the lease at least once
    notify_claim: bool = False  # its claim_notification succeeded
    copy: int = 0  # 0: the event as sent; 1: its duplicate
    uuids: int = 0  # uuid4() calls so far
    sends: int = 0  # invocations sent so far
    wait_reads: int | None = None  # within a wait for its peers (`Ports.waiting`): its reads so far; else None
    # The exhaustive search's: its port calls' answers so far ((port call, "return" or "raise", answer, time), a
    # tuple: saved states share it), their digest (a chain over each call, its answer's digest and its time), and
    # the port call it waits to make at its interleaving point (port call, args, kwargs)
    answers: tuple = ()
    history: str = ""
    pending: Any = None
    done: bool = False

    def identity(self) -> str:
        return f"{self.request_id}#{self.attempt}.{self.copy}"

    def label(self) -> str:
        event = self.event if isinstance(self.event, dict) else {}
        if self.function == "trainer":
            state = event.get("state")
            return (
                f"d{self.number} trainer step {event.get('step')} {state}{member_suffix(event)} "
                f"[{self.request_id}#{self.attempt}]"
            )
        if self.function == "operator":
            return f"d{self.number} operator {event.get('command')}"
        return f"d{self.number} {self.function} [{self.request_id}#{self.attempt}]"


class Context:
    """The Lambda context a handler gets: its request id and its remaining time, in virtual time."""

    def __init__(self, sim: Simulator, delivery: Delivery, timeout: float):
        self._sim, self.aws_request_id, self._deadline = sim, delivery.request_id, delivery.started_at + timeout
        self.function_name = delivery.function

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - self._sim.now) * 1000))


def member_suffix(event: dict) -> str:
    """ "/i" of a round's shard or slice i, else ""."""
    index = event.get("shard", event.get("slice"))
    return f"/{index}" if index is not None else ""


def event_name(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "?"
    if "step" in payload:
        return f"step {payload['step']} {payload.get('state')}{member_suffix(payload)}"
    return payload.get("command") or ("launch" if "parameters" in payload else payload.get("detail-type", "event"))


def one_of_each_fresh_twin_pair(ready: list[Delivery]) -> list[Delivery]:
    """Symmetry reduction of the exhaustive search: of the two twins of an event (request ids X and Xd), neither
    started yet, only the first is offered. Starting the other leads to the mirror image of the same schedules (the
    twins differ only in fresh ids, which the protocol compares for equality only)."""
    kept: list[Delivery] = []
    for delivery in ready:
        mirror = any(
            other.function == delivery.function
            and other.attempt == delivery.attempt == 0
            and other.throttles == delivery.throttles == 0
            and other.due == delivery.due
            and other.born == delivery.born
            and other.event == delivery.event
            and {other.request_id, delivery.request_id}
            == {other.request_id.removesuffix("d"), other.request_id.removesuffix("d") + "d"}
            for other in kept
        )
        if not mirror:
            kept.append(delivery)
    return kept
