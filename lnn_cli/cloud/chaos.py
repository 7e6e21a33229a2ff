"""The chaos harness: seeded faults of the kinds Lambda's at-least-once delivery produces, injected into the local
runtime.

- duplicate: an async invoke of the trainer is delivered twice, the copy at once or late;
- crash: the trainer's process dies just before or just after one of its effects (`lnn_core.aws.ports.EFFECTS`),
  and the runtime retries the event; a crash is injected only when a retry remains, so every event succeeds at last;
- delay: a delivery is held back on the delivery clock, so that later ones overtake it;
- lose: an invocation is dropped (as when an event expires); the run stalls until it is resumed, at most
  `run_control.MAX_RESUMES` times per run, the number of resumes a run survives;
- pause: before and after every read (`READS`) and every effect, the trainer sleeps 0-20 ms of real time, so
  that concurrent deliveries interleave (it changes nothing at concurrency 1 but the wall time);
- distinct_ids: a duplicate copy gets its own request id (else it shares the original's, as Lambda's do);
- lost_answer: a request that changes the world (`SDK_WRITES`: every conditional write, put, copy, delete,
  invoke and publish of the trainer, the launcher and the watchdog) is applied, its answer is lost, and the SDK
  retries it: the caller sees the retry's answer (a conditional write then finds its own effect in place).

Everything is drawn from one `random.Random(seed)`. At concurrency 1 the runtime runs one delivery at a time: a
seed is a schedule. With threads, the draws are serialized (the counts stay exact) but their order is not fixed.
The per-delivery state (may this delivery still crash?) is one object per delivery, held in a context variable: each
container thread runs one delivery, and the threads in which a delivery sends requests together
(`lnn_core.aws.ports.RequestFanOut`) run in copies of its context, so they share it: one crash per delivery.
"""

import contextvars
import json
import random
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from botocore.exceptions import ClientError

from lnn_cli.cloud.runtime import Delivery, LocalFunction, SandboxKilled
from lnn_core import run_control
from lnn_core.aws.ports import EFFECTS, REQUEST_THREADS
from lnn_core.errors import LnnInputError

LATE_SECONDS = (0.5, 20.0)  # how late (delivery-clock seconds) a late duplicate or a delayed delivery comes
PAUSE_SECONDS = (0.0, 0.02)  # real time a pause sleeps
# The trainer's reads, which `pause` surrounds as it does the effects (`lnn_core.aws.ports.EFFECTS`).
READS = {
    "store": ("get_bytes", "head", "get_range"),
    "table": ("get_run", "list_epochs", "run_ids", "list_runs", "round_progress"),
}


# The SDK requests that change the world, by the adapter that sends them (its client is `client_of`'s answer).
SDK_WRITES = {
    "table": ("put_item", "update_item", "transact_write_items"),
    "store": ("put_object", "copy_object", "delete_objects"),
    "notifier": ("publish",),
}
INVOKE = ("invoker", "invoke_async")  # the runtime's own invoke: a retried Invoke is a second event


def client_of(port_name: str, port: Any) -> Any:
    """The boto3 client an adapter sends its requests with."""
    return port._table.meta.client if port_name == "table" else port._client


def with_lost_answer(call, *, before_retry=None):
    """`call` as botocore runs it when the first answer is lost: the request is applied (whatever its outcome),
    then sent again, and the caller gets the second answer. `before_retry()` runs in between."""

    def retried(*args, **kwargs):
        try:
            call(*args, **kwargs)
        except ClientError:
            pass  # its answer is lost as well: the retry gives the caller an answer of its own
        if before_retry is not None:
            before_retry()
        return call(*args, **kwargs)

    return retried


class InjectedCrash(SandboxKilled):
    """A crash the harness injected."""


@dataclass
class DeliveryFaults:
    """One delivery's fault state: whether it may still crash (once), and its event's state (for the counts)."""

    may_crash: bool = False
    state: str | None = None


