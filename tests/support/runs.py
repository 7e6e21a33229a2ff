"""Run parameters that several test files train with."""

# 2 epochs of batches 16, 16, 8 of the 40 examples of `tests.integration.conftest.dataset`, in rounds of 3 shard
# workers: 3 rounds an epoch
THREE_WORKERS = {
    "epochs": 2,
    "learning_rate": 0.05,
    "neurons": [3, 1],
    "activations": ["tanh", "sigmoid"],
    "seed": 4,
    "batch_size": 16,
    "optimizer": "adam",
    "workers": 3,
    "granularity": "epoch",
    "reduce": "slices",  # the round in slices: the chaos schedules cover its sites
}


def reference(parameters: dict, X, y, **more):
    """`training.train_reference` of a run of `parameters` (without those that choose only how a run is made,
    `granularity` and `reduce`) on X, y: (params, costs)."""
    from lnn_core.ml import training

    taken = {name: value for name, value in parameters.items() if name not in ("granularity", "reduce")}
    return training.train_reference(X, y, **taken, **more)
