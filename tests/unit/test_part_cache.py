"""What a shard worker keeps of data in parts: the figure the launcher records for it (`budget.part_worker_bytes`)
against what loading really takes, and the cache's choice of parts (`StepInputs._cached_data`)."""

import io
import tracemalloc
from types import SimpleNamespace

import numpy as np

from lnn_cli.datafiles import data_in_parts
from lnn_core.aws.usage import MIB
from lnn_core.launch.budget import RUNTIME_OVERHEAD_MB, check_part_fits, inspect_npz, part_worker_bytes
from lnn_core.ml import network
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import load_common_data, load_training_data
from lnn_core.protocol.step_inputs import PreparedData, StepInputs
from tests.conftest import blobs


def npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def traced_peak(load) -> int:
    tracemalloc.start()
    try:
        load()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_workers_figure_covers_loading_its_part_and_the_common_arrays_as_traced():
    X, y = blobs(4000, features=60)
    X_test, y_test = blobs(6000, features=60, seed=1)  # larger than a part: loading the common file binds
    files = data_in_parts(npz(X=X, y=y, X_test=X_test, y_test=y_test), 2)
    part, common = files["part-0-of-2.npz"], files["common.npz"]
    part_layout, common_layout = inspect_npz(io.BytesIO(part), source="p"), inspect_npz(io.BytesIO(common), source="c")
    step = check_part_fits(
        part_layout, compressed_bytes=len(part), examples=4000, neurons=[8, 1], memory_mb=1024, source="p",
        test_examples=6000,
    )  # fmt: skip
    figure = part_worker_bytes(
        part_layout, compressed_bytes=len(part), step=step, common=common_layout, common_compressed_bytes=len(common)
    )
    part_peak = traced_peak(lambda: network.to_columns(load_training_data(part, source="p").X))
    common_peak = traced_peak(
        lambda: network.to_columns(load_common_data(common, source="c", features=60, target_shape=()).X_test)
    )
    beside = RUNTIME_OVERHEAD_MB * MIB + step.data  # what the worker keeps while it loads
    assert figure >= step.total and figure >= beside + part_peak and figure >= beside + common_peak
    assert figure > step.total  # the test set's loading, more than the step's estimate of it


class Store:
    bucket, cache_limit = "b", 0

    def __init__(self):
        self.loaded = []

    def get_bytes(self, key, *, etag=None, cache=True):
        self.loaded.append(key)
        return b""


def test_the_cache_keeps_the_parts_most_recently_used_that_fit_beside_the_one_it_loads():
    store = Store()
    inputs = StepInputs(SimpleNamespace(store=store))
    config = TrainingConfig.from_parameters(
        {"data": "runs/r/data/", "neurons": [1], "activations": ["sigmoid"], "workers": 3},
        defaults={"epochs": 1, "learning_rate": 0.1, "seed": 1, "granularity": "epoch"},
    )
    part = PreparedData(SimpleNamespace(), np.zeros((10, 10)), np.zeros((1, 10)), 30)  # 880 bytes

    def use(k):
        inputs._cached_data(config, f"runs/r/data/part-{k}-of-3.npz", "e", lambda raw, source: part, room=1000)

    for k in (0, 1, 0, 2, 0):  # room for one other part: the one used last
        use(k)
    assert [key[len("runs/r/data/part-")] for key in store.loaded] == ["0", "1", "2"]
