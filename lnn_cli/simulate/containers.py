"""Lambda's containers in the simulation: a warm idle one reused, or a cold one with its own clock skew, whose
handler is built with the simulated clients (`clients`) and whose ports are instrumented (`interleaving`)."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lnn_cli.simulate.clients import SimInvoker
from lnn_cli.simulate.deliveries import InjectedCrash
from lnn_cli.simulate.interleaving import instrument

if TYPE_CHECKING:
    from lnn_cli.simulate.simulator import Simulator


@dataclass
class Container:
    function: str
    number: int
    skew: float
    handler: Any = None
    ports: Any = None
    busy: bool = False


def container_for(sim: Simulator, function: str) -> Container:
    """A warm idle container of the function, or a cold one (with its own clock skew)."""
    idle = [c for c in sim.containers[function] if not c.busy]
    if idle and not sim.exhaustive and sim.decisions.choice(4, "warm or cold") != 0:
        return sim.decisions.pick(idle, "container")
    number = sum(len(cs) for cs in sim.containers.values()) + 1
    where = f"{function} container c{number}"
    skew = 0.0 if sim.exhaustive else sim.decisions.uniform(-0.5, 0.5)
    big = sim.decisions.fault("skew", sim.rates.skew, where, lambda r: r.choice([-1, 1]) * r.uniform(31.0, 90.0))
    if big is not None:
        skew = big
    container = Container(function, number, skew)
    build(sim, container)
    sim.containers[function].append(container)
    return container


def build(sim: Simulator, container: Container) -> None:
    from lnn_core import handlers
    from lnn_core.aws.ports import Ports

    invoker = SimInvoker(sim, container)
    clock = lambda: sim.now + container.skew  # noqa: E731
    session, logger = sim.session(container), _NullLogger()
    if container.function == "trainer":
        handler = handlers.build_trainer(session=session, invoker=invoker, clock=clock, logger=logger)
        handler.metrics = None
        sim.monitor.watch_trainer(handler)
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
        else Ports.from_environment(invoke_target="LNN_TRAINER_FUNCTION", session=session, invoker=invoker, clock=clock)
    )
    for port_name in ("table", "store", "notifier", "invoker"):
        port = getattr(ports, port_name)
        if port is not None:
            instrument(sim, port, port_name)
    ports.wait, ports.waiting = (lambda seconds: wait(sim, seconds)), (lambda: waiting(sim))
    container.handler, container.ports = handler, ports


@contextlib.contextmanager
def waiting(sim: Simulator):
    """The span of a delivery's wait for its peers (`Ports.waiting`): its reads are counted (`interleaving.point`)."""
    delivery = sim.current
    delivery.wait_reads = 0
    try:
        yield
    finally:
        delivery.wait_reads = None


def wait(sim: Simulator, seconds: float) -> None:
    """A delivery's pause while it waits for its peers (`Ports.wait`), in virtual time: it is not runnable until
    then (as a frozen one, without counting as a freeze), and dies if its invocation's time ran out meanwhile."""
    delivery = sim.current
    delivery.frozen_until = max(delivery.frozen_until, sim.now + seconds)
    delivery.where = "waiting"
    sim.main.switch()
    if sim.now > delivery.started_at + sim.timeout():
        raise InjectedCrash(f"Task timed out after {sim.timeout():.2f} seconds")


class _NullLogger:
    def __getattr__(self, name):
        return _ignore


def _ignore(*args, **kwargs):
    return None
