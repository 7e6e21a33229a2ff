"""LNN's data files besides .npz: HDF5 and CSV, converted on the client; `lnn convert`; a regression model's predict."""

import io
from argparse import Namespace
from types import SimpleNamespace

import h5py
import numpy as np
import pytest
from rich.console import Console

from lnn_cli import predict_command
from lnn_cli.inputs import (
    DEMO_CONFIG,
    read_config,
    read_data,
    read_prediction_data,
    validate_run,
)
from lnn_cli.main import main
from lnn_core.errors import LnnInputError
from tests.support.cli import assert_one_line_error

DEMO_PARAMETERS = read_config(DEMO_CONFIG)  # `make demo`'s parameters

CLASSES = np.array([b"non-cat", b"cat"], dtype="|S7")


def images(m: int, seed: int) -> np.ndarray:
    """uint8 (m, 64, 64, 3) images scaled down to (m, 8, 8, 3), as LNN's datasets.h5 holds them but small."""
    return np.random.RandomState(seed).randint(0, 256, size=(m, 8, 8, 3)).astype(np.uint8)


def lnn_h5(path, *, m=12, m_test=4, test=True, classes=True, **override):
    """An HDF5 in the layout of LNN's datasets.h5: train_set_x/_y, test_set_x/_y, list_classes."""
    datasets = {"train_set_x": images(m, 1), "train_set_y": np.arange(m, dtype=np.int64) % 2}
    if test:
        datasets |= {"test_set_x": images(m_test, 2), "test_set_y": np.arange(m_test, dtype=np.int64) % 2}
    if classes:
        datasets["list_classes"] = CLASSES
    datasets |= override
    with h5py.File(path, "w") as h5:
        for name, value in datasets.items():
            if value is not None:
                h5.create_dataset(name, data=value)
    return str(path)


