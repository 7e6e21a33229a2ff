"""A run's inputs from the command line: the data file, parameters.json and the flags, validated before anything
starts."""

import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lnn_cli.datafiles import DATA_ARGUMENT, data_in_parts, npz_bytes
from lnn_core.aws.usage import DEFAULT_MEMORY_MB
from lnn_core.errors import LnnInputError
from lnn_core.launch.budget import (
    check_npz_fits,
    check_part_fits,
    check_training_fits,
    inspect_npz,
    parameter_copies,
    value_bytes,
)
from lnn_core.launch.launcher import check_workers_fit
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import TrainingData, load_training_data
from lnn_core.ml.validation import held_out

DEMO_DATA = Path(__file__).resolve().parent / "data" / "breast_cancer.npz"
# `make demo`'s parameters: the stack's default network on the demo data, tuned so that the demo takes about a minute.
DEMO_CONFIG = DEMO_DATA.parent / "demo-parameters.json"
PROJECT_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class RunInputs:
    parameters: dict[str, Any]  # LNN parameters.json, without "data" (the run's data key is set at launch)
    data: bytes
    config: TrainingConfig
    training_data: TrainingData
    parts: dict[str, bytes] | None = None  # the data in `workers` parts: {name in runs/<run_id>/data/: .npz bytes}


def read_data(
    path: str | Path, *, label_column: str | None = None, argument: str = DATA_ARGUMENT
) -> tuple[bytes, TrainingData]:
    """The data file's .npz bytes (HDF5 and CSV converted) and its validated content; `argument` names where the
    command takes the file."""
    data = npz_bytes(Path(path), label_column=label_column, argument=argument)
    return data, load_training_data(data, source=str(path))


def read_prediction_data(path: str | Path, *, label_column: str | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """X (and y, when the file has labels) of a data file to predict on, validated as training data is."""
    data = _data_bytes(Path(path), label_column)
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise LnnInputError(f"{path} is not a readable .npz file ({error})") from None
    if "X" not in arrays:
        raise LnnInputError(f"{path} lacks the array 'X' (examples as rows) to predict on")
    labelled = "y" in arrays
    if not labelled:  # validate X alone: placeholder labels, discarded below
        buffer = io.BytesIO()
        np.savez(buffer, X=arrays["X"], y=np.zeros(len(arrays["X"])))
        data = buffer.getvalue()
    checked = load_training_data(data, source=str(path))
    return checked.X, checked.y if labelled else None


def _data_bytes(path: Path, label_column: str | None = None) -> bytes:
    """The .npz bytes of a data file: an .npz as it is, LNN's HDF5 or a CSV converted (see datafiles.py)."""
    return npz_bytes(path, label_column=label_column)


def read_config(path: str | Path) -> dict[str, Any]:
    """A parameters.json file as a dict."""
    path = Path(path)
    try:
        parameters = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise LnnInputError(f"config file {path} does not exist; give a parameters.json (--config FILE)") from None
    except OSError as error:
        raise LnnInputError(f"config file {path} cannot be read ({error.strerror}); check its permissions") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise LnnInputError(f"config file {path} is not valid JSON ({error}); fix it or leave out --config") from None
    if not isinstance(parameters, dict):
        raise LnnInputError(f"config file {path} must hold a JSON object in the LNN parameters.json format")
    return parameters


def comma_list(text: str, *, name: str, whole_numbers: bool = False) -> list:
    """'20,7,5,1' -> [20, 7, 5, 1]; 'relu,sigmoid' -> ['relu', 'sigmoid']."""
    items = [item.strip() for item in text.split(",")]
    if not all(items):
        raise LnnInputError(f"--{name} must be a comma-separated list without empty items; got {text!r}")
    if not whole_numbers:
        return items
    try:
        return [int(item) for item in items]
    except ValueError:
        raise LnnInputError(
            f"--{name} must be whole numbers separated by commas, e.g. 20,7,5,1; got {text!r}"
        ) from None


def run_parameters(base: dict[str, Any], config_path: str | None, flags: dict[str, Any]) -> dict[str, Any]:
    """`base`, overridden by the --config file, overridden by the flags that were given."""
    parameters = dict(base)
    if config_path:
        parameters.update(read_config(config_path))
    given = {key: value for key, value in flags.items() if value is not None}
    if "neurons" in given or "activations" in given:
        parameters.pop("layers", None)  # the lists say how many layers there are
    parameters.update(given)
    parameters.pop("data", None)
    return parameters


def validate_run(
    parameters: dict[str, Any],
    data_path: str | Path,
    *,
    defaults: dict[str, Any] | None = None,
    trainer_memory_mb: int = DEFAULT_MEMORY_MB,
    launcher_memory_mb: int | None = None,
    label_column: str | None = None,
    in_parts: bool = False,
) -> RunInputs:
    """Everything the launcher will check, checked here first, so that a bad run creates nothing: the data's
    headers and size, the parameters, whether a training step fits `trainer_memory_mb`, then the data itself.
    An HDF5 or CSV data file is converted to the .npz that is uploaded (`RunInputs.data`). `in_parts`: a run of
    K > 1 workers gets its data in K parts (`RunInputs.parts`), and each part must fit instead of the whole."""
    data = _data_bytes(Path(data_path), label_column)
    layout = inspect_npz(io.BytesIO(data), source=str(data_path))
    config = TrainingConfig.from_parameters({**parameters, "data": "runs/check/data.npz"}, defaults=defaults)
    split = in_parts and config.workers > 1 and not config.validation_split  # parts hold out no validation rows
    if not split:
        check_npz_fits(
            layout, compressed_bytes=len(data), memory_mb=launcher_memory_mb or trainer_memory_mb, source=str(data_path)
        )
        check_training_fits(
            layout,
            config.neurons,
            memory_mb=trainer_memory_mb,
            source=str(data_path),
            copies=parameter_copies(config, layout),
            itemsize=value_bytes(config),
        )
    training_data = load_training_data(data, source=str(data_path), dtype=config.dtype)
    training_data.check_fits(config)
    if split and config.workers > len(training_data.X):  # the launcher refuses a part without examples
        raise LnnInputError(
            f"workers {config.workers} is more than the {len(training_data.X)} training examples of {data_path}: "
            f"each worker's part needs at least one; use at most {len(training_data.X)} workers"
        )
    parts = data_in_parts(data, config.workers) if split else None
    for name, part in (parts or {}).items():
        part_layout = inspect_npz(io.BytesIO(part), source=f"{data_path} ({name})")
        if name.startswith("part-"):
            check_part_fits(
                part_layout,
                compressed_bytes=len(part),
                examples=len(training_data.X),
                neurons=config.neurons,
                memory_mb=trainer_memory_mb,
                source=f"{data_path} ({name})",
                copies=parameter_copies(config, part_layout),
                test_examples=0 if training_data.X_test is None else len(training_data.X_test),
            )
        else:
            check_npz_fits(
                part_layout,
                compressed_bytes=len(part),
                memory_mb=launcher_memory_mb or trainer_memory_mb,
                source=f"{data_path} ({name})",
            )
    trained = held_out(training_data, config.validation_split, config.validation_seed)  # refused if nothing to train on
    if not split:
        check_workers_fit(config, len(trained.X))  # as the launcher checks one data file
    return RunInputs(parameters, data, config, training_data, parts)
