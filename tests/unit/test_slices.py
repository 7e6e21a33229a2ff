"""The reduce in K slice steps (lnn_core/ml/slices.py): bit for bit the whole reduce, round trips, the byte
layout of a shard's sums, and its errors."""

import numpy as np
import pytest

from lnn_core.ml import network, optimizers
from lnn_core.ml.shards import combine_shards, shard_columns, shard_slices, shard_sums
from lnn_core.ml.slices import (
    SumsLayout,
    assemble,
    combine_slice,
    layer_rows,
    pack_sums,
    take_slice,
    unpack_slice,
)

N0, NEURONS, ACTIVATIONS = 9, (7, 4, 1), ("relu", "tanh", "sigmoid")
BATCH, ROUNDS = 23, 6


def settings(optimizer: str) -> dict:
    """The keyword arguments TrainingConfig.optimizer_settings() gives (betas off their defaults)."""
    return {"optimizer": optimizer, "beta": 0.8, "beta1": 0.85, "beta2": 0.99, "epsilon": 1e-7}


def assert_same_bytes(actual: dict, expected: dict) -> None:
    assert list(actual) == list(expected)
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, name
        assert actual[name].shape == value.shape, name
        assert actual[name].tobytes() == value.tobytes(), name


def sliced_round(params, state, results, batch, l2, opt, dtype, K):
    """One round reduced in K slice steps: pack each shard's sums, then per slice unpack, combine and update."""
    layout = SumsLayout.of(params, K, dtype)
    objects = [pack_sums(sums, layout) for sums, _ in results]
    assert all(tuple(map(len, pair)) == layout.object_sizes() for pair in objects)
    param_blocks, state_blocks = [], []
    for j in range(K):
        obj, start, stop = layout.range(j)
        pieces = [unpack_slice(pair[obj][start:stop], layout, j) for pair in objects]
        grads = combine_slice(take_slice(params, NEURONS, K, j), pieces, batch, l2)
        new_params, new_state = optimizers.update(
            take_slice(params, NEURONS, K, j), grads, take_slice(state, NEURONS, K, j), learning_rate=0.05, **opt
        )
        param_blocks.append(new_params)
        state_blocks.append(new_state)
    return assemble(param_blocks), assemble(state_blocks)


