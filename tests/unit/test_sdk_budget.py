"""The SDK's attempts per call, as botocore builds the clients: a claim's call must end inside its lease."""

import boto3

from lnn_core.aws.sdk import (
    BOTO_CONFIG,
    CLAIM_ATTEMPTS,
    CLAIM_BOTO_CONFIG,
    CLAIM_CALL_SECONDS,
)
from lnn_core.protocol import sending


def attempts(config) -> int:
    client = boto3.client("dynamodb", region_name="us-east-1", config=config)
    return client.meta.config.retries["total_max_attempts"]


def test_a_claim_client_makes_the_attempts_its_lease_arithmetic_counts():
    assert attempts(CLAIM_BOTO_CONFIG) == CLAIM_ATTEMPTS == 3
    assert CLAIM_CALL_SECONDS == 3 * (2 + 6) + 1 + 2 < sending.LEASE_SECONDS


def test_the_other_clients_make_five_attempts():
    assert attempts(BOTO_CONFIG) == 5
