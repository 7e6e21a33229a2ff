"""Where a run goes next: the sequence of steps for each granularity, and the hard bound on their number.

layer: per epoch, `start`, `forward` for layers 1..L, `backward` for layers L..1 (2L + 1 steps), then `finish`.
epoch: one `start` step per epoch that runs the whole epoch, then `finish`.
auto:  one `start` step runs as many whole epochs as fit in the invocation, then `finish`.
Step numbers grow by one per step; step 1 is the first `start`.
"""

from dataclasses import dataclass

from .config import TrainingConfig

STATES = ("start", "forward", "backward", "finish")


@dataclass(frozen=True)
class Position:
    """A point in the run: `layer` is 0 for `start` and `finish`."""

    step: int
    state: str
    epoch: int
    layer: int


def first_position() -> Position:
    return Position(step=1, state="start", epoch=1, layer=0)


def next_position(position: Position, config: TrainingConfig, *, last_epoch_done: int | None = None) -> Position | None:
    """The step after `position`; `last_epoch_done` is the last epoch an epoch/auto step completed. None after finish."""
    step = position.step + 1
    if position.state == "finish":
        return None
    if config.granularity == "layer":
        if position.state == "start":
            return Position(step, "forward", position.epoch, 1)
        if position.state == "forward" and position.layer < config.layers:
            return Position(step, "forward", position.epoch, position.layer + 1)
        if position.state == "forward":
            return Position(step, "backward", position.epoch, config.layers)
        if position.layer > 1:
            return Position(step, "backward", position.epoch, position.layer - 1)
        last_epoch_done = position.epoch
    if last_epoch_done is None:
        raise ValueError("an epoch or auto step must say which epoch it completed")
    if last_epoch_done < config.epochs:
        return Position(step, "start", last_epoch_done + 1, 0)
    return Position(step, "finish", config.epochs, 0)


def step_bound(config: TrainingConfig) -> int:
    """No run of this configuration takes more steps than this: the guard against any endless loop."""
    steps_per_epoch = 2 * config.layers + 1 if config.granularity == "layer" else 1
    return config.epochs * steps_per_epoch + 1
