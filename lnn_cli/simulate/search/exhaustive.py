"""Exhaustive small cases: every interleaving of the deliveries of a two- or three-step run, each trainer event
delivered twice (two twins with their own request ids), with at most one fault in a schedule, chosen among every
effect's crash before, crash after and lost answer.

A depth-first search that forks the process at every choice point (`ForkingDecisions`), so that no schedule's
prefix is executed twice. A choice point is a port call (`simulate.interleaving._commutes` names the calls that
commute with everything and get none), a delivery's start, a timer, or a fault. Each point's state (`state_digest`)
is hashed: a state seen before, with at least as many faults left to spend, cuts the schedule there. `make simulate
EXHAUSTIVE=1` runs both cases to the end; docs/simulation.md argues why each reduction keeps every outcome.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import json
import os
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

from lnn_cli.simulate.decisions import ScriptedDecisions
from lnn_cli.simulate.scenario import CALM, Scenario
from lnn_cli.simulate.search.runner import world
from lnn_cli.simulate.simulator import Pruned, Simulator
from lnn_core.protocol.sending import LEASE_SECONDS

DIGEST = 16  # bytes of a state's digest
RECORD = DIGEST + 1  # in the file of states seen: the digest, then the budget of faults left
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
    # a round of K=2 shard workers: step 1 (start), step 2 (the reduce of 2 shards), step 3 (finish)
    "K=2 start+round+finish": (Scenario({**BASE, "workers": 2}, 20, 2, 1, CALM), {"twins": True}),
}
# The tests' small one: the same run as K=1's, every event delivered once (the faults still branch at every effect)
SMALL = {"K=1 epoch+finish, once": (CASES["K=1 epoch+finish"][0], {"twins": False})}


@dataclass
class Exploration:
    case: str
    schedules: int = 0
    pruned: int = 0
    states: int = 0
    complete: bool = False
    seconds: float = 0.0  # wall time
    cpu_seconds: float = 0.0  # of the search's processes, all of them
    max_faults: int = 1
    violations: list = None

    def report(self) -> str:
        bound = "complete" if self.complete else "stopped early (its bound, or its first violation)"
        return (
            f"{self.case}: {self.schedules} schedules ({self.pruned} cut at a state seen before), {self.states} "
            f"distinct states, at most {self.max_faults} fault, {bound}, {self.seconds:.0f} s "
            f"({self.cpu_seconds:.0f} s of CPU); violations: {len(self.violations)}"
        )


def explore(
    case: str,
    *,
    max_schedules: int | None = None,
    max_faults: int = 1,
    launch_twin: bool = False,
    first_violation: bool = False,
    verbose: bool = False,
    jobs: int = 1,
) -> Exploration:
    """A depth-first search of the case's schedules, forked at every choice point (`ForkingDecisions`). No prefix
    is ever executed twice, and every state is expanded once: its digest goes to a file that every process reads
    before its next check. `max_schedules` bounds it; `first_violation` stops it at the first violation; `jobs`
    subtrees run at once (one per core)."""
    scenario, structure = {**CASES, **SMALL}[case]
    structure = {**structure, "launch_twin": launch_twin}
    found = Exploration(case, max_faults=max_faults, violations=[])
    started, cpu = time.perf_counter(), _cpu_seconds()
    the_world = world()
    gc.freeze()  # what exists now is shared with the children, not copied by their collections
    with tempfile.TemporaryDirectory(prefix="lnn-exhaustive-") as folder, _unfrozen_after():
        shared = _Shared(folder, limit=max_schedules, first_violation=first_violation, verbose=verbose, jobs=jobs)
        root = os.getpid()
        decisions = ForkingDecisions(shared, kinds=FAULT_KINDS, max_faults=max_faults)
        sim = Simulator(the_world, 0, decisions=decisions, scenario=scenario, exhaustive=structure)

        def at_new_point(label: str) -> None:
            try:
                shared.check(state_digest(sim, label), max_faults - len(decisions.injected()))
            except Pruned:
                if os.getpid() == root:
                    raise
                shared.mark_end(b"P")  # a child cut here ends now: nothing after the cut is read
                decisions.finish()
                os._exit(0)

        decisions.on_new_point = at_new_point
        try:
            shared.ended(decisions.taken, sim.run())
            decisions.finish()
        except BaseException:
            if os.getpid() == root:
                raise
            traceback.print_exc()
            os._exit(1)  # its parent stops the search
        if os.getpid() != root:
            os._exit(0)  # a child's subtree is done: its parent goes on with its next option
        found.schedules, found.pruned, violations, found.states = shared.totals()
        found.violations = [
            (script, replay(case, script, max_faults=max_faults, launch_twin=launch_twin)) for script in violations
        ]
        found.complete = not shared.full()  # (conservative: the bound may have been reached at the very end)
    found.seconds, found.cpu_seconds = time.perf_counter() - started, _cpu_seconds() - cpu
    return found


@contextlib.contextmanager
def _unfrozen_after():
    try:
        yield
    finally:
        gc.unfreeze()


def _cpu_seconds() -> float:
    """This process's CPU time and that of its children (and theirs: each waited for its own)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def replay(case: str, script: list[int], *, max_faults: int = 1, launch_twin: bool = False, trace: bool = False):
    """One schedule of the case along `script` (the options taken at its choice points, as a violation prints)."""
    scenario, structure = {**CASES, **SMALL}[case]
    structure = {**structure, "launch_twin": launch_twin}
    decisions = ScriptedDecisions(script, kinds=FAULT_KINDS, max_faults=max_faults)
    return Simulator(world(), 0, decisions=decisions, scenario=scenario, exhaustive=structure, trace=trace).run()


