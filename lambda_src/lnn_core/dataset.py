"""Training data: an .npz with `X` (examples as rows), `y`, and optionally `X_test` and `y_test`.

uint8 input is scaled by 1/255, as LNN did for images. Labels are 0/1 for a sigmoid output and class
indices 0..C-1 for a softmax output.
"""

import io
import zipfile
from dataclasses import dataclass

import numpy as np

from .config import TrainingConfig
from .errors import LnnInputError


@dataclass(frozen=True)
class TrainingData:
    """X: (m, n0) float64; y: (m,) labels; X_test/y_test likewise or None."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None

    @property
    def features(self) -> int:
        return self.X.shape[1]

    def check_fits(self, config: TrainingConfig) -> None:
        """Raise `LnnInputError` when the labels cannot be learned by the configured output layer."""
        classes = config.neurons[-1] if config.activations[-1] == "softmax" else 2
        for name, labels in (("y", self.y), ("y_test", self.y_test)):
            if labels is None:
                continue
            if not np.all(labels == np.round(labels)) or labels.min() < 0 or labels.max() >= classes:
                raise LnnInputError(
                    f"{name} must hold class labels 0..{classes - 1} for a {config.activations[-1]} output "
                    f"of {config.neurons[-1]} neuron(s); found values from {labels.min()} to {labels.max()}"
                )


def load_training_data(data: bytes, *, source: str) -> TrainingData:
    """Parse and validate .npz bytes; every problem is an `LnnInputError` naming `source`."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise LnnInputError(f"{source} is not a readable .npz file ({error})") from error
    except MemoryError:  # numpy's _ArrayMemoryError too: a clear refusal, never an out-of-memory traceback
        raise LnnInputError(f"{source} does not fit in memory; use less data or a larger memory_size") from None
    try:
        return _checked(arrays, source)
    except MemoryError:
        raise LnnInputError(f"{source} does not fit in memory once converted to float64; use less data or a larger memory_size") from None


def _checked(arrays: dict[str, np.ndarray], source: str) -> TrainingData:
    missing = [name for name in ("X", "y") if name not in arrays]
    if missing:
        raise LnnInputError(f"{source} lacks the array {missing[0]!r}; it needs X (examples as rows) and y")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise LnnInputError(f"{source} has only one of X_test and y_test; give both or neither")
    X, y = _features(arrays["X"], "X", source), _labels(arrays["y"], "y", source)
    _check_rows(X, y, "X", "y", source)
    if "X_test" not in arrays:
        return TrainingData(X, y)
    X_test, y_test = _features(arrays["X_test"], "X_test", source), _labels(arrays["y_test"], "y_test", source)
    _check_rows(X_test, y_test, "X_test", "y_test", source)
    if X_test.shape[1] != X.shape[1]:
        raise LnnInputError(f"{source}: X_test has {X_test.shape[1]} features but X has {X.shape[1]}")
    return TrainingData(X, y, X_test, y_test)


def _features(array: np.ndarray, name: str, source: str) -> np.ndarray:
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise LnnInputError(f"{source}: {name} must be a non-empty 2-D array (examples as rows); got shape {array.shape}")
    if array.dtype == np.uint8:
        scaled = array.astype(np.float64)
        scaled /= 255.0  # in place: one float64 copy of the data, not two
        return scaled
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array):
        raise LnnInputError(f"{source}: {name} must be numeric; got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        raise LnnInputError(f"{source}: {name} contains NaN or Inf; clean the data before training")
    return array


def _labels(array: np.ndarray, name: str, source: str) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise LnnInputError(f"{source}: {name} must be a 1-D array of labels; got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.number) or not np.all(np.isfinite(array)):
        raise LnnInputError(f"{source}: {name} must hold finite numeric labels")
    return array.astype(np.float64)


def _check_rows(X: np.ndarray, y: np.ndarray, x_name: str, y_name: str, source: str) -> None:
    if X.shape[0] != y.shape[0]:
        raise LnnInputError(f"{source}: {x_name} has {X.shape[0]} examples but {y_name} has {y.shape[0]} labels")
