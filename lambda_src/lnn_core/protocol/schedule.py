"""Where a run goes next: the sequence of steps for each granularity, and the hard bound on their number.

layer: per epoch, `start`, then for each mini-batch b = 1..B `forward` for layers 1..L and `backward` for layers
       L..1 (the update at layer 1; after the last batch, the epoch's item): B * 2L + 1 steps, then `finish`.
epoch: one `start` step per epoch that runs the whole epoch (all its mini-batches), then `finish`.
auto:  one `start` step runs as many whole epochs as fit in the invocation, then `finish`.
workers K > 1 (epoch or auto): `start` initializes; then one `reduce` step per mini-batch (a round: K shard
       workers, then K slices that update a slice of the parameters each, the last of which commits the round;
       neither is a step of its own), then `finish` (K fit workers, one of which commits it).
A run whose epoch's cost falls below its `threshold` goes to `finish` after that epoch.
Step numbers grow by one per step; step 1 is the first `start`.
"""

from dataclasses import dataclass

from lnn_core.ml.config import TrainingConfig

AUTO_MAX_EPOCHS_PER_STEP = 2500  # bounds an auto step's memory (one item per epoch, a state per 100) and its commit
STATES = ("start", "forward", "backward", "reduce", "finish")


@dataclass(frozen=True)
class Position:
    """A point in the run: `layer` and `batch` are 0 for `start` and `finish` (batches count from 1); `shard` is
    a shard worker's and `slice` a slice's, in the round that the `reduce` step `step` commits."""

    step: int
    state: str
    epoch: int
    layer: int
    batch: int = 0
    shard: int | None = None
    slice: int | None = None


def first_position() -> Position:
    return Position(step=1, state="start", epoch=1, layer=0)


def next_position(
    position: Position, config: TrainingConfig, *, batches: int, last_epoch_done: int | None = None, stop: bool = False
) -> Position | None:
    """The step after `position`, in a run of `batches` mini-batches per epoch; `last_epoch_done` is the last epoch
    an epoch/auto step completed, `stop` that the epoch's cost fell below the threshold. None after finish."""
    step, epoch, batch, layer = position.step + 1, position.epoch, position.batch, position.layer
    if position.state == "finish":
        return None
    if config.workers > 1:
        if position.state == "start":
            return Position(step, "reduce", 1, 0, batch=1)
        if batch < batches:
            return Position(step, "reduce", epoch, 0, batch=batch + 1)
        last_epoch_done = epoch
    elif config.granularity == "layer":
        if position.state == "start":
            return Position(step, "forward", epoch, 1, batch=1)
        if position.state == "forward" and layer < config.layers:
            return Position(step, "forward", epoch, layer + 1, batch=batch)
        if position.state == "forward":
            return Position(step, "backward", epoch, config.layers, batch=batch)
        if layer > 1:
            return Position(step, "backward", epoch, layer - 1, batch=batch)
        if batch < batches:
            return Position(step, "forward", epoch, 1, batch=batch + 1)
        last_epoch_done = epoch
    if last_epoch_done is None:
        raise ValueError("an epoch or auto step must say which epoch it completed")
    if last_epoch_done < config.epochs and not stop:
        if config.workers > 1:
            return Position(step, "reduce", last_epoch_done + 1, 0, batch=1)
        return Position(step, "start", last_epoch_done + 1, 0)
    return Position(step, "finish", last_epoch_done, 0)


def step_bound(config: TrainingConfig, batches: int) -> int:
    """No run of this configuration takes more steps than this: the guard against any endless loop."""
    if config.workers > 1:
        return config.epochs * batches + 2
    steps_per_epoch = batches * 2 * config.layers + 1 if config.granularity == "layer" else 1
    return config.epochs * steps_per_epoch + 1
