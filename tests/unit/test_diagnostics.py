"""The warnings of a model that learned nothing (diagnostics.py), on hand-built models whose outputs are known."""

import math

import numpy as np
import pytest

from lnn_core.ml import diagnostics, network
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.diagnostics import (
    TrainingFit,
    constant_cost,
    model_warnings,
    training_fit,
)


def config(neurons, activations, **settings) -> TrainingConfig:
    return TrainingConfig(
        epochs=10,
        learning_rate=0.0075,
        neurons=tuple(neurons),
        activations=tuple(activations),
        data="runs/r/data.npz",
        **{"seed": 1, "init": "he", **settings},
    )


def two_blobs(m=40):
    """X (m, 2) rows: class 1 around (+2, +2), class 0 around (-2, -2); 30 % of the examples are class 1."""
    rng = np.random.default_rng(0)
    y = (np.arange(m) < 0.3 * m).astype(np.int64)
    X = rng.normal(size=(m, 2)) + np.where(y[:, None] == 1, 2.0, -2.0)
    return X, y


def warnings_of(params, X, y, cfg, class_names=None):
    Y = network.targets(y, cfg.activations[-1], cfg.neurons[-1])
    return model_warnings(training_fit(params, network.to_columns(X), cfg.activations), Y, cfg, class_names)


# --- the constant predictor's cost, by hand ---------------------------------------------------------------


def test_the_constant_predictors_cost_is_the_prior_entropy_or_half_the_variance():
    p = 0.3
    assert constant_cost(np.array([[1.0, 0, 0, 1, 0, 0, 0, 0, 1, 0]]), "sigmoid") == pytest.approx(
        -(p * math.log(p) + (1 - p) * math.log(1 - p)), rel=1e-12
    )
    Y = network.targets(np.array([0, 1, 1, 2, 2, 2]), "softmax", 3)
    assert constant_cost(Y, "softmax") == pytest.approx(-sum(q * math.log(q) for q in (1 / 6, 2 / 6, 3 / 6)), rel=1e-12)
    y = np.array([1.0, 2.0, 4.0, 9.0])
    assert constant_cost(y.reshape(1, -1), "linear") == pytest.approx(np.var(y) / 2, rel=1e-12)


# --- a collapsed classifier and a learning one --------------------------------------------------------------


def collapsed_sigmoid_params(prior: float):
    """2-3-1 relu/sigmoid whose output is the class prior for every example: output weights 0, bias logit(prior)."""
    return {
        "W1": np.ones((3, 2)),
        "b1": np.zeros((3, 1)),
        "W2": np.zeros((1, 3)),
        "b2": np.array([[math.log(prior / (1 - prior))]]),
    }


def test_a_classifier_that_outputs_the_prior_gets_both_warnings_with_figures_and_advice():
    X, y = two_blobs()
    cfg = config([3, 1], ["relu", "sigmoid"])
    warnings = warnings_of(collapsed_sigmoid_params(0.3), X, y, cfg, class_names=("non-cat", "cat"))
    assert len(warnings) == 2
    prior_cost = -(0.3 * math.log(0.3) + 0.7 * math.log(0.7))
    assert warnings[0] == (
        f"the training cost {prior_cost:.4g} is within 2 % of {prior_cost:.4g}, the cost of always predicting the "
        "class prior: the model learned nothing; try another --seed (this run used 1), a smaller --learning-rate "
        "than 0.0075, --optimizer adam or --init lecun."
    )
    assert warnings[1].startswith(
        "the model predicts class 0 ('non-cat') for all 40 training examples, which have 2 classes; try another --seed"
    )


def test_a_classifier_that_separates_the_classes_gets_no_warning():
    X, y = two_blobs()
    params = {
        "W1": np.array([[1.0, 1.0], [-1.0, -1.0], [0.5, 0.5]]),
        "b1": np.zeros((3, 1)),
        "W2": np.array([[3.0, -3.0, 1.0]]),
        "b2": np.zeros((1, 1)),
    }
    cfg = config([3, 1], ["relu", "sigmoid"])
    assert network.compute_cost(*_outputs(params, X, y, cfg), "sigmoid") < 0.1
    assert warnings_of(params, X, y, cfg) == []


