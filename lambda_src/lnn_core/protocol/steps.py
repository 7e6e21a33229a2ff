"""The step bodies: what one trainer step computes, from the run record, its data and the training state that
earlier steps wrote (see `layout`). Every output is a pure function of those, so every attempt of a step computes
the same bytes; the protocol (`engine`) turns a `StepResult` into effects.

Each granularity reproduces `training.train_epoch` bit for bit: `layer` runs its per-batch, per-layer operations
one layer per step; `epoch` and `auto` call it for whole epochs.
"""

import time
from typing import Any

import numpy as np

from lnn_core.aws.epoch_items import epoch_write_units
from lnn_core.aws.sdk import now
from lnn_core.errors import RunFailure
from lnn_core.ml import batching, diagnostics, network, optimizers, training
from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.events import FIT
from lnn_core.protocol.layout import (
    STATE_SLICES_FIELD,
    activation_key,
    batch_state_key,
    fit_keys,
    gradient_key,
    is_checkpoint,
    model_key,
    params_key,
    staged_model_key,
    state_slice_keys,
)
from lnn_core.protocol.results import (
    StepResult,
    commit_seconds,
    epoch_ended,
    epoch_item,
    epochs_done,
    evaluation,
    finite_cost,
    finite_params,
    metrics,
    stops_early,
)
from lnn_core.protocol.round_steps import EVERY_SLICE, RoundSteps, final_epoch, state_slices
from lnn_core.protocol.schedule import AUTO_MAX_EPOCHS_PER_STEP, Position
from lnn_core.protocol.step_inputs import PreparedData
from lnn_core.protocol.training_state import (
    initial_params,
    model_arrays,
    optimizer_state_of,
    params_of,
    training_state,
)

AUTO_SAFETY_SECONDS = 10.0  # auto granularity stops this long before the invocation's timeout, plus two slow epochs