class ForkingDecisions(ScriptedDecisions):
    """At each choice point, a child process per option but the last, in order, then the last option here: the first
    option of a fault is none, so that the state a fault's branch reaches may be found seen already with a larger
    budget of faults. A child runs beside its parent when a job place is free (`_Jobs`), else its parent waits for
    it. Past the bound of schedules, no further branches."""

    def __init__(self, shared: _Shared, **kwargs):
        super().__init__([], **kwargs)
        self.shared = shared
        self.beside: list[int] = []  # children running beside this process, each on a place of its own

    def _next(self, n: int, what: str) -> int:
        super()._next(n, what)  # the check first: a state seen before is cut before it branches
        for option in range(n - 1):
            if self.shared.full():
                self.taken[-1] = option
                return option
            sys.stdout.flush()
            place = self.shared.jobs.take()
            child = os.fork()
            if child == 0:
                self.shared.jobs.held = place
                self.beside = []
                self.taken[-1] = option
                return option
            if place:
                self.beside.append(child)
            else:
                _check_child(child, os.waitpid(child, 0)[1], option, what)
        self.taken[-1] = n - 1
        return n - 1

    def finish(self) -> None:
        """This process's own schedule is done: free its place, then wait for the children beside it."""
        self.shared.jobs.release()
        for child in self.beside:
            _check_child(child, os.waitpid(child, 0)[1], None, "a subtree run beside its parent")
        self.beside = []


def _check_child(child: int, status: int, option: int | None, what: str) -> None:
    if status != 0:
        raise SearchFailed(f"the search's child {child} for option {option} of {what!r} died (status {status})")


class _Jobs:
    """At most `jobs` processes of the search compute at once, as make's jobserver does: a pipe holds the free
    places; a process that forks takes one for its child if it can (the child runs beside it, and gives the place
    back when its subtree is done), else waits for the child, which runs in its stead."""

    def __init__(self, jobs: int):
        self.read_end, self.write_end = os.pipe()
        os.set_blocking(self.read_end, False)
        os.write(self.write_end, b"+" * (jobs - 1))
        self.held = True  # the root's own place: every process runs on one, its parent's or one from the pipe

    def take(self) -> bool:
        try:
            return os.read(self.read_end, 1) == b"+"
        except BlockingIOError:
            return False

    def release(self) -> None:
        if self.held:
            os.write(self.write_end, b"+")
            self.held = False


class SearchFailed(BaseException):
    """A child of the search died: no handler's `except Exception` may take it for a function error."""


