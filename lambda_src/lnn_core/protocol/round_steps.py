"""The step bodies of a round of K > 1 workers: one mini-batch's update, the run's `reduce` step, made by K shard
deliveries, then K slice deliveries, then the commit of the slice whose place completes the round.

- shard i: the committed parameters (K slices, GET at once and assembled), its gradient sums over its share of the
  batch, written slice-major as two objects (`slices.SumsLayout`); its loss sum (and the L2 penalty of the
  parameters) go with its place in the round's barrier.
- slice j: its range of every shard's sums (K ranged GETs at once), added in shard order, and the optimizer's
  update of its rows of the parameters and of the optimizer state, written as two objects.
- every slice at once (`EVERY_SLICE`), in the shard that completes a round of small parameters
  (`reduces_in_shard`): every shard's sums and every state slice in one wave of GETs, then each slice's update as
  slice j computes it, so the outputs are the same bytes at the same keys as K slice deliveries write.
- the commit (`reduce`): the batch's cost sum from the barrier's losses; at an epoch's end the parameters assembled
  for its item, and at a checkpoint or an early stop the whole training state, kept for the finish and for
  `lnn results --weights`.
- fit worker k of the finish: the final model's outputs over its part of the training set (each keeps its part in
  its container), with their targets and labels; the finish gathers the K of them (`gathered_fit`) instead of
  passing over every part in one function.

Every element is added and updated as `shards.combine_shards` and `optimizers.update` do on whole arrays (row blocks
are elementwise), so a run equals `training.train_reference` bit for bit. No function moves more than about 2 G
bytes a round (G: the parameters' bytes): a shard GETs G and PUTs G, a slice GETs and PUTs about G / K of each.
"""

import dataclasses
from functools import partial

import numpy as np

from lnn_core.aws.ports import CONCURRENT_REQUESTS
from lnn_core.aws.usage import MIB
from lnn_core.errors import RunFailure
from lnn_core.ml import batching, diagnostics, network, optimizers
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import TrainingData
from lnn_core.ml.parameters import SHARD_REDUCE_MAX_WORKERS, SHARD_REDUCE_MIB
from lnn_core.ml.shards import (
    batch_examples,
    part_batch,
    part_bounds,
    shard_columns,
    shard_slices,
    shard_sums,
)
from lnn_core.ml.slices import SumsLayout, assemble, combine_slice, pack_sums, take_slice, unpack_slice
from lnn_core.protocol.events import FIT
from lnn_core.protocol.layout import (
    fit_key,
    in_parts,
    is_checkpoint,
    params_key,
    round_sums_keys,
    state_slice_key,
    state_slice_keys,
    state_slice_parts,
    sums_key,
)
from lnn_core.protocol.results import (
    StepResult,
    epoch_ended,
    finite_cost,
    finite_params,
    stops_early,
)
from lnn_core.protocol.schedule import Position
from lnn_core.protocol.step_inputs import StepInputs
from lnn_core.protocol.training_state import params_of, training_state

ROUND_COST_FIELD = "round_cost_sum"  # the run record's running cost sum of the epoch's rounds, as repr(float) text
EVERY_SLICE = "every slice"  # the body of a round's K slices at once: a state of no event, only of `StepBodies.execute`


def final_epoch(config: TrainingConfig, run: dict) -> int:
    """The epoch whose model the finish measures: the last committed one (an early stop's), else the last."""
    return run.get("progress_epoch") or config.epochs


def state_slices(
    config: TrainingConfig, state: dict[str, np.ndarray], *, epoch: int, batch: int, batches: int
) -> dict[str, dict[str, np.ndarray]]:
    """A whole training state as the 2K objects of its slices (`layout.state_slice_key`)."""
    objects = {}
    for slice_ in range(config.workers):
        block = take_slice(state, config.neurons, config.workers, slice_)
        objects |= slice_objects(config, epoch, batch, batches, slice_, block)
    return objects


