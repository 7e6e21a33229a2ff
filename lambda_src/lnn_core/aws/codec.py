"""Conversions at the storage boundary: arrays to npz bytes, floats to DynamoDB Decimals and back.

DynamoDB rejects floats, NaN and Inf. `Decimal(repr(x))` is the shortest decimal that round-trips a float
exactly and never exceeds DynamoDB's 38 significant digits (repr has at most 17).
"""

import io
import math
import zipfile
from decimal import Decimal
from typing import Any

import numpy as np

from lnn_core.errors import RunFailure

DYNAMODB_MAX = 1e125  # DynamoDB numbers range over 1E-130 .. 9.99E+125 in magnitude
DYNAMODB_MIN = 1e-130


def dynamodb_can_store(value: float) -> bool:
    """Whether DynamoDB holds `value` as a number: finite and below its largest magnitude."""
    return math.isfinite(value) and abs(value) < DYNAMODB_MAX


def float_to_decimal(value: float) -> Decimal:
    """A finite float as the Decimal that reads back as the identical float (below 1e-130: zero)."""
    value = float(value)
    if not dynamodb_can_store(value):
        raise ValueError(f"DynamoDB cannot store the number {value!r}")
    if abs(value) < DYNAMODB_MIN:
        return Decimal(0)  # DynamoDB cannot hold magnitudes this small
    return Decimal(repr(value))


def to_dynamo(value: Any) -> Any:
    """A JSON-like value with floats made into Decimals (recursively), ready for boto3's DynamoDB serializer."""
    if isinstance(value, bool) or value is None or isinstance(value, (str, Decimal)):
        return value
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float_to_decimal(value)
    if isinstance(value, dict):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamo(v) for v in value]
    if isinstance(value, np.ndarray):
        return ndarray2item(value)
    raise TypeError(f"cannot store a {type(value).__name__} in DynamoDB")


def from_dynamo(value: Any) -> Any:
    """The inverse of `to_dynamo`: Decimals become ints when integral, floats otherwise."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and value.as_tuple().exponent >= 0 else float(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    return value


def ndarray2item(array: np.ndarray) -> list:
    """A float array as nested DynamoDB lists of Decimals (row-major; shape (n, k) -> n lists of k)."""
    return [float_to_decimal(v) for v in array] if array.ndim == 1 else [ndarray2item(row) for row in array]


def item2ndarray(item: list) -> np.ndarray:
    """The inverse of `ndarray2item`, bit for bit."""
    return (
        np.array(item, dtype=np.float64)
        if not item or not isinstance(item[0], list)
        else np.array([item2ndarray(row) for row in item], dtype=np.float64)
    )


def arrays_to_npz(arrays: dict[str, np.ndarray]) -> bytes:
    """Arrays as uncompressed npz bytes (training state is float noise: compression buys little and costs time)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def npz_to_arrays(data: bytes, *, key: str) -> dict[str, np.ndarray]:
    """Arrays from npz bytes; a corrupt object is a `RunFailure` naming its key."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            return {name: npz[name] for name in npz.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise RunFailure(f"s3 object {key} is corrupt or not an npz file ({error})") from error


def item_write_units(item: dict[str, Any]) -> int:
    """DynamoDB write units of one put of `item` (1 per KB, rounded up), from an upper bound of its stored size."""
    return max(1, math.ceil(_stored_bytes(item) / 1024))


def _stored_bytes(value: Any) -> int:
    """An upper bound of a value's size in DynamoDB: a number takes at most 10 bytes (17 significant digits / 2 + 1),
    a list or map 3 bytes plus 1 per element, an attribute its name's length."""
    if isinstance(value, dict):
        return 3 + sum(len(str(name)) + 1 + _stored_bytes(item) for name, item in value.items())
    if isinstance(value, np.ndarray):
        rows = value.shape[0] if value.ndim > 1 else 0
        return 3 + 11 * value.size + 4 * rows
    if isinstance(value, (list, tuple)):
        return 3 + sum(1 + _stored_bytes(item) for item in value)
    if isinstance(value, str):
        return len(value.encode())
    return 10  # numbers, booleans, null