@pytest.mark.parametrize("K", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("l2", [0.0, 0.7])
@pytest.mark.parametrize("optimizer", optimizers.OPTIMIZERS)
@pytest.mark.parametrize("dtype", network.DTYPES)
def test_slice_steps_equal_the_whole_reduce_byte_for_byte(dtype, optimizer, l2, K):
    rng = np.random.default_rng(29)
    opt = settings(optimizer)
    whole_params = network.init_params([N0, *NEURONS], seed=3, dtype=dtype)
    whole_state = optimizers.init_state(whole_params, optimizer)
    params, state = whole_params, whole_state
    for _ in range(ROUNDS):
        X = rng.standard_normal((N0, BATCH)).astype(dtype)
        Y = (rng.random((1, BATCH)) < 0.5).astype(dtype)
        # both paths' shards from the same (sliced path's) params: equal after every round, as asserted below
        results = [
            shard_sums(params, shard_columns(X, part), shard_columns(Y, part), ACTIVATIONS)
            for part in shard_slices(BATCH, K)
        ]
        grads, _ = combine_shards(whole_params, results, BATCH, l2)
        whole_params, whole_state = optimizers.update(whole_params, grads, whole_state, learning_rate=0.05, **opt)
        params, state = sliced_round(params, state, results, BATCH, l2, opt, dtype, K)
        assert_same_bytes(params, whole_params)
        assert_same_bytes(state, whole_state)
    assert int(state["t"]) == ROUNDS


@pytest.mark.parametrize("K", [1, 2, 3, 5, 8])
def test_take_slice_then_assemble_is_the_identity_and_slices_every_layer_array(K):
    params = network.init_params([N0, *NEURONS], seed=1)
    state = {name: value + 1.5 for name, value in optimizers.init_state(params, "adam").items()}
    state["t"] = np.array(4, dtype=np.int64)
    for arrays in (params, state):
        blocks = [take_slice(arrays, NEURONS, K, j) for j in range(K)]
        for j, block in enumerate(blocks):
            rows = layer_rows(NEURONS, K, j)
            assert list(block) == list(arrays)
            for name, value in block.items():
                assert value.flags.c_contiguous and not np.shares_memory(value, arrays[name])
                if name != "t":  # v_W2, s_b3, ... are sliced like W2, b3
                    layer = int(name[-1])
                    assert value.shape == (rows[layer - 1].stop - rows[layer - 1].start, arrays[name].shape[1])
        assert_same_bytes(assemble(blocks), arrays)


def test_layer_rows_are_the_shard_slices_of_each_layer():
    assert layer_rows(NEURONS, 5, 4) == [slice(6, 7), slice(4, 4), slice(1, 1)]
    assert layer_rows(NEURONS, 1, 0) == [slice(0, 7), slice(0, 4), slice(0, 1)]
    with pytest.raises(ValueError):
        layer_rows(NEURONS, 3, 3)


def random_sums(dtype="float64", seed=0):
    rng = np.random.default_rng(seed)
    sums = {}
    for layer, (n, cols) in enumerate(zip(NEURONS, (N0, *NEURONS[:-1])), start=1):
        sums[f"dW{layer}"] = rng.standard_normal((n, cols)).astype(dtype)
        sums[f"db{layer}"] = rng.standard_normal((n, 1)).astype(dtype)
    return sums


@pytest.mark.parametrize("K", [1, 2, 3, 5, 8])
@pytest.mark.parametrize("dtype", network.DTYPES)
def test_objects_are_slice_major_and_ranges_tile_them(K, dtype):
    sums = random_sums(dtype)
    layout = SumsLayout.of([(7, 9), (4, 7), (1, 4)], K, np.dtype(dtype))
    assert layout == SumsLayout.of(network.init_params([N0, *NEURONS]), K, dtype)
    objects = pack_sums(sums, layout)
    # the reference, straight from the layout's definition: slice-major, then layer, then dW before db
    h = (K + 1) // 2
    expected = [b"", b""]
    for j in range(K):
        for layer, rows in enumerate(layer_rows(NEURONS, K, j), start=1):
            expected[0 if j < h else 1] += sums[f"dW{layer}"][rows].tobytes() + sums[f"db{layer}"][rows].tobytes()
    assert objects == tuple(expected) and layout.object_sizes() == tuple(map(len, expected))
    if K == 1:
        assert objects[1] == b""
    ranges = [layout.range(j) for j in range(K)]
    assert [obj for obj, _, _ in ranges] == [0] * h + [1] * (K - h)
    for obj in (0, 1):
        bounds = [(start, stop) for o, start, stop in ranges if o == obj]
        ends = [0] + [stop for _, stop in bounds]
        assert [start for start, _ in bounds] == ends[:-1] and ends[-1] == len(objects[obj])
    for j, (obj, start, stop) in enumerate(ranges):
        blocks = unpack_slice(objects[obj][start:stop], layout, j)
        assert_same_bytes(blocks, take_slice(sums, NEURONS, K, j))


def test_an_empty_slice_has_an_empty_range_and_empty_blocks():
    layout = SumsLayout.of([(7, 9), (4, 7), (1, 4)], 8, "float64")
    obj, start, stop = layout.range(7)  # slice 7 of 8 owns no row of 7, 4 or 1
    assert (obj, start) == (1, stop) and start == layout.object_sizes()[1]
    blocks = unpack_slice(b"", layout, 7)
    assert [value.shape for value in blocks.values()] == [(0, 9), (0, 1), (0, 7), (0, 1), (0, 4), (0, 1)]


def test_the_slice_reduce_starts_from_shard_0_not_from_zeros():
    # -0.0 everywhere: ((-0.0 + -0.0) / 2) is -0.0; started from zeros it would be +0.0
    piece = {"dW1": np.full((2, 3), -0.0), "db1": np.full((2, 1), -0.0)}
    params = {"W1": np.ones((2, 3)), "b1": np.zeros((2, 1))}
    grads = combine_slice(params, [piece, piece], 2)
    whole, _ = combine_shards(params, [(piece, 0.0), (piece, 0.0)], 2)
    assert_same_bytes(grads, {name: whole[name] for name in grads})
    assert np.signbit(grads["dW1"]).all() and np.signbit(grads["db1"]).all()


def test_the_slice_reduce_adds_in_shard_order_and_adds_the_l2_term_to_weights_only():
    params = {"W1": np.array([[2.0]]), "b1": np.array([[3.0]])}
    pieces = [{"dW1": np.array([[value]]), "db1": np.array([[value]])} for value in (1e16, 1.0, -1e16)]
    grads = combine_slice(params, pieces, 1, l2=0.5)
    assert grads["dW1"][0, 0] == ((1e16 + 1.0) - 1e16) + 0.5 * 2.0 and grads["db1"][0, 0] == (1e16 + 1.0) - 1e16


def test_assemble_refuses_unequal_t():
    blocks = [{"t": np.array(3, dtype=np.int64), "v_W1": np.zeros((1, 2))} for _ in range(2)]
    blocks[1]["t"] = np.array(4, dtype=np.int64)
    with pytest.raises(ValueError, match="'t'"):
        assemble(blocks)


def test_unpack_slice_refuses_a_piece_of_the_wrong_length():
    layout = SumsLayout.of([(7, 9), (4, 7), (1, 4)], 3, "float32")
    _, start, stop = layout.range(1)
    with pytest.raises(ValueError, match=f"{stop - start - 4}.*{stop - start}"):
        unpack_slice(bytes(stop - start - 4), layout, 1)


def test_pack_sums_refuses_a_dtype_mismatch():
    layout = SumsLayout.of([(7, 9), (4, 7), (1, 4)], 2, "float32")
    with pytest.raises(ValueError, match="float64"):
        pack_sums(random_sums("float64"), layout)
