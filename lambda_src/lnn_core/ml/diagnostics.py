"""Signs that a trained model learned nothing, as warning sentences for a run that still succeeded.

Pure NumPy over network.py's layout: examples are COLUMNS, X_cols (n0, m) and targets Y (n_L, m).
Three signs, each one sentence naming what happened, with figures, and what to try:
- the training cost within `NOTHING_LEARNED_MARGIN` of the best constant predictor's (or above it): the class
  prior's cross-entropy for a sigmoid or softmax output, half the variance of the targets (predicting their mean)
  for a linear output;
- a classifier that gives one class for every training example (while the examples have several);
- a hidden layer with at least `DEAD_UNITS_SHARE` of its units dead: 0 for every training example (a relu unit
  whose input is never positive; it gets no gradient and can never come back).
"""

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lnn_core.ml import network
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.metrics import output_labels

NOTHING_LEARNED_MARGIN = 0.02  # a training cost less than 2 % below the constant predictor's: nothing learned
DEAD_UNITS_SHARE = 0.5  # a hidden layer with at least this share of dead units


@dataclass(frozen=True)
class TrainingFit:
    """What one forward pass of the trained model over the training set shows."""

    AL: np.ndarray  # (n_L, m): the outputs, as network.forward_pass gives them
    dead_units: tuple[int, ...]  # per hidden layer, layer 1 first: units that are 0 for every example


@dataclass(frozen=True)
class PartFit:
    """One forward pass over a part of the training set (the whole set is one part)."""

    AL: np.ndarray  # (n_L, m_k): the part's outputs
    alive: tuple[np.ndarray, ...]  # per hidden layer, (n_l,) bool: units that are not 0 for some example of the part


def training_fit(params: network.Params, X_cols: np.ndarray, activations: Sequence[str]) -> TrainingFit:
    """X_cols (n0, m) -> the outputs AL (n_L, m) and each hidden layer's dead units."""
    return combined_fit([part_fit(params, X_cols, activations)])


def part_fit(params: network.Params, X_cols: np.ndarray, activations: Sequence[str]) -> PartFit:
    """X_cols (n0, m_k) of one part -> its outputs (n_L, m_k) and each hidden layer's units alive in it.

    network.layer_forward layer by layer, as forward_pass (so AL is the same bits), but keeping one layer's
    activations at a time instead of every cache: the finish runs it over the whole training set, or K fit workers
    over their parts of it.
    """
    A, alive = X_cols, []
    layers = len(activations)
    for layer in range(1, layers + 1):
        A, _ = network.layer_forward(A, params[f"W{layer}"], params[f"b{layer}"], activations[layer - 1])
        if layer < layers:
            alive.append((A != 0).any(axis=1))
    return PartFit(A, tuple(alive))


def combined_fit(parts: Sequence[PartFit]) -> TrainingFit:
    """The parts' fits, in the order of their examples, as one: the outputs side by side, and a unit dead when it
    is 0 for every example of every part."""
    AL = parts[0].AL if len(parts) == 1 else np.concatenate([part.AL for part in parts], axis=1)
    alive = [np.logical_or.reduce(units) for units in zip(*(part.alive for part in parts))]
    return TrainingFit(AL, tuple(int((~units).sum()) for units in alive))


def constant_cost(Y: np.ndarray, output_activation: str) -> float:
    """The cost of the best constant predictor of Y (n_L, m), by network.compute_cost, the cost LNN trains on.

    The output that minimises the mean cross-entropy over the examples is the class prior (the share of each
    class; for a sigmoid, of class 1), and the one that minimises the squared error is the targets' mean: its
    cost is half their variance, summed over the output units.
    """
    constant = np.broadcast_to(Y.mean(axis=1, keepdims=True), Y.shape)
    return network.compute_cost(constant, Y, output_activation)


def _advice(config: TrainingConfig, *, more_epochs: bool = False) -> str:
    """What to try, naming the run's own settings and leaving out what it already used; `more_epochs` first for a
    model still worse than a constant, as a randomly initialised one is before it has trained long enough."""
    tries = [
        *([f"more --epochs than {config.epochs}"] if more_epochs else []),
        f"another --seed (this run used {config.seed})" if config.seed is not None else "another --seed",
        f"a smaller --learning-rate than {config.learning_rate:g}",
    ]
    if config.optimizer != "adam":
        tries.append("--optimizer adam")
    if config.init != "lecun":
        tries.append("--init lecun")
    return "try " + ", ".join(tries[:-1]) + " or " + tries[-1]


def model_warnings(
    fit: TrainingFit, Y: np.ndarray, config: TrainingConfig, class_names: Sequence[str] | None = None
) -> list[str]:
    """The warnings of a trained model, from its `training_fit` over the training set and the targets Y (n_L, m).

    The costs compared are the data's cost alone, without the L2 term: the constant predictor has no weights to
    penalise, and the run's reported cost (the last epoch's, summed over its mini-batches while the weights still
    moved, plus L2) would not compare like with like. So both are network.compute_cost on the whole training set.
    """
    output = config.activations[-1]
    if not (Y != Y[:, :1]).any():
        return []  # every target the same: a constant is the right model, and nothing else is to be learned
    warnings = []
    cost, baseline = network.compute_cost(fit.AL, Y, output), constant_cost(Y, output)
    if cost > (1 - NOTHING_LEARNED_MARGIN) * baseline:
        constant = "the targets' mean" if config.regression else "the class prior"
        above = cost > (1 + NOTHING_LEARNED_MARGIN) * baseline
        relation = "above" if above else f"within {NOTHING_LEARNED_MARGIN * 100:g} % of"
        warnings.append(
            f"the training cost {cost:.4g} is {relation} {baseline:.4g}, the cost of always predicting "
            f"{constant}: the model learned nothing; {_advice(config, more_epochs=above)}."
        )
    if not config.regression:
        labels = Y.argmax(axis=0) if Y.shape[0] > 1 else Y[0].astype(np.int64)
        predicted = output_labels(fit.AL, output)
        if np.unique(predicted).size == 1:
            label = int(predicted[0])
            named = (
                f"class {label} ({class_names[label]!r})"
                if class_names is not None and label < len(class_names)
                else f"class {label}"
            )
            warnings.append(
                f"the model predicts {named} for all {Y.shape[1]} training examples, which have "
                f"{np.unique(labels).size} classes; {_advice(config)}."
            )
    for layer, dead in enumerate(fit.dead_units, start=1):
        units = config.neurons[layer - 1]
        if dead >= DEAD_UNITS_SHARE * units:
            warnings.append(
                f"{dead} of the {units} units of hidden layer {layer} ({config.activations[layer - 1]}) "
                f"are dead, 0 for every training example, and can no longer learn; {_advice(config)}."
            )
    return warnings
