"""A step's results: the training state and the epoch items it leaves, the figures of a finished model, and the
checks that stop a diverging run. Pure functions of the configuration and the arrays they are given."""

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lnn_core.aws.codec import dynamodb_can_store
from lnn_core.aws.epoch_items import ITEMS_PER_WRITE
from lnn_core.aws.sdk import now
from lnn_core.errors import RunFailure
from lnn_core.ml import network
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import TrainingData
from lnn_core.ml.metrics import accuracy, output_accuracy, output_r2, output_rmse, r2, rmse
from lnn_core.protocol.layout import is_checkpoint, params_key

ITEM_WEIGHTS_LIMIT = (
    2_000  # parameters stored as DynamoDB lists (~40 KB of the 400 KB item limit); above: norms and a checkpoint key
)
WRITE_REQUEST_SECONDS = (
    0.4  # budgeted per transaction of epoch items: the commit's writes must fit in the invocation too
)
PARTITION_WRITE_UNITS_PER_SECOND = 1000  # DynamoDB's limit per partition; all of a run's items share one key
TRANSACTION_UNITS_PER_KB = 2  # a transactional write consumes twice the units of a plain one
DIVERGED_MAGNITUDE = 1e100  # weights this large have diverged (and DynamoDB numbers end at 1e126)


@dataclass
class StepResult:
    """What a step body produced; the protocol turns it into effects."""

    outputs: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # S3 key -> arrays
    checkpoints: set[str] = field(default_factory=set)  # output keys that are kept, not scratch
    epoch_items: list[dict[str, Any]] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)  # run record updates
    last_epoch_done: int | None = None
    stop: bool = False  # the last epoch's cost fell below the threshold: finish next
    obsolete: list[str] = field(default_factory=list)  # S3 keys no later step reads
    final: dict[str, Any] | None = None
    barrier: dict[str, Any] = field(default_factory=dict)  # a shard's loss sum and L2 penalty, with its place


def epochs_done(
    config: TrainingConfig, *, first_epoch: int, state: dict | None, items: list, obsolete: list[str]
) -> StepResult:
    """The shared tail of every step that completes epochs: the training state to S3 (None: a round's, in slices
    already, not kept whole at this epoch), one results item per epoch."""
    last_epoch, last_cost = items[-1]["epoch"], items[-1]["cost"]
    key = params_key(config, last_epoch)
    stop = stops_early(config, last_epoch, last_cost)
    result = StepResult(
        outputs={} if state is None else {key: state},
        epoch_items=items,
        fields={"progress_epoch": last_epoch, "last_cost": last_cost},
        last_epoch_done=last_epoch,
        stop=stop,
        obsolete=obsolete,
    )
    if stop:
        result.fields["stopped_early_at"] = last_epoch
    if state is not None and (is_checkpoint(config, last_epoch) or stop):
        result.checkpoints.add(key)
    if not is_checkpoint(config, first_epoch - 1):
        result.obsolete.append(params_key(config, first_epoch - 1))
    return result


def epoch_ended(
    config: TrainingConfig,
    run: dict,
    data: TrainingData,
    *,
    epoch: int,
    cost: float,
    params: dict,
    state: dict | None,
    obsolete: list[str],
) -> StepResult:
    """A step that ends one mini-batch epoch (a chain's last batch, a round's last commit): its item, timed from the
    previous epoch's end, `epochs_done`'s tail, and the next epoch's start."""
    item = epoch_item(
        config, epoch, cost, params, run.get("epoch_started_at") or now(), evaluation(config, data, epoch, params)
    )
    result = epochs_done(config, first_epoch=epoch, state=state, items=[item], obsolete=obsolete)
    result.fields["epoch_started_at"] = now()
    return result