def slice_objects(
    config: TrainingConfig, epoch: int, batch: int, batches: int, slice_: int, block: dict[str, np.ndarray]
) -> dict[str, dict[str, np.ndarray]]:
    """Slice `slice_`'s rows of a training state (`block`: its parameters' and its optimizer state's) as the
    objects `layout.state_slice_parts` names: the parameters' and the optimizer's, or one with gd."""
    if state_slice_parts(config) == ("params",):
        return {state_slice_key(config, epoch, batch, batches, slice_, "params"): dict(block)}
    params = params_of(block)
    return {
        state_slice_key(config, epoch, batch, batches, slice_, "params"): params,
        state_slice_key(config, epoch, batch, batches, slice_, "optimizer"): {
            name: value for name, value in block.items() if name not in params
        },
    }


def slice_state(config: TrainingConfig, objects: list[dict[str, np.ndarray]]) -> tuple[dict, dict]:
    """A state slice's (parameters' rows, optimizer state's rows) from its objects (`state_slice_parts`)."""
    block = {name: value for part in objects for name, value in part.items()}
    params = params_of(block)
    try:
        return params, {name: block[name] for name in optimizers.state_keys(params, config.optimizer)}
    except KeyError as missing:  # a gd run an earlier LNN started: its update count is in an object of its own
        raise RunFailure(f"the training state's slice lacks {missing}: it was written by an earlier LNN") from None


def sums_layout(config: TrainingConfig, features: int) -> SumsLayout:
    shapes = tuple(zip(config.neurons, (features, *config.neurons[:-1])))
    return SumsLayout.of(shapes, config.workers, config.dtype)


def reduces_in_shard(config: TrainingConfig, features: int) -> bool:
    """Whether the shard that completes a round computes its K slices itself, instead of sending K slice events
    (`shard_reduces` for the run's parameter `reduce`, K and sums). Either way the round writes the same bytes, so a
    run may take either path in any round (a resumed round, an upgrade)."""
    return shard_reduces(config.reduce, config.workers, sum(sums_layout(config, features).object_sizes()))


def shard_reduces(reduce: str, workers: int, sums_bytes: int) -> bool:
    """Parameter `reduce`'s choice for K = `workers` shards of `sums_bytes` each: `auto` reduces in the shard while
    the K sums total at most `SHARD_REDUCE_MIB` and K is at most `SHARD_REDUCE_MAX_WORKERS`."""
    if reduce != "auto":
        return reduce == "shard"
    return workers <= SHARD_REDUCE_MAX_WORKERS and workers * sums_bytes <= SHARD_REDUCE_MIB * MIB


assert 4 * SHARD_REDUCE_MAX_WORKERS <= CONCURRENT_REQUESTS, "`_every_slice`'s reads would take more than one wave"


