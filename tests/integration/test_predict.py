"""The PredictLambda in the local runtime, after a short training run on the stack moto's CloudFormation created:
its answers, every bad request, the model cache (its requests counted: latency belongs in `make bench`), and
`lnn predict` remote versus on the client."""

import io
import json
from argparse import Namespace

import numpy as np
import pytest
from PIL import Image
from rich.console import Console

from lnn_cli import deployed_stack, predict_command
from lnn_cli.cloud.local import run_local
from lnn_cli.cloud.runtime import LocalLambdaRuntime, PayloadTooLarge
from lnn_core.predictor import SYNC_PAYLOAD_LIMIT, Model
from tests.integration.conftest import dataset

PARAMETERS = {
    "epochs": 4,
    "learning_rate": 0.5,
    "neurons": [4, 1],
    "activations": ["relu", "sigmoid"],
    "seed": 5,
    "granularity": "epoch",
    "init": "he",
}
IMAGE_SHAPE = (4, 4, 3)


def image_data(m=24, seed=1) -> bytes:
    """Tiny uint8 'images' (4x4 RGB): bright ones are class 'light', dark ones 'dark'."""
    rng = np.random.RandomState(seed)
    y = np.arange(m) % 2
    X = np.where(y[:, None] == 1, rng.randint(150, 256, (m, 48)), rng.randint(0, 100, (m, 48))).astype(np.uint8)
    buffer = io.BytesIO()
    np.savez(
        buffer, X=X, y=y.astype(np.float64), classes=np.array(["dark", "light"]), example_shape=np.array(IMAGE_SHAPE)
    )
    return buffer.getvalue()


@pytest.fixture(scope="module")
def trained(stack, tmp_path_factory):
    """Two succeeded runs (tabular and images), a run without a model, and a runtime serving the predictor."""
    session, outputs = stack
    assert outputs.predict_function and outputs.dashboard  # lnn local's deploy reads them from the outputs
    log = open(tmp_path_factory.mktemp("predict") / "lambda.log", "w")
    data, X, y = dataset()
    tabular = run_local(session, outputs, PARAMETERS, data, run_id="predict-tabular", log_stream=log)
    images = run_local(
        session, outputs, {**PARAMETERS, "epochs": 8}, image_data(), run_id="predict-images", log_stream=log
    )
    assert tabular.status == images.status == "succeeded"
    session.client("s3").put_object(Bucket=outputs.bucket, Key="runs/predict-untrained/data.npz", Body=data)
    runtime = LocalLambdaRuntime(session, {"predictor": outputs.predict_function}, log_stream=log)
    yield session, outputs, runtime, X, y
    log.close()


def invoke(runtime, payload):
    return runtime.invoke("predictor", payload)


def test_answer_and_the_same_numbers_as_the_client(trained):
    session, outputs, runtime, X, y = trained
    answer = invoke(runtime, {"run_id": "predict-tabular", "X": X.tolist()})
    assert answer["run_id"] == "predict-tabular" and answer["model_key"] == "runs/predict-tabular/model.npz"
    stack = deployed_stack.DeployedStack(session, outputs.stack_name)
    model = Model.from_npz(stack.ports.store.get_bytes(answer["model_key"]))
    client = model.answer(X)
    assert answer["probabilities"] == client["probabilities"]  # bit for bit: the same NumPy on the same float64 rows
    assert answer["predictions"] == client["predictions"]


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"run_id": "no-such-run", "X": [[0.0, 0.0, 0.0]]}, "there is no run no-such-run"),
        ({"run_id": "predict-untrained", "X": [[0.0, 0.0, 0.0]]}, "has no model yet"),
        (
            {"run_id": "predict-tabular", "X": [[0.0, 0.0]]},
            "X rows have 2 features but the model of run predict-tabular takes 3",
        ),
        ({"run_id": "predict-tabular", "X": [[0.0, float("nan"), 0.0]]}, "NaN"),
        ({"run_id": "predict-tabular", "X": [[0.0, 1.0, 2.0], [1.0]]}, "equal length"),
        ({"run_id": "predict-tabular", "X": [["a", 1.0, 2.0]]}, "not a number"),
        ({"run_id": "predict-tabular", "X": "rows"}, "X must be a non-empty list"),
        ({"run_id": "bad/id", "X": [[0.0, 0.0, 0.0]]}, "run id 'bad/id' is invalid"),
        ("not json at all", "not JSON"),
    ],
)
def test_every_bad_request_answers_one_sentence(trained, payload, message):
    _, _, runtime, _, _ = trained
    answer = invoke(runtime, payload)
    assert message in answer["error"] and "Traceback" not in answer["error"]
    assert set(answer) <= {"error", "run_id"}