@dataclass(frozen=True)
class ChaosPlan:
    """Probabilities per trainer invocation (duplicate, delay, lose) or per effect (crash), and the seed."""

    duplicate: float = 0.0
    crash: float = 0.0
    delay: float = 0.0
    lose: float = 0.0
    pause: float = 0.0
    distinct_ids: float = 0.0
    lost_answer: float = 0.0
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> "ChaosPlan":
        """'duplicate=0.1,crash=0.05,delay=0.1,pause=0.5,distinct_ids=0.5,seed=7' -> ChaosPlan; a bad spec is an
        `LnnInputError`."""
        known = {field.name for field in fields(cls)}
        values: dict[str, Any] = {}
        for part in filter(None, (item.strip() for item in text.split(","))):
            name, _, raw = part.partition("=")
            name = name.strip()
            if name not in known or not raw:
                raise LnnInputError(
                    f"--chaos {part!r} is not understood; use NAME=VALUE pairs with NAME one of "
                    f"{', '.join(sorted(known))}, "
                    "e.g. --chaos duplicate=0.1,crash=0.05,delay=0.1,seed=7"
                )
            try:
                values[name] = int(raw) if name == "seed" else float(raw)
            except ValueError:
                raise LnnInputError(
                    f"--chaos {name} must be a {'whole number' if name == 'seed' else 'number'}; got {raw!r}"
                ) from None
            if name != "seed" and not 0.0 <= values[name] <= 1.0:
                raise LnnInputError(f"--chaos {name} is a probability from 0 to 1; got {raw}")
        return cls(**values)


@dataclass
class ChaosCounts:
    """What the harness injected, and how many step bodies the trainer executed (to compare with a clean run)."""

    duplicates: int = 0
    delays: int = 0
    crashes_before: int = 0
    crashes_after: int = 0
    losses: int = 0
    pauses: int = 0  # not faults: they only reorder concurrent deliveries
    distinct_ids: int = 0  # duplicates that got their own request id (counted in `duplicates` too)
    lost_answers: int = 0  # requests applied whose answer was lost, and so sent twice
    crashes_in_fan_outs: int = 0  # crashes (of the above) inside a delivery's concurrent requests, in their threads
    step_bodies: int = 0
    crash_sites: Counter = field(default_factory=Counter)  # "before table.transition" -> crashes injected there
    lost_answer_sites: Counter = field(default_factory=Counter)  # "sns.publish" -> answers lost there
    # per event state: "lose shard", "duplicate reduce", "crash shard before table.join_barrier", ... -> count
    by_state: Counter = field(default_factory=Counter)

    @property
    def faults(self) -> int:
        return (
            self.duplicates + self.delays + self.crashes_before + self.crashes_after + self.losses + self.lost_answers
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "crash_sites": dict(sorted(self.crash_sites.items())),
            "lost_answer_sites": dict(sorted(self.lost_answer_sites.items())),
            "by_state": dict(sorted(self.by_state.items())),
            "faults": self.faults,
        }


