"""Creating a sweep's record (`lnn_core.sweep.record`) in the stack's bucket, with the CLI's credentials.

The record is created once (a conditional put: `If-None-Match: *`), by the command that starts the sweep, after its
data, which is stored under its MD5 (`sweep_data_key`) and also created only if absent: a concurrent start with other
data writes a key no record of the winner names, so it cannot replace the winner's data. A second start of the
same sweep finds it and starts nothing twice (the trials' starts are the controller's, `lnn_core.sweep.controller`,
which marks each start only if absent).
"""

from botocore.exceptions import ClientError

from lnn_core.errors import LnnInputError
from lnn_core.sweep.record import SweepRecord, active_key, sweep_key


class SweepStore:
    """Sweep records in the stack's bucket (an S3 client and the bucket's name)."""

    def __init__(self, client, bucket: str):
        self.client, self.bucket = client, bucket

    def read(self, sweep_id: str) -> SweepRecord | None:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=sweep_key(sweep_id))["Body"].read()
        except ClientError as error:
            if error.response["Error"]["Code"] in ("NoSuchKey", "404"):
                return None
            raise
        return SweepRecord.from_json(body)

    def create(self, record: SweepRecord, data: bytes) -> tuple[SweepRecord, bool]:
        """Record a new sweep and upload its data; or, when a sweep of that name exists, return it (False) if it is
        the same sweep (a repeated start), else refuse. The record is written only if absent."""
        existing = self.read(record.sweep_id)
        if existing is None:
            self._create(record.data_key, data)  # (already there: the same bytes, of the same name and MD5)
            if self._create(sweep_key(record.sweep_id), record.to_json(), ContentType="application/json"):
                return record, True
            existing = self.read(record.sweep_id)  # another start created it first
        if not existing.same_sweep(record):
            raise LnnInputError(
                f"a sweep named {record.sweep_id} already exists with other trials or data; "
                "choose another --name (or repeat the same start to start its queued trials)"
            )
        return existing, False

    def _create(self, key: str, body: bytes, **extra) -> bool:
        """Put `key` only if absent; False when it exists (or a concurrent put of it is in flight)."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=key, IfNoneMatch="*", Body=body, **extra)
        except ClientError as error:
            if error.response["Error"]["Code"] not in ("PreconditionFailed", "ConditionalRequestConflict"):
                raise
            return False
        return True

    def mark_active(self, sweep_id: str) -> None:
        """Put the sweep on the watchdog's list (`sweeps/active/<sweep>`): from now on the stack drives it to its end.
        Its reconcile removes the mark once the sweep's message is sent."""
        self.client.put_object(Bucket=self.bucket, Key=active_key(sweep_id), Body=b"")