def _outputs(params, X, y, cfg):
    AL, _ = network.forward_pass(params, network.to_columns(X), cfg.activations)
    return AL, network.targets(y, "sigmoid", 1)


def test_one_class_for_every_example_is_reported_even_when_the_cost_fell():
    """Outputs that rank the examples right but all stay below 0.5: the cost is below the prior's, the answers not."""
    X, y = two_blobs()
    params = {"W1": np.array([[1.0, 1.0]]), "b1": np.zeros((1, 1)), "W2": np.array([[0.3]]), "b2": np.array([[-2.5]])}
    cfg = config([1, 1], ["relu", "sigmoid"])
    AL, Y = _outputs(params, X, y, cfg)
    assert AL.max() < 0.5 and network.compute_cost(AL, Y, "sigmoid") < 0.98 * constant_cost(Y, "sigmoid")
    warnings = warnings_of(params, X, y, cfg)
    assert len(warnings) == 1 and warnings[0].startswith("the model predicts class 0 for all 40 training examples")


def test_a_model_worse_than_the_constant_is_reported_as_above_it():
    X, y = two_blobs()
    warnings = warnings_of(collapsed_sigmoid_params(0.6), X, y, config([3, 1], ["relu", "sigmoid"]))
    assert "is above 0.6109, the cost of always predicting the class prior" in warnings[0]
    assert warnings[1].startswith("the model predicts class 1 for all 40")


def test_targets_of_one_class_leave_nothing_to_learn_and_warn_nothing():
    X, _ = two_blobs()
    y = np.zeros(len(X), dtype=np.int64)
    assert warnings_of(collapsed_sigmoid_params(0.3), X, y, config([3, 1], ["relu", "sigmoid"])) == []


# --- softmax ---------------------------------------------------------------------------------------------------


def softmax_data():
    """Three classes along the x axis (20, 10 and 10 examples); X (40, 2) rows."""
    rng = np.random.default_rng(1)
    y = np.repeat([0, 1, 2], [20, 10, 10])
    X = np.column_stack([4.0 * y + rng.normal(scale=0.3, size=y.size), rng.normal(size=y.size)])
    return X, y


def test_a_softmax_at_the_class_frequencies_is_collapsed_and_one_that_separates_is_not():
    X, y = softmax_data()
    cfg = config([2, 3], ["relu", "softmax"], optimizer="adam", init="lecun")
    collapsed = {
        "W1": np.ones((2, 2)),
        "b1": np.zeros((2, 1)),
        "W2": np.zeros((3, 2)),
        "b2": np.log([[0.5], [0.25], [0.25]]),
    }
    warnings = warnings_of(collapsed, X, y, cfg)
    entropy = -(0.5 * math.log(0.5) + 2 * 0.25 * math.log(0.25))
    assert len(warnings) == 2
    assert warnings[0].startswith(f"the training cost {entropy:.4g} is within 2 % of {entropy:.4g}")
    assert warnings[0].endswith("try another --seed (this run used 1) or a smaller --learning-rate than 0.0075.")
    assert warnings[1].startswith("the model predicts class 0 for all 40 training examples, which have 3 classes")

    # hidden unit 1 is x itself (x >= 0 here, the relu passes it); the output scores are linear in x, peaking at
    # x = 0, 4 and 8 in turn
    learned = {
        "W1": np.array([[1.0, 0.0], [0.0, 0.0]]),
        "b1": np.array([[0.5], [1.0]]),
        "W2": np.array([[-4.0, 0.0], [0.0, 0.0], [4.0, 0.0]]),
        "b2": np.array([[16.0], [0.0], [-32.0]]),
    }
    assert warnings_of(learned, X, y, cfg) == []


# --- regression --------------------------------------------------------------------------------------------------


def regression_data():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(30, 2))
    return X, 3.0 * X[:, 0] - X[:, 1] + 5.0


