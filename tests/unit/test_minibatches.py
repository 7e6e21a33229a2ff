"""Mini-batches, cost as sums, L2, the general epoch (train_epoch) and train_reference's options."""

import copy

import numpy as np
import pytest

from lnn_core.ml import metrics, network, optimizers, training
from lnn_core.ml.batching import batch_columns, batch_count, minibatches
from lnn_core.ml.network import (
    batch_cost_sum,
    compute_cost,
    forward_pass,
    hidden_delta,
    init_params,
    l2_penalty,
    layer_backward,
    layer_forward,
    loss_sum,
    output_delta,
    squared_norm,
    targets,
    to_columns,
)
from lnn_core.ml.training import (
    gradient_descent_epoch,
    train_epoch,
    train_reference,
    train_reference_state,
)
from tests.support.arrays import blobs_around

# --- batch_count and minibatches ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("m", "batch_size", "count"),
    [(10, None, 1), (10, 10, 1), (10, 64, 1), (10, 1, 10), (10, 3, 4), (10, 5, 2), (10, 9, 2), (1, 1, 1)],
)
def test_batch_count(m, batch_size, count):
    assert batch_count(m, batch_size) == count
    assert len(minibatches(m, batch_size, 0, 1)) == count


@pytest.mark.parametrize("batch_size", [None, 10, 11, 1000])
def test_one_batch_is_the_whole_set_unshuffled(batch_size):
    assert minibatches(10, batch_size, 5, 3) == [slice(0, 10)]
    assert minibatches(10, batch_size, None, 1) == [slice(0, 10)]  # no shuffle, so no seed needed


def test_batches_are_consecutive_slices_of_the_random_state_permutation():
    for shuffle_seed, epoch in [(0, 1), (7, 1), (7, 2), (41, 13)]:
        batches = minibatches(10, 4, shuffle_seed, epoch)
        order = np.random.RandomState(shuffle_seed + epoch).permutation(10)
        assert [len(batch) for batch in batches] == [4, 4, 2]
        np.testing.assert_array_equal(batches[0], order[0:4])
        np.testing.assert_array_equal(batches[1], order[4:8])
        np.testing.assert_array_equal(batches[2], order[8:10])


def test_every_example_once_per_epoch_in_a_new_order_each_epoch():
    orders = [np.concatenate(minibatches(50, 8, 3, epoch)) for epoch in (1, 2, 3)]
    for order in orders:
        np.testing.assert_array_equal(np.sort(order), np.arange(50))
    assert not np.array_equal(orders[0], orders[1]) and not np.array_equal(orders[1], orders[2])
    # the seed and the epoch enter only as their sum
    np.testing.assert_array_equal(np.concatenate(minibatches(50, 8, 4, 1)), orders[1])
    np.testing.assert_array_equal(np.concatenate(minibatches(50, 8, 3, 2)), orders[1])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ((0, 2, 0, 1), "number of examples m must be a positive integer"),
        ((10, 0, 0, 1), "batch_size must be a positive integer or None"),
        ((10, 2.5, 0, 1), "batch_size must be a positive integer or None"),
        ((10, True, 0, 1), "batch_size must be a positive integer or None"),
        ((10, 2, None, 1), "need an integer shuffle_seed"),
        ((10, 2, -5, 1), "need an integer shuffle_seed"),
        ((10, 2, 2**32 - 1, 1), "need an integer shuffle_seed"),
        ((10, 2, 0, 0), "epoch counts from 1"),
    ],
)
def test_minibatches_rejects_bad_input(arguments, message):
    with pytest.raises(ValueError, match=message):
        minibatches(*arguments)


def test_batch_columns():
    A = np.arange(12.0).reshape(3, 4)
    assert batch_columns(A, slice(0, 4)) is A
    part = batch_columns(A, np.array([3, 0]))
    np.testing.assert_array_equal(part, A[:, [3, 0]])
    assert part.flags.c_contiguous and not np.shares_memory(part, A)
    np.testing.assert_array_equal(batch_columns(A, slice(1, 3)), A[:, 1:3])
    assert batch_columns(A, slice(1, 3)).flags.c_contiguous


# --- cost as sums and L2 -----------------------------------------------------------------------


def old_compute_cost(AL, Y, output_activation):
    """compute_cost as it was before loss_sum: float(-log_likelihood.sum() / m)."""
    P = np.clip(AL, network.EPSILON, 1.0 - network.EPSILON)
    if output_activation == "sigmoid":
        log_likelihood = Y * np.log(P) + (1.0 - Y) * np.log(1.0 - P)
    else:
        log_likelihood = Y * np.log(P)
    return float(-log_likelihood.sum() / Y.shape[1])


