"""The launcher's checks of training data in parts (a folder `runs/<run_id>/data/` of `part-<k>-of-<K>.npz` and
`common.npz`, see protocol/layout), before anything is created.

A part is never downloaded here: its zip directory and .npy headers are read with ranged GETs (a few per part), and
its declared shapes are checked against the other parts', the network and the trainer's memory (`budget`). Its
values (finite numbers, labels in range) are checked by the client before upload and by its shard worker when it
loads it (a bad part fails the run with the reason). common.npz (the test set, class names, example shape) is small
and loaded whole, as one .npz is.
"""

import io
import re
from dataclasses import dataclass

from lnn_core.aws.ports import S3ObjectStore
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.launch.budget import (
    NpzLayout,
    check_npz_fits,
    check_object_size,
    check_part_fits,
    data_budget_bytes,
    inspect_npz,
    parameter_copies,
    part_worker_bytes,
    value_bytes,
)
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import TrainingData, load_common_data
from lnn_core.protocol.layout import common_key, part_key

PART_NAME = re.compile(r"part-(\d+)-of-(\d+)\.npz")
HEADER_READ_BYTES = 64 * 1024  # one ranged GET reads this much: a zip directory, or a member's local and .npy headers


@dataclass(frozen=True)
class DataInParts:
    """What the launcher records of data in parts: each part's examples and ETag, and the common arrays."""

    part_examples: list[int]
    part_etags: list[str]
    common_etag: str
    features: int
    common: TrainingData
    worker_bytes: int  # the most a shard worker holds at once for its part (`budget.part_worker_bytes`)


class RangedObject(io.RawIOBase):
    """An S3 object of known ETag and size as a seekable file, each read a ranged GET: zipfile reads its directory
    and headers without the data."""

    def __init__(self, store: S3ObjectStore, key: str, etag: str, size: int):
        self.store, self.key, self.etag, self.size, self.position = store, key, etag, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = max(0, {io.SEEK_SET: 0, io.SEEK_CUR: self.position, io.SEEK_END: self.size}[whence] + offset)
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        stop = min(self.size, self.position + len(buffer))
        if stop <= self.position:
            return 0
        data = self.store.get_range(self.key, self.position, stop, etag=self.etag)
        buffer[: len(data)] = data
        self.position += len(data)
        return len(data)


def check_parts(
    store: S3ObjectStore, config: TrainingConfig, *, trainer_memory_mb: int, launcher_memory_mb: int
) -> DataInParts:
    """Check the run's data in parts (`config.data`, a folder) by headers; raise `LnnInputError` with one reason:
    parts missing, a K other than `workers`, mismatched shapes, a part or step that does not fit the trainer."""
    folder, workers = config.data, config.workers
    where = f"s3://{store.bucket}/{folder}"
    listed = store.list_objects(folder)
    names = (key.removeprefix(folder) for key in listed)
    counts = sorted({int(match[2]) for match in map(PART_NAME.fullmatch, names) if match})
    if counts and counts != [workers]:
        other = next(count for count in counts if count != workers)
        raise LnnInputError(
            f"training data {where} is in parts of {other} (part-0-of-{other}.npz ...) but the run has "
            f"workers {workers}; run with workers {other}, or split the data into {workers} parts"
        )
    keys = [part_key(folder, part, workers) for part in range(workers)]
    missing = [key for key in (*keys, common_key(folder)) if key not in listed]
    if missing:
        raise LnnInputError(
            f"training data in parts {where} lacks {missing[0].removeprefix(folder)} ({len(missing)} "
            f"of its {workers + 1} files missing); upload every part and common.npz before parameters.json"
        )
    common_etag, common_size = listed[common_key(folder)]
    raw, common = _common(store, common_key(folder), common_etag, common_size, launcher_memory_mb)
    X_test = common.shape("X_test")
    test_examples = X_test[0] if X_test and len(X_test) == 2 else 0
    layouts = [_part_layout(store, key, *listed[key]) for key in keys]
    first = layouts[0]
    for key, layout in zip(keys, layouts):
        _check_part_shapes(layout, first, config, f"s3://{store.bucket}/{key}")
    examples = sum(layout.shape("X")[0] for layout in layouts)
    worker_bytes = [
        part_worker_bytes(
            layout,
            compressed_bytes=listed[key][1],
            common=common,
            common_compressed_bytes=common_size,
            step=check_part_fits(
                layout,
                compressed_bytes=listed[key][1],
                examples=examples,
                neurons=config.neurons,
                memory_mb=trainer_memory_mb,
                source=f"s3://{store.bucket}/{key}",
                copies=parameter_copies(config, layout),
                test_examples=test_examples,
                itemsize=value_bytes(config),
            ),
        )
        for key, layout in zip(keys, layouts)
    ]
    features, y_shape = first.shape("X")[1], first.shape("y")
    target_shape = () if len(y_shape) == 1 or y_shape[1:] == (1,) else y_shape[1:]
    data = load_common_data(
        raw, source=f"s3://{store.bucket}/{common_key(folder)}", features=features, target_shape=target_shape
    )
    data.check_fits(config)
    return DataInParts(
        [layout.shape("X")[0] for layout in layouts],
        [listed[key][0] for key in keys],
        common_etag,
        features,
        data,
        max(worker_bytes),
    )