def epoch_item(
    config: TrainingConfig,
    epoch: int,
    cost: float,
    params: dict,
    started_at: str,
    evaluated: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The epoch's results item: its cost, the test set's figures when evaluated, and its end-of-epoch weights
    (lists; or norms, and the key of the kept training state at a checkpoint epoch). Its content depends on the
    epoch alone, never on the step that wrote it. The run table stores it as two items (`epoch_items.stored_items`)."""
    item = {
        "epoch": epoch,
        "cost": cost,
        "learning_rate": config.learning_rate,
        "started_at": started_at,
        "finished_at": now(),
        **(evaluated or {}),
    }
    layers = range(1, config.layers + 1)
    if sum(array.size for array in params.values()) <= ITEM_WEIGHTS_LIMIT:
        item["weights"] = {f"layer{l}": params[f"W{l}"] for l in layers}
        item["bias"] = {f"layer{l}": params[f"b{l}"] for l in layers}
    else:
        # in float64: a float32 norm overflows from entries of about 1e19, far below `finite_params`' limit
        item["weight_norms"] = {f"layer{l}": float(np.linalg.norm(params[f"W{l}"].astype(np.float64))) for l in layers}
        if is_checkpoint(config, epoch) or stops_early(config, epoch, cost):
            item["checkpoint_key"] = params_key(config, epoch)
    return item


def evaluation(
    config: TrainingConfig, data: TrainingData, epoch: int, params: network.Params
) -> dict[str, float] | None:
    """Every `eval_every` epochs, the validation set's and the test set's cost and metric with the end-of-epoch
    weights (None otherwise, or with neither set)."""
    if not config.eval_every or epoch % config.eval_every:
        return None
    figures = {}
    for prefix, X, y in (("validation", data.X_validation, data.y_validation), ("test", data.X_test, data.y_test)):
        if X is not None:
            figures |= held_out_figures(prefix, params, X, y, config, epoch)
    return figures or None


def held_out_figures(
    prefix: str, params: network.Params, X: np.ndarray, y: np.ndarray, config: TrainingConfig, epoch: int
) -> dict[str, float]:
    """`<prefix>_cost` and `<prefix>_accuracy` (or `<prefix>_rmse`) of rows X (m, n0) and labels y."""
    activations = list(config.activations)
    AL, _ = network.forward_pass(params, network.to_columns(X, config.dtype), activations)
    cost = network.compute_cost(
        AL, network.targets(y, activations[-1], config.neurons[-1], config.dtype), activations[-1]
    )
    metric = ("rmse", rmse) if config.regression else ("accuracy", accuracy)
    return {
        f"{prefix}_cost": finite_cost(cost, epoch, config),
        f"{prefix}_{metric[0]}": metric[1](params, X, y, activations),
    }


def metrics(
    params: network.Params,
    data: TrainingData,
    config: TrainingConfig,
    train_outputs: np.ndarray,
    train_targets: np.ndarray,
    epochs: int = 0,
) -> dict[str, float | None]:
    """The trained model's figures: accuracy for a classifier; RMSE and R² for a regression. The training set's are
    computed from its outputs AL (n_L, m) and targets Y (n_L, m), the forward pass the finish step diagnoses too; the
    validation set's cost and metric when it has one (`epochs`: the model's, for a diverged cost's message)."""
    activations, has_test = list(config.activations), data.X_test is not None
    validated = (
        {}
        if data.X_validation is None
        else held_out_figures("validation", params, data.X_validation, data.y_validation, config, epochs)
    )
    return {**_fit_metrics(params, data, config, train_outputs, train_targets, activations, has_test), **validated}


def _fit_metrics(
    params: network.Params,
    data: TrainingData,
    config: TrainingConfig,
    train_outputs: np.ndarray,
    train_targets: np.ndarray,
    activations: list[str],
    has_test: bool,
) -> dict[str, float | None]:
    if config.regression:
        figures = {
            "train_rmse": output_rmse(train_outputs, train_targets),
            "train_r2": output_r2(train_outputs, train_targets),
            "test_rmse": rmse(params, data.X_test, data.y_test, activations) if has_test else None,
            "test_r2": r2(params, data.X_test, data.y_test, activations) if has_test else None,
        }
        return {name: storable(value) for name, value in figures.items()}
    return {
        "train_accuracy": output_accuracy(train_outputs, data.y, activations[-1]),
        "test_accuracy": accuracy(params, data.X_test, data.y_test, activations) if has_test else None,
    }


def storable(figure: float | None) -> float | None:
    """A figure as the run record can hold it, or None (no figure) where DynamoDB cannot: an R² of targets that
    hardly vary (-1e140), an RMSE that overflowed in float32. Written as it is, the finish's commit would fail at
    every try."""
    return figure if figure is None or dynamodb_can_store(figure) else None


def descriptions(data: TrainingData) -> dict[str, np.ndarray]:
    """What the data says of its examples, kept in the model so predictions can name classes and take images."""
    described = {"classes": data.classes, "example_shape": data.example_shape}
    return {name: np.asarray(value) for name, value in described.items() if value is not None}


def stops_early(config: TrainingConfig, epoch: int, cost: float) -> bool:
    """The run ends after this epoch, before its last, because the epoch's cost fell below the threshold."""
    return config.threshold is not None and cost < config.threshold and epoch < config.epochs


def commit_seconds(epochs: int, item_units: list[int]) -> float:
    """Time to budget for writing the items of `epochs` epochs and the commit, each epoch stored as items of
    `item_units` write units (`epoch_items.epoch_write_units`): a transaction per `ITEMS_PER_WRITE` items, and the write
    units (two per KB in a transaction) one partition (all of a run's items share its key) accepts per second."""
    return (
        math.ceil(epochs * len(item_units) / ITEMS_PER_WRITE) * WRITE_REQUEST_SECONDS
        + epochs * sum(item_units) * TRANSACTION_UNITS_PER_KB / PARTITION_WRITE_UNITS_PER_SECOND
    )


def finite_cost(cost: float, epoch: int, config: TrainingConfig) -> float:
    cost = float(cost)
    if not math.isfinite(cost):
        raise RunFailure(
            f"the cost diverged at epoch {epoch} ({cost}); lower the learning rate ({config.learning_rate})"
        )
    if abs(cost) >= DIVERGED_MAGNITUDE:  # the weights' limit too: a regression's squared errors outgrow its weights
        raise RunFailure(
            f"the cost diverged at epoch {epoch} ({cost:.3g}, beyond {DIVERGED_MAGNITUDE:g}); lower the learning rate "
            f"({config.learning_rate}), or scale the inputs and the targets"
        )
    return cost


def finite_params(params: dict[str, np.ndarray], epoch: int) -> dict[str, np.ndarray]:
    # float32 ends at 3.4e38: its arrays are compared with its largest number (1e100 in float32 is inf, with a warning)
    if not all(
        np.all(np.abs(array) < min(DIVERGED_MAGNITUDE, float(np.finfo(array.dtype).max))) for array in params.values()
    ):  # NaN fails too
        raise RunFailure(
            f"the weights diverged at epoch {epoch} (beyond {DIVERGED_MAGNITUDE:g} or NaN); lower the learning rate"
        )
    return params