class _Shared:
    """What the search's processes share, in files that each appends to with whole records (`jobs` of them may
    compute at once): the digests of the states seen, a byte per schedule's end (P: cut at a state seen before,
    E: ended), and the scripts of the schedules that violated an invariant. Two processes that reach one state at
    the same instant may both expand it: work done twice, no state left out."""

    def __init__(self, folder: str, *, limit: int | None, first_violation: bool, verbose: bool, jobs: int = 1):
        self.states_path, self.ends_path = os.path.join(folder, "states"), os.path.join(folder, "ends")
        self.violations_path = os.path.join(folder, "violations")
        for path in (self.states_path, self.ends_path, self.violations_path):
            open(path, "wb").close()
        self.seen: dict[bytes, int] = {}  # state digest -> the largest budget of faults it was seen with
        self.read_upto = 0
        self.limit, self.first_violation, self.verbose = limit, first_violation, verbose
        self.jobs = _Jobs(jobs)

    def check(self, digest: bytes, budget: int) -> None:
        """Cut the schedule here if its state was seen with at least this budget of faults left (what a smaller
        budget can do, a larger one can: it may decline every fault); else record it."""
        with open(self.states_path, "rb") as states:
            states.seek(self.read_upto)
            new = states.read()
        new = new[: len(new) - len(new) % RECORD]  # a record being appended beside us is read next time
        self.read_upto += len(new)
        for start in range(0, len(new), RECORD):
            known, left = new[start : start + DIGEST], new[start + DIGEST]
            self.seen[known] = max(left, self.seen.get(known, -1))
        if self.seen.get(digest, -1) >= budget:
            raise Pruned()
        self.seen[digest] = budget
        with open(self.states_path, "ab") as states:  # one write of a whole record: appends beside ours stay whole
            states.write(digest + bytes([budget]))

    def ended(self, script: list[int], result) -> None:
        if result.failed:
            with open(self.violations_path, "a") as violations:
                violations.write(json.dumps(script) + "\n")
        count = self.mark_end(b"P" if result.pruned else b"E")
        if self.verbose and count % 5000 == 0:
            print(f"  {count} schedules, {self.states()} states", flush=True)

    def mark_end(self, mark: bytes) -> int:
        """A schedule's end (P: cut at a state seen before, E: ended); the count of ends so far."""
        with open(self.ends_path, "ab") as ends:
            ends.write(mark)
            return ends.tell()

    def full(self) -> bool:
        """No more branches: the bound of schedules is reached, or a violation when the search stops at the first."""
        return (self.limit is not None and os.path.getsize(self.ends_path) >= self.limit) or (
            self.first_violation and os.path.getsize(self.violations_path) > 0
        )

    def totals(self) -> tuple[int, int, list, int]:
        with open(self.ends_path, "rb") as ends:
            marks = ends.read()
        with open(self.violations_path) as violations:
            scripts = [json.loads(line) for line in violations]
        return len(marks), marks.count(b"P"), scripts, self.states()

    def states(self) -> int:
        """Distinct states seen (a state seen again with a larger budget counts once)."""
        with open(self.states_path, "rb") as states:
            records = states.read()
        return len({records[start : start + DIGEST] for start in range(0, len(records), RECORD)})


def state_digest(sim: Simulator, label: str) -> bytes:
    """Everything that the schedule's future (its choices, effects and invariant verdicts) depends on: moto's items
    (without the `usage_*` counters) and objects, the queue, each in-flight delivery (its event and identity, which
    fix its ids; its port calls' answers, which fix where its deterministic handler is; what its deadline still
    allows), virtual time and the timers, and the monitor's memory. See docs/simulation.md."""
    table = sim.world.table
    items = sorted(
        json.dumps(_without_usage(item.to_json()), sort_keys=True, default=str)
        for by_range in table.items.values()
        for item in by_range.values()
    )
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
        label,
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


def _without_usage(item: dict) -> dict:
    """An item without the run record's `usage_*` counters: atomic ADDs that only pricing reads."""
    from lnn_core.aws.usage import USAGE_PREFIX

    attributes = {
        name: value for name, value in item.get("Attributes", {}).items() if not name.startswith(USAGE_PREFIX)
    }
    return {**item, "Attributes": attributes}


def main(max_schedules: int | None = None, *, cases: list[str] | None = None, jobs: int = 1) -> int:
    """The cases (default: both) with at most one fault, to the end (or to `max_schedules` each), `jobs` processes
    at once; 1 if any violated an invariant."""
    failed = False
    for case in cases or CASES:
        found = explore(case, max_schedules=max_schedules, verbose=True, jobs=jobs)
        print(found.report(), flush=True)
        for script, result in found.violations[:3]:
            failed = True
            print(
                f"  VIOLATION {result.violation}\n  replay: .venv/bin/python -m lnn_cli.simulate --exhaustive "
                f"--case {case!r} --script {','.join(map(str, script))} --trace",
                flush=True,
            )
    return 1 if failed else 0
