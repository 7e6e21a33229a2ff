"""A schedule's end as the runner, the shrinker and the exhaustive search read it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lnn_cli.simulate.scenario import RUN_ID, START

if TYPE_CHECKING:
    from lnn_cli.simulate.checks.invariants import Violation
    from lnn_cli.simulate.simulator import Simulator


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
