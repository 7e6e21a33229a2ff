"""What a delivery does next, learned once: its handler's next port call (or its end) as a function of its event,
its identity, its start time and its port calls' answers so far, with their times.

The handler is deterministic given those (its ids, seeds and clock come from `determinism`; the search's
containers are cold), so the memoized search runs it only for a delivery it has not seen at that point: in a
greenlet, with a cold container of its own whose port calls return the recorded answers (`Replay`) and touch no
AWS, up to the first call past them, which it records and abandons there. What the handler does between two
calls that the monitor checks (a step body starts: the fence) is recorded with the call, as a tap.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import TYPE_CHECKING, Any

from greenlet import GreenletExit, greenlet

from lnn_cli.cloud.runtime import SandboxKilled
from lnn_cli.simulate.aws.request_memo import without_traceback
from lnn_cli.simulate.containers import Container, build
from lnn_cli.simulate.deliveries import Context, Delivery

if TYPE_CHECKING:
    from lnn_cli.simulate.simulator import Simulator


@dataclasses.dataclass(frozen=True)
class Next:
    """What a delivery does after its answers so far: the taps first, then its next port call (where, args,
    kwargs), or its end (the handler's result, or its error)."""

    taps: tuple
    call: tuple | None = None
    result: Any = None
    error: BaseException | None = None


class ReplayDiverged(AssertionError):
    """A handler asked for another port call than the one its recorded answer was given for: not deterministic."""


class DeliveryMemo:
    def __init__(self):
        self.known: dict[tuple, Next] = {}
        self.replays = 0  # handler runs: one per entry

    def next(self, sim: Simulator, delivery: Delivery) -> Next:
        key = (
            delivery.function,
            json.dumps(delivery.event, sort_keys=True),
            delivery.identity(),
            delivery.started_at,
            delivery.history,
        )
        found = self.known.get(key)
        if found is None:
            found = self.known[key] = _learn(sim, delivery)
            self.replays += 1
        return found


class Replay:
    """The port calls of a handler being replayed: the recorded answers in order, then the next call, recorded."""

    def __init__(self, sim: Simulator, answers: tuple):
        self.sim, self.answers, self.position = sim, answers, 0
        self.taps: list[tuple] = []
        self.call: tuple | None = None
        self.abandoned = False

    def answer(self, where: str, args: tuple, kwargs: dict) -> Any:
        if self.abandoned:  # the handler's `finally` blocks, as the greenlet is abandoned: nothing more runs
            raise GreenletExit
        if self.position < len(self.answers):
            recorded, kind, value, now = self.answers[self.position]
            if recorded != where:
                raise ReplayDiverged(f"call {self.position + 1} was {recorded}, and is {where} in the replay")
            self.position += 1
            self.sim.now = now  # the time the answer came back: what the handler reads until its next call
            if kind == "raise":
                raise copy.copy(value)
            return copy.deepcopy(value)
        self.call = (where, args, kwargs)
        greenlet.getcurrent().parent.switch()
        raise GreenletExit  # (never resumed: abandoned)

    def tap(self, tap: tuple) -> None:
        if self.position == len(self.answers) and self.call is None:
            self.taps.append(tap)


def _learn(sim: Simulator, delivery: Delivery) -> Next:
    """Run the delivery's handler, in a cold container of its own, on its recorded answers up to its next call."""
    container = Container(delivery.function, 0, 0.0)
    build(sim, container)
    ghost = dataclasses.replace(delivery, uuids=0, history="", answers=(), greenlet=None, container=container)
    replay = Replay(sim, delivery.answers)
    saved = sim.now, sim.current, sim._secrets.getstate()
    sim.now, sim.current, sim.replay = delivery.started_at, ghost, replay
    ended: dict[str, Any] = {}

    def body() -> None:
        try:
            if delivery.function == "operator":
                sim.operate(container, delivery.event["command"])
            else:
                event = copy.deepcopy(delivery.event)
                ended["result"] = container.handler.handle(event, Context(sim, ghost, sim.timeout()))
        except SandboxKilled as killed:
            ended["error"] = killed
        except Exception as failure:
            ended["error"] = failure

    runner = greenlet(body)
    try:
        runner.switch()
        if replay.call is not None:
            replay.abandoned = True
            runner.throw(GreenletExit)
            return Next(tuple(replay.taps), call=replay.call)
        if replay.position < len(replay.answers):
            raise ReplayDiverged(f"the replay ended after {replay.position} of {len(replay.answers)} answers")
        error = ended.get("error")
        return Next(tuple(replay.taps), result=ended.get("result"), error=error and without_traceback(error))
    finally:
        sim.now, sim.current, sim.replay = saved[0], saved[1], None
        if sim._secrets.getstate() != saved[2]:
            raise ReplayDiverged("a handler drew from the simulation's `secrets`: its draws would not replay")
