"""optimizers.py: gd, momentum and adam updates against values worked by hand, and the state's form."""

import copy
import io
import math

import numpy as np
import pytest

from lnn_core.ml import optimizers
from lnn_core.ml.network import apply_update, init_params
from lnn_core.ml.optimizers import (
    OPTIMIZERS,
    check_settings,
    init_state,
    state_keys,
    update,
)

# One weight matrix with a positive and a negative entry, and a bias; two steps of gradients.
PARAMS = {"W1": np.array([[1.0, -2.0]]), "b1": np.array([[0.5]])}
GRADS = [
    {"dW1": np.array([[2.0, -1.0]]), "db1": np.array([[0.5]])},
    {"dW1": np.array([[4.0, 3.0]]), "db1": np.array([[-0.5]])},
]


def two_steps(optimizer, **settings):
    params, state = PARAMS, init_state(PARAMS, optimizer)
    history = []
    for grads in GRADS:
        params, state = update(params, grads, state, optimizer=optimizer, **settings)
        history.append((params, state))
    return history


def test_gd_by_hand():
    (first, state1), (second, state2) = two_steps("gd", learning_rate=0.1)
    np.testing.assert_allclose(first["W1"], [[1.0 - 0.2, -2.0 + 0.1]], rtol=1e-15)
    np.testing.assert_allclose(first["b1"], [[0.5 - 0.05]], rtol=1e-15)
    np.testing.assert_allclose(second["W1"], [[0.8 - 0.4, -1.9 - 0.3]], rtol=1e-15)
    np.testing.assert_allclose(second["b1"], [[0.45 + 0.05]], rtol=1e-15)
    assert list(state1) == ["t"] and int(state1["t"]) == 1 and int(state2["t"]) == 2


def test_gd_is_apply_update_bit_for_bit():
    params = init_params([5, 4, 3], seed=0)
    rng = np.random.RandomState(1)
    grads = {f"d{name}": rng.randn(*value.shape) for name, value in params.items()}
    new_params, _ = update(params, grads, init_state(params, "gd"), optimizer="gd", learning_rate=0.37)
    expected = apply_update(params, grads, 0.37)
    assert list(new_params) == list(expected)
    for name in expected:
        np.testing.assert_array_equal(new_params[name], expected[name])


def test_momentum_by_hand():
    (first, state1), (second, state2) = two_steps("momentum", learning_rate=0.1, beta=0.9)
    # step 1: v = 0.1 * dW = [0.2, -0.1], vb = 0.05
    np.testing.assert_allclose(state1["v_W1"], [[0.2, -0.1]], rtol=1e-15)
    np.testing.assert_allclose(state1["v_b1"], [[0.05]], rtol=1e-15)
    np.testing.assert_allclose(first["W1"], [[0.98, -1.99]], rtol=1e-15)
    np.testing.assert_allclose(first["b1"], [[0.495]], rtol=1e-15)
    # step 2: v = 0.9 * [0.2, -0.1] + 0.1 * [4, 3] = [0.58, 0.21], vb = 0.045 - 0.05 = -0.005
    np.testing.assert_allclose(state2["v_W1"], [[0.58, 0.21]], rtol=1e-14)
    np.testing.assert_allclose(state2["v_b1"], [[-0.005]], rtol=1e-13)
    np.testing.assert_allclose(second["W1"], [[0.98 - 0.058, -1.99 - 0.021]], rtol=1e-14)
    np.testing.assert_allclose(second["b1"], [[0.495 + 0.0005]], rtol=1e-14)
    assert int(state2["t"]) == 2


def test_momentum_uses_beta():
    (first, state1), _ = two_steps("momentum", learning_rate=1.0, beta=0.5)
    np.testing.assert_allclose(state1["v_W1"], [[1.0, -0.5]], rtol=1e-15)
    np.testing.assert_allclose(first["W1"], [[0.0, -1.5]], rtol=1e-15)


