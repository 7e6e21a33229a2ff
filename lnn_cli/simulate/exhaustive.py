"""Exhaustive small cases (stateless model checking): every interleaving of the deliveries of a two- or three-step
run, each trainer event delivered twice (two twins with their own request ids), with at most one fault in a
schedule, chosen among every effect's crash before, crash after and lost answer.

Each schedule re-executes from scratch along a script of choices; a depth-first search enumerates the scripts.
States are hashed at every new choice point (moto's table, bucket and messages, the queue, every in-flight
delivery's port-call history, the monitor's record of commits and messages, the time): a state seen before cuts
the schedule there, its future having been explored already. Bounded by `max_schedules` per case.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass

from lnn_cli.simulate.decisions import ScriptedDecisions
from lnn_cli.simulate.runner import world
from lnn_cli.simulate.scenario import CALM, Scenario
from lnn_cli.simulate.simulator import Pruned, Simulator

FAULT_KINDS = frozenset({"crash before", "crash after", "lost answer"})
BASE = {"learning_rate": 0.5, "neurons": [1], "activations": ["sigmoid"], "seed": 3, "optimizer": "gd",
        "batch_size": None, "epochs": 1, "granularity": "epoch"}
CASES = {
    # 1 epoch at granularity epoch: step 1 (the whole epoch), step 2 (finish)
    "K=1 epoch+finish": (Scenario({**BASE, "workers": 1}, 20, 2, 1, CALM), {"twins": True}),
    # a round of K=2 shard workers: step 1 (start), step 2 (the reduce of 2 shards), step 3 (finish)
    "K=2 start+round+finish": (Scenario({**BASE, "workers": 2}, 20, 2, 1, CALM), {"twins": True}),
}


@dataclass
class Exploration:
    case: str
    schedules: int = 0
    pruned: int = 0
    states: int = 0
    complete: bool = False
    seconds: float = 0.0
    max_faults: int = 1
    violations: list = None

    def report(self) -> str:
        bound = "complete" if self.complete else "stopped at the bound"
        return (f"{self.case}: {self.schedules} schedules ({self.pruned} cut at a state seen before), {self.states} "
                f"distinct states, at most {self.max_faults} fault, {bound}, {self.seconds:.0f} s; "
                f"violations: {len(self.violations)}")


def explore(case: str, *, max_schedules: int = 2000, max_faults: int = 1, launch_twin: bool = False,
            effects_only: bool = True, verbose: bool = False) -> Exploration:
    scenario, structure = CASES[case]
    structure = {**structure, "launch_twin": launch_twin, "effects_only": effects_only}
    found = Exploration(case, max_faults=max_faults, violations=[])
    seen: set[str] = set()
    stack: list[list[int]] = [[]]
    started = time.perf_counter()
    the_world = world()
    while stack and found.schedules < max_schedules:
        script = stack.pop()
        decisions = ScriptedDecisions(script, kinds=FAULT_KINDS, max_faults=max_faults)
        sim = Simulator(the_world, 0, decisions=decisions, scenario=scenario, exhaustive=structure)
        decisions.on_new_point = _pruner(sim, decisions, script, seen)
        result = sim.run()
        found.schedules += 1
        found.pruned += int(result.pruned)
        if verbose and found.schedules % 500 == 0:
            print(f"  {found.schedules} schedules, {len(seen)} states, {len(stack)} scripts to go", flush=True)
        if result.failed:
            found.violations.append((list(decisions.taken), result))
            if verbose:
                print(f"VIOLATION with script {decisions.taken}: {result.violation}")
        # siblings of every choice point this run discovered past its script
        for index in range(len(script), len(decisions.taken)):
            for alternative in range(decisions.points[index] - 1, 0, -1):
                stack.append(decisions.taken[:index] + [alternative])
    found.complete = not stack
    found.states = len(seen)
    found.seconds = time.perf_counter() - started
    return found


def _pruner(sim: Simulator, decisions: ScriptedDecisions, script: list[int], seen: set[str]):
    def check(label: str) -> None:
        if len(decisions.points) <= len(script):
            return
        digest = state_digest(sim, label)
        if digest in seen:
            raise Pruned()
        seen.add(digest)

    return check


def state_digest(sim: Simulator, label: str) -> str:
    table = sim.world.table
    items = sorted(json.dumps(item.to_json(), sort_keys=True, default=str)
                   for by_range in table.items.values() for item in by_range.values())
    bucket = sorted((key, getattr(value, "etag", None)) for key, value in sim.world.bucket.keys.items())
    queue = sorted(json.dumps([d.function, d.event, d.request_id, round(d.due, 3), d.attempt], sort_keys=True)
                   for d in sim.queue)
    flights = sorted(json.dumps([d.function, d.event, d.request_id, d.attempt, d.where, d.history, d.may_crash],
                                sort_keys=True, default=str) for d in sim.in_flight)
    monitor = sim.monitor
    state = [label, round(sim.now, 3), items, bucket, queue, flights, sorted(monitor.commits.items()),
             len(monitor.messages), sorted(monitor.excuses), monitor.notified, sim.next_tick, sim.quiet_ticks,
             len(sim.decisions.injected())]
    return hashlib.blake2b(json.dumps(state, default=str).encode(), digest_size=16).hexdigest()


def main(max_schedules: int | None = None) -> int:
    failed = False
    for case in CASES:
        found = explore(case, max_schedules=max_schedules or 2000)
        print(found.report(), flush=True)
        for script, result in found.violations[:3]:
            failed = True
            print(f"  VIOLATION {result.violation} (choices {script})")
    return 1 if failed else 0
