"""Data-parallel rounds in pure NumPy: shard slices, shard sums, the ordered reduce, and the reference with K
workers."""

import numpy as np
import pytest

from lnn_core.ml import batching, network, optimizers, training
from lnn_core.ml.shards import (
    combine_shards,
    shard_columns,
    shard_slices,
    shard_sums,
    train_epoch_sharded,
)
from tests.conftest import blobs


@pytest.mark.parametrize("m, k", [(10, 3), (9, 3), (7, 4), (64, 1), (5, 5)])
def test_shard_slices_are_contiguous_cover_the_batch_and_differ_by_at_most_one(m, k):
    parts = shard_slices(m, k)
    sizes = [p.stop - p.start for p in parts]
    assert len(parts) == k and parts[0].start == 0 and parts[-1].stop == m
    assert all(a.stop == b.start for a, b in zip(parts, parts[1:]))
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_sums_reduced_equal_the_batch_gradients_up_to_summation_order():
    X, y = blobs(30, 4)
    params = network.init_params([4, 5, 3, 1], seed=1)
    activations = ["relu", "tanh", "sigmoid"]
    X_cols, Y = network.to_columns(X), y.reshape(1, -1)
    results = [
        shard_sums(params, shard_columns(X_cols, p), shard_columns(Y, p), activations) for p in shard_slices(30, 4)
    ]
    grads, cost_sum = combine_shards(params, results, 30, l2=0.1)
    AL, caches = network.forward_pass(params, X_cols, activations)
    expected = network.backward_pass(params, caches, AL, Y, activations, l2=0.1)
    for name, value in expected.items():
        np.testing.assert_allclose(grads[name], value, rtol=1e-12, atol=1e-15)
    assert cost_sum == pytest.approx(network.batch_cost_sum(AL, Y, "sigmoid", params, 0.1), rel=1e-12)


def test_the_reduce_adds_in_shard_order():
    params = {"W1": np.ones((1, 1)), "b1": np.zeros((1, 1))}
    results = [
        ({"dW1": np.array([[1e16]]), "db1": np.array([[0.0]])}, 1e16),
        ({"dW1": np.array([[1.0]]), "db1": np.array([[0.0]])}, 1.0),
        ({"dW1": np.array([[-1e16]]), "db1": np.array([[0.0]])}, -1e16),
    ]
    grads, cost_sum = combine_shards(params, results, 1)
    assert grads["dW1"][0, 0] == (1e16 + 1.0) - 1e16 and cost_sum == ((0.0 + 1e16) + 1.0) - 1e16  # not 1.0


def test_one_worker_is_the_plain_epoch_and_k_workers_stay_within_1e_10_after_20_epochs():
    X, y = blobs(60, 4)
    options = dict(
        neurons=[6, 4, 1],
        activations=["relu", "tanh", "sigmoid"],
        learning_rate=0.1,
        epochs=20,
        seed=3,
        batch_size=16,
        optimizer="adam",
        l2=0.01,
    )
    one, costs_one = training.train_reference(X, y, **options)
    three, costs_three = training.train_reference(X, y, **options, workers=3)
    again, costs_again = training.train_reference(X, y, **options, workers=3)
    assert all(three[name].tobytes() == again[name].tobytes() for name in three) and costs_three == costs_again
    for name in one:
        np.testing.assert_allclose(three[name], one[name], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(costs_three, costs_one, rtol=1e-10)


def test_train_epoch_sharded_uses_every_shard_once_per_batch():
    X, y = blobs(20, 3)
    params = network.init_params([3, 2, 1], seed=0)
    state = optimizers.init_state(params, "gd")
    _, state, cost = train_epoch_sharded(
        params,
        state,
        network.to_columns(X),
        y.reshape(1, -1),
        workers=4,
        activations=["tanh", "sigmoid"],
        batches=batching.minibatches(20, 8, 5, 1),
        learning_rate=0.1,
    )
    assert int(state["t"]) == 3 and np.isfinite(cost)
