"""The deterministic simulator: the real handlers (launcher, trainer, watchdog, `lnn stop`/`resume`) under one seeded
scheduler, in one OS thread.

Each in-flight delivery is a greenlet running the real handler. Every port method of every container (`Ports.table`,
`.store`, `.notifier`, `.invoker`) first switches back to the scheduler: these are the interleaving points. The
scheduler picks what runs next (an in-flight delivery, a queued one whose time has come, a watchdog tick, an
operator's command), injects faults (see `Rates`), and advances virtual time only when nothing can run. After every
scheduler event the `Monitor` checks the invariants. See docs/simulation.md.

This module is the scheduler; what it schedules is in `deliveries`, the containers that run them in `containers`
(their clients in `clients`, their ports' interleaving points and faults in `interleaving`), the handlers'
deterministic ids and clock in `determinism`, and a schedule's end in `result`. The simulated AWS is in `aws/`, the
invariants the `Monitor` checks in `checks/`, and the searches that run the scheduler (seeds, shrinking, exhaustive)
in `search/`.
"""

from __future__ import annotations

import hashlib
import json
import random
from typing import Any

from greenlet import greenlet

from lnn_cli.cloud.runtime import SandboxKilled
from lnn_cli.simulate import determinism
from lnn_cli.simulate.aws import direct_clients
from lnn_cli.simulate.aws.world import BUCKET, MotoWorld
from lnn_cli.simulate.checks.invariants import Monitor, Violation
from lnn_cli.simulate.clients import SimSession
from lnn_cli.simulate.containers import Container, container_for
from lnn_cli.simulate.decisions import RandomDecisions
from lnn_cli.simulate.deliveries import Context, Delivery, event_name, one_of_each_fresh_twin_pair
from lnn_cli.simulate.interleaving import DATA_KEY
from lnn_cli.simulate.result import Result
from lnn_cli.simulate.scenario import (
    QUIET_TICKS,
    RUN_ID,
    START,
    WATCHDOG_EVERY,
    Scenario,
    draw_rates,
    draw_scenario,
)
from lnn_core import run_control

REQUEST_SECONDS = 0.004  # virtual time one AWS request takes
RETRY_BACKOFF = (60.0, 120.0)  # Lambda's retries of an async event after a function error
MAX_RETRIES = 2
THROTTLE_BACKOFF_MAX = 300.0  # throttles and system errors: from ~1 s, doubling, up to 5 minutes
TRAINER_CONCURRENCY = 6  # the trainer's reserved concurrency in the simulation: more starts at once are throttled
MAX_EVENTS = 40_000  # scheduler events in one schedule: more is a runaway (a liveness failure)


