"""A run started by an upload, as S3 and EventBridge start it: parameters.json put, and the event its upload sends."""

import json

from tests.conftest import blobs

BUCKET = "lnn-test-bucket"  # the `aws` fixture's bucket (tests/conftest.py)


def upload_parameters(aws, run_id: str, parameters: dict) -> str:
    """Put `parameters` as the run's parameters.json in the `aws` fixture's bucket; its key."""
    key = f"runs/{run_id}/parameters.json"
    aws.s3.put_object(Bucket=aws.bucket, Key=key, Body=json.dumps(parameters).encode())
    return key


def upload_run(aws, run_id: str, parameters: dict) -> str:
    """Upload a run's data (`blobs()`) and its parameters.json, as `lnn start` does; the key of parameters.json."""
    X, y = blobs()
    aws.upload_data(f"runs/{run_id}/data.npz", X=X, y=y)
    return upload_parameters(aws, run_id, parameters)


def upload_event(key: str, **detail) -> dict:
    """The EventBridge event S3 sends when `key` is uploaded to the bucket (what starts the launcher)."""
    return {
        "source": "aws.s3",
        "detail-type": "Object Created",
        "detail": {"bucket": {"name": BUCKET}, "object": {"key": key}, **detail},
    }