@pytest.mark.parametrize(("output", "n_out"), [("sigmoid", 1), ("softmax", 4)])
def test_compute_cost_is_loss_sum_over_m_bit_for_bit(output, n_out):
    rng = np.random.RandomState(0)
    for m in (1, 3, 7, 100, 1001):
        AL, _ = layer_forward(rng.randn(n_out, m) * 3, np.eye(n_out), np.zeros((n_out, 1)), output)
        Y = targets(rng.randint(0, max(n_out, 2), size=m), output, n_out)
        assert compute_cost(AL, Y, output) == loss_sum(AL, Y, output) / m == old_compute_cost(AL, Y, output)
        assert isinstance(loss_sum(AL, Y, output), float)


def test_l2_penalty_and_batch_cost_sum():
    params = {"W1": np.array([[1.0, -2.0]]), "b1": np.array([[5.0]]), "W2": np.array([[3.0]]), "b2": np.array([[7.0]])}
    assert squared_norm(params["W1"]) == 5.0
    assert l2_penalty(params, 0.5) == 0.5 / 2 * (5.0 + 9.0)  # biases are not regularized
    AL, Y = np.array([[0.8, 0.4]]), np.array([[1.0, 0.0]])
    assert batch_cost_sum(AL, Y, "sigmoid", params) == loss_sum(AL, Y, "sigmoid")
    assert batch_cost_sum(AL, Y, "sigmoid", params, 0.0) == loss_sum(AL, Y, "sigmoid")
    assert batch_cost_sum(AL, Y, "sigmoid", params, 0.5) == loss_sum(AL, Y, "sigmoid") + 3.5


def test_layer_backward_adds_the_l2_gradient():
    dZ, A_prev, W = np.array([[1.0, 3.0]]), np.array([[2.0, 4.0], [1.0, -1.0]]), np.array([[0.5, -1.0]])
    dA, dW, db = layer_backward(dZ, A_prev, W)
    dA_l2, dW_l2, db_l2 = layer_backward(dZ, A_prev, W, 0.4)
    np.testing.assert_array_equal(dW_l2, dW + (0.4 / 2) * W)
    np.testing.assert_array_equal(db_l2, db)
    np.testing.assert_array_equal(dA_l2, dA)
    for got, expected in zip(layer_backward(dZ, A_prev, W, 0.0), (dA, dW, db)):
        np.testing.assert_array_equal(got, expected)


# --- train_epoch -------------------------------------------------------------------------------


def problem(m=23):
    params = init_params([3, 5, 4, 3], seed=5)
    X_cols = np.random.RandomState(6).randn(3, m)
    Y = targets(np.random.RandomState(7).randint(0, 3, size=m), "softmax", 3)
    return params, X_cols, Y, ["relu", "tanh", "softmax"]


def assert_same_params(a, b):
    assert list(a) == list(b)
    for name in a:
        np.testing.assert_array_equal(a[name], b[name])


def test_one_batch_gd_without_l2_is_gradient_descent_epoch_bit_for_bit():
    params, X_cols, Y, activations = problem()
    expected, state = params, optimizers.init_state(params, "gd")
    got = params
    for epoch in range(1, 6):
        expected, expected_cost = gradient_descent_epoch(expected, X_cols, Y, activations, 0.3)
        got, state, cost = train_epoch(
            got, state, X_cols, Y, activations=activations, batches=minibatches(23, None, 0, epoch), learning_rate=0.3
        )
        assert cost == expected_cost
        assert_same_params(got, expected)
    assert int(state["t"]) == 5


def manual_epoch(params, state, X_cols, Y, activations, batches, l2, settings):
    """The per-batch pieces as the Lambda engine composes them, one layer at a time."""
    L = len(activations)
    total = 0.0
    for batch in batches:
        A, Z = [batch_columns(X_cols, batch)], [None]
        Y_b = batch_columns(Y, batch)
        squares = 0.0
        for layer in range(1, L + 1):
            A_l, Z_l = layer_forward(A[-1], params[f"W{layer}"], params[f"b{layer}"], activations[layer - 1])
            A.append(A_l)
            Z.append(Z_l)
            squares += squared_norm(params[f"W{layer}"])
        contribution = loss_sum(A[L], Y_b, activations[-1])
        if l2 != 0:
            contribution = contribution + l2 / 2 * squares
        total += contribution
        dZ = output_delta(A[L], Y_b, activations[-1])
        new_params, new_state = {}, {}
        for layer in range(L, 0, -1):
            dA_prev, dW, db = layer_backward(dZ, A[layer - 1], params[f"W{layer}"], l2)
            if layer > 1:
                dZ = hidden_delta(dA_prev, Z[layer - 1], activations[layer - 2])
            names = (f"W{layer}", f"b{layer}")
            part = {name: params[name] for name in names}
            part_state = {key: state[key] for key in optimizers.state_keys(part, settings["optimizer"])}
            updated, updated_state = optimizers.update(
                part, {f"dW{layer}": dW, f"db{layer}": db}, part_state, **settings
            )
            new_params |= updated
            new_state |= updated_state
        params = {name: new_params[name] for name in params}
        state = {key: new_state[key] for key in state}
    return params, state, total / X_cols.shape[1]


