"""The trainer's events: what a step's invocation carries, how it is checked, and whether it is the run's next step.

Arrays never travel in events (they live in S3, see `layout`): an event names a position of the run and repeats
the fields the original LNN handler read, so that a stray or forged event is recognized and refused.
"""

import math
from dataclasses import dataclass
from typing import Any

from lnn_core.errors import LnnInputError, shown
from lnn_core.ml.config import TrainingConfig, check_run_id, layer_map
from lnn_core.ml.parameters import MAX_EPOCHS, MAX_LAYERS, MAX_WORKERS
from lnn_core.protocol.schedule import STATES, Position

MAX_BATCHES = 10_000_000
SHARD = "shard"  # the state of a shard worker's event: a part of the round that the `reduce` step of `step` commits
SLICE = "slice"  # ... of a slice's event: slice j's update of the round's parameters, once every shard is in
FIT = "fit"  # ... of a fit worker's event: the final model's outputs over part k, for the `finish` of `step`
EVENT_STATES = (*STATES, SHARD, SLICE, FIT)
ROUND_MEMBER = {SHARD: "shard", SLICE: "slice", FIT: "shard"}  # a member's state -> the event field naming its index
MEMBER_STEP = {SHARD: "reduce", SLICE: "reduce", FIT: "finish"}  # a member's state -> the step its K deliveries make


@dataclass(frozen=True)
class StepEvent:
    """A validated trainer event."""

    run_id: str
    step: int
    position: Position
    epochs: int
    layers: int
    batches: int
    shards: int
    shard: int | None  # a shard worker's event: its shard, 0..shards-1
    slice: int | None  # a slice's event: its slice, 0..shards-1
    neurons: tuple[int, ...]
    activations: tuple[str, ...]
    learning_rate: float
    granularity: str


def make_event(run_id: str, config: TrainingConfig, position: Position, *, batches: int) -> dict[str, Any]:
    """The trainer event for `position`: every field the seed's handler reads, the step number and the batch."""
    return {
        "state": position.state,
        "run_id": run_id,
        "step": position.step,
        "epoch": position.epoch,
        "epochs": config.epochs,
        "batch": position.batch,
        "batches": batches,
        "shards": config.workers,
        "layer": position.layer,
        "layers": config.layers,
        "neurons": layer_map(config.neurons),
        "activations": layer_map(config.activations),
        "learning_rate": config.learning_rate,
        "granularity": config.granularity,
    }


def shard_event(reduce_event: dict[str, Any], shard: int) -> dict[str, Any]:
    """The event of shard worker `shard` of the round that `reduce_event` commits."""
    return {**reduce_event, "state": SHARD, "shard": shard}


def slice_event(reduce_event: dict[str, Any], slice_: int) -> dict[str, Any]:
    """The event of slice `slice_` of the round that `reduce_event` commits."""
    return {**reduce_event, "state": SLICE, "slice": slice_}


def fit_event(finish_event: dict[str, Any], shard: int) -> dict[str, Any]:
    """The event of fit worker `shard` of the finish `finish_event` of a run of K > 1 workers."""
    return {**finish_event, "state": FIT, "shard": shard}


