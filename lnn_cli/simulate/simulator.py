"""The deterministic simulator: the real handlers (launcher, trainer, watchdog, `lnn stop`/`resume`) under one seeded
scheduler, in one OS thread.

Each in-flight delivery is a greenlet running the real handler. Every port method of every container (`Ports.table`,
`.store`, `.notifier`, `.invoker`) first switches back to the scheduler: these are the interleaving points. The
scheduler picks what runs next (an in-flight delivery, a queued one whose time has come, a watchdog tick, an
operator's command), injects faults (see `Rates`), and advances virtual time only when nothing can run. After every
scheduler event the `Monitor` checks the invariants. See docs/simulation.md.
"""

from __future__ import annotations

import hashlib
import json
import random
import uuid as _uuid
from dataclasses import dataclass, field
from typing import Any

from greenlet import greenlet

from lnn_cli.cloud.runtime import SandboxKilled
from lnn_cli.simulate import aws
from lnn_cli.simulate.decisions import RandomDecisions
from lnn_cli.simulate.invariants import Monitor, Violation
from lnn_cli.simulate.scenario import RUN_ID, START, Scenario, draw_rates, draw_scenario
from lnn_core import run_control

REQUEST_SECONDS = 0.004  # virtual time one AWS request takes
RETRY_BACKOFF = (60.0, 120.0)  # Lambda's retries of an async event after a function error
MAX_RETRIES = 2
THROTTLE_BACKOFF_MAX = 300.0  # throttles and system errors: from ~1 s, doubling, up to 5 minutes
WATCHDOG_EVERY = 60.0
TRAINER_CONCURRENCY = 6  # the trainer's reserved concurrency in the simulation: more starts at once are throttled
QUIET_TICKS = 4  # watchdog ticks with nothing else in flight before a schedule ends (> the lease)
MAX_EVENTS = 40_000  # scheduler events in one schedule: more is a runaway (a liveness failure)


class Pruned(BaseException):
    """The exhaustive search reached a state it explored already: this schedule's future adds nothing."""


def _digest(value: Any) -> str:
    """A port call's answer as the exhaustive search's state keeps it: canonical (a record's attributes sorted, so
    that the order in which writes added them does not matter) and without the run record's `usage_*` counters,
    which only pricing reads (see docs/simulation.md, "Exhaustive small cases")."""
    if isinstance(value, (bytes, bytearray)):
        return hashlib.blake2b(bytes(value), digest_size=8).hexdigest()
    if isinstance(value, dict):
        from lnn_core.aws.usage import USAGE_PREFIX

        value = {key: item for key, item in value.items() if not str(key).startswith(USAGE_PREFIX)}
    return json.dumps(value, sort_keys=True, default=_canonical)


def _canonical(value: Any) -> Any:
    return sorted(value, key=repr) if isinstance(value, (set, frozenset)) else repr(value)


class InjectedCrash(SandboxKilled):
    """The process died (out of memory, a timeout, a kill): no `except Exception` in a handler catches it."""


class _NullLogger:
    def __getattr__(self, name):
        return _ignore


def _ignore(*args, **kwargs):
    return None


@dataclass
class Container:
    function: str
    number: int
    skew: float
    handler: Any = None
    ports: Any = None
    busy: bool = False


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
    history: list = field(default_factory=list)  # (port call, digest of its answer): its local state (exhaustive)
    done: bool = False

    def identity(self) -> str:
        return f"{self.request_id}#{self.attempt}.{self.copy}"

    def label(self) -> str:
        event = self.event if isinstance(self.event, dict) else {}
        if self.function == "trainer":
            state = event.get("state")
            shard = f"/{event['shard']}" if event.get("shard") is not None else ""
            return f"d{self.number} trainer step {event.get('step')} {state}{shard} [{self.request_id}#{self.attempt}]"
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