def npz_arrays(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {name: npz[name] for name in npz.files}


# ---- HDF5 -----------------------------------------------------------------------------------------------------


def test_lnn_hdf5_is_flattened_per_example_and_keeps_classes_and_the_example_shape(tmp_path):
    path = lnn_h5(tmp_path / "datasets.h5")
    data, checked = read_data(path)
    arrays = npz_arrays(data)
    assert set(arrays) == {"X", "y", "X_test", "y_test", "classes", "example_shape"}
    assert arrays["X"].dtype == np.uint8 and arrays["X"].shape == (12, 192)  # uint8 kept: the loader scales it
    assert np.array_equal(arrays["X"], images(12, 1).reshape(12, -1))
    assert arrays["classes"].tolist() == ["non-cat", "cat"] and arrays["example_shape"].tolist() == [8, 8, 3]
    assert checked.X.dtype == np.float64 and np.allclose(checked.X, images(12, 1).reshape(12, -1) / 255.0)
    assert checked.X_test.shape == (4, 192) and checked.y_test.tolist() == [0, 1, 0, 1]
    assert checked.classes == ("non-cat", "cat") and checked.example_shape == (8, 8, 3)


def test_an_hdf5_trains_through_the_cli_input_path(tmp_path):
    inputs = validate_run({**DEMO_PARAMETERS, "batch_size": 4}, lnn_h5(tmp_path / "datasets.h5"))
    assert inputs.training_data.X.shape == (12, 192) and inputs.config.batch_size == 4
    assert npz_arrays(inputs.data)["classes"].tolist() == ["non-cat", "cat"]  # the uploaded bytes are the .npz


def test_hdf5_variants_train_only_test_only_and_the_course_label_layout(tmp_path):
    _, train_only = read_data(lnn_h5(tmp_path / "train.h5", test=False, classes=False))
    assert train_only.X_test is None and train_only.classes is None and train_only.example_shape == (8, 8, 3)
    _, test_only = read_data(lnn_h5(tmp_path / "test_catvnoncat.h5", train_set_x=None, train_set_y=None))
    assert test_only.X.shape == (4, 192) and test_only.X_test is None
    _, row = read_data(lnn_h5(tmp_path / "row.h5", train_set_y=(np.arange(12) % 2).reshape(1, 12)))
    assert row.y.shape == (12,)


def test_prediction_data_may_be_an_hdf5(tmp_path):
    X, y = read_prediction_data(lnn_h5(tmp_path / "datasets.h5"))
    assert X.shape == (12, 192) and y.shape == (12,)


# ---- CSV ------------------------------------------------------------------------------------------------------


def test_csv_without_a_header_the_label_is_the_last_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("1,2,0\n3,4,1\n\n5.5,-6e-1,1\n")
    _, data = read_data(path)
    assert data.X.tolist() == [[1, 2], [3, 4], [5.5, -0.6]] and data.y.tolist() == [0, 1, 1]


def test_csv_with_a_header_and_a_named_or_indexed_label_column(tmp_path):
    path = tmp_path / "data.csv"
    path.write_text("label,a,b\n0,1,2\n1,3,4\n")
    for label_column in ("label", "0", "-3"):
        _, data = read_data(path, label_column=label_column)
        assert data.X.tolist() == [[1, 2], [3, 4]] and data.y.tolist() == [0, 1], label_column
    _, last = read_data(path)  # the default: the last column, b
    assert last.y.tolist() == [2, 4]
    _, middle = read_data(path, label_column="a")
    assert middle.X.tolist() == [[0, 2], [1, 4]]


def test_csv_regression_targets_train_a_linear_output(tmp_path):
    path = tmp_path / "houses.csv"
    path.write_text("rooms,area,price\n3,70.5,250.25\n4,99,310.5\n2,40,180\n")
    inputs = validate_run({**DEMO_PARAMETERS, "neurons": [4, 1], "activations": ["relu", "linear"]}, path)
    assert inputs.training_data.y.tolist() == [250.25, 310.5, 180.0] and inputs.config.regression


def test_csv_through_lnn_local_with_a_label_column(tmp_path, monkeypatch):
    import lnn_cli.main as cli_main
    from lnn_stack.settings.training import TrainingDefaults

    seen = {}

    def fake_local(args, parameters, console):
        seen["inputs"] = validate_run(
            parameters, args.data, defaults=TrainingDefaults().to_parameters(), label_column=args.label_column
        )
        return 0

    monkeypatch.setattr(cli_main, "command_local", fake_local)
    path = tmp_path / "data.csv"
    path.write_text("y,f1,f2\n" + "".join(f"{i % 2},{i},{i * 2}\n" for i in range(6)))
    assert main(["local", "--data", str(path), "--label-column", "y"]) == 0
    assert seen["inputs"].training_data.X.shape == (6, 2) and seen["inputs"].training_data.y.tolist() == [0, 1] * 3


# ---- bad files: exit 2, one line, nothing created -------------------------------------------------------------


def write(path, content):
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    return str(path)


BAD_FILES = [
    (lambda tmp: lnn_h5(tmp / "no-x.h5", train_set_x=None, test=False), [], ["lacks the HDF5 dataset 'train_set_x'"]),
    (lambda tmp: lnn_h5(tmp / "no-y.h5", train_set_y=None), [], ["lacks the HDF5 dataset 'train_set_y'"]),
    (lambda tmp: lnn_h5(tmp / "no-test-y.h5", test_set_y=None), [], ["lacks the HDF5 dataset 'test_set_y'"]),
    (
        lambda tmp: lnn_h5(tmp / "rows.h5", train_set_y=np.zeros(5, np.int64)),
        [],
        ["train_set_x has 12 examples but train_set_y"],
    ),
    (
        lambda tmp: lnn_h5(tmp / "shape.h5", test_set_x=np.zeros((4, 4, 4, 3), np.uint8)),
        [],
        ["test_set_x's examples have shape"],
    ),
    (
        lambda tmp: lnn_h5(tmp / "three.h5", list_classes=np.array([b"a", b"b", b"c"])),
        [],
        ["the data has 3 classes (a, b, c) but a sigmoid output", "use a softmax output of 3 neurons"],
    ),
    (
        lambda tmp: lnn_h5(tmp / "labels.h5", train_set_y=np.arange(12, dtype=np.int64) % 3, classes=False),
        [],
        ["class labels 0..1 for a sigmoid output", "from 0 to 2; use a softmax output of 3 neurons"],
    ),
    (
        lambda tmp: write(tmp / "broken.h5", b"\x89HDF\r\n\x1a\n" + bytes(64)),
        [],
        ["is not a readable HDF5 file", "; give an .npz"],
    ),
    (lambda tmp: write(tmp / "text.h5", "not hdf5"), [], ["is not a readable HDF5 file"]),
    (lambda tmp: write(tmp / "ragged.csv", "1,2,0\n3,0\n"), [], ["line 2 has 2 cells but line 1 has 3"]),
    (
        lambda tmp: write(tmp / "ragged-header.csv", "a,b,y\n1,2,0\n3,4,5,0\n"),
        [],
        ["line 3 has 4 cells but the header has 3"],
    ),
    (
        lambda tmp: write(tmp / "word.csv", "a,b,y\n1,2,0\n3,four,1\n"),
        [],
        ["line 3, column 2 ('b') holds 'four', which is not a number"],
    ),
    (lambda tmp: write(tmp / "empty.csv", "\n\n"), [], ["is empty"]),
    (
        lambda tmp: write(tmp / "header-only.csv", "a,b,y\n"),
        [],
        ["has a header row but no examples; add one example per row"],
    ),
    (lambda tmp: write(tmp / "one.csv", "1\n2\n"), [], ["needs at least one feature column and a label column"]),
    (lambda tmp: write(tmp / "binary.csv", b"\xff\xfe\x00a"), [], ["is not a text (UTF-8) CSV file"]),
    (lambda tmp: write(tmp / "three.csv", "1,2,0\n3,4,2\n"), [], ["class labels 0..1"]),
    (
        lambda tmp: write(tmp / "real.csv", "1,2,0\n3,4,0.5\n"),
        [],
        ["from 0 to 0.5; relabel the classes 0..1, or use a linear output for real-valued targets"],
    ),
    (
        lambda tmp: write(tmp / "named.csv", "a,b,y\n1,2,0\n"),
        ["--label-column", "label"],
        ["--label-column 'label' is not a column", "its columns are a, b, y"],
    ),
    (
        lambda tmp: write(tmp / "noheader.csv", "1,2,0\n"),
        ["--label-column", "y"],
        ["it has no header row, so give a column index"],
    ),
    (
        lambda tmp: write(tmp / "range.csv", "1,2,0\n"),
        ["--label-column", "3"],
        ["--label-column 3 is out of range", "3 columns"],
    ),
    (lambda tmp: lnn_h5(tmp / "label.h5"), ["--label-column", "0"], ["--label-column is for CSV files"]),
    (lambda tmp: write(tmp / "data.json", "{}"), [], ["is not a file LNN reads", "HDF5", "CSV"]),
]


@pytest.mark.parametrize("make_file, extra, fragments", BAD_FILES)
def test_every_bad_file_is_one_line_and_exit_2_before_anything_starts(tmp_path, capsys, make_file, extra, fragments):
    out_dir = tmp_path / "out"
    path = make_file(tmp_path)
    assert_one_line_error(capsys, main(["local", "--out", str(out_dir), "--data", path, *extra]), *fragments)
    assert not out_dir.exists()
    if any("class" in fragment for fragment in fragments):
        return  # labels against the output layer: `lnn convert` has no network to check them against
    converted = tmp_path / "converted.npz"
    assert_one_line_error(capsys, main(["convert", path, str(converted), *extra]), *fragments)
    assert not converted.exists()


def test_an_h5_given_as_npz_data_is_no_longer_called_pickled(tmp_path, capsys):
    path = lnn_h5(tmp_path / "datasets.npz")  # an HDF5 under an .npz name: read as HDF5 by its content
    _, data = read_data(path)
    assert data.X.shape == (12, 192)
    with pytest.raises(LnnInputError) as caught:
        read_prediction_data(write(tmp_path / "junk.bin", "junk"))
    assert "pickle" not in str(caught.value)


# ---- lnn convert ----------------------------------------------------------------------------------------------


def test_convert_writes_the_npz_that_start_would_upload(tmp_path, capsys):
    h5 = lnn_h5(tmp_path / "datasets.h5")
    out = tmp_path / "datasets.npz"
    assert main(["convert", h5, str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    arrays = npz_arrays(out.read_bytes())
    assert arrays["X"].shape == (12, 192) and arrays["classes"].tolist() == ["non-cat", "cat"]
    assert out.read_bytes() == read_data(h5)[0]  # byte for byte what `lnn start` uploads
    csv_file = write(tmp_path / "data.csv", "label,a\n1,0.5\n0,0.25\n")
    assert main(["convert", csv_file, str(tmp_path / "csv.npz"), "--label-column", "label"]) == 0
    assert npz_arrays((tmp_path / "csv.npz").read_bytes())["y"].tolist() == [1, 0]


def test_convert_refuses_an_output_that_is_not_npz_and_writes_nothing(tmp_path, capsys):
    h5 = lnn_h5(tmp_path / "datasets.h5")
    assert_one_line_error(capsys, main(["convert", h5, str(tmp_path / "out.csv")]), "must be an .npz file")
    assert_one_line_error(capsys, main(["convert", h5, str(tmp_path / "missing" / "out.npz")]), "cannot be written")
    assert not (tmp_path / "out.csv").exists() and not (tmp_path / "missing").exists()


def test_convert_of_a_missing_input_names_its_own_arguments_not_another_commands_flag(tmp_path, capsys):
    status = main(["convert", str(tmp_path / "absent.h5"), str(tmp_path / "out.npz")])
    message = assert_one_line_error(capsys, status, "absent.h5 does not exist")
    assert "lnn convert IN OUT.npz" in message and "--data" not in message
    assert not (tmp_path / "out.npz").exists()


# ---- predict with a regression model -------------------------------------------------------------------------


def fake_stack(params: dict[str, np.ndarray], activations: list[str]):
    buffer = io.BytesIO()
    np.savez(buffer, **params, activations=np.array(activations), config=np.array("{}"))
    run = {"run_id": "r", "status": "succeeded", "model_epoch": 3, "final": {"model_key": "runs/r/model.npz"}}
    store = SimpleNamespace(get_bytes=lambda key, **_: buffer.getvalue())
    return SimpleNamespace(run=lambda run_id: run, ports=SimpleNamespace(store=store))


def predict_output(stack, data, csv=False) -> str:
    console = Console(file=io.StringIO(), width=200)
    assert (
        predict_command.command_predict(Namespace(run_id="r", data=data, csv=csv, label_column=None), stack, console)
        == 0
    )
    return console.file.getvalue()


def test_predict_for_a_regression_model_shows_values_rmse_and_r2(tmp_path, capsys):
    params = {"W1": np.array([[2.0, -1.0]]), "b1": np.array([[0.5]])}
    stack = fake_stack(params, ["linear"])
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    exact = X @ np.array([2.0, -1.0]) + 0.5  # 2.5, -0.5, 1.5
    labelled = tmp_path / "labelled.npz"
    np.savez(labelled, X=X, y=exact + np.array([0.1, -0.1, 0.0]))
    text = predict_output(stack, str(labelled))
    assert "3 predictions" in text and "regression" in text and "2.5" in text and "accuracy" not in text
    rmse = float(np.sqrt(np.mean(np.array([0.1, -0.1, 0.0]) ** 2)))
    assert f"RMSE {rmse:.6g}" in text and "R² 0.99" in text
    unlabelled = tmp_path / "x.npz"
    np.savez(unlabelled, X=X)
    assert "RMSE" not in predict_output(stack, str(unlabelled))
    predict_output(stack, str(unlabelled), csv=True)
    assert capsys.readouterr().out.splitlines() == ["row,prediction", "0,2.5", "1,-0.5", "2,1.5"]


def test_predict_for_a_classification_model_still_reports_accuracy(tmp_path):
    stack = fake_stack({"W1": np.array([[5.0]]), "b1": np.array([[-2.5]])}, ["sigmoid"])
    data = tmp_path / "d.npz"
    np.savez(data, X=np.array([[0.0], [1.0]]), y=np.array([0, 0]))
    text = predict_output(stack, str(data))
    assert "class 0: 1, class 1: 1" in text and "accuracy against the file's labels: 50.0%" in text