class StepBodies(RoundSteps):
    """The steps of one warm container, with its caches of the run's data and of the current epoch's mini-batches
    (`StepInputs`); those of a round of K > 1 workers in `RoundSteps`."""

    def execute(self, position: Position, config: TrainingConfig, run: dict, context: Any) -> StepResult:
        if position.state == "finish":
            return self._finish(config, run)
        if config.workers > 1:
            if run.get(STATE_SLICES_FIELD) != config.workers:
                raise RunFailure(
                    "this run was started by an earlier LNN, whose data-parallel state is one file; this version "
                    "keeps it in slices and cannot continue it: start the run again"
                )
            bodies = {
                "start": self._start,
                "shard": self._shard,
                "slice": self._slice,
                FIT: self._fit,
                EVERY_SLICE: self._every_slice,
                "reduce": self._commit_round,
            }
            return bodies[position.state](position, config, run)
        if config.granularity != "layer":
            return self._whole_epochs(position, config, run, context)
        if position.state == "start":
            return self._start(position, config, run)
        if position.state == "forward":
            return self._forward(position, config, run)
        return self._backward(position, config, run)

    # ---- layer granularity ---------------------------------------------------------------------------------

    def _start(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """Initialize the training state (epoch 1) and mark the epoch's start."""
        result = StepResult(fields={"epoch_started_at": now()})
        if position.epoch == 1:
            params = initial_params(config, run["features"])
            state = training_state(params, optimizers.init_state(params, config.optimizer))
            if config.workers > 1:
                result.outputs |= state_slices(config, state, epoch=0, batch=1, batches=1)
            else:
                result.outputs[params_key(config, 0)] = state
        return result

    def _forward(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """A_l, Z_l = g(W_l A_{l-1} + b_l) of one batch; after the last layer, the batch's cost sum."""
        epoch, batch, layer = position.epoch, position.batch, position.layer
        prepared = self._prepared(config, run)
        batches = self._minibatches(config, prepared.examples, epoch)
        state = self._load(batch_state_key(config, epoch, batch - 1, len(batches)))
        if layer == 1:
            A_prev = batching.batch_columns(prepared.X, batches[batch - 1])
        else:
            A_prev = self._load(activation_key(config, epoch, batch, layer - 1))["A"]
        A, Z = network.layer_forward(A_prev, state[f"W{layer}"], state[f"b{layer}"], config.activations[layer - 1])
        outputs = {"A": A, "Z": Z}
        if layer == config.layers:
            Y = batching.batch_columns(prepared.Y, batches[batch - 1])
            outputs["cost_sum"] = np.array(
                network.batch_cost_sum(A, Y, config.activations[-1], params_of(state), config.l2)
            )
        return StepResult(outputs={activation_key(config, epoch, batch, layer): outputs})

    def _backward(self, position: Position, config: TrainingConfig, run: dict) -> StepResult:
        """dW_l, db_l and dA_{l-1} of one batch; at layer 1 the optimizer's update, and after the epoch's last batch
        its results item."""
        epoch, batch, layer, L = position.epoch, position.batch, position.layer, config.layers
        prepared = self._prepared(config, run)
        batches = self._minibatches(config, prepared.examples, epoch)
        part, count = batches[batch - 1], len(batches)
        state = self._load(batch_state_key(config, epoch, batch - 1, count))
        forward = self._load(activation_key(config, epoch, batch, layer))
        if layer == L:
            dZ = network.output_delta(forward["A"], batching.batch_columns(prepared.Y, part), config.activations[-1])
        else:
            dA = self._load(gradient_key(config, epoch, batch, layer + 1))["dA_prev"]
            dZ = network.hidden_delta(dA, forward["Z"], config.activations[layer - 1])
        if layer == 1:
            A_prev = batching.batch_columns(prepared.X, part)
        else:
            A_prev = self._load(activation_key(config, epoch, batch, layer - 1))["A"]
        if layer > 1:
            dA_prev, dW, db = network.layer_backward(dZ, A_prev, state[f"W{layer}"], config.l2)
            return StepResult(
                outputs={gradient_key(config, epoch, batch, layer): {"dA_prev": dA_prev, "dW": dW, "db": db}}
            )
        grads = dict(zip(("dW1", "db1"), network.weight_gradients(dZ, A_prev, state["W1"], config.l2)))
        for later in range(2, L + 1):
            gradients = self._load(gradient_key(config, epoch, batch, later))
            grads[f"dW{later}"], grads[f"db{later}"] = gradients["dW"], gradients["db"]
        obsolete = [activation_key(config, epoch, batch, l) for l in range(1, L + 1)]
        obsolete += [gradient_key(config, epoch, batch, l) for l in range(2, L + 1)]
        batch_cost_sum = float(self._load(activation_key(config, epoch, batch, L))["cost_sum"])
        return self._after_update(
            config,
            prepared,
            run,
            epoch=epoch,
            batch=batch,
            count=count,
            state=state,
            grads=grads,
            batch_cost_sum=batch_cost_sum,
            obsolete=obsolete,
        )

    def _after_update(
        self,
        config: TrainingConfig,
        prepared: PreparedData,
        run: dict,
        *,
        epoch: int,
        batch: int,
        count: int,
        state: dict,
        grads: network.Params,
        batch_cost_sum: float,
        obsolete: list[str],
    ) -> StepResult:
        """The optimizer's update of one mini-batch, and what follows it: the training state after the batch, or,
        after the epoch's last batch, the epoch's item (layer granularity and rounds alike)."""
        params, opt_state = optimizers.update(
            params_of(state),
            grads,
            optimizer_state_of(state, config),
            learning_rate=config.learning_rate,
            **config.optimizer_settings(),
        )
        finite_params(params, epoch)
        cost_sum = (
            float(state["cost_sum"]) if batch > 1 else 0.0
        ) + batch_cost_sum  # as train_epoch: 0.0, each batch in order
        if batch > 1:
            obsolete = [*obsolete, batch_state_key(config, epoch, batch - 1, count)]
        if batch < count:
            key = batch_state_key(config, epoch, batch, count)
            return StepResult(
                outputs={key: training_state(params, opt_state, cost_sum=np.array(cost_sum))}, obsolete=obsolete
            )
        cost = finite_cost(cost_sum / prepared.examples, epoch, config)
        state = training_state(params, opt_state)
        return epoch_ended(
            config, run, prepared.data, epoch=epoch, cost=cost, params=params, state=state, obsolete=obsolete
        )

    # ---- epoch and auto granularity ------------------------------------------------------------------------

    def _whole_epochs(self, position: Position, config: TrainingConfig, run: dict, context: Any) -> StepResult:
        """Whole epochs of mini-batches, from the last committed training state."""
        first = position.epoch
        prepared = self._prepared(config, run)
        if first == 1:
            params = initial_params(config, run["features"])
            opt_state = optimizers.init_state(params, config.optimizer)
        else:
            state = self._load(params_key(config, first - 1))
            params, opt_state = params_of(state), optimizer_state_of(state, config)
        deadline = time.monotonic() + remaining_seconds(context) - AUTO_SAFETY_SECONDS
        items, kept, slowest, epoch, item_units = [], {}, 0.0, first, []
        while True:
            started_at, started = now(), time.monotonic()
            params, opt_state, cost = training.train_epoch(
                params,
                opt_state,
                prepared.X,
                prepared.Y,
                activations=list(config.activations),
                batches=self._minibatches(config, prepared.examples, epoch),
                learning_rate=config.learning_rate,
                l2=config.l2,
                **config.optimizer_settings(),
            )
            # the item holds lists or norms, not the arrays: memory stays flat however many epochs fit; the weights
            # are judged first, as a mini-batch step and a round's slice judge them at their update
            finite_params(params, epoch)
            cost = finite_cost(cost, epoch, config)
            items.append(
                epoch_item(
                    config,
                    epoch,
                    cost,
                    params,
                    started_at,
                    evaluation(config, prepared.data, epoch, params),
                )
            )
            if is_checkpoint(config, epoch):  # kept whichever step reaches it: the item points at it
                kept[params_key(config, epoch)] = training_state(params, opt_state)
            slowest = max(slowest, time.monotonic() - started)
            item_units = item_units or epoch_write_units(items[0])
            stop = stops_early(config, epoch, cost)
            if (
                epoch == config.epochs
                or stop
                or config.granularity == "epoch"
                or len(items) == AUTO_MAX_EPOCHS_PER_STEP
                or time.monotonic() + 2 * slowest + commit_seconds(len(items) + 1, item_units) > deadline
            ):
                break
            epoch += 1
        result = epochs_done(
            config, first_epoch=first, state=training_state(params, opt_state), items=items, obsolete=[]
        )
        result.outputs |= kept
        result.checkpoints |= set(kept)
        return result

    # ---- the end -------------------------------------------------------------------------------------------

    def _finish(self, config: TrainingConfig, run: dict) -> StepResult:
        """Save the model where the commit publishes it from, measure it, and end the run. With K > 1 workers the
        measure is the K fit workers' (`RoundSteps._fit`): no function passes over every part."""
        epochs = final_epoch(config, run)
        params = params_of(self._load(params_key(config, epochs)))
        if config.workers > 1:
            data, fit, Y = self.gathered_fit(config, run, epochs)
        else:
            prepared = self._prepared(config, run)
            data, Y = prepared.data, prepared.Y
            fit = diagnostics.training_fit(
                params, prepared.X, config.activations
            )  # one pass for the figures and warnings
        key = model_key(run["run_id"])
        model = model_arrays(config, params, data, epochs)
        final = {
            "cost": run.get("last_cost"),
            **metrics(params, data, config, fit.AL, Y, epochs),
            "epochs": epochs,
            "stopped_early_at": run.get("stopped_early_at"),
            "seed": config.seed,
            "seconds": round(time.time() - run["created_epoch_seconds"], 3),
            "invocations": run.get("invocations", 0) + 1,
            "model_key": key,
            "warnings": diagnostics.model_warnings(fit, Y, config, data.classes),
        }
        staged = staged_model_key(run["run_id"], epochs)
        result = StepResult(outputs={staged: model}, final=final)
        if config.workers > 1:  # the last epoch's slices (its whole state is kept), the fits: no later step reads them
            result.obsolete = state_slice_keys(config, epochs, 1, 1) + fit_keys(config, epochs)
        result.checkpoints.add(staged)
        return result

    def stopped_model(self, config: TrainingConfig, run: dict) -> tuple[str, dict[str, np.ndarray]]:
        """The model a stop keeps: that of the last committed epoch, from its training state (kept until the step
        that completes the next epoch commits), as the finish would write it after that epoch; with the key it is
        staged at. A `RunFailure` when that state is gone."""
        epoch = run["progress_epoch"]
        if config.workers > 1 and run.get(STATE_SLICES_FIELD) == config.workers:  # (kept until the next epoch's end)
            params = self._assembled(config, epoch, 1, 1, "params")
        else:
            params = params_of(self._load(params_key(config, epoch)))
        return staged_model_key(run["run_id"], epoch), model_arrays(
            config, params, self._round_data(config, run, None).data, epoch
        )


def remaining_seconds(context: Any) -> float:
    """Seconds left in this invocation (unbounded without a Lambda context, as in a direct call)."""
    if context is None or not hasattr(context, "get_remaining_time_in_millis"):
        return float("inf")
    return context.get_remaining_time_in_millis() / 1000
