"""`lnn predict --model FILE.npz`: a model file, no stack; the CSV's probability columns name their class."""

import csv
import io

import numpy as np
import pytest

from lnn_cli.main import main
from tests.support.cli import assert_one_line_error


def model_file(path, activations, classes=None, **params):
    """A model.npz as a run leaves it: W1, b1, ..., activations (and classes)."""
    extra = {} if classes is None else {"classes": np.array(classes)}
    np.savez(path, **params, activations=np.array(activations), config=np.array("{}"), **extra)
    return str(path)


@pytest.fixture
def no_stack(monkeypatch):
    """Nothing answers at AWS_ENDPOINT_URL: a command that needed a stack would fail."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://localhost:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")


X = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, -1.0]])


def test_a_sigmoid_model_file_names_its_positive_class(tmp_path, capsys, no_stack):
    model = model_file(
        tmp_path / "model.npz", ["sigmoid"], ["non-cat", "cat"], W1=np.array([[2.0, -1.0]]), b1=np.array([[0.0]])
    )
    np.savez(tmp_path / "x.npz", X=X, y=np.array([1, 0, 1]))
    assert main(["predict", "--model", model, "--data", str(tmp_path / "x.npz"), "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["row", "prediction", "p_cat"]
    p_cat = 1 / (1 + np.exp(-(X @ np.array([2.0, -1.0]))))
    assert [row[1] for row in rows[1:]] == ["cat", "non-cat", "cat"]
    assert np.allclose([float(row[2]) for row in rows[1:]], p_cat, rtol=0, atol=1e-15)
    assert main(["predict", "--model", model, "--data", str(tmp_path / "x.npz")]) == 0
    shown = " ".join(capsys.readouterr().out.split())  # the console wraps at its width
    assert f"3 predictions with the model {model} (class cat: 2, class non-cat: 1)" in shown
    assert "accuracy against the file's labels: 100.0%" in shown


def test_a_softmax_model_file_has_a_column_per_class(tmp_path, capsys, no_stack):
    W1 = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    model = model_file(tmp_path / "model.npz", ["softmax"], W1=W1, b1=np.zeros((3, 1)))
    np.savez(tmp_path / "x.npz", X=X)
    assert main(["predict", "--model", model, "--data", str(tmp_path / "x.npz"), "--csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert rows[0] == ["row", "prediction", "p_0", "p_1", "p_2"]
    probabilities = np.array([[float(value) for value in row[2:]] for row in rows[1:]])
    assert np.allclose(probabilities.sum(axis=1), 1.0) and [row[1] for row in rows[1:]] == ["0", "1", "0"]


@pytest.mark.parametrize(
    "arguments, fragments",
    [
        (["--data", "x.npz"], ["give the model to predict with: a RUN_ID", "--model FILE.npz"]),
        (
            ["some-run", "--model", "m.npz", "--data", "x.npz"],
            ["give a run id (some-run) or --model FILE.npz, not both"],
        ),
        (["--model", "m.npz", "--remote", "--data", "x.npz"], ["leave out --remote"]),
        (["--model", "missing.npz", "--data", "x.npz"], ["--model missing.npz does not exist"]),
        (["--model", ".", "--data", "x.npz"], ["is a directory"]),
    ],
)
def test_predict_without_a_usable_model(tmp_path, monkeypatch, capsys, no_stack, arguments, fragments):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.npz").write_bytes(b"junk")
    assert_one_line_error(capsys, main(["predict", *arguments]), *fragments)


def test_a_file_that_is_not_a_model(tmp_path, capsys, no_stack):
    (tmp_path / "m.npz").write_bytes(b"junk")
    np.savez(tmp_path / "x.npz", X=X)
    line = assert_one_line_error(
        capsys,
        main(["predict", "--model", str(tmp_path / "m.npz"), "--data", str(tmp_path / "x.npz")]),
        "is not a readable LNN model (not an .npz archive); an LNN model is the model.npz a run writes",
    )
    assert "pickle" not in line  # np.load's advice to load a pickle, for a file that is no model at all
