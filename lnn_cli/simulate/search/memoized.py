"""The scheduler of the exhaustive search: the simulator's own (`Simulator._step`: what runs next, the deliveries'
starts, retries and timers, the monitor after every event), with two differences that make a state a small value.

- A delivery in flight is not a live greenlet but its answers so far and the port call it waits to make. Resuming
  it makes that call on the real port (its faults chosen there: crash before, lost answer, crash after), then asks
  the `DeliveryMemo` for its next call, which runs the handler only the first time a delivery is at that point.
- The whole state (scheduler, monitor, moto's items and objects) is saved and restored as values
  (`snapshot`/`restore`), so that the search branches without forking the process and without running any
  schedule's prefix again.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from typing import Any

from lnn_cli.cloud.runtime import SandboxKilled
from lnn_cli.simulate.aws import direct_clients
from lnn_cli.simulate.aws.request_memo import RequestMemo, items_of, set_items, without_traceback
from lnn_cli.simulate.checks.invariants import Violation
from lnn_cli.simulate.deliveries import Delivery, InjectedCrash
from lnn_cli.simulate.interleaving import commutes, digest
from lnn_cli.simulate.search.memo import DeliveryMemo
from lnn_cli.simulate.simulator import MAX_EVENTS, Simulator

# The scheduler's and the monitor's fields that are not part of a state: shared objects and settings
_FIXED = {
    "world",
    "seed",
    "mode",
    "exhaustive",
    "request_seconds",
    "allowed",
    "decisions",
    "scenario",
    "rates",
    "main",
    "current",
    "trace_on",
    "monitor",
    "memo",
    "at",
    "requests",
    "containers",
    "_secrets",  # (never drawn from: a handler that does is an error of the replay, `memo.ReplayDiverged`)
}
_MONITOR_FIXED = {"sim", "world", "every_event", "lease", "max_resumes", "rules", "liveness_bound"}


@dataclass
class State:
    """A saved state of the search: every value a schedule's future reads."""

    scheduler: dict
    monitor: dict
    containers: dict
    caches: list
    items: dict
    objects: dict
    messages: list
    token: int


class NestedInterleaving(BaseException):
    """An interleaving point the search cannot offer (a port call inside another, with other deliveries ready): its
    result would leave schedules out. No handler's `except Exception` may take it for a function error."""


