"""The step sequence per granularity and its bound."""

from lnn_core.config import TrainingConfig
from lnn_core.schedule import first_position, next_position, step_bound


def config(granularity, epochs=2, neurons=(3, 2, 1)):
    return TrainingConfig.from_parameters(
        {"epochs": epochs, "learning_rate": 0.1, "neurons": list(neurons), "activations": ["relu", "relu", "sigmoid"][-len(neurons):],
         "granularity": granularity, "data": "runs/a/d.npz"}
    )


def walk(cfg, epochs_per_step=1):
    position, seen = first_position(), []
    while position:
        seen.append((position.step, position.state, position.epoch, position.layer))
        done = min(position.epoch + epochs_per_step - 1, cfg.epochs) if position.state == "start" else None
        position = next_position(position, cfg, last_epoch_done=done)
    return seen


def test_layer_granularity_follows_the_seed():
    cfg = config("layer")
    steps = walk(cfg)
    assert [s[1:] for s in steps[:8]] == [
        ("start", 1, 0), ("forward", 1, 1), ("forward", 1, 2), ("forward", 1, 3),
        ("backward", 1, 3), ("backward", 1, 2), ("backward", 1, 1), ("start", 2, 0),
    ]
    assert steps[-1] == (15, "finish", 2, 0)
    assert [s[0] for s in steps] == list(range(1, 16)) and len(steps) == step_bound(cfg)


def test_epoch_and_auto_granularity():
    assert walk(config("epoch", epochs=3)) == [(1, "start", 1, 0), (2, "start", 2, 0), (3, "start", 3, 0), (4, "finish", 3, 0)]
    cfg = config("auto", epochs=5)
    assert walk(cfg, epochs_per_step=5) == [(1, "start", 1, 0), (2, "finish", 5, 0)]
    assert len(walk(cfg, epochs_per_step=1)) == step_bound(cfg)
