"""Storage conversions: bit-for-bit round trips through DynamoDB's Decimal numbers and npz bytes."""

from decimal import Decimal

import numpy as np
import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from lnn_core.aws.codec import (
    arrays_to_npz,
    float_to_decimal,
    from_dynamo,
    item2ndarray,
    ndarray2item,
    npz_to_arrays,
    to_dynamo,
)
from lnn_core.errors import RunFailure

AWKWARD = np.array(
    [0.1, 1 / 3, -2.5e-300 * 1e200, 1e125 / 3, 5e-324 * 1e200, np.nextafter(1.0, 2.0), 123456789.123456789]
)


def test_ndarray_round_trips_bit_for_bit_through_dynamodb_wire_format():
    rng = np.random.RandomState(0)
    for array in (rng.randn(7, 5) * 10.0 ** rng.randint(-30, 30, size=(7, 5)), AWKWARD, rng.randn(3, 1)):
        wire = TypeSerializer().serialize(ndarray2item(array))  # what boto3 sends: strings of at most 38 digits
        back = item2ndarray(TypeDeserializer().deserialize(wire))
        assert back.shape == array.shape
        assert back.tobytes() == array.tobytes()


def test_negative_zero_comes_back_as_an_equal_zero():
    wire = TypeSerializer().serialize(ndarray2item(np.array([-0.0])))
    assert item2ndarray(TypeDeserializer().deserialize(wire))[0] == 0.0


def test_decimals_stay_within_dynamodb_precision():
    for value in AWKWARD:
        assert len(float_to_decimal(value).as_tuple().digits) <= 17


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf"), 1e130])
def test_non_storable_numbers_are_refused(bad):
    with pytest.raises(ValueError, match="cannot store"):
        float_to_decimal(bad)


def test_to_dynamo_and_back():
    value = {
        "cost": 0.6931471805599453,
        "epochs": 3,
        "flag": True,
        "none": None,
        "nested": [1.5, {"x": 2}],
        "arr": np.eye(2),
    }
    stored = to_dynamo(value)
    assert stored["cost"] == Decimal("0.6931471805599453") and isinstance(stored["epochs"], int)
    back = from_dynamo(stored)
    assert back["cost"] == value["cost"] and back["epochs"] == 3 and back["nested"] == [1.5, {"x": 2}]
    assert back["arr"] == [[1, 0], [0, 1]]


def test_npz_round_trip_and_corruption():
    arrays = {"W1": np.random.RandomState(1).randn(3, 4), "name": np.array("relu")}
    back = npz_to_arrays(arrays_to_npz(arrays), key="k")
    assert back["W1"].tobytes() == arrays["W1"].tobytes() and str(back["name"]) == "relu"
    with pytest.raises(RunFailure, match="s3 object runs/x.npz is corrupt"):
        npz_to_arrays(b"garbage", key="runs/x.npz")
