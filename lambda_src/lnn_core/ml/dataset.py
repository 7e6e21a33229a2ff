"""Training data: an .npz with `X` (examples as rows), `y`, and optionally `X_test` and `y_test`, `classes`
(the class names, strings, class 0 first) and `example_shape` (the shape of one example before it was
flattened into a row of X, e.g. [64, 64, 3]), as `lnn` writes when it converts LNN's HDF5.

uint8 input is scaled by 1/255, as LNN did for images. Features are float64 (scaled) and then, for a run of dtype
float32, rounded once to float32, here, when the data are loaded: every mode (the trainer's steps at every
granularity, its shard workers, `training.train_reference` through `network.to_columns`) rounds the same float64
values the same way. Labels stay float64 (`network.targets` rounds them into the targets Y). Labels are 0/1 for a
sigmoid output and class indices 0..C-1 for a softmax output; for a linear (regression) output, y holds real
targets of shape (m,) or (m, k), k the output's neurons.
"""

import io
import math
import zipfile
from dataclasses import dataclass

import numpy as np

from lnn_core.errors import LnnInputError
from lnn_core.ml.config import TrainingConfig

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"


@dataclass(frozen=True)
class TrainingData:
    """X: (m, n0) float64 or float32 (the run's dtype); y: (m,) labels or (m, k) regression targets; X_test/y_test
    likewise or None;
    classes: the class names or None; example_shape: one example's shape before flattening, or None."""

    X: np.ndarray
    y: np.ndarray
    X_test: np.ndarray | None = None
    y_test: np.ndarray | None = None
    classes: tuple[str, ...] | None = None
    example_shape: tuple[int, ...] | None = None
    X_validation: np.ndarray | None = None  # held out of X, y by `validation.held_out` (validation_split)
    y_validation: np.ndarray | None = None

    @property
    def features(self) -> int:
        return self.X.shape[1]

    def check_fits(self, config: TrainingConfig) -> None:
        """Raise `LnnInputError` when the labels (or targets) cannot be learned by the configured output layer."""
        output, units = config.activations[-1], config.neurons[-1]
        if config.regression:
            for name, targets in (("y", self.y), ("y_test", self.y_test)):
                k = 1 if targets is None or targets.ndim == 1 else targets.shape[1]
                if targets is not None and k != units:
                    raise LnnInputError(
                        f"{name} holds {k} target(s) per example but the {output} output has {units} neuron(s); "
                        f"give the output {k} neuron(s) or y of shape (m, {units})"
                    )
            return
        classes = units if output == "softmax" else 2
        if self.classes is not None and len(self.classes) > classes:
            names = ", ".join(self.classes[:5]) + (", ..." if len(self.classes) > 5 else "")
            raise LnnInputError(
                f"the data has {len(self.classes)} classes ({names}) but a {output} output of {units} neuron(s) "
                f"learns {classes}; use a softmax output of {len(self.classes)} neurons"
            )
        for name, labels in (("y", self.y), ("y_test", self.y_test)):
            if labels is None or labels.size == 0:  # common.npz's y: the labels are in the parts
                continue
            if labels.ndim != 1:
                raise LnnInputError(
                    f"{name} must be a 1-D array of class labels for a {output} output; got shape {labels.shape} "
                    "(targets of shape (m, k) need a linear output)"
                )
            if not np.all(labels == np.round(labels)) or labels.min() < 0 or labels.max() >= classes:
                found = int(labels.max()) + 1  # classes, when the labels are whole numbers from 0
                fix = (
                    f"use a softmax output of {found} neurons"
                    if np.all(labels == np.round(labels)) and labels.min() >= 0
                    else f"relabel the classes 0..{classes - 1}, or use a linear output for real-valued targets"
                )
                raise LnnInputError(
                    f"{name} must hold class labels 0..{classes - 1} for a {config.activations[-1]} output "
                    f"of {config.neurons[-1]} neuron(s); found values from {labels.min():g} to {labels.max():g}; {fix}"
                )


def is_zip(data: bytes) -> bool:
    """Whether `data` can be an .npz: a zip archive. np.load would try any other bytes as a pickle, and say so, which
    misleads about any other file."""
    return data.startswith(b"PK")


