"""LNN's data files besides .npz, converted to the .npz the stack reads, on the client, before upload.

- .npz (a zip): used as it is.
- HDF5 (LNN's `datasets.h5`): `train_set_x`, `train_set_y`, optionally `test_set_x`/`test_set_y` and
  `list_classes`. Examples of any shape are flattened per example (uint8 stays uint8: the stack scales it by
  1/255 when it loads it); the class names are kept as `classes` (strings) and the example shape as
  `example_shape`. A file with only the test keys (LNN's `test_catvnoncat.h5`) gives its test set as X, y.
- CSV (`.csv`, `.txt`): one example per row, numbers only; a header row is optional (a first row with a
  non-numeric cell is a header); the label column is `label_column` (a header name or a 0-based index,
  negative counting from the end), the last column by default.

Every problem is an `LnnInputError` of one line naming the file.
"""

import csv
import io
from pathlib import Path

import numpy as np

from lnn_core.errors import LnnInputError
from lnn_core.ml.shards import shard_slices
from lnn_core.protocol.layout import common_key, part_key

HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
ZIP_MAGIC = b"PK"
CSV_SUFFIXES = (".csv", ".txt")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
HDF5_TRAIN = ("train_set_x", "train_set_y")
HDF5_TEST = ("test_set_x", "test_set_y")
HDF5_CLASSES = "list_classes"
FORMATS = "an .npz (X, y), LNN's HDF5 (train_set_x, train_set_y) or a CSV (.csv, one example per row)"


DATA_ARGUMENT = "--data FILE"  # where `lnn local`, `start` and `predict` take the data file


def data_kind(path: Path, head: bytes) -> str:
    """'npz', 'hdf5' or 'csv', from the file's first bytes, else its name."""
    if head.startswith(HDF5_MAGIC):
        return "hdf5"
    if head.startswith(ZIP_MAGIC) or path.suffix.lower() == ".npz":
        return "npz"  # a damaged .npz is reported by the .npz reader
    if path.suffix.lower() in HDF5_SUFFIXES:
        return "hdf5"  # not HDF5 inside: the HDF5 reader says so
    if path.suffix.lower() in CSV_SUFFIXES:
        return "csv"
    raise LnnInputError(f"data file {path} is not a file LNN reads; give {FORMATS}")


