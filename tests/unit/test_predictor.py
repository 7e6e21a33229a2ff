"""The PredictLambda's logic (`lnn_core.predictor`) against in-process moto S3: answers, bad requests, the cache."""

import base64
import json

import numpy as np
import pytest

from lnn_core.errors import LnnInputError
from lnn_core.handlers import build_predictor
from lnn_core.ml import metrics
from lnn_core.predictor import SYNC_PAYLOAD_LIMIT, Model, parse_rows, rows_that_fit
from tests.support.arrays import npz_bytes


class Log:
    def __init__(self):
        self.lines = []

    def info(self, message, extra=None):
        self.lines.append(("info", message, extra))

    warning = info


def model_bytes(params, activations, **extra) -> bytes:
    return npz_bytes(**params, activations=np.array(activations), config=np.array("{}"), **extra)


SIGMOID = {"W1": np.array([[2.0, -1.0]]), "b1": np.array([[0.5]])}
SOFTMAX = {"W1": np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]]), "b1": np.zeros((3, 1))}


@pytest.fixture
def predictor(aws):
    return build_predictor(session=aws.session, logger=Log())


def put_model(aws, run_id, data):
    aws.s3.put_object(Bucket=aws.bucket, Key=f"runs/{run_id}/model.npz", Body=data)


def test_sigmoid_answer_matches_the_network(aws, predictor):
    put_model(aws, "r1", model_bytes(SIGMOID, ["sigmoid"]))
    X = [[1.0, 0.0], [0.0, 3.0], [0.25, -0.5]]
    answer = predictor.handle({"run_id": "r1", "X": X})
    expected = metrics.predict_proba(SIGMOID, np.array(X), ["sigmoid"])
    assert answer["probabilities"] == expected.tolist()  # bit for bit
    assert answer["predictions"] == metrics.predict(SIGMOID, np.array(X), ["sigmoid"]).tolist() == [1, 0, 1]
    assert answer["run_id"] == "r1" and answer["model_key"] == "runs/r1/model.npz"
    json.dumps(answer)  # JSON-ready


def test_classes_name_the_predictions_and_describe_says_what_the_model_takes(aws, predictor):
    put_model(
        aws,
        "r2",
        model_bytes(
            SOFTMAX,
            ["softmax"],
            classes=np.array(["cat", "dog", "eel"]),
            example_shape=np.array([1, 2]),
            epoch=np.array(7),
        ),
    )
    answer = predictor.handle({"run_id": "r2", "X": [[3, 0], [0, 3], [-2, -2]]})  # ints are numbers too
    assert answer["predictions"] == ["cat", "dog", "eel"]
    assert len(answer["probabilities"]) == 3 and all(len(row) == 3 for row in answer["probabilities"])
    assert answer["model_epoch"] == 7  # the model says which epoch it is from (a stopped run's: its last committed)
    described = predictor.handle({"run_id": "r2", "describe": True})
    assert described == {
        "run_id": "r2",
        "model_key": "runs/r2/model.npz",
        "model_epoch": 7,
        "features": 2,
        "output": "softmax",
        "outputs": 3,
        "classes": ["cat", "dog", "eel"],
        "example_shape": [1, 2],
    }


def test_regression_answers_values(aws, predictor):
    put_model(aws, "reg", model_bytes(SIGMOID, ["linear"]))
    answer = predictor.handle({"run_id": "reg", "X": [[1.0, 0.0], [0.0, 1.0]]})
    assert answer["values"] == answer["predictions"] == [2.5, -0.5] and "probabilities" not in answer


@pytest.mark.parametrize(
    "request_, message",
    [
        ({"run_id": "nope", "X": [[1.0, 2.0]]}, "there is no run nope"),
        ({"run_id": "half", "X": [[1.0, 2.0]]}, "run half has no model yet"),
        ({"run_id": "r1", "X": [[1.0, 2.0, 3.0]]}, "X rows have 3 features but the model of run r1 takes 2"),
        ({"run_id": "r1", "X": [[1.0, float("nan")]]}, "NaN or an infinite value (row 0, column 1)"),
        ({"run_id": "r1", "X": [[1.0, float("inf")]]}, "NaN or an infinite value"),
        ({"run_id": "r1", "X": [[1.0, 2.0], [1.0]]}, "equal length; row 0 has 2 values, row 1 has 1"),
        ({"run_id": "r1", "X": [[1.0, "2"]]}, "holds '2', which is not a number"),
        ({"run_id": "r1", "X": [[1.0, True]]}, "holds True, which is not a number"),
        ({"run_id": "r1", "X": [1.0, 2.0]}, "X row 0 is not a non-empty list"),
        ({"run_id": "r1", "X": []}, "X must be a non-empty list of rows"),
        ({"run_id": "r1", "X": "1,2"}, "X must be a non-empty list of rows"),
        ({"run_id": "r1"}, 'lacks "X"'),
        ({"X": [[1.0, 2.0]]}, 'lacks "run_id"'),
        ({"run_id": "../etc", "X": [[1.0, 2.0]]}, "run id '../etc' is invalid"),
        ({"run_id": 7, "X": [[1.0, 2.0]]}, "run id 7 is invalid"),
        ([1, 2], "must be a JSON object"),
        ("{not json", "not JSON"),
    ],
)
def test_bad_requests_answer_one_sentence(aws, predictor, request_, message):
    put_model(aws, "r1", model_bytes(SIGMOID, ["sigmoid"]))
    aws.s3.put_object(Bucket=aws.bucket, Key="runs/half/data.npz", Body=b"x")
    answer = predictor.handle(request_)
    assert set(answer) <= {"error", "run_id"} and message in answer["error"], answer
    assert "Traceback" not in answer["error"] and "\n" not in answer["error"]