def test_too_many_rows_are_refused_by_lambda_or_answered_with_how_many_fit(trained):
    _, _, runtime, _, _ = trained
    row = [0.1234567890123456, -0.9876543210987654, 0.5555555555555556]
    too_many = SYNC_PAYLOAD_LIMIT // len(json.dumps(row)) + 100
    with pytest.raises(PayloadTooLarge, match="synchronous invoke accepts at most 6291456"):
        invoke(runtime, {"run_id": "predict-tabular", "X": [row] * too_many})  # Lambda refuses before the handler
    handler = runtime.handler("predictor")  # a caller that bypasses the transport gets the handler's sentence
    answer = handler.handle({"run_id": "predict-tabular", "X": [row] * too_many})
    assert "send at most" in answer["error"] and "rows of this width per request" in answer["error"]


def test_a_warm_container_heads_the_model_and_gets_it_only_when_it_changed(trained):
    _, _, runtime, X, _ = trained
    calls = []
    runtime.handler("predictor").ports.store._client.meta.events.register(
        "before-call.s3.*", lambda model, **_: calls.append(model.name)
    )
    invoke(runtime, {"run_id": "predict-images", "X": [[0.5] * 48]})
    calls.clear()
    invoke(runtime, {"run_id": "predict-images", "X": [[0.5] * 48]})
    assert calls == ["HeadObject"]  # second call: no GET


def test_function_url_event_through_the_runtime(trained):
    _, _, runtime, X, _ = trained
    body = json.dumps({"run_id": "predict-tabular", "X": X[:2].tolist()})
    event = {"version": "2.0", "requestContext": {"http": {"method": "POST"}}, "body": body, "isBase64Encoded": False}
    response = invoke(runtime, event)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["predictions"] == invoke(runtime, json.loads(body))["predictions"]


def predict_output(stack, **arguments) -> str:
    console = Console(file=io.StringIO(), width=200)
    args = Namespace(**{"data": None, "image": None, "csv": False, "remote": False, "label_column": None, **arguments})
    assert predict_command.command_predict(args, stack, console) == 0
    return console.file.getvalue()


def test_lnn_predict_remote_equals_the_client(trained, tmp_path, capsys):
    session, outputs, runtime, X, y = trained
    stack = deployed_stack.DeployedStack(session, outputs.stack_name)
    stack.invoke_predictor = lambda payload: invoke(runtime, payload)  # the runtime's synchronous invoke
    data = tmp_path / "x.npz"
    np.savez(data, X=X, y=y)
    on_client = predict_output(stack, run_id="predict-tabular", data=str(data))
    assert predict_output(stack, run_id="predict-tabular", data=str(data), remote=True) == on_client
    assert "40 predictions" in on_client and "row 0: class" in on_client and "accuracy" in on_client
    predict_output(stack, run_id="predict-tabular", data=str(data), csv=True)
    client_csv = capsys.readouterr().out
    predict_output(stack, run_id="predict-tabular", data=str(data), csv=True, remote=True)
    assert capsys.readouterr().out == client_csv and len(client_csv.splitlines()) == 41

    images = []
    for index, value in enumerate((30, 220, 90)):
        path = tmp_path / f"image{index}.png"
        Image.new("RGB", (9, 7), (value, value, value)).save(path)  # any size: resized to the model's 4x4
        images.append(str(path))
    on_client = predict_output(stack, run_id="predict-images", image=images)
    assert predict_output(stack, run_id="predict-images", image=images, remote=True) == on_client
    assert "image0.png: class dark" in on_client and "image1.png: class light" in on_client


def test_a_fresh_container_gets_and_parses_the_model_once_then_only_heads_it(trained, monkeypatch):
    """What makes a warm call cheaper than a cold one, counted rather than timed (latency belongs in `make bench`):
    the cold call GETs and parses model.npz, each warm call HEADs it and answers from the container's cache."""
    session, outputs, _, _, _ = trained
    fresh = LocalLambdaRuntime(session, {"predictor": outputs.predict_function})
    handler = fresh.handler("predictor")
    requests, parsed = [], []
    handler.ports.store._client.meta.events.register("before-call.s3.*", lambda model, **_: requests.append(model.name))
    from_npz = Model.from_npz.__func__

    def parse(cls, data, **kwargs):
        parsed.append(kwargs.get("key"))
        return from_npz(cls, data, **kwargs)

    monkeypatch.setattr(Model, "from_npz", classmethod(parse))
    payload = {"run_id": "predict-tabular", "X": [[0.1, 0.2, 0.3]] * 10}
    cold = invoke(fresh, payload)
    assert requests == ["HeadObject", "GetObject"] and parsed == ["runs/predict-tabular/model.npz"]
    assert handler.cache.loads == 1
    for _ in range(20):
        requests.clear()
        assert invoke(fresh, payload) == cold
        assert requests == ["HeadObject"]  # no GET ...
    assert parsed == ["runs/predict-tabular/model.npz"] and handler.cache.loads == 1  # ... and no parse
    assert len(fresh.functions["predictor"].containers) == 1  # every call went to the one warm container
