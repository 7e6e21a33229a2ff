"""Exhaustive small cases: every interleaving of the deliveries of a two- or three-step run, each trainer event
delivered twice (two twins with their own request ids), with at most one fault in a schedule, chosen among every
effect's crash before, crash after and lost answer.

A depth-first search over states. A state is a value (`MemoSimulator.snapshot`): the scheduler's queue, timers and
in-flight deliveries (each its answers so far and the port call it waits at), the monitor's memory, and moto's items
and objects. From a state, every option sequence of one scheduler event (which delivery or timer goes next, then the
faults offered inside it) is run from the restored state; each successor is hashed (`state_digest`), and one seen
before with at least as many faults left is not expanded again. A delivery's handler runs only the first time it is
at a point (`memo.DeliveryMemo`), so a state costs its port calls on moto, not its handlers' work. `make simulate
EXHAUSTIVE=1` runs both cases to the end; docs/simulation.md argues why each reduction keeps every outcome.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field

from lnn_cli.simulate import determinism
from lnn_cli.simulate.aws.request_memo import contents_digest
from lnn_cli.simulate.checks.invariants import Violation
from lnn_cli.simulate.decisions import ScriptedDecisions
from lnn_cli.simulate.result import Result
from lnn_cli.simulate.scenario import CALM, Scenario
from lnn_cli.simulate.search.memo import DeliveryMemo
from lnn_cli.simulate.search.memoized import MemoSimulator, State
from lnn_cli.simulate.search.runner import world
from lnn_cli.simulate.simulator import Simulator
from lnn_core.protocol.sending import LEASE_SECONDS

DIGEST = 16  # bytes of a state's digest
FAULT_KINDS = frozenset({"crash before", "crash after", "lost answer"})
BASE = {
    "learning_rate": 0.5,
    "neurons": [1],
    "activations": ["sigmoid"],
    "seed": 3,
    "optimizer": "gd",
    "batch_size": None,
    "epochs": 1,
    "granularity": "epoch",
}
CASES = {
    # 1 epoch at granularity epoch: step 1 (the whole epoch), step 2 (finish)
    "K=1 epoch+finish": (Scenario({**BASE, "workers": 1}, 20, 2, 1, CALM), {"twins": True}),
    # a round of K=2 shard workers: step 1 (start), step 2 (the reduce of 2 shards), step 3 (finish: 2 fit workers)
    "K=2 start+round+finish": (Scenario({**BASE, "workers": 2, "reduce": "slices"}, 20, 2, 1, CALM), {"twins": True}),
    # the same round reduced in the shard that completes it: K deliveries, no slice events
    "K=2 start+round in its shard+finish": (
        Scenario({**BASE, "workers": 2, "reduce": "shard"}, 20, 2, 1, CALM),
        {"twins": True},
    ),
}
# The tests' small one: the same run as K=1's, every event delivered once (the faults still branch at every effect)
SMALL = {"K=1 epoch+finish, once": (CASES["K=1 epoch+finish"][0], {"twins": False})}


@dataclass
class Exploration:
    case: str
    max_faults: int = 1
    states: int = 0  # distinct states expanded
    transitions: int = 0  # scheduler events run (each from a restored state)
    ends: int = 0  # quiescent schedule ends reached (each checked at its end)
    deliveries: int = 0  # handler runs: a delivery at a point not seen before
    requests: tuple[int, int] = (0, 0)  # DynamoDB requests moto ran (the request memo's misses), of all made
    complete: bool = False
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    violations: list = field(default_factory=list)  # (script, Result): a replayable schedule per violation

    def report(self) -> str:
        bound = "complete" if self.complete else "stopped early (its bound, or its first violation)"
        rate = self.states / self.cpu_seconds if self.cpu_seconds else 0.0
        return (
            f"{self.case}: {self.states} distinct states, {self.transitions} transitions, {self.ends} schedule "
            f"ends, {self.deliveries} handler runs, moto ran {self.requests[0]} of {self.requests[1]} DynamoDB "
            f"requests, at most {self.max_faults} fault, {bound}, {self.seconds:.0f} s "
            f"({self.cpu_seconds:.0f} s of CPU, {rate:.0f} states/s); violations: {len(self.violations)}"
        )


def explore(
    case: str,
    *,
    max_states: int | None = None,
    max_faults: int = 1,
    launch_twin: bool = False,
    first_violation: bool = False,
    verbose: bool = False,
    verify_every: int = 0,
) -> Exploration:
    """A depth-first search of the case's states, each expanded once (or again when reached with a larger budget
    of faults). `max_states` bounds it; `first_violation` stops it at the first violation. With `verify_every` n,
    every n-th new state is reached again from the start by a simulator of its own, without saved states or
    memos, and must have the same digest (`MemoDiverged` if not)."""
    found = Exploration(case, max_faults=max_faults)
    began, cpu = time.perf_counter(), time.process_time()
    memo = DeliveryMemo()
    decisions = ScriptedDecisions([], kinds=FAULT_KINDS, max_faults=max_faults)
    try:
        with started(case, decisions, memo=memo, launch_twin=launch_twin) as sim:
            root = state_digest(sim)
            seen = {root: max_faults}  # state digest -> the largest budget of faults it was expanded with
            parents: dict[bytes, tuple[bytes, list[int]]] = {}  # -> (its parent, the choices of the event between)
            stack: list[tuple[State, int, bytes]] = [(sim.snapshot(), max_faults, root)]
            while stack:
                state, budget, key = stack.pop()
                found.states += 1
                if verbose and found.states % 20_000 == 0:
                    print(
                        f"  {found.states} states, {len(stack)} on the stack, {memo.replays} handler runs", flush=True
                    )
                for taken, outcome, left in _successors(sim, state, budget):
                    found.transitions += 1
                    if isinstance(outcome, Violation):
                        script = _script(parents, key) + taken
                        result = replay(case, script, max_faults=max_faults, launch_twin=launch_twin)
                        if result.violation is None or result.violation.invariant != outcome.invariant:
                            raise MemoDiverged(f"the schedule of a violation ({outcome}) does not repeat it afresh")
                        found.violations.append((script, result))
                        sim.at = None  # (the world was the replay's meanwhile)
                        if first_violation:
                            stack.clear()
                            break
                        continue
                    if outcome is False:
                        found.ends += 1
                        continue
                    digest = state_digest(sim)
                    if seen.get(digest, -1) >= left:
                        continue
                    seen[digest], parents[digest] = left, (key, taken)
                    sim.at = sim.snapshot()
                    stack.append((sim.at, left, digest))
                    if verify_every and len(seen) % verify_every == 0:
                        _verify(case, parents, digest, sim.events, max_faults=max_faults, launch_twin=launch_twin)
                        sim.at = None  # (the world was another simulator's meanwhile)
                if max_states is not None and found.states >= max_states:
                    break
            found.complete = not stack and not (first_violation and found.violations)
    finally:
        world().keeps_objects = False  # (the search's saved states are gone: objects may be freed again)
    found.deliveries = memo.replays
    found.requests = (sim.requests.misses, sim.requests.misses + sim.requests.hits)
    found.seconds, found.cpu_seconds = time.perf_counter() - began, time.process_time() - cpu
    return found


@contextlib.contextmanager
def started(case: str, decisions: ScriptedDecisions, *, memo: DeliveryMemo | None = None, launch_twin: bool = False):
    """A simulator of the case at its first scheduler event (AWS fresh, the launch sent, checked once), with the
    handlers' ids, seeds and clock its own until the block ends."""
    scenario, structure = {**CASES, **SMALL}[case]
    structure = {**structure, "launch_twin": launch_twin}
    sim = MemoSimulator(
        world(), scenario=scenario, structure=structure, decisions=decisions, memo=memo or DeliveryMemo()
    )
    saved = determinism.install(sim)
    try:
        sim.begin()
        sim.monitor.after_event()
        yield sim
    finally:
        for module, name, value in saved:
            setattr(module, name, value)