def test_adam_by_hand_with_bias_correction():
    lr, eps = 0.1, 1e-8
    (first, state1), (second, state2) = two_steps("adam", learning_rate=lr)
    # step 1 (t = 1): v = 0.1 dW, s = 0.001 dW^2; v_hat = v / 0.1 = dW, s_hat = s / 0.001 = dW^2:
    # the first step is lr * dW / (|dW| + eps), about lr * sign(dW) whatever the gradient's scale.
    np.testing.assert_allclose(state1["v_W1"], [[0.2, -0.1]], rtol=1e-15)
    np.testing.assert_allclose(state1["s_W1"], [[0.004, 0.001]], rtol=1e-13)
    np.testing.assert_allclose(state1["s_b1"], [[0.00025]], rtol=1e-13)
    w1 = [1.0 - lr * 2.0 / (2.0 + eps), -2.0 + lr * 1.0 / (1.0 + eps)]
    b1 = 0.5 - lr * 0.5 / (0.5 + eps)
    np.testing.assert_allclose(first["W1"], [w1], rtol=1e-14)
    np.testing.assert_allclose(first["b1"], [[b1]], rtol=1e-14)
    assert first["W1"][0, 0] == pytest.approx(0.9, rel=1e-8) and first["W1"][0, 1] == pytest.approx(-1.9, rel=1e-8)
    # step 2 (t = 2): corrections 1 - 0.9^2 = 0.19 and 1 - 0.999^2 = 0.001999.
    v = [0.9 * 0.2 + 0.1 * 4.0, 0.9 * -0.1 + 0.1 * 3.0]  # [0.58, 0.21]
    s = [0.999 * 0.004 + 0.001 * 16.0, 0.999 * 0.001 + 0.001 * 9.0]  # [0.019996, 0.009999]
    vb, sb = 0.9 * 0.05 + 0.1 * -0.5, 0.999 * 0.00025 + 0.001 * 0.25  # -0.005, 0.00049975
    np.testing.assert_allclose(state2["v_W1"], [[0.58, 0.21]], rtol=1e-14)
    np.testing.assert_allclose(state2["s_W1"], [[0.019996, 0.009999]], rtol=1e-13)
    w2 = [w1[i] - lr * (v[i] / 0.19) / (math.sqrt(s[i] / 0.001999) + eps) for i in range(2)]
    b2 = b1 - lr * (vb / 0.19) / (math.sqrt(sb / 0.001999) + eps)
    np.testing.assert_allclose(second["W1"], [w2], rtol=1e-13)
    np.testing.assert_allclose(second["b1"], [[b2]], rtol=1e-13)
    # numbers: the second step of W1[0] is 0.1 * 3.0526315789 / 3.1627522... = 0.0965182...
    assert w1[0] - second["W1"][0, 0] == pytest.approx(0.1 * (0.58 / 0.19) / math.sqrt(0.019996 / 0.001999), rel=1e-7)
    assert int(state2["t"]) == 2


def test_adam_uses_t_from_the_state():
    """t counts updates across the whole run: a state at t = 10 corrects with 1 - beta^11."""
    state = init_state(PARAMS, "adam") | {"t": np.array(10, dtype=np.int64)}
    new_params, new_state = update(PARAMS, GRADS[0], state, optimizer="adam", learning_rate=0.1)
    v_hat, s_hat = 0.2 / (1 - 0.9**11), 0.004 / (1 - 0.999**11)
    assert new_params["W1"][0, 0] == pytest.approx(1.0 - 0.1 * v_hat / (math.sqrt(s_hat) + 1e-8), rel=1e-13)
    assert int(new_state["t"]) == 11


def test_adam_settings_are_used():
    (first, state1), _ = two_steps("adam", learning_rate=0.5, beta1=0.5, beta2=0.75, epsilon=1.0)
    np.testing.assert_allclose(state1["v_W1"], [[1.0, -0.5]], rtol=1e-15)
    np.testing.assert_allclose(state1["s_W1"], [[1.0, 0.25]], rtol=1e-15)
    # v_hat = v / 0.5 = dW, s_hat = s / 0.25 = dW^2: W = W - 0.5 * dW / (|dW| + 1)
    np.testing.assert_allclose(first["W1"], [[1.0 - 0.5 * 2 / 3, -2.0 + 0.5 * 1 / 2]], rtol=1e-15)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_state_is_arrays_only_and_survives_an_npz(optimizer):
    params = init_params([3, 4, 2], seed=0)
    state = init_state(params, optimizer)
    assert list(state) == state_keys(params, optimizer)
    assert state["t"].shape == () and state["t"].dtype == np.int64 and int(state["t"]) == 0
    for key, value in state.items():
        assert isinstance(value, np.ndarray)
        if key != "t":
            assert value.dtype == np.float64 and not value.any()
            assert value.shape == params[key.split("_", 1)[1]].shape
    assert not set(state) & set(params)  # saved beside the parameters in one .npz
    rng = np.random.RandomState(2)
    grads = {f"d{name}": rng.randn(*value.shape) for name, value in params.items()}
    _, state = update(params, grads, state, optimizer=optimizer, learning_rate=0.1)
    buffer = io.BytesIO()
    np.savez(buffer, **params, **state)
    buffer.seek(0)
    with np.load(buffer) as loaded:
        for key, value in state.items():
            np.testing.assert_array_equal(loaded[key], value)
            assert loaded[key].dtype == value.dtype and loaded[key].shape == value.shape


