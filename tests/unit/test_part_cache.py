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


class MemoryStore:
    """Objects in a dict; the store's cache holds nothing (`cache_limit` 0), as its figure counts it apart."""

    bucket, cache_limit = "b", 0

    def __init__(self, objects):
        self.objects = objects

    def get_bytes(self, key, *, etag=None, cache=True):
        return bytes(bytearray(self.objects[key]))  # a fresh copy, as a GET's answer is


def test_a_shard_that_reduces_its_round_holds_what_its_budget_counts_as_traced():
    """`budget.parameter_copies` for a shard that reduces its round (`reduces_in_shard`): every shard's sums and the
    state before and after, against `_every_slice` traced with tracemalloc; without the K sums, the count falls
    short of the trace."""
    from lnn_core.aws.codec import arrays_to_npz
    from lnn_core.aws.ports import RequestFanOut
    from lnn_core.launch.budget import parameter_copies
    from lnn_core.ml.optimizers import init_state
    from lnn_core.ml.slices import pack_sums
    from lnn_core.protocol.layout import sums_key
    from lnn_core.protocol.round_steps import EVERY_SLICE, RoundSteps, state_slices, sums_layout
    from lnn_core.protocol.schedule import Position
    from lnn_core.protocol.training_state import training_state

    K, features, neurons = 8, 300, [200, 10]
    config = TrainingConfig.from_parameters(
        {"data": "runs/r/data/", "neurons": neurons, "activations": ["relu", "softmax"], "workers": K},
        defaults={"epochs": 1, "learning_rate": 0.1, "seed": 1, "granularity": "epoch", "reduce": "shard"},
    )
    rng = np.random.RandomState(0)
    sizes = [features, *neurons]
    params = {}
    for layer, (rows, cols) in enumerate(zip(sizes[1:], sizes), start=1):
        params[f"W{layer}"], params[f"b{layer}"] = rng.randn(rows, cols), rng.randn(rows, 1)
    state = training_state(params, init_state(params, config.optimizer))
    objects = {
        key: arrays_to_npz(arrays) for key, arrays in state_slices(config, state, epoch=0, batch=1, batches=1).items()
    }
    layout = sums_layout(config, features)
    for shard in range(K):
        sums = {f"d{name}": rng.randn(*value.shape) for name, value in params.items()}
        for part, data in enumerate(pack_sums(sums, layout)):
            objects[sums_key(config, 1, 1, shard, part)] = data
    steps = RoundSteps(SimpleNamespace(store=MemoryStore(objects), fan_out=RequestFanOut(1)))
    run = {"examples": 1000, "features": features}
    position = Position(step=2, state=EVERY_SLICE, epoch=1, layer=0, batch=1)
    steps._minibatches(config, run["examples"], 1)  # computed before the trace: the step's own data, counted apart
    peak = traced_peak(lambda: steps._every_slice(position, config, run))
    weights = sum(n * previous + n for previous, n in zip(sizes, sizes[1:])) * 8
    part_layout = inspect_npz(io.BytesIO(npz(X=np.zeros((4, features)), y=np.zeros(4))), source="p")
    copies = parameter_copies(config, part_layout)
    assert peak <= weights * (3 + copies)  # W and b, their gradients, the update, and the copies
    assert peak > weights * (3 + copies - K)  # the K shards' sums are what the figure must count