def _successors(sim: MemoSimulator, state: State, budget: int):
    """Every option sequence of one scheduler event from `state`, each run from the state restored: yields the
    choices it took, its outcome (True, False at a schedule's end, or the Violation) and the faults left, with
    the simulator in the successor state."""
    pending: list[list[int]] = [[]]
    while pending:
        script = pending.pop()
        if sim.at is not state:  # (the last successor pushed is the next state expanded: the simulator is there)
            sim.restore(state)
        sim.at = None
        decisions = sim.decisions = ScriptedDecisions(script, kinds=FAULT_KINDS, max_faults=budget)
        try:
            outcome = sim.transition()
        except Violation as violation:
            outcome = violation
        for index in range(len(script), len(decisions.points)):
            pending.extend(decisions.taken[:index] + [option] for option in range(1, decisions.points[index]))
        yield decisions.taken, outcome, budget - len(decisions.injected())


class MemoDiverged(AssertionError):
    """A state the search reached through saved states and memos differs from the same schedule run afresh."""


def _verify(case: str, parents: dict, digest: bytes, events: int, **options) -> None:
    again = _replayed(case, _script(parents, digest), events=events, **options)[1]
    if again != digest:
        raise MemoDiverged(f"the state after {events} events differs when its schedule runs afresh")


