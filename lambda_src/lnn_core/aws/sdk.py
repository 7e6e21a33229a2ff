"""How LNN calls AWS: the SDK's retries and timeouts (those of calls under a lease end inside it), the counter
of requests and bytes every adapter keeps, and the timestamp every record carries."""

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from botocore.config import Config

BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 5}, connect_timeout=5, read_timeout=60)

# The clients whose calls a lease covers (DynamoDB, SNS, Lambda): every attempt and back-off of one call ends
# well inside the 30 s lease (protocol.sending.LEASE_SECONDS), so a live claimant cannot outlast its own lease inside an
# SDK call. S3 keeps BOTO_CONFIG: large objects, and no S3 call is made under a lease.
CLAIM_ATTEMPTS, CLAIM_CONNECT_SECONDS, CLAIM_READ_SECONDS = 3, 2, 6
CLAIM_BACKOFF_SECONDS = 1 + 2  # botocore's standard mode waits at most 2**(attempt - 1) s before retry `attempt`
CLAIM_CALL_SECONDS = CLAIM_ATTEMPTS * (CLAIM_CONNECT_SECONDS + CLAIM_READ_SECONDS) + CLAIM_BACKOFF_SECONDS
# `total_max_attempts`, not `max_attempts`: botocore reads the latter as retries, one attempt more.
CLAIM_BOTO_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": CLAIM_ATTEMPTS},
                           connect_timeout=CLAIM_CONNECT_SECONDS, read_timeout=CLAIM_READ_SECONDS)

PRICED = ("dynamodb_writes", "dynamodb_item_units", "s3_reads", "s3_deletes")


@dataclass
class IoCounter:
    """AWS requests by service, and bytes moved to and from S3."""

    requests: Counter = field(default_factory=Counter)
    s3_bytes_in: int = 0
    s3_bytes_out: int = 0
    # What prices apart within a service's requests (pricing.run_cost): DynamoDB's writes (the rest are reads) and
    # the write units of the epoch items they carry; S3's GETs and HEADs, and its deletes (free).
    priced: Counter = field(default_factory=lambda: Counter(dict.fromkeys(PRICED, 0)))

    def snapshot(self) -> dict[str, Any]:
        return {"requests": dict(self.requests), "s3_bytes_in": self.s3_bytes_in, "s3_bytes_out": self.s3_bytes_out,
                "priced": dict(self.priced)}

    def since(self, earlier: dict[str, Any]) -> dict[str, Any]:
        """What was counted after `earlier` (a `snapshot()`)."""
        requests = Counter(self.requests)
        requests.subtract(earlier["requests"])
        return {
            "requests": {service: count for service, count in requests.items() if count},
            "s3_bytes_in": self.s3_bytes_in - earlier["s3_bytes_in"],
            "s3_bytes_out": self.s3_bytes_out - earlier["s3_bytes_out"],
            "priced": {name: self.priced[name] - earlier["priced"].get(name, 0) for name in PRICED},
        }


def now() -> str:
    """UTC time as ISO 8601 with milliseconds."""
    seconds = time.time()  # one reading: two could straddle a second and go back in time
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"
