"""The run table (DynamoDB): the run record at epoch 0, an epoch's figures at its epoch, a barrier item per round at
a negative key, all in the run's partition (its id); an epoch's weights at its epoch in a partition of their own
(`weights_partition`), so that reading figures never walks or pages through weights.

Its conditional writes are the exactly-once protocol's commit points and leases: of all deliveries of a step exactly
one commits (`transition`), and a re-send, the run's message and a round's reduce each go to one claimant at a time.
Like the other adapters (ports.py) it counts its requests in the shared `IoCounter`.
"""

from lnn_core.aws.epoch_items import EpochItemOperations
from lnn_core.aws.round_barrier import RoundBarrierOperations
from lnn_core.aws.run_record import RunRecordOperations


class RunTable(RunRecordOperations, RoundBarrierOperations, EpochItemOperations):
    """The results table: the run record at epoch 0 (`run_record`), two items per epoch (figures; weights in the run's
    weights partition: `epoch_items`), barriers below 0 (`round_barrier`)."""