class Simulator:
    memoized = False  # the memoized search's scheduler (search/memoized) chooses before a port call, not in it
    replay = None  # set while that search learns a handler's next port call (search/memo)
    requests = None  # that search's memo of moto's DynamoDB answers (aws/request_memo)
    port_depth = 0  # port calls in progress (a port method may call another)

    def __init__(
        self,
        world: MotoWorld,
        seed: int,
        *,
        disabled: set[int] | frozenset[int] = frozenset(),
        decisions: RandomDecisions | None = None,
        scenario: Scenario | None = None,
        mode: str = "direct",
        trace: bool = False,
        check_every_event: bool = True,
        exhaustive: dict | None = None,
        allowed: frozenset[str] = frozenset(),
    ):
        self.world, self.seed, self.mode = world, seed, mode
        # The exhaustive search's structure: {"twins": every trainer event delivered twice, "launch_twin": two
        # launches}; containers are always cold and unskewed there, so that only interleavings and faults branch.
        self.exhaustive = exhaustive
        # The exhaustive search's requests take no time: its interleavings then reach the same timestamps and merge
        # (a small run's requests add up to well under a second, far from any lease; time passes by the scheduler's
        # jumps: back-offs, delays, watchdog ticks).
        self.request_seconds = 0.0 if exhaustive else REQUEST_SECONDS
        self.allowed = frozenset(allowed)  # invariants whose violations are noted, not fatal
        self.decisions = decisions or RandomDecisions(seed, disabled=disabled)
        rng = self.decisions.rng
        if scenario is None:
            scenario = draw_scenario(rng, rates=draw_rates(rng))
        self.scenario, self.rates = scenario, scenario.rates
        self.now = START
        self.queue: list[Delivery] = []
        self.in_flight: list[Delivery] = []
        self.containers: dict[str, list[Container]] = {"launcher": [], "trainer": [], "watchdog": [], "operator": []}
        self.deliveries = 0
        self.events = 0
        self.current: Delivery | None = None
        self.main = None
        self.given_up: list[str] = []
        self.trace_on = trace
        self.trace: list[str] = []
        self.outcomes: list[str] = []
        self.next_tick = START + self.decisions.uniform(5.0, WATCHDOG_EVERY)
        self.operator: list[tuple[float, str]] = []
        self.quiet_ticks = 0
        self.tokens = {}
        self.monitor = Monitor(self, check_every_event=check_every_event)
        self._uuids = 0
        self._identities: dict[str, int] = {}  # a delivery's identity -> its number
        self._secrets = random.Random(seed * 7919 + 1)

    # ---- set-up ---------------------------------------------------------------------------------------------

    def session(self, container: Container) -> Any:
        return SimSession(self, container)

    # ---- events -----------------------------------------------------------------------------------------------

    def log(self, text: str) -> None:
        if self.trace_on:
            self.trace.append(f"{self.now - START:10.3f} {text}")

    def send(
        self, function: str, event: Any, *, origin: str, request_id: str | None = None, faults: bool = True
    ) -> None:
        """An asynchronous invoke accepted by Lambda: queue its delivery, with Lambda's at-least-once faults."""
        payload = json.loads(json.dumps(event))
        self.deliveries += 1
        request_id = request_id or self._request_id(origin)
        what = f"{function} event {event_name(payload)} from {origin}"
        delivery = Delivery(self.deliveries, function, payload, request_id, due=self.now, born=self.now)
        if faults and function == "trainer" and self.decisions.fault("lose", self.rates.lose, what):
            self.log(f"LOST {what}")
            return
        if faults:
            delay = self.decisions.fault("delay", self.rates.delay, what, lambda r: r.uniform(0.5, 60.0))
            if delay:
                delivery.due += delay
        self.queue.append(delivery)
        if self.exhaustive and self.exhaustive.get("twins") and function == "trainer":
            self.deliveries += 1
            self.queue.append(
                Delivery(
                    self.deliveries,
                    function,
                    json.loads(json.dumps(payload)),
                    f"{request_id}d",
                    due=self.now,
                    born=self.now,
                    copy=1,
                )
            )
        elif faults:
            twin = self.decisions.fault(
                "duplicate",
                self.rates.duplicate,
                what,
                lambda r: (
                    "distinct id" if r.random() < self.rates.distinct_id else "same id",
                    0.0 if r.random() < 0.5 else r.uniform(0.5, 20.0),
                ),
            )
            if twin:
                kind, late = twin
                self.deliveries += 1
                copy_id = request_id if kind == "same id" else f"{request_id}d"
                self.queue.append(
                    Delivery(
                        self.deliveries,
                        function,
                        json.loads(json.dumps(payload)),
                        copy_id,
                        due=self.now + late,
                        born=self.now,
                        copy=1,
                    )
                )
        self.log(f"sent {what} as d{delivery.number}")

    def _request_id(self, origin: str) -> str:
        """A new request id: from the sending delivery's identity and its count of sends (not from the global
        order of sends, so that the same delivery sends the same ids in every interleaving)."""
        current = self.current
        if current is None:
            self._top_sends = getattr(self, "_top_sends", 0) + 1
            return f"{origin.split()[0]}{self._top_sends}"
        current.sends += 1
        return "r" + hashlib.blake2b(f"{current.identity()}/{current.sends}".encode(), digest_size=4).hexdigest()

    def run(self) -> Result:
        saved = determinism.install(self)
        try:
            return self._run()
        finally:
            for module, name, value in saved:
                setattr(module, name, value)
            for delivery in self.in_flight:
                if delivery.greenlet is not None and not delivery.greenlet.dead:
                    try:
                        delivery.greenlet.throw(SystemExit)
                    except BaseException:
                        pass

    def begin(self) -> None:
        """A fresh AWS, the run's data, its launch (and a twin), the operator's commands: what precedes the first
        scheduler event."""
        self.world.reset()
        direct_clients.reset_tokens()
        self.main = greenlet.getcurrent()
        self.world.s3.put_object(BUCKET, DATA_KEY, self.scenario.data_npz(), disable_notification=True)
        launch = {"run_id": RUN_ID, "parameters": {k: v for k, v in self.scenario.parameters.items()}}
        self.send("launcher", launch, origin="user", faults=False)
        if (self.exhaustive or {}).get("launch_twin") or self.decisions.fault(
            "concurrent launch", self.rates.concurrent_launch, "launcher"
        ):
            self.send("launcher", launch, origin="user (again)", faults=False)
        # A calm run takes a second or two of virtual time, a stormy one minutes: the stop comes in either.
        stop = self.decisions.fault(
            "stop",
            self.rates.stop,
            "operator",
            lambda r: r.uniform(0.0, 2.0) if r.random() < 0.5 else r.uniform(0.0, 40.0),
        )
        if stop is not None:
            self.operator.append((START + stop, "stop"))
            resume = self.decisions.fault(
                "resume after stop", self.rates.resume_after_stop, "operator", lambda r: r.uniform(5.0, 1500.0)
            )
            if resume is not None:
                self.operator.append((START + stop + resume, "resume"))
        if self.decisions.fault("resume", self.rates.resume, "operator", lambda r: r.uniform(0.0, 1500.0)) is not None:
            self.operator.append((START + self.decisions.faults[-1].detail, "resume"))

    def _run(self) -> Result:
        self.begin()
        try:
            while True:
                self.events += 1
                if self.events > MAX_EVENTS:
                    raise Violation("liveness", f"no quiescence after {MAX_EVENTS} scheduler events")
                self.monitor.after_event()
                if not self._step():
                    break
            self.monitor.at_end()
        except Violation as violation:
            return Result(self, violation)
        return Result(self, None)

    def _step(self) -> bool:
        """One scheduler event; False once the schedule is quiescent."""
        busy = any(d.function != "watchdog" for d in self.queue + self.in_flight) or bool(self.operator)
        if busy:
            self.quiet_ticks = 0
        elif self.quiet_ticks >= QUIET_TICKS and not self.in_flight and self.monitor.watchdog_may_act_at() is None:
            return False
        options = self.options()
        if not options:
            self._advance(busy)
            return True
        kind, delivery = options[self.decisions.choice(len(options), "next")]
        if kind == "resume":
            self._resume(delivery)
        elif kind == "start":
            self._start(delivery)
        elif kind == "watchdog":
            self.next_tick += WATCHDOG_EVERY
            if not busy:
                self.quiet_ticks += 1
            self.send(
                "watchdog", {"source": "aws.events", "detail-type": "Scheduled Event"}, origin="schedule", faults=False
            )
        else:
            command = kind.split()[1]
            self.operator.remove(next((at, c) for at, c in self.operator if c == command and at <= self.now))
            self.send("operator", {"command": command}, origin="operator", faults=False)
        return True

    def options(self) -> list[tuple[str, Delivery | None]]:
        """What may run next: an in-flight delivery, a queued one whose time has come, a timer that is due."""
        runnable = [d for d in self.in_flight if d.frozen_until <= self.now]
        ready = [d for d in self.queue if d.due <= self.now]
        if self.exhaustive and self.exhaustive.get("twins"):
            ready = one_of_each_fresh_twin_pair(ready)
        timers = []
        if self.next_tick <= self.now:
            timers.append("watchdog")
        timers += [f"operator {command}" for at, command in self.operator if at <= self.now]
        return [("resume", d) for d in runnable] + [("start", d) for d in ready] + [(t, None) for t in timers]

    def _advance(self, busy: bool) -> None:
        """Nothing can run now: jump to the next time something can. With only the watchdog left, the ticks that
        can only read (nothing stalled, no message owed) are skipped: the run's record says when one may act."""
        times = [d.due for d in self.queue] + [d.frozen_until for d in self.in_flight] + [at for at, _ in self.operator]
        if not busy and not self.in_flight:
            act = self.monitor.watchdog_may_act_at()
            if act is not None:
                self.quiet_ticks = 0
                while self.next_tick < act - WATCHDOG_EVERY:
                    self.next_tick += WATCHDOG_EVERY
        self.now = max(self.now, min(times + [self.next_tick]))

    def _start(self, delivery: Delivery) -> None:
        self.queue.remove(delivery)
        if self.now - delivery.born > self._event_age():
            self.given_up.append(f"{delivery.label()}: expired")
            self.log(f"EXPIRED {delivery.label()}")
            return
        busy = sum(1 for c in self.containers[delivery.function] if c.busy)
        throttled = delivery.function == "trainer" and busy >= TRAINER_CONCURRENCY
        if not throttled and delivery.function != "operator":
            throttled = bool(self.decisions.fault("throttle", self.rates.throttle, delivery.label()))
        if throttled:
            delivery.throttles += 1
            backoff = min(THROTTLE_BACKOFF_MAX, 2.0 ** (delivery.throttles - 1)) * self.decisions.uniform(0.8, 1.2)
            delivery.due = self.now + backoff
            self.queue.append(delivery)
            self.log(f"THROTTLED {delivery.label()} for {backoff:.1f} s")
            return
        if self._identities.setdefault(delivery.identity(), delivery.number) != delivery.number:
            raise RuntimeError(f"two deliveries share the identity {delivery.identity()} (their claimants would too)")
        container = container_for(self, delivery.function)
        container.busy = True
        delivery.container, delivery.started_at, delivery.where = container, self.now, "start"
        delivery.may_crash = True
        self.in_flight.append(delivery)
        self.log(f"start {delivery.label()} in c{container.number} (skew {container.skew:+.1f} s)")
        self._launch(delivery)

    def _launch(self, delivery: Delivery) -> None:
        """Run a started delivery's handler to its first interleaving point, in a greenlet of its own."""
        delivery.greenlet = greenlet(lambda: self._body(delivery), parent=self.main)
        self._resume(delivery)

    def _resume(self, delivery: Delivery) -> None:
        self.current = delivery
        try:
            delivery.greenlet.switch()
        finally:
            self.current = None
        if delivery.done:
            self.in_flight.remove(delivery)
            delivery.container.busy = False

    def _event_age(self) -> float:
        return float(self.monitor.rules.event_age_seconds)

    def timeout(self) -> float:
        return float(self.monitor.rules.timeout_seconds)

    def _body(self, delivery: Delivery) -> None:
        container = delivery.container
        context = Context(self, delivery, self.timeout())
        result, error = None, None
        try:
            if delivery.function == "operator":
                self.operate(container, delivery.event["command"])
            else:
                result = container.handler.handle(delivery.event, context)
        except SandboxKilled as killed:
            error = killed
        except Violation:
            raise
        except Exception as failure:
            error = failure
        finally:
            delivery.done = True
        self._ended(delivery, result, error)

    def _ended(self, delivery: Delivery, result: Any, error: BaseException | None) -> None:
        """A delivery's end: its outcome, or its error and Lambda's retry of it."""
        if error is None:
            if delivery.function != "operator":
                self.outcomes.append(f"{delivery.label()}: {_outcome(result)}")
                self.log(f"end {delivery.label()}: {_outcome(result)}")
            return
        self.monitor.delivery_died(delivery)
        self.log(f"FAILED {delivery.label()}: {type(error).__name__}: {error}")
        self.outcomes.append(f"{delivery.label()}: {type(error).__name__}")
        if delivery.function == "operator":
            return
        if delivery.attempt < MAX_RETRIES:
            self.deliveries += 1
            retry = Delivery(
                self.deliveries,
                delivery.function,
                delivery.event,
                delivery.request_id,
                due=self.now + RETRY_BACKOFF[delivery.attempt],
                born=delivery.born,
                attempt=delivery.attempt + 1,
                copy=delivery.copy,
            )  # its own claimant ids
            self.queue.append(retry)
        else:
            self.given_up.append(f"{delivery.label()}: {type(error).__name__}")

    def operate(self, container: Container, command: str) -> None:
        from lnn_core.errors import LnnInputError

        try:
            answer = (run_control.stop_run if command == "stop" else run_control.resume_run)(container.ports, RUN_ID)
            self.log(f"operator {command}: {answer}")
        except LnnInputError as refused:
            self.log(f"operator {command} refused: {refused}")


def _outcome(result: Any) -> str:
    if isinstance(result, dict):
        return str(result.get("outcome") or result.get("status") or result.get("stalled") or "ok")[:80]
    return str(result)[:80]