def _script(parents: dict, key: bytes) -> list[int]:
    """The choices from the root to the state `key`, event after event."""
    events = []
    while key in parents:
        key, taken = parents[key]
        events.append(taken)
    return [option for taken in reversed(events) for option in taken]


def replay(case: str, script: list[int], *, max_faults: int = 1, launch_twin: bool = False, trace: bool = False):
    """One schedule of the case along `script` (the options taken at its choice points, as a violation prints)."""
    return _replayed(case, script, max_faults=max_faults, launch_twin=launch_twin, trace=trace)[0]


def _replayed(case: str, script: list[int], *, max_faults: int, launch_twin: bool, trace: bool = False, events=None):
    """The schedule along `script` from the start, in a simulator of its own (its memos empty): its result, and the
    digest of its state after `events` scheduler events (None: at its end)."""
    decisions = ScriptedDecisions(script, kinds=FAULT_KINDS, max_faults=max_faults)
    with started(case, decisions, launch_twin=launch_twin) as sim:
        sim.trace_on = trace
        try:
            while (events is None or sim.events < events) and sim.transition():
                pass
        except Violation as violation:
            return Result(sim, violation), None
        return Result(sim, None), state_digest(sim)


def state_digest(sim: Simulator) -> bytes:
    """Everything that the schedule's future (its choices, effects and invariant verdicts) depends on: moto's items
    (whose `usage_*` counters this search never changes: `UNREAD_WRITES`) and objects, the queue, each in-flight
    delivery (its event and identity, which fix its ids; its start and sends; its port calls' answers, which fix
    where its deterministic handler is; what its deadline still allows), virtual time and the timers, and the
    monitor's memory. See docs/simulation.md."""
    items = contents_digest(sim.world.table).hex()
    bucket = sorted((key, getattr(value, "etag", None)) for key, value in sim.world.bucket.keys.items())
    queue = sorted(
        json.dumps(
            [d.function, d.event, d.request_id, d.copy, round(d.due, 3), round(d.born, 3), d.attempt, d.throttles],
            sort_keys=True,
        )
        for d in sim.queue
    )
    timeout = sim.monitor.rules.timeout_seconds
    flights = sorted(
        json.dumps(
            [
                d.function,
                d.event,
                d.request_id,
                d.copy,
                d.attempt,
                round(d.born, 3),
                repr(d.started_at),  # (read through the handler's Context)
                d.sends,  # (the next request id it sends is from it)
                d.where,
                d.history,
                d.may_crash,
                d.notify_claim,
                sorted(d.published),
                round(min(d.started_at + timeout - sim.now, LEASE_SECONDS), 3),
            ],
            sort_keys=True,
            default=str,
        )
        for d in sim.in_flight
    )
    monitor = sim.monitor
    state = [
        round(sim.now, 3),
        items,
        bucket,
        queue,
        flights,
        sorted(monitor.commits.items()),
        sorted(m["id"] for m in monitor.messages),
        sorted(monitor.excuses),
        monitor.notified,
        sorted(monitor.model_epochs),
        sorted(monitor.snapshots),
        sim.next_tick,
        sim.quiet_ticks,
        getattr(sim, "_top_sends", 0),
        sim._uuids,
    ]  # the counters the next ids outside a delivery come from
    return hashlib.blake2b(json.dumps(state, default=str).encode(), digest_size=DIGEST).digest()


def main(max_states: int | None = None, *, cases: list[str] | None = None) -> int:
    """The cases (default: both) with at most one fault, to the end (or to `max_states` each); 1 if any violated
    an invariant."""
    failed = False
    for case in cases or CASES:
        found = explore(case, max_states=max_states, verbose=True)
        print(found.report(), flush=True)
        for script, result in found.violations[:3]:
            failed = True
            print(
                f"  VIOLATION {result.violation}\n  replay: .venv/bin/python -m lnn_cli.simulate --exhaustive "
                f"--case {case!r} --script {','.join(map(str, script))} --trace",
                flush=True,
            )
    return 1 if failed else 0