def load_training_data(data: bytes, *, source: str, dtype: str = "float64") -> TrainingData:
    """Parse and validate .npz bytes, X and X_test as `dtype`; every problem is an `LnnInputError` naming `source`."""
    arrays = _arrays(data, source)
    try:
        return _checked(arrays, source, dtype)
    except MemoryError:
        raise LnnInputError(
            f"{source} does not fit in memory once converted to {dtype}; use less data or a larger memory_size"
        ) from None


def load_common_data(
    data: bytes, *, source: str, features: int, target_shape: tuple[int, ...], dtype: str = "float64"
) -> TrainingData:
    """What the parts of training data in parts share (common.npz: X_test and y_test, classes, example_shape, each
    optional), as `TrainingData` whose X (0, features) and y (0, *target_shape) hold no examples: those are in the
    parts. `target_shape`: one example's y in the parts ((): a label)."""
    arrays = _arrays(data, source)
    extra = sorted(set(arrays) - {"X_test", "y_test", "classes", "example_shape"})
    if extra:
        raise LnnInputError(
            f"{source} holds {extra[0]!r}; common.npz holds only X_test, y_test, classes and example_shape "
            "(X and y are in the parts)"
        )
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise LnnInputError(f"{source} has only one of X_test and y_test; give both or neither")
    classes = _classes(arrays["classes"], source) if "classes" in arrays else None
    example_shape = _example_shape(arrays["example_shape"], features, source) if "example_shape" in arrays else None
    X_test = y_test = None
    if "X_test" in arrays:
        try:
            X_test, y_test = (
                _features_as(arrays["X_test"], "X_test", source, dtype),
                _labels(arrays["y_test"], "y_test", source),
            )
        except MemoryError:
            raise LnnInputError(
                f"{source} does not fit in memory once converted to float64; use a larger memory_size"
            ) from None
        _check_rows(X_test, y_test, "X_test", "y_test", source)
        if X_test.shape[1] != features:
            raise LnnInputError(f"{source}: X_test has {X_test.shape[1]} features but the parts' X {features}")
        if y_test.shape[1:] != tuple(target_shape):
            raise LnnInputError(
                f"{source}: y_test has shape {y_test.shape} but the parts' y holds {tuple(target_shape)} "
                "per example; give the same targets per example"
            )
    return TrainingData(
        np.empty((0, features), dtype=dtype), np.empty((0, *target_shape)), X_test, y_test, classes, example_shape
    )


def _arrays(data: bytes, source: str) -> dict[str, np.ndarray]:
    """The arrays of .npz bytes, as stored."""
    if data.startswith(HDF5_MAGIC):
        raise LnnInputError(
            f"{source} is an HDF5 file, not an .npz; convert it with `lnn convert FILE OUT.npz` "
            "(or give it to `lnn local`/`lnn start`, which convert it)"
        )
    if not is_zip(data):
        raise LnnInputError(f"{source} is not a readable .npz file (not a zip archive); save it with numpy.savez")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, RuntimeError, NotImplementedError) as error:
        raise LnnInputError(f"{source} is not a readable .npz file ({error})") from error
    except MemoryError:  # numpy's _ArrayMemoryError too: a clear refusal, never an out-of-memory traceback
        raise LnnInputError(f"{source} does not fit in memory; use less data or a larger memory_size") from None
    return arrays