class Simulator:
    def __init__(
        self,
        world: aws.MotoWorld,
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
        self._identities: dict[str, Delivery] = {}
        self._secrets = random.Random(seed * 7919 + 1)

    # ---- set-up ---------------------------------------------------------------------------------------------

    def _install(self) -> list:
        """Deterministic ids, seeds and wall clock for the handlers; returns what to restore."""
        from lnn_core.aws import sdk
        from lnn_core.launch import launcher
        from lnn_core.protocol import steps, trainer

        sim = self

        class _Uuid:
            UUID = _uuid.UUID

            @staticmethod
            def uuid4():  # distinct in every digit (claimants use the first 12), the same in every replay, and
                # a function of the delivery (not of the global order), so that the exhaustive search's states merge
                current = sim.current
                if current is None:
                    sim._uuids += 1
                    name = f"{sim.seed}/{sim._uuids}"
                else:
                    current.uuids += 1
                    name = f"{sim.seed}/{current.identity()}/{current.uuids}"
                return _uuid.UUID(bytes=hashlib.blake2b(name.encode(), digest_size=16).digest())

        class _Secrets:
            @staticmethod
            def randbelow(n):
                return sim._secrets.randrange(n)

        class _Time:
            def __getattr__(self, name):
                import time

                return getattr(time, name)

            def time(self):
                return sim.now

            def monotonic(self):
                return sim.now

            def sleep(self, seconds):
                sim.now += seconds

        import lnn_core.aws.run_table as run_table
        import lnn_core.aws.usage as usage

        saved = []
        # Every module of lnn_core that reads ids, secrets or the wall clock (a module missing here is an error)
        for module, name, value in (
            (trainer, "uuid", _Uuid),
            (run_control, "uuid", _Uuid),
            (launcher, "uuid", _Uuid),
            (launcher, "secrets", _Secrets),
            (sdk, "time", _Time()),
            (run_table, "time", _Time()),
            (usage, "time", _Time()),  # usage: a delivery's billed time is virtual too
            (launcher, "time", _Time()),
            (steps, "time", _Time()),
            (trainer, "time", _Time()),
        ):
            saved.append((module, name, getattr(module, name)))
            setattr(module, name, value)
        return saved

    def session(self, container: Container) -> Any:
        return SimSession(self, container)

    def _container(self, function: str) -> Container:
        """A warm idle container of the function, or a cold one (with its own clock skew)."""
        idle = [c for c in self.containers[function] if not c.busy]
        if idle and not self.exhaustive and self.decisions.choice(4, "warm or cold") != 0:
            return self.decisions.pick(idle, "container")
        number = sum(len(cs) for cs in self.containers.values()) + 1
        where = f"{function} container c{number}"
        skew = 0.0 if self.exhaustive else self.decisions.uniform(-0.5, 0.5)
        big = self.decisions.fault("skew", self.rates.skew, where, lambda r: r.choice([-1, 1]) * r.uniform(31.0, 90.0))
        if big is not None:
            skew = big
        container = Container(function, number, skew)
        self._build(container)
        self.containers[function].append(container)
        return container

    def _build(self, container: Container) -> None:
        from lnn_core import handlers
        from lnn_core.aws.ports import Ports

        invoker = SimInvoker(self, container)
        clock = lambda: self.now + container.skew  # noqa: E731
        session, logger = self.session(container), _NullLogger()
        if container.function == "trainer":
            handler = handlers.build_trainer(session=session, invoker=invoker, clock=clock, logger=logger)
            handler.metrics = None
            self.monitor.watch_trainer(handler)
        elif container.function == "launcher":
            handler = handlers.build_launcher(session=session, invoker=invoker, clock=clock, logger=logger)
        elif container.function == "watchdog":
            handler = handlers.build_watchdog(session=session, invoker=invoker, clock=clock, logger=logger)
            handler.sweeps = None  # the schedules are of runs: no sweep is driven (nor its bucket listed) here
        else:
            handler = None
        ports = (
            handler.ports
            if handler is not None
            else Ports.from_environment(
                invoke_target="LNN_TRAINER_FUNCTION", session=session, invoker=invoker, clock=clock
            )
        )
        for port_name in ("table", "store", "notifier", "invoker"):
            port = getattr(ports, port_name)
            if port is not None:
                _instrument(self, port, port_name)
        container.handler, container.ports = handler, ports

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
        what = f"{function} event {_event_name(payload)} from {origin}"
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
        saved = self._install()
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

    def _run(self) -> Result:
        self.world.reset()
        aws.reset_tokens()
        self.main = greenlet.getcurrent()
        self.world.s3.put_object(aws.BUCKET, DATA_KEY, self.scenario.data_npz(), disable_notification=True)
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
        except Pruned:
            result = Result(self, None)
            result.pruned = True
            return result
        return Result(self, None)

    def _step(self) -> bool:
        """One scheduler event; False once the schedule is quiescent."""
        busy = any(d.function != "watchdog" for d in self.queue + self.in_flight) or bool(self.operator)
        if busy:
            self.quiet_ticks = 0
        elif self.quiet_ticks >= QUIET_TICKS and not self.in_flight and self.monitor.watchdog_may_act_at() is None:
            return False
        runnable = [d for d in self.in_flight if d.frozen_until <= self.now]
        ready = [d for d in self.queue if d.due <= self.now]
        if self.exhaustive and self.exhaustive.get("twins"):
            ready = _one_of_each_fresh_twin_pair(ready)
        timers = []
        if self.next_tick <= self.now:
            timers.append("watchdog")
        timers += [f"operator {command}" for at, command in self.operator if at <= self.now]
        options = [("resume", d) for d in runnable] + [("start", d) for d in ready] + [(t, None) for t in timers]
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
        if delivery.identity() in self._identities and self._identities[delivery.identity()] is not delivery:
            raise RuntimeError(f"two deliveries share the identity {delivery.identity()} (their claimants would too)")
        self._identities[delivery.identity()] = delivery
        container = self._container(delivery.function)
        container.busy = True
        delivery.container, delivery.started_at, delivery.where = container, self.now, "start"
        delivery.may_crash = True
        self.in_flight.append(delivery)
        delivery.greenlet = greenlet(lambda: self._body(delivery), parent=self.main)
        self.log(f"start {delivery.label()} in c{container.number} (skew {container.skew:+.1f} s)")
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

    def _timeout(self) -> float:
        return float(self.monitor.rules.timeout_seconds)

    def _body(self, delivery: Delivery) -> None:
        container = delivery.container
        context = Context(self, delivery, self._timeout())
        error: BaseException | None = None
        try:
            if delivery.function == "operator":
                self._operate(container, delivery.event["command"])
            else:
                result = container.handler.handle(delivery.event, context)
                self.outcomes.append(f"{delivery.label()}: {_outcome(result)}")
                self.log(f"end {delivery.label()}: {_outcome(result)}")
        except SandboxKilled as killed:
            error = killed
        except (Violation, Pruned):
            raise
        except Exception as failure:
            error = failure
        finally:
            delivery.done = True
        if error is not None:
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

    def _operate(self, container: Container, command: str) -> None:
        from lnn_core.errors import LnnInputError

        try:
            answer = (run_control.stop_run if command == "stop" else run_control.resume_run)(container.ports, RUN_ID)
            self.log(f"operator {command}: {answer}")
        except LnnInputError as refused:
            self.log(f"operator {command} refused: {refused}")

    # ---- inside a delivery: the interleaving points and faults -------------------------------------------------

    def point(self, where: str) -> None:
        """Called by every port method: give the scheduler the choice of what runs next, maybe freeze here, and
        die if the invocation's time ran out meanwhile."""
        delivery = self.current
        if delivery is None:
            return
        delivery.where = where
        self.now += self.request_seconds
        freeze = self.decisions.fault(
            "freeze", self.rates.freeze, f"{where} in {delivery.label()}", lambda r: r.uniform(31.0, 150.0)
        )
        if freeze:
            delivery.frozen_until = self.now + freeze
            delivery.frozen_long = True
            self.monitor.frozen(delivery)
            self.log(f"FROZEN {delivery.label()} at {where} for {freeze:.1f} s")
        self.main.switch()
        if self.now > delivery.started_at + self._timeout():
            raise InjectedCrash(f"Task timed out after {self._timeout():.2f} seconds")

    def maybe_crash(self, when: str, where: str) -> None:
        delivery = self.current
        if delivery is None or not delivery.may_crash:
            return
        if self.decisions.fault(f"crash {when}", self.rates.crash / 2, f"{where} in {delivery.label()}"):
            delivery.may_crash = False
            raise InjectedCrash(f"injected crash {when} {where}")

    def lost_answer(self, where: str) -> bool:
        delivery = self.current
        label = delivery.label() if delivery is not None else "operator"
        return bool(self.decisions.fault("lost answer", self.rates.lost_answer, f"{where} in {label}"))


def _instrument(sim: Simulator, port: Any, port_name: str) -> None:
    """Wrap every public method of a port: an interleaving point before it, and for the effects
    (`lnn_core.aws.ports.EFFECTS`) a possible crash just before and just after it."""
    from lnn_core.aws.ports import EFFECTS

    effects = set(EFFECTS.get(port_name, ()))
    for name in dir(type(port)):
        if name.startswith("_"):
            continue
        method = getattr(port, name, None)
        if not callable(method):
            continue
        setattr(port, name, _wrapped(sim, method, f"{port_name}.{name}", name in effects))


def _wrapped(sim: Simulator, method, where: str, effect: bool):
    def call(*args, **kwargs):
        if not (sim.exhaustive and _commutes(where, args)):
            sim.point(where)
        if effect:
            sim.maybe_crash("before", where)
        result = method(*args, **kwargs)
        sim.monitor.returned(where, result, args, kwargs)
        if sim.exhaustive and sim.current is not None:
            sim.current.history.append((where, _digest(result)))
        if effect:
            sim.maybe_crash("after", where)
        return result

    call.__wrapped__ = method
    return call


DATA_KEY = f"runs/{RUN_ID}/data.npz"  # the run's training data: put before the launch, never written again


def _commutes(where: str, args: tuple) -> bool:
    """Port calls that commute with every other delivery's, so that the exhaustive search gives them no point of
    their own (they run with what precedes them): an invoke only queues an event, whose start is a choice of its
    own, and no delivery reads the queue; the usage ADD writes only `usage_*` counters, which no delivery's choices
    and no invariant read (the search's state leaves them out); the training data is read-only for the whole run.
    Every other call, reads included, is a point: a read's answer depends on which writes came before it."""
    return where in ("invoker.invoke_async", "table.add_usage") or (
        where == "store.get_bytes" and bool(args) and args[0] == DATA_KEY
    )


class SimInvoker:
    """The `Invoker` of a container: Lambda accepts the event (an SDK retry after a lost answer sends it again,
    with a new request id) and the scheduler delivers it."""

    def __init__(self, sim: Simulator, container: Container):
        self._sim, self._container = sim, container

    def invoke_async(self, payload: dict[str, Any]) -> None:
        origin = self._sim.current.label() if self._sim.current else f"c{self._container.number}"
        self._sim.monitor.invoked()
        if self._sim.lost_answer(f"lambda.invoke {_event_name(payload)}"):
            self._sim.send("trainer", payload, origin=f"{origin} (answer lost, SDK retries)")
        self._sim.send("trainer", payload, origin=origin)


def _event_name(payload: Any) -> str:
    if not isinstance(payload, dict):
        return "?"
    if "step" in payload:
        shard = f"/{payload['shard']}" if payload.get("shard") is not None else ""
        return f"step {payload['step']} {payload.get('state')}{shard}"
    return payload.get("command") or ("launch" if "parameters" in payload else payload.get("detail-type", "event"))


def _outcome(result: Any) -> str:
    if isinstance(result, dict):
        return str(result.get("outcome") or result.get("status") or result.get("stalled") or "ok")[:80]
    return str(result)[:80]


# ---- the clients the handlers get: moto (direct or through boto3), with lost answers and the monitor's taps ------

WRITES = {
    "dynamodb": ("put_item", "update_item", "delete_item", "batch_write_item", "transact_write_items"),
    "s3": ("put_object", "delete_objects", "copy_object"),
    "sns": ("publish",),
}


class SimSession:
    """What `handlers.build_*(session=...)` gets: clients whose writes go through `_write` (lost answers, the
    monitor's record of applied writes), direct or through boto3 (`Simulator.mode`)."""

    region_name = aws.REGION

    def __init__(self, sim: Simulator, container: Container):
        self._sim, self._container = sim, container

    def resource(self, service: str, config=None):
        assert service == "dynamodb", service
        if self._sim.mode == "boto":
            resource = self._sim.world.session.resource("dynamodb", config=config)
            return _ResourceProxy(self._sim, resource)
        return _ResourceProxy(self._sim, aws.DirectDynamoResource(aws.DirectDynamoClient(self._sim.tokens)))

    def client(self, service: str, config=None):
        if self._sim.mode == "boto":
            inner = self._sim.world.session.client(service, config=config)
        else:
            inner = {"s3": aws.DirectS3Client, "sns": aws.DirectSnsClient}[service](self._sim.world)
        return _ClientProxy(self._sim, inner, service)


class _ClientProxy:
    def __init__(self, sim: Simulator, inner, service: str):
        self._sim, self._inner, self._service = sim, inner, service

    def __getattr__(self, name: str):
        attribute = getattr(self._inner, name)
        if name in WRITES.get(self._service, ()):
            return lambda **params: _write(self._sim, self._service, name, attribute, params)
        return attribute


class _TableProxy(_ClientProxy):
    def __init__(self, sim: Simulator, table, client_proxy):
        super().__init__(sim, table, "dynamodb")
        self.meta = _Meta(client_proxy)
        self.name = table.name


class _Meta:
    def __init__(self, client):
        self.client = client


class _ResourceProxy:
    def __init__(self, sim: Simulator, resource):
        self._sim, self._resource = sim, resource
        self.meta = _Meta(_ClientProxy(sim, resource.meta.client, "dynamodb"))

    def Table(self, name: str):
        return _TableProxy(self._sim, self._resource.Table(name), self.meta.client)


def _write(sim: Simulator, service: str, operation: str, call, params: dict[str, Any]):
    """One write request. With a lost answer, it is applied, its answer lost, and the SDK sends it again: the
    second answer (or error) is the caller's. The monitor sees every applied write."""
    where = f"{service}.{operation}"
    if service == "dynamodb" and operation == "transact_write_items":
        params = {**params, "ClientRequestToken": params.get("ClientRequestToken") or aws._next_token()}
    attempts = 2 if sim.lost_answer(where) else 1
    if attempts == 2 and service == "sns":
        sim.monitor.lost_publish()
    for attempt in range(attempts):
        before = sim.monitor.before_write(service, operation, params)
        try:
            answer = call(**params)
        except Exception:
            if attempt + 1 == attempts:
                raise
            continue
        sim.monitor.after_write(service, operation, params, before)
        if attempt + 1 < attempts:
            sim.log(f"answer lost: {where} (applied; the SDK retries)")
            sim.now += 0.05
    return answer


class Result:
    """A schedule's end: its violation (None: every invariant held), what it injected, and how to replay it."""

    def __init__(self, sim: Simulator, violation: Violation | None):
        self.seed, self.violation = sim.seed, violation
        self.faults = sim.decisions.injected()
        self.all_faults = list(sim.decisions.faults)
        self.counts = dict(sim.decisions.counts)
        self.scenario = sim.scenario.describe()
        self.events, self.deliveries, self.virtual_seconds = sim.events, sim.deliveries, sim.now - START
        continued = (sim.world.fields(RUN_ID, "continuations") or {}).get("continuations")
        self.status = sim.monitor.status and sim.monitor.status + (
            " after a stop and `lnn resume`" if continued else ""
        )
        self.messages = len(sim.monitor.messages)
        self.bodies = sim.monitor.bodies
        self.trace = sim.trace
        self.outcomes = sim.outcomes
        self.given_up = sim.given_up
        self.disabled = sorted(sim.decisions.disabled)
        self.pruned = False
        self.allowed_hits = sim.monitor.allowed_hits
        self.signature = (
            self.events,
            self.deliveries,
            round(self.virtual_seconds, 3),
            self.status,
            self.messages,
            tuple(f.describe() for f in self.all_faults),
            tuple(self.outcomes),
        )

    @property
    def failed(self) -> bool:
        return self.violation is not None

    def replay_command(self) -> str:
        disabled = f" --disable {','.join(map(str, self.disabled))}" if self.disabled else ""
        return f".venv/bin/python -m lnn_cli.simulate --seed {self.seed}{disabled} --trace"

    def summary(self) -> str:
        head = (
            f"seed {self.seed}: {self.scenario}; {self.deliveries} deliveries, {self.events} events, "
            f"{self.virtual_seconds:.0f} virtual s, run {self.status}, {self.messages} message(s), faults {self.counts}"
        )
        if self.allowed_hits:
            head += "\nallowed: " + "; ".join(self.allowed_hits)
        if self.violation is None:
            return head
        return f"{head}\nVIOLATION {self.violation}\nreplay: {self.replay_command()}"


def _one_of_each_fresh_twin_pair(ready: list[Delivery]) -> list[Delivery]:
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
