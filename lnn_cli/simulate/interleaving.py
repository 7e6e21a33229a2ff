"""Inside a delivery: the interleaving points and the faults injected there. Every port method of a container is
wrapped, so that it first switches back to the scheduler (`point`: the scheduler picks what runs next), and an
effect may crash just before or just after it (`maybe_crash`); the clients' writes and invokes may lose their
answer (`lost_answer`). The exhaustive search keeps each answer's digest, and gives the calls that commute with
every other delivery's no point of their own (`_commutes`)."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from lnn_cli.simulate.deliveries import InjectedCrash
from lnn_cli.simulate.scenario import RUN_ID

if TYPE_CHECKING:
    from lnn_cli.simulate.simulator import Simulator


def instrument(sim: Simulator, port: Any, port_name: str) -> None:
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
        if sim.exhaustive and where in COMPOSITE_READS:
            return method(*args, **kwargs)  # its own calls are the points (and, learning, the recorded calls)
        if sim.replay is not None:  # the memoized search learning a handler's next call: AWS is not touched
            return sim.replay.answer(where, args, kwargs)
        if sim.exhaustive and where in UNREAD_WRITES:
            return None
        if sim.memoized:  # its scheduler chose before the call; a call inside it would be a point of its own
            if sim.port_depth and not commutes(where, args):
                sim.nested_point(where)
        elif not (sim.exhaustive and commutes(where, args)):
            point(sim, where)
        sim.port_depth += 1
        try:
            if effect:
                maybe_crash(sim, "before", where)
            result = method(*args, **kwargs)
            sim.monitor.returned(where, result, args, kwargs)
            if effect:
                maybe_crash(sim, "after", where)
        finally:
            sim.port_depth -= 1
        return result

    call.__wrapped__ = method
    return call


def point(sim: Simulator, where: str) -> None:
    """Called by every port method: give the scheduler the choice of what runs next, maybe freeze here, and
    die if the invocation's time ran out meanwhile."""
    delivery = sim.current
    if delivery is None:
        return
    delivery.where = where
    sim.now += sim.request_seconds
    if delivery.wait_reads is not None:
        delivery.wait_reads += 1
    # A freeze stands for a process that stalls for a while: in a wait's reads, which only see whether its peers are
    # in, one draw for the wait (at its first read), not one a read, which would freeze every long wait
    freeze = (
        sim.decisions.fault(
            "freeze", sim.rates.freeze, f"{where} in {delivery.label()}", lambda r: r.uniform(31.0, 150.0)
        )
        if (delivery.wait_reads or 0) <= 1
        else None
    )
    if freeze:
        delivery.frozen_until = sim.now + freeze
        delivery.frozen_long = True
        sim.monitor.frozen(delivery)
        sim.log(f"FROZEN {delivery.label()} at {where} for {freeze:.1f} s")
    sim.main.switch()
    if sim.now > delivery.started_at + sim.timeout():
        raise InjectedCrash(f"Task timed out after {sim.timeout():.2f} seconds")


def maybe_crash(sim: Simulator, when: str, where: str) -> None:
    delivery = sim.current
    if delivery is None or not delivery.may_crash:
        return
    if sim.decisions.fault(f"crash {when}", sim.rates.crash / 2, f"{where} in {delivery.label()}"):
        delivery.may_crash = False
        raise InjectedCrash(f"injected crash {when} {where}")


def lost_answer(sim: Simulator, where: str) -> bool:
    delivery = sim.current
    label = delivery.label() if delivery is not None else "operator"
    return bool(sim.decisions.fault("lost answer", sim.rates.lost_answer, f"{where} in {label}"))


DATA_KEY = f"runs/{RUN_ID}/data.npz"  # the run's training data: put before the launch, never written again
# Answered (None) without being made in the exhaustive searches: the usage ADD writes only the `usage_*` counters,
# which nothing but pricing reads (no choice, no invariant); made, it would multiply the run record's versions
UNREAD_WRITES = frozenset({"table.add_usage"})
# Port methods made only of other port calls that read (a listing: the status index, then each record): the
# exhaustive searches give them no point of their own, only their calls, each a point as any other (a point before
# the first would add nothing: no request comes before it)
COMPOSITE_READS = frozenset({"table.list_runs"})


def commutes(where: str, args: tuple) -> bool:
    """Port calls that commute with every other delivery's, so that the exhaustive search gives them no point of
    their own (they run with what precedes them): an invoke only queues an event, whose start is a choice of its
    own, and no delivery reads the queue; the usage ADD writes only `usage_*` counters, which no delivery's choices
    and no invariant read (the search's state leaves them out); the training data is read-only for the whole run.
    Every other call, reads included, is a point: a read's answer depends on which writes came before it."""
    return where in ("invoker.invoke_async", "table.add_usage") or (
        where == "store.get_bytes" and bool(args) and args[0] == DATA_KEY
    )


def digest(value: Any) -> str:
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
