"""Where a run's training state lives in S3: keys addressed by the step's position (epoch, batch, layer), so every
attempt of a step writes the same content to the same keys.

runs/<run_id>/state/params-e<epoch>.npz               the training state after an epoch (0: the initial one)
runs/<run_id>/state/params-e<epoch>-b<batch>.npz      ... after a mini-batch within an epoch (layer granularity)
runs/<run_id>/state/e<epoch>/b<batch>/forward-l<l>.npz  A_l, Z_l of one batch (and its cost sum at the last layer)
runs/<run_id>/state/e<epoch>/b<batch>/backward-l<l>.npz dA_{l-1}, dW_l, db_l of one batch
runs/<run_id>/state/e<epoch>/b<batch>/shard-<i>-<o>.bin  shard worker i's gradient sums of a round, slice-major in
                                                       two objects o = 0, 1 (`ml.slices.SumsLayout`)
runs/<run_id>/state/params-e<epoch>[-b<batch>]/params-<j>.npz, .../optimizer-<j>.npz
                                                       a round's training state of K > 1 workers in K slices: slice
                                                       j's rows of the parameters and of the optimizer state
runs/<run_id>/state/e<epoch>/fit-<k>.npz               fit worker k's outputs of the final model over its part of
                                                       the training set, with its targets and labels (`finish`)
runs/<run_id>/state/staged-model-e<epoch>.npz         the model of an epoch, written by the step that ends the run
                                                       (its finish, or its stop) before that step commits
runs/<run_id>/model.npz                                the model, copied there only after the ending committed
runs/<run_id>/data/part-<k>-of-<K>.npz                 part k (0 .. K - 1) of training data in K parts: X and y, rows
                                                       start_k .. stop_k - 1 of the file they were split from
runs/<run_id>/data/common.npz                          ... and what the parts share: X_test, y_test, classes,
                                                       example_shape (those the file has; possibly none)
A training state holds the parameters (W1, b1, ...), the optimizer state (t, v_*, s_*) and, within an epoch, the
running sum of its batches' costs (`cost_sum`). A run of K > 1 workers keeps its state in slices (the running cost
in its run record), and writes it whole only at a checkpoint epoch or an early stop, for the finish and for
`lnn results --weights`.
"""

from lnn_core.ml import optimizers
from lnn_core.ml.config import TrainingConfig

CHECKPOINT_EVERY = 100  # epochs whose training state is kept (not scratch), besides the last


PARTS_FOLDER = "data/"  # the folder of a run's training data in parts, under runs/<run_id>/


def state_prefix(config: TrainingConfig) -> str:
    return config.data.removesuffix("/").rsplit("/", 1)[0] + "/state"


def in_parts(data: str) -> bool:
    """A run's `data` names a folder of parts (it ends with /), not one .npz."""
    return data.endswith("/")


def parts_folder(run_id: str) -> str:
    return f"runs/{run_id}/{PARTS_FOLDER}"


def part_key(folder: str, part: int, parts: int) -> str:
    """Part `part` (counting from 0, the shard that loads it) of `parts`."""
    return f"{folder}part-{part}-of-{parts}.npz"


def common_key(folder: str) -> str:
    """The arrays every part shares (test set, class names, example shape), loaded by the reduce and the finish."""
    return f"{folder}common.npz"


def params_key(config: TrainingConfig, epoch: int) -> str:
    """The training state after `epoch` (0: the initial one)."""
    return f"{state_prefix(config)}/params-e{epoch:07d}.npz"


def batch_state_key(config: TrainingConfig, epoch: int, batch: int, batches: int) -> str:
    """The training state after mini-batch `batch` of `epoch` (0: before its first batch, `batches`: after its last)."""
    if batch == 0:
        return params_key(config, epoch - 1)
    if batch == batches:
        return params_key(config, epoch)
    return f"{state_prefix(config)}/params-e{epoch:07d}-b{batch:06d}.npz"


def activation_key(config: TrainingConfig, epoch: int, batch: int, layer: int) -> str:
    return f"{state_prefix(config)}/e{epoch:07d}/b{batch:06d}/forward-l{layer:03d}.npz"


