"""Run parameters in the LNN parameters.json format: accepted forms and one clear error per problem."""

import pytest

from lnn_core.errors import LnnInputError
from lnn_core.ml.config import TrainingConfig, check_run_id

LNN_FORMAT = {
    "epochs": 2500,
    "layers": 4,
    "learning_rate": 0.0075,
    "neurons": {"layer1": 20, "layer2": 7, "layer3": 5, "layer4": 1},
    "activations": {"layer1": "relu", "layer2": "relu", "layer3": "relu", "layer4": "sigmoid"},
    "data": "runs/cats/data.npz",
}


def test_original_lnn_format_round_trips():
    config = TrainingConfig.from_parameters(LNN_FORMAT)
    assert config.neurons == (20, 7, 5, 1) and config.activations[-1] == "sigmoid" and config.layers == 4
    assert config.granularity == "layer" and config.init == "lecun" and config.seed is None
    assert TrainingConfig.from_parameters(config.to_parameters()) == config


def test_lists_and_defaults():
    defaults = {
        "epochs": 10,
        "learning_rate": 0.1,
        "neurons": [4, 1],
        "activations": ["relu", "sigmoid"],
        "granularity": "auto",
    }
    config = TrainingConfig.from_parameters({"epochs": 3, "data": "runs/a/d.npz", "seed": 7}, defaults=defaults)
    assert (config.epochs, config.learning_rate, config.neurons, config.granularity, config.seed) == (
        3,
        0.1,
        (4, 1),
        "auto",
        7,
    )


@pytest.mark.parametrize(
    "change, message",
    [
        ({"epochs": 0}, "epochs must be an integer from 1"),
        ({"epochs": 2.5}, "epochs must be an integer"),
        ({"learning_rate": -1}, "learning_rate must be a number in (0, 10]"),
        ({"learning_rate": float("nan")}, "learning_rate must be a number"),
        ({"layers": 3}, "layers is 3 but 4 neurons and 4 activations"),
        (
            {"activations": {"layer1": "relu", "layer2": "swish", "layer3": "relu", "layer4": "sigmoid"}},
            "activations.layer2 'swish' is unknown",
        ),
        (
            {"activations": {"layer1": "relu", "layer2": "relu", "layer3": "relu", "layer4": "tanh"}},
            "'tanh' is unknown for the output layer",
        ),
        (
            {"neurons": {"layer1": 20, "layer2": 0, "layer3": 5, "layer4": 1}},
            "neurons.layer2 must be an integer from 1",
        ),
        ({"neurons": {"layer1": 20, "layer2": 7, "layer3": 5, "layer4": 3}}, "a sigmoid output needs 1 neuron"),
        ({"neurons": {"layer1": 20, "layer2": 7, "layer3": 5, "layer5": 1}}, "neurons keys must be layer1..layer4"),
        ({"granularity": "batch"}, "granularity must be one of layer, epoch, auto"),
        ({"init": "xavier"}, "init must be one of lecun, he"),
        ({"seed": -1}, "seed must be an integer"),
        ({"data": "elsewhere/d.npz"}, "data must be the S3 key of an .npz file under runs/"),
        ({"epoch": 5}, "unknown parameter 'epoch'"),
    ],
)
def test_each_problem_has_one_clear_message(change, message):
    with pytest.raises(LnnInputError) as error:
        TrainingConfig.from_parameters({**LNN_FORMAT, **change})
    assert message in str(error.value)


def test_softmax_needs_classes():
    with pytest.raises(LnnInputError, match="softmax output needs at least 2"):
        TrainingConfig.from_parameters(
            {**LNN_FORMAT, "activations": ["relu", "relu", "relu", "softmax"], "neurons": [20, 7, 5, 1]}
        )


@pytest.mark.parametrize("run_id", ["", "a/b", "-lead", "x" * 65, 7])
def test_bad_run_ids(run_id):
    with pytest.raises(LnnInputError, match="run id"):
        check_run_id(run_id)


def test_a_value_too_long_to_print_is_named_not_raised():
    import pytest

    from lnn_core.errors import LnnInputError
    from lnn_core.ml.config import TrainingConfig

    with pytest.raises(LnnInputError, match="too long to show"):
        TrainingConfig.from_parameters(
            {
                "epochs": 10**5000,
                "learning_rate": 0.1,
                "neurons": [1],
                "activations": ["sigmoid"],
                "data": "runs/a/data.npz",
            }
        )