def read_bytes(path: Path, argument: str = DATA_ARGUMENT) -> bytes:
    """The file's bytes; `argument` names where the command takes the data file, for the fix."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise LnnInputError(
            f"data file {path} does not exist; give an .npz with X and y, an HDF5 or a CSV ({argument})"
        ) from None
    except IsADirectoryError:
        raise LnnInputError(f"data file {path} is a directory; give an .npz, HDF5 or CSV file ({argument})") from None
    except OSError as error:
        raise LnnInputError(f"data file {path} cannot be read ({error.strerror}); check its permissions") from None


def npz_bytes(path: str | Path, *, label_column: str | None = None, argument: str = DATA_ARGUMENT) -> bytes:
    """The .npz bytes LNN uploads for the data file at `path` (an .npz as it is; HDF5 and CSV converted)."""
    path = Path(path)
    raw = read_bytes(path, argument)
    kind = data_kind(path, raw[:8])
    if label_column is not None and kind != "csv":
        raise LnnInputError(f"--label-column is for CSV files; {path} is an {'.npz' if kind == 'npz' else 'HDF5'} file")
    if kind == "npz":
        return raw
    arrays = hdf5_arrays(path, raw) if kind == "hdf5" else csv_arrays(path, raw, label_column)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def data_in_parts(data: bytes, parts: int) -> dict[str, bytes]:
    """The .npz bytes `data` (already validated) as training data in `parts` parts: {name in the run's data folder:
    .npz bytes}. Part k holds rows start_k .. stop_k - 1 of X and y (contiguous, in order, sizes differing by at most
    one: `shards.shard_slices`), as stored (uint8 stays uint8); common.npz what the file has of X_test, y_test,
    classes and example_shape."""
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        arrays = {name: npz[name] for name in npz.files}
    files = {}
    for part, rows in enumerate(shard_slices(arrays["X"].shape[0], parts)):
        files[part_key("", part, parts)] = _npz({"X": arrays["X"][rows], "y": arrays["y"][rows]})
    files[common_key("")] = _npz(
        {name: arrays[name] for name in ("X_test", "y_test", "classes", "example_shape") if name in arrays}
    )
    return files


def _npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # not compressed: a worker's load peak is then its part's size twice, not more
    return buffer.getvalue()


# ---- HDF5 ---------------------------------------------------------------------------------------------------


def hdf5_arrays(path: Path, raw: bytes) -> dict[str, np.ndarray]:
    import h5py  # the client's dependency only: the Lambda layer never reads HDF5

    try:
        with h5py.File(io.BytesIO(raw), "r") as h5:
            names = set(h5.keys())
            train = all(name in names for name in HDF5_TRAIN)
            test = any(name in names for name in HDF5_TEST)
            if not train and not test:
                missing = next(name for name in HDF5_TRAIN if name not in names)
                raise LnnInputError(
                    f"{path} lacks the HDF5 dataset {missing!r}; LNN's HDF5 holds {', '.join(HDF5_TRAIN)} "
                    "and optionally "
                    f"{', '.join(HDF5_TEST)}, {HDF5_CLASSES} (it has {', '.join(sorted(names)) or 'no datasets'})"
                )
            if not train and any(name in names for name in HDF5_TRAIN):
                missing = next(name for name in HDF5_TRAIN if name not in names)
                raise LnnInputError(f"{path} lacks the HDF5 dataset {missing!r}; give both {' and '.join(HDF5_TRAIN)}")
            if test and not all(name in names for name in HDF5_TEST):
                missing = next(name for name in HDF5_TEST if name not in names)
                raise LnnInputError(
                    f"{path} lacks the HDF5 dataset {missing!r}; give both {' and '.join(HDF5_TEST)} or neither"
                )
            datasets = {
                name: _dataset(h5, name, path) for name in (*HDF5_TRAIN, *HDF5_TEST, HDF5_CLASSES) if name in names
            }
    except LnnInputError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise LnnInputError(f"{path} is not a readable HDF5 file ({_first_line(error)}); give {FORMATS}") from None
    arrays: dict[str, np.ndarray] = {}
    if train:
        arrays["X"], arrays["y"] = _examples(datasets, *HDF5_TRAIN, path)
    if test:
        X_test, y_test = _examples(datasets, *HDF5_TEST, path)
        if train:
            if X_test.shape[1:] != arrays["X"].shape[1:]:
                raise LnnInputError(
                    f"{path}: test_set_x's examples have shape {datasets['test_set_x'].shape[1:]} but "
                    f"train_set_x's {datasets['train_set_x'].shape[1:]}"
                )
            arrays["X_test"], arrays["y_test"] = X_test, y_test
        else:  # a test-only file (test_catvnoncat.h5): its test set is the data
            arrays["X"], arrays["y"] = X_test, y_test
    source_x = datasets["train_set_x" if train else "test_set_x"]
    arrays["example_shape"] = np.array(source_x.shape[1:] or (1,), dtype=np.int64)
    if HDF5_CLASSES in datasets:
        arrays["classes"] = _class_names(datasets[HDF5_CLASSES], path)
    return arrays


def _dataset(h5, name: str, path: Path) -> np.ndarray:
    import h5py

    node = h5[name]
    if not isinstance(node, h5py.Dataset):
        raise LnnInputError(f"{path}: {name!r} is an HDF5 group, not a dataset; LNN reads arrays")
    return node[()]


def _examples(datasets: dict[str, np.ndarray], x_name: str, y_name: str, path: Path) -> tuple[np.ndarray, np.ndarray]:
    X, y = np.asarray(datasets[x_name]), np.asarray(datasets[y_name])
    if X.ndim == 0 or X.shape[0] == 0:
        raise LnnInputError(f"{path}: {x_name} must hold at least one example; got shape {X.shape}")
    if X.dtype.kind not in "biuf":
        raise LnnInputError(f"{path}: {x_name} must be numeric; got dtype {X.dtype}")
    if y.dtype.kind not in "biuf":
        raise LnnInputError(f"{path}: {y_name} must be numeric; got dtype {y.dtype}")
    m = X.shape[0]
    if y.ndim == 2 and y.shape[0] == 1 and y.shape[1] == m and m != 1:
        y = y[0]  # the course's (1, m) layout
    if y.ndim == 0 or y.shape[0] != m:
        raise LnnInputError(
            f"{path}: {x_name} has {m} examples but {y_name} has shape {y.shape}; give one label per example"
        )
    return X.reshape(m, -1), y


def _class_names(classes: np.ndarray, path: Path) -> np.ndarray:
    classes = np.asarray(classes).reshape(-1)
    if classes.dtype.kind == "S":
        try:
            return np.array([name.decode("utf-8") for name in classes.tolist()], dtype=str)
        except UnicodeDecodeError:
            raise LnnInputError(f"{path}: {HDF5_CLASSES} holds names that are not UTF-8 text") from None
    if classes.dtype.kind == "U":
        return classes.astype(str)
    if classes.dtype.kind == "O":  # variable-length strings
        return np.array(
            [name.decode("utf-8") if isinstance(name, bytes) else str(name) for name in classes.tolist()], dtype=str
        )
    raise LnnInputError(f"{path}: {HDF5_CLASSES} must hold class names (strings); got dtype {classes.dtype}")


# ---- CSV ----------------------------------------------------------------------------------------------------


def csv_arrays(path: Path, raw: bytes, label_column: str | None) -> dict[str, np.ndarray]:
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise LnnInputError(f"{path} is not a text (UTF-8) CSV file") from None
    try:
        rows = [
            (number, row)
            for number, row in enumerate(csv.reader(io.StringIO(text)), start=1)
            if any(cell.strip() for cell in row)
        ]
    except csv.Error as error:
        raise LnnInputError(f"{path} is not a readable CSV file ({error})") from None
    if not rows:
        raise LnnInputError(f"{path} is empty; a CSV needs one example per row, numbers separated by commas")
    header = None
    if not all(_is_number(cell) for cell in rows[0][1]):
        header = [cell.strip() for cell in rows[0][1]]
        rows = rows[1:]
        if not rows:
            raise LnnInputError(f"{path} has a header row but no examples; add one example per row under it")
    width = len(header) if header is not None else len(rows[0][1])
    if width < 2:
        raise LnnInputError(f"{path} has {width} column; a CSV needs at least one feature column and a label column")
    values = np.empty((len(rows), width), dtype=np.float64)
    for index, (line, row) in enumerate(rows):
        if len(row) != width:
            raise LnnInputError(
                f"{path}: line {line} has {len(row)} cells but {'the header' if header else 'line ' + str(rows[0][0])} "
                f"has {width}; every row needs the same columns"
            )
        for column, cell in enumerate(row):
            try:
                values[index, column] = float(cell)
            except ValueError:
                name = f" ({header[column]!r})" if header else ""
                raise LnnInputError(
                    f"{path}: line {line}, column {column + 1}{name} holds {cell.strip()!r}, which is "
                    "not a number; LNN reads numbers only"
                ) from None
    label = _label_index(label_column, header, width, path)
    y = values[:, label]
    X = np.delete(values, label, axis=1)
    return {"X": X, "y": y.astype(np.int64) if np.all(y == np.round(y)) and np.all(np.abs(y) < 2**53) else y}


def _is_number(cell: str) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _label_index(label_column: str | None, header: list[str] | None, width: int, path: Path) -> int:
    if label_column is None:
        return width - 1
    if header is not None and label_column in header:
        return header.index(label_column)
    try:
        index = int(label_column)
    except ValueError:
        columns = f"its columns are {', '.join(header)}" if header else "it has no header row, so give a column index"
        raise LnnInputError(f"--label-column {label_column!r} is not a column of {path}; {columns}") from None
    if not -width <= index < width:
        raise LnnInputError(
            f"--label-column {index} is out of range: {path} has {width} columns (0..{width - 1}, or -1 for the last)"
        )
    return index % width


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__