@pytest.mark.parametrize(
    ("batch_size", "l2", "settings"),
    [
        (None, 0.0, dict(optimizer="gd", learning_rate=0.3)),
        (5, 0.0, dict(optimizer="gd", learning_rate=0.3)),
        (5, 0.2, dict(optimizer="momentum", learning_rate=0.3, beta=0.8)),
        (4, 0.1, dict(optimizer="adam", learning_rate=0.01, beta1=0.8, beta2=0.99, epsilon=1e-7)),
        (None, 0.1, dict(optimizer="adam", learning_rate=0.01)),
    ],
)
def test_train_epoch_is_the_per_batch_per_layer_sequence_bit_for_bit(batch_size, l2, settings):
    params, X_cols, Y, activations = problem()
    state = optimizers.init_state(params, settings["optimizer"])
    manual, manual_state = params, state
    for epoch in range(1, 4):
        batches = minibatches(23, batch_size, 11, epoch)
        params, state, cost = train_epoch(
            params, state, X_cols, Y, activations=activations, batches=batches, l2=l2, **settings
        )
        manual, manual_state, manual_cost = manual_epoch(
            manual, manual_state, X_cols, Y, activations, batches, l2, settings
        )
        assert cost == manual_cost
        assert_same_params(params, manual)
        assert_same_params(state, manual_state)
    assert int(state["t"]) == 3 * batch_count(23, batch_size)


def test_epoch_cost_sums_each_batch_before_its_update():
    params, X_cols, Y, activations = problem()
    batches = minibatches(23, 10, 0, 1)
    state = optimizers.init_state(params, "gd")
    _, _, cost = train_epoch(
        params, state, X_cols, Y, activations=activations, batches=batches, learning_rate=0.5, l2=0.3
    )
    expected, current = 0.0, params
    for batch in batches:
        AL, _ = forward_pass(current, batch_columns(X_cols, batch), activations)
        expected += loss_sum(AL, batch_columns(Y, batch), "softmax") + 0.3 / 2 * sum(
            np.sum(current[f"W{l}"] ** 2) for l in (1, 2, 3)
        )
        current, state, _ = training.batch_step(
            current,
            state,
            batch_columns(X_cols, batch),
            batch_columns(Y, batch),
            activations=activations,
            learning_rate=0.5,
            l2=0.3,
        )
    assert cost == pytest.approx(expected / 23, rel=1e-14)
    # one batch with L2: the batch's own regularized cost
    _, _, whole = train_epoch(
        params,
        optimizers.init_state(params, "gd"),
        X_cols,
        Y,
        activations=activations,
        batches=[slice(0, 23)],
        learning_rate=0.5,
        l2=0.3,
    )
    AL, _ = forward_pass(params, X_cols, activations)
    regularized = compute_cost(AL, Y, "softmax") + 0.3 / (2 * 23) * sum(np.sum(params[f"W{l}"] ** 2) for l in (1, 2, 3))
    assert whole == pytest.approx(regularized, rel=1e-14)


def test_train_epoch_is_pure():
    params, X_cols, Y, activations = problem()
    state = optimizers.init_state(params, "adam")
    before = copy.deepcopy((params, state, X_cols, Y))
    train_epoch(
        params,
        state,
        X_cols,
        Y,
        activations=activations,
        batches=minibatches(23, 4, 0, 1),
        learning_rate=0.1,
        optimizer="adam",
        l2=0.1,
    )
    for original, now in zip(before, (params, state, X_cols, Y)):
        if isinstance(original, dict):
            assert_same_params(original, now)
        else:
            np.testing.assert_array_equal(original, now)


# --- train_reference's options -----------------------------------------------------------------

BLOBS = blobs_around([[-1.0, 1.0], [1.0, -1.0]], per_class=30, spread=0.8)
OPTIONS = dict(neurons=[4, 1], activations=["tanh", "sigmoid"], learning_rate=0.05, epochs=12, seed=3)