def _part_layout(store: S3ObjectStore, key: str, etag: str, size: int) -> NpzLayout:
    try:
        return inspect_npz(
            io.BufferedReader(RangedObject(store, key, etag, size), HEADER_READ_BYTES),
            source=f"s3://{store.bucket}/{key}",
        )
    except RunFailure as error:  # replaced since it was listed
        raise LnnInputError(str(error)) from error


def _common(store: S3ObjectStore, key: str, etag: str, size: int, memory_mb: int) -> tuple[bytes, NpzLayout]:
    """common.npz's bytes and headers: its size checked against the launcher's data budget before it is downloaded,
    its headers before it is parsed."""
    source = f"s3://{store.bucket}/{key}"
    check_object_size(
        size,
        limit=data_budget_bytes(memory_mb),
        source=source,
        what="common arrays",
        fix=f"use a smaller test set or deploy with a memory_size above {memory_mb} MB",
    )
    try:
        raw = store.get_bytes(key, etag=etag, cache=False)
    except RunFailure as error:  # replaced since it was listed
        raise LnnInputError(str(error)) from error
    layout = inspect_npz(io.BytesIO(raw), source=source)
    check_npz_fits(layout, compressed_bytes=size, memory_mb=memory_mb, source=source)
    return raw, layout


def _check_part_shapes(layout: NpzLayout, first: NpzLayout, config: TrainingConfig, source: str) -> None:
    """A part holds X (m_k, n0) and y (m_k,) or (m_k, k) of numbers, n0 and y's shape per example as part 0's."""
    names = sorted(layout.arrays)
    if names != ["X", "y"]:
        raise LnnInputError(
            f"{source} holds {', '.join(names)}; a part holds only X and y (the test set, classes and "
            "example_shape go in common.npz)"
        )
    for header in layout.arrays.values():
        if header.dtype.kind not in "biuf":
            raise LnnInputError(f"{source}: {header.name} must be numeric; got dtype {header.dtype}")
    X, y = layout.shape("X"), layout.shape("y")
    if len(X) != 2 or X[0] == 0 or X[1] == 0:
        raise LnnInputError(f"{source}: X must be a non-empty 2-D array (examples as rows); got shape {X}")
    if len(y) not in (1, 2) or y[0] != X[0]:
        raise LnnInputError(f"{source}: X has {X[0]} examples but y has shape {y}; give one label (or target row) each")
    per_example = 1 if len(y) == 1 else y[1]
    if config.regression and per_example != config.neurons[-1]:
        raise LnnInputError(
            f"{source}: y holds {per_example} target(s) per example but the {config.activations[-1]} "
            f"output has {config.neurons[-1]} neuron(s)"
        )
    if not config.regression and per_example != 1:
        raise LnnInputError(
            f"{source}: y must hold one class label per example for a {config.activations[-1]} output; got shape {y}"
        )
    if X[1] != first.shape("X")[1] or y[1:] != first.shape("y")[1:]:
        raise LnnInputError(
            f"{source}: X {X} and y {y} do not match part 0's X {first.shape('X')} and y "
            f"{first.shape('y')}; every part has the same features and targets per example"
        )