def test_state_keys():
    params = {"W1": np.zeros((2, 2)), "b1": np.zeros((2, 1))}
    assert state_keys(params, "gd") == ["t"]
    assert state_keys(params, "momentum") == ["t", "v_W1", "v_b1"]
    assert state_keys(params, "adam") == ["t", "v_W1", "s_W1", "v_b1", "s_b1"]


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_update_is_pure_and_deterministic(optimizer):
    params = init_params([3, 4, 2], seed=0)
    rng = np.random.RandomState(3)
    grads = {f"d{name}": rng.randn(*value.shape) for name, value in params.items()}
    state = init_state(params, optimizer)
    _, state = update(params, grads, state, optimizer=optimizer, learning_rate=0.1)  # non-zero moments
    before = copy.deepcopy((params, grads, state))
    first = update(params, grads, state, optimizer=optimizer, learning_rate=0.1)
    second = update(params, grads, state, optimizer=optimizer, learning_rate=0.1)
    for original, now in zip(before, (params, grads, state)):
        assert list(original) == list(now)
        for key in original:
            np.testing.assert_array_equal(original[key], now[key])
    for a, b in zip(first, second):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    for name in params:
        assert not np.shares_memory(first[0][name], params[name])


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_one_layer_at_a_time_equals_the_whole_network(optimizer):
    """The engine updates each layer in its own invocation: a subset call gives the same arrays."""
    params = init_params([3, 4, 3, 2], seed=4)
    rng = np.random.RandomState(5)
    state = init_state(params, optimizer)
    for _ in range(3):
        grads = {f"d{name}": rng.randn(*value.shape) for name, value in params.items()}
        whole_params, whole_state = update(params, grads, state, optimizer=optimizer, learning_rate=0.05)
        for layer in (1, 2, 3):
            names = [f"W{layer}", f"b{layer}"]
            part = {name: params[name] for name in names}
            part_grads = {f"d{name}": grads[f"d{name}"] for name in names}
            part_state = {key: state[key] for key in state_keys(part, optimizer)}
            new_part, new_state = update(part, part_grads, part_state, optimizer=optimizer, learning_rate=0.05)
            for name in names:
                np.testing.assert_array_equal(new_part[name], whole_params[name])
            for key, value in new_state.items():
                np.testing.assert_array_equal(value, whole_state[key])
        params, state = whole_params, whole_state


def test_rejects_unknown_optimizer_and_incomplete_state():
    with pytest.raises(ValueError, match="optimizer 'sgd' is unknown; use one of gd, momentum, adam"):
        init_state(PARAMS, "sgd")
    with pytest.raises(ValueError, match="optimizer 'rmsprop' is unknown"):
        update(PARAMS, GRADS[0], {"t": np.array(0)}, optimizer="rmsprop", learning_rate=0.1)
    with pytest.raises(ValueError, match="adam optimizer state lacks s_W1, s_b1"):
        update(PARAMS, GRADS[0], init_state(PARAMS, "momentum"), optimizer="adam", learning_rate=0.1)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(optimizer="nadam"), "optimizer 'nadam' is unknown"),
        (dict(learning_rate=0.0), "learning_rate must be > 0"),
        (dict(beta=1.0), r"beta must be in \[0, 1\)"),
        (dict(beta1=-0.1), r"beta1 must be in \[0, 1\)"),
        (dict(beta2=float("nan")), r"beta2 must be in \[0, 1\)"),
        (dict(epsilon=0.0), "epsilon must be > 0"),
    ],
)
def test_check_settings(settings, message):
    arguments = dict(optimizer="adam", learning_rate=0.1) | settings
    with pytest.raises(ValueError, match=message):
        check_settings(**arguments)


def test_defaults():
    assert (
        optimizers.DEFAULT_BETA,
        optimizers.DEFAULT_BETA1,
        optimizers.DEFAULT_BETA2,
        optimizers.DEFAULT_EPSILON,
    ) == (0.9, 0.9, 0.999, 1e-8)
    check_settings("adam", 0.1)