class RoundSteps(StepInputs):
    """The shard, slice and commit bodies of a round (see the module's docstring)."""

    def _shard(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """Shard worker i: gradient sums and loss sum over its share of the batch, from the committed parameters."""
        epoch, batch, shard = position.epoch, position.batch, position.shard
        prepared = self._round_data(config, run, shard)
        batches = self._minibatches(config, prepared.examples, epoch)
        params = self._assembled(config, epoch, batch - 1, len(batches), "params")
        if in_parts(config.data):  # the batch's examples in this shard's part (shards.part_batch)
            mine = part_batch(batches[batch - 1], part_bounds(run["part_examples"])[shard])
            X_shard, Y_shard = batching.batch_columns(prepared.X, mine), batching.batch_columns(prepared.Y, mine)
        else:
            X_batch = batching.batch_columns(prepared.X, batches[batch - 1])
            Y_batch = batching.batch_columns(prepared.Y, batches[batch - 1])
            part = shard_slices(X_batch.shape[1], config.workers)[shard]
            X_shard, Y_shard = shard_columns(X_batch, part), shard_columns(Y_batch, part)
        sums, loss = shard_sums(params, X_shard, Y_shard, list(config.activations))
        first, second = pack_sums(sums, sums_layout(config, run["features"]))
        return StepResult(
            outputs={
                sums_key(config, epoch, batch, shard, 0): first,
                sums_key(config, epoch, batch, shard, 1): second,
            },
            barrier={"loss": loss, "penalty": network.l2_penalty(params, config.l2) if config.l2 != 0 else None},
        )

    def _slice(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """Slice j: the round's gradients of its rows, from every shard's sums in shard order, and the optimizer's
        update of its rows."""
        epoch, batch, slice_ = position.epoch, position.batch, position.slice
        count = len(self._minibatches(config, run["examples"], epoch))
        part, start, stop = sums_layout(config, run["features"]).range(slice_)
        parts = state_slice_parts(config)
        reads = [  # its rows of the state, and its range of every shard's sums: one wave of K + 1 or 2 GETs
            *(partial(self._load, state_slice_key(config, epoch, batch - 1, count, slice_, kind)) for kind in parts),
            *(
                partial(self.ports.store.get_range, sums_key(config, epoch, batch, shard, part), start, stop)
                for shard in range(config.workers)
            ),
        ]
        answers = self.ports.fan_out.map(lambda read: read(), reads)
        params, opt_state = slice_state(config, answers[: len(parts)])
        pieces = answers[len(parts) :]
        return StepResult(outputs=self._updated_slice(position, config, run, slice_, params, opt_state, pieces))

    def _every_slice(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """Every slice of the round (`EVERY_SLICE`): the K shards' sums objects and the K state slices in one wave
        of 4 K GETs, then slice j's update from its range of each, as `_slice` computes it."""
        epoch, batch, workers = position.epoch, position.batch, config.workers
        count = len(self._minibatches(config, run["examples"], epoch))
        layout = sums_layout(config, run["features"])
        parts = state_slice_parts(config)
        reads = [
            *(
                partial(self._load, state_slice_key(config, epoch, batch - 1, count, slice_, part))
                for slice_ in range(workers)
                for part in parts
            ),
            *(
                partial(self.ports.store.get_bytes, sums_key(config, epoch, batch, shard, part), cache=False)
                for shard in range(workers)
                for part in (0, 1)
            ),
        ]
        answers = self.ports.fan_out.map(lambda read: read(), reads)
        states, sums = answers[: len(parts) * workers], answers[len(parts) * workers :]
        outputs = {}
        for slice_ in range(workers):
            part, start, stop = layout.range(slice_)
            pieces = [sums[2 * shard + part][start:stop] for shard in range(workers)]
            params, opt_state = slice_state(config, states[len(parts) * slice_ : len(parts) * (slice_ + 1)])
            outputs |= self._updated_slice(position, config, run, slice_, params, opt_state, pieces)
        return StepResult(outputs=outputs)

    def _updated_slice(
        self, position: Position, config: TrainingConfig, run: dict, slice_: int, params, opt_state, pieces
    ) -> dict[str, dict]:
        """Slice `slice_`'s new rows of the parameters and of the optimizer state (its two objects), from its rows
        before the update and its range of each shard's sums (`pieces`, in shard order)."""
        epoch, batch = position.epoch, position.batch
        batches = self._minibatches(config, run["examples"], epoch)
        layout = sums_layout(config, run["features"])
        grads = combine_slice(
            params,
            (unpack_slice(piece, layout, slice_) for piece in pieces),
            batch_examples(batches[batch - 1], run["examples"]),
            config.l2,
        )
        params, opt_state = optimizers.update(
            params, grads, opt_state, learning_rate=config.learning_rate, **config.optimizer_settings()
        )
        finite_params(params, epoch)
        return slice_objects(config, epoch, batch, len(batches), slice_, {**params, **opt_state})

    def _commit_round(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """The round's commit, once every slice is in: the batch's cost sum (the losses added in shard order from
        0.0, then the penalty, as `combine_shards`), and after the epoch's last batch its results item."""
        epoch, batch = position.epoch, position.batch
        batches = self._minibatches(config, run["examples"], epoch)
        count = len(batches)
        progress = self._round_progress(run["run_id"], position.step)
        missing = sorted(set(range(config.workers)) - set(progress.losses))
        if missing or (config.l2 != 0 and progress.penalty is None):
            raise RuntimeError(f"round {position.step}'s barrier lacks the loss of shards {missing} or the penalty")
        batch_cost_sum = 0.0
        for shard in range(config.workers):
            batch_cost_sum += progress.losses[shard]
        if config.l2 != 0:
            batch_cost_sum = batch_cost_sum + progress.penalty
        cost_sum = (float(run[ROUND_COST_FIELD]) if batch > 1 else 0.0) + batch_cost_sum
        obsolete = round_sums_keys(config, epoch, batch)
        if batch > 1:  # the state before the epoch's first batch stays until its end: a stop's model comes from it
            obsolete += state_slice_keys(config, epoch, batch - 1, count)
        if batch < count:
            return StepResult(fields={ROUND_COST_FIELD: repr(cost_sum)}, obsolete=obsolete)
        obsolete += state_slice_keys(config, epoch, 0, count)
        cost = finite_cost(cost_sum / run["examples"], epoch, config)
        params = self._assembled(config, epoch, batch, count, "params")
        whole = None
        if is_checkpoint(config, epoch) or stops_early(config, epoch, cost):
            whole = training_state(params, self._assembled(config, epoch, batch, count, "optimizer"))
        data = self._round_data(config, run, None).data
        return epoch_ended(config, run, data, epoch=epoch, cost=cost, params=params, state=whole, obsolete=obsolete)

    def fetch_round_parameters(self, position: Position, config: TrainingConfig, run: dict) -> None:
        """The parameters the round at `position` wrote, its K slices GET at once into the container's cache, where
        the next round's shard (`_shard`) finds them: a staying worker reads them while the round's commit is made."""
        count = len(self._minibatches(config, run["examples"], position.epoch))
        self._assembled(config, position.epoch, position.batch, count, "params")

    def _fit(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """Fit worker k of the finish: the final model's outputs over its part of the training set (of one file, its
        shard's columns), with the part's targets and labels and the units alive in each hidden layer."""
        epoch, shard = final_epoch(config, run), position.shard
        params = params_of(self._load(params_key(config, epoch)))  # kept: a stopped finish resumes days later
        prepared = self._round_data(config, run, shard)
        X, Y, y = prepared.X, prepared.Y, prepared.data.y
        if not in_parts(config.data):
            part = shard_slices(X.shape[1], config.workers)[shard]
            X, Y, y = shard_columns(X, part), shard_columns(Y, part), y[part]
        fit = diagnostics.part_fit(params, X, config.activations)
        alive = {f"alive{layer}": units for layer, units in enumerate(fit.alive, start=1)}
        return StepResult(outputs={fit_key(config, epoch, shard): {"AL": fit.AL, "Y": Y, "y": y, **alive}})

    def gathered_fit(
        self, config: TrainingConfig, run: dict, epoch: int
    ) -> tuple[TrainingData, diagnostics.TrainingFit, np.ndarray]:
        """The K fit workers' outputs, GET at once and put side by side in the examples' order: (the run's data with
        every example's labels, the fit over all examples, their targets Y)."""
        keys = [fit_key(config, epoch, shard) for shard in range(config.workers)]
        parts = [  # one after another, any that is gone: each loads a part of the data
            part if part is not None else self._fit(Position(0, FIT, epoch, 0, shard=shard), config, run).outputs[key]
            for shard, (key, part) in enumerate(zip(keys, self.ports.fan_out.map(self._present, keys)))
        ]
        hidden = range(1, config.layers)
        fit = diagnostics.combined_fit(
            [diagnostics.PartFit(part["AL"], tuple(part[f"alive{layer}"] for layer in hidden)) for part in parts]
        )
        labels = np.concatenate([part["y"] for part in parts])
        data = dataclasses.replace(self._round_data(config, run, None).data, y=labels)
        return data, fit, np.concatenate([part["Y"] for part in parts], axis=1)

    def _present(self, key: str) -> dict[str, np.ndarray] | None:
        """The object's arrays, or None when it is gone (a fit output is scratch: a run stopped during its finish
        and resumed after the expiry still finishes, its finish computing what is gone)."""
        try:
            return self._load(key)
        except RunFailure:
            return None

    def _assembled(self, config: TrainingConfig, epoch: int, batch: int, batches: int, part: str) -> dict:
        """The parameters (`part` "params") or the optimizer state ("optimizer") of a training state in slices, its
        K slices GET at once."""
        source = part if part in state_slice_parts(config) else "params"  # gd's update count t: with the rows
        keys = [state_slice_key(config, epoch, batch, batches, slice_, source) for slice_ in range(config.workers)]
        try:
            whole = assemble(self.ports.fan_out.map(self._load, keys))
        except ValueError as error:  # slices of different steps: never written so, but never trained on either
            raise RunFailure(f"the training state's slices disagree: {error}") from error
        params = params_of(whole)
        return params if part == "params" else {name: value for name, value in whole.items() if name not in params}
