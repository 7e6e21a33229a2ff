"""What the step bodies (`steps.StepBodies`) read: the run's training data, parsed once per warm container and ETag
(of data in parts, the common arrays and the parts its memory has room for), the current epoch's mini-batches, and
the .npz files of the training state that earlier steps wrote.
"""

from dataclasses import dataclass

import numpy as np

from lnn_core.aws.codec import npz_to_arrays
from lnn_core.aws.ports import Ports
from lnn_core.aws.round_barrier import RoundProgress
from lnn_core.aws.usage import DEFAULT_MEMORY_MB, MIB
from lnn_core.errors import LnnInputError, RunFailure
from lnn_core.ml import batching, network
from lnn_core.ml.config import TrainingConfig
from lnn_core.ml.dataset import TrainingData, load_common_data, load_training_data
from lnn_core.ml.validation import held_out
from lnn_core.protocol.layout import PART_WORKER_BYTES_FIELD, common_key, in_parts, part_key


@dataclass(frozen=True)
class PreparedData:
    """Training data in the internal layout: examples as columns. Of data in parts, one part's X, Y and y (or none,
    for the reduce: the common arrays alone), while `examples` counts the examples of every part."""

    data: TrainingData
    X: np.ndarray  # (n0, m)
    Y: np.ndarray  # (n_L, m)
    examples: int  # of the whole training set

    @property
    def nbytes(self) -> int:
        """The memory its arrays hold: the data as rows and as columns, its targets and labels."""
        arrays = (self.X, self.Y, *(value for value in vars(self.data).values() if isinstance(value, np.ndarray)))
        return sum(array.nbytes for array in arrays)


class StepInputs:
    """The inputs of one warm container's steps, with its caches of the run's data and of the current epoch's
    mini-batches."""

    def __init__(self, ports: Ports, memory_mb: int = DEFAULT_MEMORY_MB):
        self.ports, self.memory_mb = ports, memory_mb  # the function's memory (`usage.memory_mb`)
        self._data: dict[tuple[str, str, str], PreparedData] = {}  # keyed by (key, ETag, dtype)
        self._epoch_batches: tuple[tuple, list] | None = None
        # a round's barrier item as a staying worker last read it with every shard in (`remember_round`)
        self._complete_round: tuple[str, int, RoundProgress] | None = None

    def remember_round(self, run_id: str, step: int, progress: RoundProgress) -> None:
        """Round `step`'s barrier item read with every shard in: final (a barrier's sets only grow, and every write
        of a shard's loss writes the same value), so its commit needs no second read (`_round_progress`)."""
        self._complete_round = (run_id, step, progress)

    def _round_progress(self, run_id: str, step: int) -> RoundProgress:
        """Round `step`'s barrier item: the one remembered with every shard in, else read."""
        if self._complete_round is not None and self._complete_round[:2] == (run_id, step):
            return self._complete_round[2]
        return self.ports.table.round_progress(run_id, step)

    def _load(self, key: str) -> dict[str, np.ndarray]:
        return npz_to_arrays(self.ports.store.get_bytes(key), key=key)

    def _prepared(self, config: TrainingConfig, run: dict) -> PreparedData:
        """The run's training data (its validation rows held out), parsed once per warm container and ETag."""
        return self._cached_data(
            config,
            config.data,
            run["data_etag"],
            lambda raw, source: self._columns(config, load_training_data(raw, source=source, dtype=config.dtype), None),
        )

    def _round_data(self, config: TrainingConfig, run: dict, shard: int | None) -> PreparedData:
        """A round's data: the run's one file; or, of data in parts, shard k's part (with the common arrays of
        none), or for the reduce (`shard` None) the common arrays alone: the test set, for its evaluations."""
        if not in_parts(config.data):
            return self._prepared(config, run)
        room = (  # for the run's parts beside what a worker holds at once (none for a run that did not record it)
            self.memory_mb * MIB - run.get(PART_WORKER_BYTES_FIELD, self.memory_mb * MIB) - self.ports.store.cache_limit
        )
        if shard is None:
            target_shape = (config.neurons[-1],) if config.regression and config.neurons[-1] > 1 else ()
            return self._cached_data(
                config,
                common_key(config.data),
                run["data_etag"],
                lambda raw, source: self._columns(
                    config,
                    load_common_data(
                        raw, source=source, features=run["features"], target_shape=target_shape, dtype=config.dtype
                    ),
                    run["examples"],
                ),
                room,
            )
        return self._cached_data(
            config,
            part_key(config.data, shard, config.workers),
            run["part_etags"][shard],
            lambda raw, source: self._columns(
                config, load_training_data(raw, source=source, dtype=config.dtype), run["examples"]
            ),
            room,
        )

    @staticmethod
    def _columns(config: TrainingConfig, data: TrainingData, examples: int | None) -> PreparedData:
        data.check_fits(config)
        data = held_out(data, config.validation_split, config.validation_seed)  # the run trains on the rest
        X = network.to_columns(data.X, config.dtype) if len(data.X) else np.empty((data.X.shape[1], 0), config.dtype)
        Y = (
            network.targets(data.y, config.activations[-1], config.neurons[-1], config.dtype)
            if len(data.y)
            else np.empty((config.neurons[-1], 0), config.dtype)
        )
        return PreparedData(data, X, Y, X.shape[1] if examples is None else examples)

    def _cached_data(self, config: TrainingConfig, key: str, etag: str, prepare, room: int = 0) -> PreparedData:
        """Data parsed once per warm container and ETag by `prepare(raw, source)`, of one run at a time. Of data in
        parts: the common arrays, and the parts most recently used whose bytes fit `room` beside the one loaded
        (Lambda gives a shard's event to any idle container: with one part a container, most rounds would load a
        part again)."""
        cache_key = (key, etag, config.dtype, config.validation_split, config.validation_seed)
        if cache_key in self._data:
            self._data[cache_key] = self._data.pop(cache_key)  # the most recently used last
        else:
            common = common_key(config.data) if in_parts(config.data) else None
            kept = {  # of data in parts, the run's other files
                cached: value
                for cached, value in self._data.items()
                if common is not None and cached[0].startswith(config.data) and cached[0] != key
            }
            for cached, value in reversed(list(kept.items())):  # the parts, newest first, while they fit
                if cached[0] != common:
                    room -= value.nbytes
                    if room < 0:
                        del kept[cached]
            self._data = kept
            raw = self.ports.store.get_bytes(key, etag=etag, cache=False)  # after the eviction: what fits in memory
            source = f"s3://{self.ports.store.bucket}/{key}"
            try:
                self._data[cache_key] = prepare(raw, source)
            except LnnInputError as error:
                raise RunFailure(str(error)) from error
            except MemoryError as error:
                raise RunFailure(
                    f"the training data does not fit the trainer's memory ({error}); deploy with a larger "
                    "-c memory_size"
                ) from error
        return self._data[cache_key]

    def _minibatches(self, config: TrainingConfig, examples: int, epoch: int) -> list:
        """The epoch's mini-batches (example indices) of a training set of `examples`, computed once per container
        and epoch."""
        key = (config.data, examples, config.batch_size, config.replay_shuffle_seed(), epoch)
        if self._epoch_batches is None or self._epoch_batches[0] != key:
            batches = batching.minibatches(examples, config.batch_size, config.replay_shuffle_seed(), epoch)
            self._epoch_batches = (key, batches)
        return self._epoch_batches[1]