def test_too_many_rows_says_how_many_fit(aws, predictor):
    put_model(aws, "r1", model_bytes(SIGMOID, ["sigmoid"]))
    row = [0.123456789012345, 0.987654321098765]
    rows = SYNC_PAYLOAD_LIMIT // len(json.dumps(row)) + 10
    answer = predictor.handle({"run_id": "r1", "X": [row] * rows})
    fit = rows_that_fit(len(json.dumps({"run_id": "r1", "X": [row] * rows})) / rows)
    assert f"send at most {fit:,} rows of this width per request" in answer["error"]
    assert 0 < fit < rows
    assert "error" not in predictor.handle({"run_id": "r1", "X": [row] * (fit - 10)})


def test_the_model_is_cached_by_etag_a_head_per_request_a_get_when_it_changed(aws, predictor):
    put_model(aws, "r1", model_bytes(SIGMOID, ["sigmoid"]))
    calls = []
    client = predictor.ports.store._client
    client.meta.events.register("before-call.s3.*", lambda model, **_: calls.append(model.name))
    first = predictor.handle({"run_id": "r1", "X": [[1.0, 0.0]]})
    second = predictor.handle({"run_id": "r1", "X": [[1.0, 0.0]]})
    assert calls == ["HeadObject", "GetObject", "HeadObject"] and first == second
    put_model(aws, "r1", model_bytes({"W1": np.array([[-2.0, 1.0]]), "b1": np.array([[0.0]])}, ["sigmoid"]))
    calls.clear()
    third = predictor.handle({"run_id": "r1", "X": [[1.0, 0.0]]})
    assert calls == ["HeadObject", "GetObject"] and third["predictions"] == [0]
    aws.s3.delete_object(Bucket=aws.bucket, Key="runs/r1/model.npz")
    assert "no run r1" in predictor.handle({"run_id": "r1", "X": [[1.0, 0.0]]})["error"]


def function_url_event(body: str, *, base64_encoded: bool = False) -> dict:
    if base64_encoded:
        body = base64.b64encode(body.encode()).decode()
    return {
        "version": "2.0",
        "rawPath": "/",
        "requestContext": {"http": {"method": "POST", "path": "/"}},
        "headers": {"content-type": "application/json"},
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


def test_function_url_events_plain_and_base64(aws, predictor):
    put_model(aws, "r1", model_bytes(SIGMOID, ["sigmoid"]))
    request = json.dumps({"run_id": "r1", "X": [[1.0, 0.0]]})
    direct = predictor.handle(json.loads(request))
    for encoded in (False, True):
        response = predictor.handle(function_url_event(request, base64_encoded=encoded))
        assert response["statusCode"] == 200 and response["headers"] == {"content-type": "application/json"}
        assert json.loads(response["body"]) == direct
    bad = predictor.handle(function_url_event("{oops"))
    assert bad["statusCode"] == 400 and "not JSON" in json.loads(bad["body"])["error"]
    missing = predictor.handle(function_url_event(json.dumps({"run_id": "ghost", "X": [[1.0, 0.0]]})))
    assert missing["statusCode"] == 404
    not_base64 = function_url_event("!!!")
    not_base64["isBase64Encoded"] = True
    assert "base64" in json.loads(predictor.handle(not_base64)["body"])["error"]


def test_unreadable_model_is_an_error_not_a_trace(aws, predictor):
    put_model(aws, "junk", b"not an npz")
    assert "is not a readable LNN model" in predictor.handle({"run_id": "junk", "X": [[1.0]]})["error"]


def test_parse_rows_and_model_check_directly():
    assert parse_rows([[1, 2.5]]).dtype == np.float64
    model = Model.from_npz(model_bytes(SIGMOID, ["sigmoid"]))
    with pytest.raises(LnnInputError, match="takes 2"):
        model.answer(np.ones((1, 3)))
