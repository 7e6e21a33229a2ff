"""The step sequence per granularity and its bound."""

from lnn_core.ml.config import TrainingConfig
from lnn_core.protocol.schedule import first_position, next_position, step_bound


def config(granularity, epochs=2, neurons=(3, 2, 1)):
    return TrainingConfig.from_parameters(
        {
            "epochs": epochs,
            "learning_rate": 0.1,
            "neurons": list(neurons),
            "activations": ["relu", "relu", "sigmoid"][-len(neurons) :],
            "granularity": granularity,
            "data": "runs/a/d.npz",
        }
    )


def walk(cfg, epochs_per_step=1, batches=1, stop_after=None):
    position, seen = first_position(), []
    while position:
        seen.append(
            (position.step, position.state, position.epoch, position.layer) + ((position.batch,) if batches > 1 else ())
        )
        done = min(position.epoch + epochs_per_step - 1, cfg.epochs) if position.state == "start" else None
        ending = done if cfg.granularity != "layer" else (position.epoch if position.state == "backward" else None)
        position = next_position(
            position, cfg, batches=batches, last_epoch_done=done, stop=stop_after is not None and ending == stop_after
        )
    return seen


def test_layer_granularity_follows_the_seed():
    cfg = config("layer")
    steps = walk(cfg)
    assert [s[1:] for s in steps[:8]] == [
        ("start", 1, 0),
        ("forward", 1, 1),
        ("forward", 1, 2),
        ("forward", 1, 3),
        ("backward", 1, 3),
        ("backward", 1, 2),
        ("backward", 1, 1),
        ("start", 2, 0),
    ]
    assert steps[-1] == (15, "finish", 2, 0)
    assert [s[0] for s in steps] == list(range(1, 16)) and len(steps) == step_bound(cfg, 1)


def test_epoch_and_auto_granularity():
    assert walk(config("epoch", epochs=3)) == [
        (1, "start", 1, 0),
        (2, "start", 2, 0),
        (3, "start", 3, 0),
        (4, "finish", 3, 0),
    ]
    cfg = config("auto", epochs=5)
    assert walk(cfg, epochs_per_step=5) == [(1, "start", 1, 0), (2, "finish", 5, 0)]
    assert len(walk(cfg, epochs_per_step=1)) == step_bound(cfg, 1)


def test_layer_granularity_walks_every_batch_of_an_epoch_then_writes_its_item():
    cfg = config("layer", neurons=(2, 1))
    steps = walk(cfg, batches=3)
    assert [s[1:] for s in steps[:15]] == [
        ("start", 1, 0, 0),
        ("forward", 1, 1, 1),
        ("forward", 1, 2, 1),
        ("backward", 1, 2, 1),
        ("backward", 1, 1, 1),
        ("forward", 1, 1, 2),
        ("forward", 1, 2, 2),
        ("backward", 1, 2, 2),
        ("backward", 1, 1, 2),
        ("forward", 1, 1, 3),
        ("forward", 1, 2, 3),
        ("backward", 1, 2, 3),
        ("backward", 1, 1, 3),
        ("start", 2, 0, 0),
        ("forward", 2, 1, 1),
    ]
    assert steps[-1][1:3] == ("finish", 2) and len(steps) == step_bound(cfg, 3) == 2 * (3 * 4 + 1) + 1


def test_a_threshold_goes_to_finish_after_the_epoch_that_fell_below_it():
    assert walk(config("epoch", epochs=5), stop_after=2) == [
        (1, "start", 1, 0),
        (2, "start", 2, 0),
        (3, "finish", 2, 0),
    ]
    steps = walk(config("layer", epochs=5, neurons=(2, 1)), stop_after=1)
    assert steps[-1] == (6, "finish", 1, 0)  # start, forward 1-2, backward 2-1: a stop comes only with the update