class MemoSimulator(Simulator):
    memoized = True

    def __init__(self, world, *, scenario, structure: dict, decisions, memo: DeliveryMemo):
        super().__init__(world, 0, decisions=decisions, scenario=scenario, exhaustive=structure)
        self.memo = memo
        self.at: State | None = None  # the saved state the simulator is in, when the search knows it is
        self.requests = RequestMemo(world)
        world.keeps_objects = True

    # ---- a delivery: its port calls, made by the scheduler -------------------------------------------------

    def _launch(self, delivery: Delivery) -> None:
        delivery.answers, delivery.history, delivery.pending = (), "", None
        self._resume(delivery)

    def _resume(self, delivery: Delivery) -> None:
        self.current = delivery
        try:
            self._to_next_point(delivery)
        finally:
            self.current = None
        if delivery.done:
            self.in_flight.remove(delivery)
            delivery.container.busy = False

    def _to_next_point(self, delivery: Delivery) -> None:
        """Make the call it waits at, then run it (from the memo) to its next call that is a point, or to its end."""
        try:
            if delivery.pending is not None:
                if self.now > delivery.started_at + self.timeout():
                    raise InjectedCrash(f"Task timed out after {self.timeout():.2f} seconds")
                self._call(delivery, delivery.pending)
            while True:
                step = self.memo.next(self, delivery)
                for tap in step.taps:
                    self.monitor.tap(tap)
                if step.call is None:
                    delivery.pending, delivery.done = None, True
                    self._ended(delivery, step.result, step.error)
                    return
                if not commutes(step.call[0], step.call[1]):
                    delivery.pending, delivery.where = step.call, step.call[0]
                    return
                self._call(delivery, step.call)
        except SandboxKilled as killed:
            delivery.pending, delivery.done = None, True
            self._ended(delivery, None, killed)

    def _call(self, delivery: Delivery, call: tuple) -> None:
        """One port call on the delivery's own (instrumented) ports: its answer, or the error it raised."""
        where, args, kwargs = call
        port, method = where.split(".")
        args, kwargs = _copied((args, kwargs))  # a port may keep or change the containers it is given
        try:
            value, kind = getattr(getattr(delivery.container.ports, port), method)(*args, **kwargs), "return"
        except (SandboxKilled, Violation):
            raise
        except Exception as error:
            value, kind = without_traceback(error), "raise"
        delivery.answers += ((where, kind, value, self.now),)
        shown = digest(
            value if kind == "return" else [type(value).__name__, str(value), getattr(value, "response", None)]
        )
        entry = f"{delivery.history}|{where}|{shown}|{self.now!r}"
        delivery.history = hashlib.blake2b(entry.encode(), digest_size=16).hexdigest()

    def nested_point(self, where: str) -> None:
        """A port method called another port method: the live simulator gives that call a point of its own, where
        another delivery may go first. This search makes the outer call whole, so that point may be taken only
        where nothing else could run then (one option: no interleaving is lost)."""
        if len(self.options()) > 1:
            raise NestedInterleaving(
                f"{where}, inside another port call of {self.current.label()}, is an interleaving point while "
                "other deliveries may run: this search cannot interleave inside a port call"
            )

    # ---- one scheduler event ------------------------------------------------------------------------------

    def transition(self) -> bool:
        """One scheduler event and the monitor's checks after it; False once the schedule is quiescent (its end
        checked). A violation raises."""
        self.events += 1
        if self.events > MAX_EVENTS:
            raise Violation("liveness", f"no quiescence after {MAX_EVENTS} scheduler events")
        if not self._step():
            self.monitor.at_end()
            return False
        self.monitor.after_event()
        return True

    # ---- a state as a value -------------------------------------------------------------------------------

    def snapshot(self) -> State:
        table = self.world.table
        return State(
            scheduler={name: _copied(value) for name, value in self.__dict__.items() if name not in _FIXED},
            monitor={
                name: _copied(value) for name, value in self.monitor.__dict__.items() if name not in _MONITOR_FIXED
            },
            containers={function: [(c, c.busy) for c in cs] for function, cs in self.containers.items()},
            caches=[(d.container.ports.store, _store_cache(d.container.ports.store)) for d in self.in_flight],
            items=items_of(table),
            objects={key: list(versions) for key, versions in dict.items(self.world.bucket.keys)},
            messages=list(self.world.sns.topics[self.world.topic_arn].sent_notifications),
            token=direct_clients._TOKENS[0],
        )

    def restore(self, state: State) -> None:
        for name, value in state.scheduler.items():
            current, value = getattr(self, name, None), _copied(value)
            if isinstance(current, dict):  # in place: the clients hold the scheduler's dict of transaction tokens
                current.clear()
                current.update(value)
            else:
                setattr(self, name, value)
        self.monitor.__dict__.update(_copied(state.monitor))
        self.containers = {function: [c for c, _ in cs] for function, cs in state.containers.items()}
        for cs in state.containers.values():
            for container, busy in cs:
                container.busy = busy
        for store, (cache, cached) in state.caches:  # (a store is one delivery's: a cold container each)
            store._cache, store._cached = copy.copy(cache), cached
        set_items(self.world.table, state.items)
        keys = self.world.bucket.keys
        dict.clear(keys)
        dict.update(keys, {key: list(versions) for key, versions in state.objects.items()})
        sent = self.world.sns.topics[self.world.topic_arn].sent_notifications
        sent[:] = state.messages
        direct_clients._TOKENS[0] = state.token


def _store_cache(store) -> tuple:
    return copy.copy(store._cache), store._cached


def _copied(value: Any) -> Any:
    """A scheduler's or monitor's field (or a port call's arguments), copied as deep as they may be changed: lists,
    dicts, sets and tuples, and deliveries (their set of runs published; their other fields are replaced, never
    changed in place). Other values are shared."""
    if isinstance(value, list):
        return [_copied(inner) for inner in value]
    if isinstance(value, Delivery):
        twin = copy.copy(value)
        twin.published = set(value.published)
        return twin
    if isinstance(value, dict):
        return {key: _copied(inner) for key, inner in value.items()}
    if isinstance(value, set):
        return set(value)
    if isinstance(value, tuple):
        return tuple(_copied(inner) for inner in value)
    return value