def parse_event(event: Any) -> StepEvent:
    """Check an event's shape and types; raise `LnnInputError` naming the first problem."""
    if not isinstance(event, dict):
        raise LnnInputError(f"the event must be a JSON object, not {type(event).__name__}")
    if "state" not in event:
        raise LnnInputError("the event lacks 'state'")
    if event["state"] not in EVENT_STATES:
        raise LnnInputError(f"unknown state {shown(event['state'])}; expected one of {', '.join(EVENT_STATES)}")
    member = ROUND_MEMBER.get(event["state"])
    member_fields = ((member, int),) if member else ()
    for name, kind in (
        ("run_id", str),
        ("step", int),
        ("epoch", int),
        ("epochs", int),
        ("batch", int),
        ("batches", int),
        ("shards", int),
        ("layer", int),
        ("layers", int),
        ("neurons", dict),
        ("activations", dict),
        ("learning_rate", (int, float)),
        ("granularity", str),
        *member_fields,
    ):
        value = event.get(name)
        if isinstance(value, bool) or not isinstance(value, kind):
            raise LnnInputError(f"'{name}' must be of type {getattr(kind, '__name__', 'number')}; got {shown(value)}")
    if not (
        1 <= event["step"]
        and 1 <= event["epochs"] <= MAX_EPOCHS
        and 1 <= event["layers"] <= MAX_LAYERS
        and 1 <= event["batches"] <= MAX_BATCHES
    ):
        raise LnnInputError(
            f"'step', 'epochs', 'batches' and 'layers' must be positive, with at most {MAX_EPOCHS} "
            f"epochs, {MAX_BATCHES} batches and {MAX_LAYERS} layers"
        )
    learning_rate = (
        float(event["learning_rate"]) if abs(event["learning_rate"]) < 1e300 else math.inf
    )  # huge ints overflow
    if not math.isfinite(learning_rate):
        raise LnnInputError(f"'learning_rate' must be a finite number; got {shown(event['learning_rate'])}")
    if not 1 <= event["epoch"] <= event["epochs"]:
        raise LnnInputError(f"epoch {event['epoch']} is out of range 1..{event['epochs']}")
    check_run_id(event["run_id"])
    index = event[member] if member else 0
    if not 1 <= event["shards"] <= MAX_WORKERS or not 0 <= index < event["shards"]:
        raise LnnInputError(
            f"shards must be 1..{MAX_WORKERS} and a shard or slice 0..shards-1; got {member or 'shard'} "
            f"{shown(index)} of {shown(event['shards'])}"
        )
    if not 0 <= event["batch"] <= event["batches"]:
        raise LnnInputError(f"batch {event['batch']} is out of range 0..{event['batches']}")
    if not 0 <= event["layer"] <= event["layers"]:
        raise LnnInputError(f"layer {event['layer']} is out of range 0..{event['layers']}")
    layer_keys = [f"layer{i}" for i in range(1, event["layers"] + 1)]
    if sorted(event["neurons"]) != sorted(layer_keys) or sorted(event["activations"]) != sorted(layer_keys):
        raise LnnInputError(f"'neurons' and 'activations' must have the keys {', '.join(layer_keys)}")
    return StepEvent(
        run_id=event["run_id"],
        step=event["step"],
        position=Position(
            event["step"],
            event["state"],
            event["epoch"],
            event["layer"],
            batch=event["batch"],
            shard=event["shard"] if event["state"] in (SHARD, FIT) else None,
            slice=event["slice"] if event["state"] == SLICE else None,
        ),
        epochs=event["epochs"],
        layers=event["layers"],
        batches=event["batches"],
        shards=event["shards"],
        shard=event["shard"] if event["state"] in (SHARD, FIT) else None,
        slice=event["slice"] if event["state"] == SLICE else None,
        neurons=tuple(event["neurons"][k] for k in layer_keys),
        activations=tuple(event["activations"][k] for k in layer_keys),
        learning_rate=learning_rate,
        granularity=event["granularity"],
    )


def schedule_mismatch(step_event: StepEvent, run: dict) -> str | None:
    """Why this event is not the run's next step, or None when it is."""
    expected = run.get("next_event") or {}
    received = event_fields(step_event)
    state = step_event.position.state
    if state in MEMBER_STEP:  # shards and slices make the reduce step of their round, fit workers the finish
        if step_event.shards < 2:
            return f"a {state} event, but a run of one worker takes none"
        if expected.get("state") != MEMBER_STEP[state]:
            return (
                f"a {state} event, but the run's next step is a {shown(expected.get('state'))}, "
                f"not a {MEMBER_STEP[state]} of workers"
            )
        received["state"] = MEMBER_STEP[state]
    elif state == "reduce" and step_event.shards > 1:
        return "a round of K > 1 workers takes shard and slice events, never a reduce event"
    elif state == "finish" and step_event.shards > 1:
        return "the finish of K > 1 workers takes fit events, never a finish event"
    for name in (
        "step",
        "state",
        "epoch",
        "batch",
        "batches",
        "shards",
        "layer",
        "epochs",
        "layers",
        "neurons",
        "activations",
        "learning_rate",
        "granularity",
    ):
        if received[name] != expected.get(name):
            return f"{name} is {shown(received[name])} but the run's next step has {shown(expected.get(name))}"
    return None


def event_fields(step_event: StepEvent) -> dict[str, Any]:
    """The fields of a validated event, in the form `make_event` writes them."""
    position = step_event.position
    return {
        "step": step_event.step,
        "state": position.state,
        "epoch": position.epoch,
        "batch": position.batch,
        "batches": step_event.batches,
        "shards": step_event.shards,
        "layer": position.layer,
        "epochs": step_event.epochs,
        "layers": step_event.layers,
        "neurons": layer_map(step_event.neurons),
        "activations": layer_map(step_event.activations),
        "learning_rate": step_event.learning_rate,
        "granularity": step_event.granularity,
    }