def test_a_regression_that_predicts_the_mean_is_collapsed_and_an_exact_fit_is_not():
    X, y = regression_data()
    cfg = config([1], ["linear"])
    mean = {"W1": np.zeros((1, 2)), "b1": np.array([[y.mean()]])}
    warnings = warnings_of(mean, X, y, cfg)
    half_variance = np.var(y) / 2
    assert warnings == [
        f"the training cost {half_variance:.4g} is within 2 % of {half_variance:.4g}, the cost of "
        "always predicting the targets' mean: the model learned nothing; try another --seed (this run "
        "used 1), a smaller --learning-rate than 0.0075, --optimizer adam or --init lecun."
    ]
    exact = {"W1": np.array([[3.0, -1.0]]), "b1": np.array([[5.0]])}
    assert warnings_of(exact, X, y, cfg) == []


@pytest.mark.parametrize(
    ("share_of_baseline", "warned"), [(1.0, "within 2 %"), (0.985, "within 2 %"), (0.975, None), (1.03, "above")]
)
def test_the_margin_is_2_percent_of_the_constant_predictors_cost(share_of_baseline, warned):
    """Outputs mean + t (y - mean) cost (1 - t)^2 times the constant's: the share is set exactly."""
    _, y = regression_data()
    Y = y.reshape(1, -1)
    t = 1 - math.sqrt(share_of_baseline)
    AL = Y.mean() + t * (Y - Y.mean())
    warnings = model_warnings(TrainingFit(AL, ()), Y, config([1], ["linear"]))
    assert network.compute_cost(AL, Y, "linear") == pytest.approx(share_of_baseline * constant_cost(Y, "linear"))
    if warned is None:
        assert warnings == []
    else:
        assert len(warnings) == 1 and f" is {warned} " in warnings[0]
        # worse than a constant, as a model before it has trained long enough: more epochs is the first advice
        more_epochs = "try more --epochs than 10, another --seed"
        assert (more_epochs in warnings[0]) == (warned == "above")


# --- dead hidden units -------------------------------------------------------------------------------------------


def dead_units_params(dead: int):
    """2-4-1 relu/sigmoid separating two_blobs, with `dead` of the 4 hidden units pushed below 0 for every example."""
    W1 = np.array([[1.0, 1.0], [-1.0, -1.0], [1.0, 0.0], [0.0, 1.0]])
    b1 = np.zeros((4, 1))
    b1[4 - dead :] = -100.0
    return {"W1": W1, "b1": b1, "W2": np.array([[3.0, -3.0, 1.0, 1.0]]), "b2": np.zeros((1, 1))}


@pytest.mark.parametrize("dead", [1, 2])
def test_a_hidden_layer_with_half_its_units_dead_is_reported(dead):
    X, y = two_blobs()
    cfg = config([4, 1], ["relu", "sigmoid"], seed=7)
    fit = training_fit(dead_units_params(dead), network.to_columns(X), cfg.activations)
    assert fit.dead_units == (dead,)
    warnings = warnings_of(dead_units_params(dead), X, y, cfg)
    if dead == 1:
        assert warnings == []
    else:
        assert warnings == [
            "2 of the 4 units of hidden layer 1 (relu) are dead, 0 for every training example, and can "
            "no longer learn; try another --seed (this run used 7), a smaller --learning-rate than "
            "0.0075, --optimizer adam or --init lecun."
        ]


def test_dead_units_are_counted_per_hidden_layer_and_the_output_is_forward_pass_bit_for_bit():
    rng = np.random.default_rng(3)
    params = network.init_params([5, 6, 4, 2], "he", seed=4)
    params["b2"][:3] = -50.0  # three of layer 2's four units never fire
    X_cols = network.to_columns(rng.normal(size=(25, 5)))
    activations = ["relu", "relu", "softmax"]
    fit = training_fit(params, X_cols, activations)
    AL, caches = network.forward_pass(params, X_cols, activations)
    assert np.array_equal(fit.AL, AL)
    assert fit.dead_units == (int((caches[1][0] == 0).all(axis=1).sum()), 3)
    assert diagnostics.DEAD_UNITS_SHARE == 0.5 and diagnostics.NOTHING_LEARNED_MARGIN == 0.02
