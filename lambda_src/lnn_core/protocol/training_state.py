"""The arrays that steps hand on: a training state (.npz: the parameters, the optimizer state, extras such as a cost
sum), the initial parameters of a run, and the model's arrays made from the parameters.
"""

import json

import numpy as np

from lnn_core.ml import network, optimizers
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import TrainingData
from lnn_core.protocol.results import descriptions


def initial_params(config: TrainingConfig, features: int) -> network.Params:
    """The run's initial parameters: seeded lecun/he, or LNN 0.0's constant `weight` and `bias`."""
    params = network.init_params([features, *config.neurons], config.init, config.seed, config.dtype)
    if config.weight is None:
        return params
    return {
        name: np.full_like(value, config.weight if name.startswith("W") else config.bias)
        for name, value in params.items()
    }


def model_arrays(
    config: TrainingConfig, params: network.Params, data: TrainingData, epoch: int
) -> dict[str, np.ndarray]:
    """A model.npz's arrays: the parameters after `epoch`, what the PredictLambda needs to use them, and `epoch`."""
    return {
        **params,
        "activations": np.array(list(config.activations)),
        "config": np.array(json.dumps(config.to_parameters())),
        "epoch": np.array(epoch),
        **descriptions(data),
    }


def training_state(
    params: network.Params, opt_state: dict[str, np.ndarray], **extras: np.ndarray
) -> dict[str, np.ndarray]:
    """One .npz's arrays: the parameters, the optimizer state (its keys never clash with W1, b1, ...) and extras."""
    return {**params, **opt_state, **extras}


def params_of(state: dict[str, np.ndarray]) -> network.Params:
    return {name: value for name, value in state.items() if name[0] in "Wb" and name[1:].isdigit()}


def optimizer_state_of(state: dict[str, np.ndarray], config: TrainingConfig) -> dict[str, np.ndarray]:
    return {name: state[name] for name in optimizers.state_keys(params_of(state), config.optimizer)}
