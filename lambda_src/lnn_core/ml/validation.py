"""The validation split: a fraction of the training examples held out by a seeded permutation.

The permutation is seeded with `validation_seed`, never the training seed, so every trial of a sweep holds out the
same examples and is judged on the same data; the test set is not touched. The held-out rows and the remaining
training rows both keep the data's order, so mini-batches (shuffled or not) and every mode see the same training set.
"""

import dataclasses
import math

import numpy as np

from lnn_core.errors import LnnInputError
from lnn_core.ml.dataset import TrainingData


def split_indices(examples: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, validation rows) of `examples` rows, each sorted; no validation rows for a fraction of 0.
    At least one row is held out for any fraction above 0, and at least one must stay to train on."""
    if not fraction:
        return np.arange(examples), np.arange(0)
    held = max(1, math.floor(fraction * examples))
    if held >= examples:
        raise LnnInputError(
            f"validation_split {fraction:g} holds out all {examples} training examples; "
            "use a smaller validation_split or more data"
        )
    order = np.random.RandomState(seed).permutation(examples)
    return np.sort(order[held:]), np.sort(order[:held])


def held_out(data: TrainingData, fraction: float, seed: int) -> TrainingData:
    """`data` with X, y the training rows and X_validation, y_validation the held-out ones (unchanged for 0)."""
    if not fraction:
        return data
    training, validation = split_indices(data.X.shape[0], fraction, seed)
    return dataclasses.replace(
        data, X=data.X[training], y=data.y[training], X_validation=data.X[validation], y_validation=data.y[validation]
    )