def test_default_options_are_full_batch_gradient_descent_bit_for_bit():
    X, y = BLOBS
    params, costs = train_reference(X, y, **OPTIONS)
    explicit, explicit_costs = train_reference(
        X, y, **OPTIONS, batch_size=len(y), shuffle_seed=99, optimizer="gd", l2=0.0, threshold=None
    )
    manual = init_params([2, 4, 1], seed=3)
    for epoch in range(12):
        manual, cost = gradient_descent_epoch(
            manual, to_columns(X), targets(y, "sigmoid", 1), ["tanh", "sigmoid"], 0.05
        )
        assert cost == costs[epoch] == explicit_costs[epoch]
    assert_same_params(params, manual)
    assert_same_params(explicit, manual)


def test_minibatch_adam_is_deterministic():
    X, y = BLOBS
    options = OPTIONS | dict(batch_size=16, optimizer="adam", learning_rate=0.01, l2=0.01)
    params, costs, state = train_reference_state(X, y, **options)
    again, costs_again, state_again = train_reference_state(X, y, **options)
    assert costs == costs_again and len(costs) == 12
    assert_same_params(params, again)
    assert_same_params(state, state_again)
    assert int(state["t"]) == 12 * 4
    # shuffle_seed defaults to the seed
    explicit, explicit_costs = train_reference(X, y, **options, shuffle_seed=3)
    assert explicit_costs == costs
    assert_same_params(explicit, params)
    other, other_costs = train_reference(X, y, **options, shuffle_seed=4)
    assert other_costs != costs
    # and train_reference returns what train_reference_state does
    plain, plain_costs = train_reference(X, y, **options)
    assert plain_costs == costs
    assert_same_params(plain, params)


def test_minibatch_adam_and_momentum_learn():
    X, y = blobs_around([[-1.5, -1.5], [1.5, 1.5]])
    for settings in (dict(optimizer="adam", learning_rate=0.01), dict(optimizer="momentum", learning_rate=0.1)):
        params, costs = train_reference(
            X, y, neurons=[4, 1], activations=["tanh", "sigmoid"], epochs=30, seed=1, batch_size=32, **settings
        )
        assert costs[-1] < 0.2 * costs[0]
        assert metrics.accuracy(params, X, y, ["tanh", "sigmoid"]) >= 0.98


def test_l2_shrinks_the_weights():
    X, y = BLOBS
    plain, _ = train_reference(X, y, **OPTIONS | dict(epochs=100, learning_rate=0.5))
    shrunk, _ = train_reference(X, y, **OPTIONS | dict(epochs=100, learning_rate=0.5, l2=5.0))
    assert squared_norm(shrunk["W1"]) < squared_norm(plain["W1"])


def test_threshold_stops_after_the_first_epoch_below_it():
    X, y = BLOBS
    options = OPTIONS | dict(epochs=40, batch_size=20, optimizer="momentum", learning_rate=0.2)
    full_params, full_costs = train_reference(X, y, **options)
    threshold = (full_costs[9] + full_costs[10]) / 2  # costs fall: epoch 11 (index 10) is the first below
    assert all(cost > threshold for cost in full_costs[:10]) and full_costs[10] < threshold
    params, costs = train_reference(X, y, **options, threshold=threshold)
    assert costs == full_costs[:11]
    stopped, _ = train_reference(X, y, **options | dict(epochs=11))
    assert_same_params(params, stopped)
    # a threshold never reached runs every epoch; one above the first cost stops after epoch 1
    assert train_reference(X, y, **options, threshold=0.0)[1] == full_costs
    assert train_reference(X, y, **options, threshold=full_costs[0] + 1)[1] == full_costs[:1]


def test_batch_size_at_least_m_is_the_full_batch():
    X, y = BLOBS
    _, costs = train_reference(X, y, **OPTIONS)
    _, big = train_reference(X, y, **OPTIONS, batch_size=1000)
    assert big == costs


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"optimizer": "sgd"}, "optimizer 'sgd' is unknown"),
        ({"optimizer": "momentum", "beta": 1.0}, "beta must be in"),
        ({"l2": -0.1}, "l2 must be a finite number >= 0"),
        ({"l2": float("inf")}, "l2 must be a finite number >= 0"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"threshold": float("nan")}, "threshold must be a number"),
    ],
)
def test_train_reference_rejects_bad_options(options, message):
    X, y = BLOBS
    with pytest.raises(ValueError, match=message):
        train_reference(X, y, **OPTIONS, **options)