class Chaos:
    """The runtime's `Faults`: counts executed step bodies always, injects faults as the plan says. Thread-safe."""

    def __init__(self, plan: ChaosPlan | None = None):
        self.plan = plan or ChaosPlan()
        self.counts = ChaosCounts()
        self._random = random.Random(self.plan.seed)
        self._lock = threading.RLock()  # the draws and the counts
        # the current delivery's state (may it still crash? its event's state), shared with its request threads
        self._current: contextvars.ContextVar[DeliveryFaults | None] = contextvars.ContextVar(
            f"chaos-delivery-{id(self)}", default=None
        )

    @property
    def _delivery(self) -> "DeliveryFaults":
        return self._current.get() or DeliveryFaults()  # no delivery begun in this context: it may not crash

    @property
    def _may_crash(self) -> bool:
        return self._delivery.may_crash

    @_may_crash.setter
    def _may_crash(self, value: bool) -> None:
        self._delivery.may_crash = value

    def instrument(self, role: str, handler: Any) -> None:
        if self.plan.lost_answer > 0 and role in ("trainer", "launcher", "watchdog"):
            self._lose_answers(handler.ports)
        if role != "trainer":
            return
        execute = handler._execute  # the step body: counted to show that faults do not multiply work

        def counted_execute(*args, **kwargs):
            with self._lock:
                self.counts.step_bodies += 1
            return execute(*args, **kwargs)

        handler._execute = counted_execute
        for port_name, methods in EFFECTS.items():
            port = getattr(handler.ports, port_name)
            for method in methods:
                if hasattr(port, method):
                    setattr(port, method, self._crashing(f"{port_name}.{method}", getattr(port, method)))
        if self.plan.pause > 0:
            for port_name, methods in READS.items():
                port = getattr(handler.ports, port_name)
                for method in methods:
                    if port is not None and hasattr(port, method):
                        setattr(port, method, self._pausing(getattr(port, method)))

    def schedule(self, function: LocalFunction, payload: str) -> list:
        if function.role != "trainer":
            return [0.0]
        state = json.loads(payload).get("state")
        with self._lock:
            draw = self._random.random
            if draw() < self.plan.lose and self.counts.losses < run_control.MAX_RESUMES:
                self.counts.losses += 1
                self.counts.by_state[f"lose {state}"] += 1
                return []
            delays: list = [0.0]
            if draw() < self.plan.delay:
                self.counts.delays += 1
                self.counts.by_state[f"delay {state}"] += 1
                delays[0] = self._random.uniform(*LATE_SECONDS)
            if draw() < self.plan.duplicate:
                self.counts.duplicates += 1
                self.counts.by_state[f"duplicate {state}"] += 1
                delays.append(0.0 if draw() < 0.5 else self._random.uniform(*LATE_SECONDS))
                if self.plan.distinct_ids > 0 and draw() < self.plan.distinct_ids:
                    self.counts.distinct_ids += 1
                    delays[-1] = (delays[-1], True)  # the copy gets its own request id
            return delays

    def begin(self, delivery: Delivery, retries_left: int) -> None:
        self._current.set(DeliveryFaults())
        self._may_crash = delivery.function.role == "trainer" and retries_left > 0
        if self._may_crash:
            self._delivery.state = (
                json.loads(delivery.payload).get("state") if isinstance(delivery.payload, str) else None
            )

    def _crashing(self, name: str, method):
        def effect(*args, **kwargs):
            self._maybe_pause()
            self._maybe_crash(f"before {name}", "crashes_before")
            result = method(*args, **kwargs)
            self._maybe_crash(f"after {name}", "crashes_after")
            self._maybe_pause()
            return result

        return effect

    def _lose_answers(self, ports: Any) -> None:
        for port_name, methods in SDK_WRITES.items():
            port = getattr(ports, port_name)
            if port is None:
                continue
            client = client_of(port_name, port)
            service = client.meta.service_model.service_name
            for method in methods:
                setattr(client, method, self._maybe_lost(f"{service}.{method}", getattr(client, method)))
        port_name, method = INVOKE
        port = getattr(ports, port_name)
        setattr(port, method, self._maybe_lost("lambda.invoke", getattr(port, method)))

    def _maybe_lost(self, site: str, call):
        lost = with_lost_answer(call)

        def request(*args, **kwargs):
            with self._lock:
                lose = self._random.random() < self.plan.lost_answer
                if lose:
                    self.counts.lost_answers += 1
                    self.counts.lost_answer_sites[site] += 1
            return (lost if lose else call)(*args, **kwargs)

        return request

    def _pausing(self, method):
        def read(*args, **kwargs):
            self._maybe_pause()
            result = method(*args, **kwargs)
            self._maybe_pause()
            return result

        return read

    def _maybe_pause(self) -> None:
        if self.plan.pause <= 0:  # no draw: a plan without pauses keeps its schedule
            return
        with self._lock:
            seconds = self._random.uniform(*PAUSE_SECONDS) if self._random.random() < self.plan.pause else None
            if seconds is not None:
                self.counts.pauses += 1
        if seconds is not None:
            time.sleep(seconds)

    def _maybe_crash(self, where: str, counter: str) -> None:
        if not self._may_crash:
            return
        with self._lock:
            if self._random.random() >= self.plan.crash / 2:
                return
            self._may_crash = False  # the process is gone: one crash per delivery
            setattr(self.counts, counter, getattr(self.counts, counter) + 1)
            self.counts.crashes_in_fan_outs += threading.current_thread().name.startswith(REQUEST_THREADS)
            self.counts.crash_sites[where] += 1
            self.counts.by_state[f"crash {getattr(self._delivery, 'state', None)} {where}"] += 1
        raise InjectedCrash(f"injected crash {where}")