def _checked(arrays: dict[str, np.ndarray], source: str, dtype: str) -> TrainingData:
    missing = [name for name in ("X", "y") if name not in arrays]
    if missing:
        raise LnnInputError(f"{source} lacks the array {missing[0]!r}; it needs X (examples as rows) and y")
    if ("X_test" in arrays) != ("y_test" in arrays):
        raise LnnInputError(f"{source} has only one of X_test and y_test; give both or neither")
    X, y = _features_as(arrays["X"], "X", source, dtype), _labels(arrays["y"], "y", source)
    _check_rows(X, y, "X", "y", source)
    classes = _classes(arrays["classes"], source) if "classes" in arrays else None
    example_shape = _example_shape(arrays["example_shape"], X.shape[1], source) if "example_shape" in arrays else None
    if "X_test" not in arrays:
        return TrainingData(X, y, classes=classes, example_shape=example_shape)
    X_test = _features_as(arrays["X_test"], "X_test", source, dtype)
    y_test = _labels(arrays["y_test"], "y_test", source)
    _check_rows(X_test, y_test, "X_test", "y_test", source)
    if X_test.shape[1] != X.shape[1]:
        raise LnnInputError(f"{source}: X_test has {X_test.shape[1]} features but X has {X.shape[1]}")
    if y_test.shape[1:] != y.shape[1:]:
        raise LnnInputError(
            f"{source}: y_test has shape {y_test.shape} but y {y.shape}; give the same targets per example"
        )
    return TrainingData(X, y, X_test, y_test, classes=classes, example_shape=example_shape)


def _classes(array: np.ndarray, source: str) -> tuple[str, ...]:
    if array.ndim != 1 or array.shape[0] == 0 or array.dtype.kind not in "US":
        raise LnnInputError(
            f"{source}: classes must be a non-empty 1-D array of class names (strings); "
            f"got {array.dtype} of shape {array.shape}"
        )
    try:
        return tuple(name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in array.tolist())
    except UnicodeDecodeError:
        raise LnnInputError(f"{source}: classes holds names that are not UTF-8 text") from None


def _example_shape(array: np.ndarray, features: int, source: str) -> tuple[int, ...]:
    if array.ndim != 1 or array.shape[0] == 0 or array.dtype.kind not in "iu" or np.any(array < 1):
        raise LnnInputError(
            f"{source}: example_shape must be a 1-D array of positive integers (one example's shape); "
            f"got {array.dtype} {array.tolist()}"
        )
    shape = tuple(int(size) for size in array.tolist())
    if math.prod(shape) != features:
        raise LnnInputError(
            f"{source}: example_shape {shape} holds {math.prod(shape)} values but X has {features} features"
        )
    return shape


ROUNDING_ROWS = 4096  # rows converted to float64 at a time on the way to float32: no whole float64 copy


def _features_as(array: np.ndarray, name: str, source: str, dtype: str) -> np.ndarray:
    """`_features` (float64), then rounded once to `dtype`, a block of rows at a time."""
    if dtype == "float64":
        return _features(array, name, source)
    if array.ndim != 2 or 0 in array.shape:
        return _features(array, name, source)  # which names the problem
    rounded = np.empty(array.shape, dtype=dtype)
    for start in range(0, array.shape[0], ROUNDING_ROWS):
        block = slice(start, start + ROUNDING_ROWS)
        with np.errstate(over="ignore"):  # an overflow is named just below
            rounded[block] = _features(array[block], name, source)
        if not np.all(np.isfinite(rounded[block])):
            raise LnnInputError(
                f"{source}: {name} holds values beyond {dtype}'s range (±{np.finfo(dtype).max:.1e}); "
                "scale the data or train with dtype float64"
            )
    return rounded


def _features(array: np.ndarray, name: str, source: str) -> np.ndarray:
    if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] == 0:
        raise LnnInputError(
            f"{source}: {name} must be a non-empty 2-D array (examples as rows); got shape {array.shape}"
        )
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
    """Labels (m,) (an (m, 1) column flattened), or regression targets (m, k); `check_fits` matches them to the
    output."""
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim not in (1, 2) or array.shape[-1] == 0:
        raise LnnInputError(
            f"{source}: {name} must be a 1-D array of labels (or (m, k) regression targets); got shape {array.shape}"
        )
    if not np.issubdtype(array.dtype, np.number) or np.iscomplexobj(array) or not np.all(np.isfinite(array)):
        raise LnnInputError(f"{source}: {name} must hold finite numeric labels")
    return array.astype(np.float64)


def _check_rows(X: np.ndarray, y: np.ndarray, x_name: str, y_name: str, source: str) -> None:
    if X.shape[0] != y.shape[0]:
        raise LnnInputError(f"{source}: {x_name} has {X.shape[0]} examples but {y_name} has {y.shape[0]} labels")