def gradient_key(config: TrainingConfig, epoch: int, batch: int, layer: int) -> str:
    return f"{state_prefix(config)}/e{epoch:07d}/b{batch:06d}/backward-l{layer:03d}.npz"


def sums_key(config: TrainingConfig, epoch: int, batch: int, shard: int, part: int) -> str:
    """Object `part` (0 or 1) of shard worker `shard`'s gradient sums in a round."""
    return f"{state_prefix(config)}/e{epoch:07d}/b{batch:06d}/shard-{shard:03d}-{part}.bin"


def round_sums_keys(config: TrainingConfig, epoch: int, batch: int) -> list[str]:
    """Every shard's sums objects of a round: what its commit makes obsolete."""
    return [sums_key(config, epoch, batch, shard, part) for shard in range(config.workers) for part in (0, 1)]


def fit_key(config: TrainingConfig, epoch: int, shard: int) -> str:
    """Fit worker `shard`'s outputs of the model of `epoch` (the run's last) over its part, for the finish."""
    return f"{state_prefix(config)}/e{epoch:07d}/fit-{shard:03d}.npz"


def fit_keys(config: TrainingConfig, epoch: int) -> list[str]:
    """Every fit worker's outputs: what the finish of K > 1 workers makes obsolete."""
    return [fit_key(config, epoch, shard) for shard in range(config.workers)]


STATE_SLICE_PARTS = ("params", "optimizer")
# The run record's mark that a K > 1 run keeps its state in K slices: a run an earlier LNN started (its state one
# file) lacks it, and fails with the reason instead of reading a layout it does not have
STATE_SLICES_FIELD = "state_slices"
# The run record's most a shard worker holds at once for its part of data in parts, as the launcher estimated it
# (`budget.part_worker_bytes`): beyond that and its store's cache, a worker may keep other parts (`StepInputs`)
PART_WORKER_BYTES_FIELD = "part_worker_bytes"


def state_slice_key(config: TrainingConfig, epoch: int, batch: int, batches: int, slice_: int, part: str) -> str:
    """Slice `slice_`'s rows of the parameters (`part` "params") or of the optimizer state ("optimizer") of the
    training state `batch_state_key` names, in a run of K > 1 workers."""
    folder = batch_state_key(config, epoch, batch, batches).removesuffix(".npz")
    return f"{folder}/{part}-{slice_:03d}.npz"


def state_slice_parts(config: TrainingConfig) -> tuple[str, ...]:
    """The objects of one state slice: its rows of the parameters ("params") and of the optimizer state
    ("optimizer"); with an optimizer that keeps no arrays per parameter (gd), one object, its rows of the parameters
    with the update count t, which saves each slice a PUT a round."""
    return STATE_SLICE_PARTS if optimizers.keeps_moments(config.optimizer) else STATE_SLICE_PARTS[:1]


def state_slice_keys(config: TrainingConfig, epoch: int, batch: int, batches: int) -> list[str]:
    """Every slice object of one training state (K parameter slices, and K optimizer slices but with gd)."""
    return [
        state_slice_key(config, epoch, batch, batches, slice_, part)
        for part in state_slice_parts(config)
        for slice_ in range(config.workers)
    ]


def model_key(run_id: str) -> str:
    """The published model: it exists only for a run whose finish, or stop after an epoch, committed (the
    PredictLambda serves it); the run record's `model_epoch` says which epoch it is from."""
    return f"runs/{run_id}/model.npz"


def staged_model_key(run_id: str, epoch: int | str) -> str:
    """The model of `epoch` as the step that ends the run (a finish, or a stop) writes it before its commit;
    `control.publish_model` copies it to `model_key`. Addressed by the epoch, so that every writer of a key writes
    the same bytes. Its name must not end in /model.npz: IAM's * matches /, and runs/*/model.npz grants reach only
    published models. (`staged_model_key("*", "*")` is the grants' pattern.)"""
    return f"runs/{run_id}/state/staged-model-e{epoch}.npz"


def is_checkpoint(config: TrainingConfig, epoch: int) -> bool:
    return epoch == config.epochs or (epoch > 0 and epoch % CHECKPOINT_EVERY == 0)
