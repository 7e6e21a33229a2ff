"""Sweep files: trials generated deterministically and validated as runs; every bad sweep file one clear line."""

import json

import pytest

from lnn_cli.sweeps.spec import MAX_TRIALS, Range, parse_spec, parse_vary, read_sweep_file, trial_run_id
from lnn_core.errors import LnnInputError

BASE = {"epochs": 5, "learning_rate": 0.01, "neurons": [4, 1], "activations": ["relu", "sigmoid"]}


def spec(content, **options):
    return parse_spec({"base": BASE, **content}, source="sweep.json", **options)


def test_grid_is_the_product_in_order():
    trials = spec({"parameters": {"optimizer": ["gd", "adam"], "batch_size": [8, 16, 32]}}).generate("s")
    assert [t.varied for t in trials][:4] == [
        {"optimizer": "gd", "batch_size": 8},
        {"optimizer": "gd", "batch_size": 16},
        {"optimizer": "gd", "batch_size": 32},
        {"optimizer": "adam", "batch_size": 8},
    ]
    assert len(trials) == 6
    assert [t.run_id for t in trials[:2]] == ["s-t001", "s-t002"]
    assert trials[0].parameters == {**BASE, "optimizer": "gd", "batch_size": 8, "sweep": "s"}  # its end kicks the sweep


def test_seeds_repeat_every_configuration():
    trials = spec({"parameters": {"optimizer": ["gd", "adam"]}, "seeds": [1, 2, 3]}).generate("s")
    assert [(t.varied["optimizer"], t.varied["seed"]) for t in trials] == [
        ("gd", 1),
        ("gd", 2),
        ("gd", 3),
        ("adam", 1),
        ("adam", 2),
        ("adam", 3),
    ]


def test_random_search_is_deterministic_and_within_its_ranges():
    content = {
        "parameters": {
            "learning_rate": {"low": 1e-4, "high": 0.1, "scale": "log"},
            "batch_size": {"low": 8, "high": 64, "scale": "log"},
            "optimizer": ["gd", "adam"],
        },
        "trials": 24,
        "search_seed": 3,
    }
    first, again = spec(content).generate("s"), spec(content).generate("s")
    assert [t.parameters for t in first] == [t.parameters for t in again]
    assert len(first) == 24
    rates = [t.varied["learning_rate"] for t in first]
    assert all(1e-4 <= rate <= 0.1 for rate in rates)
    assert min(rates) < 1e-3 and max(rates) > 1e-2  # log scale: spread over the decades
    assert all(isinstance(t.varied["batch_size"], int) and 8 <= t.varied["batch_size"] <= 64 for t in first)
    assert {t.varied["optimizer"] for t in first} == {"gd", "adam"}
    other = spec({**content, "search_seed": 4}).generate("s")
    assert [t.parameters for t in other] != [t.parameters for t in first]


def test_trials_flag_overrides_the_file():
    content = {"parameters": {"learning_rate": {"low": 0.001, "high": 0.1}}, "trials": 5}
    assert len(spec(content, trials=7).generate("s")) == 7


def test_a_linear_range_draws_uniformly():
    drawn = spec({"parameters": {"l2": {"low": 0, "high": 1}}, "trials": 200}).generate("s")
    values = [t.varied["l2"] for t in drawn]
    assert 0.4 < sum(values) / len(values) < 0.6


def test_the_spec_round_trips_through_its_json():
    content = {
        "parameters": {"learning_rate": {"low": 0.001, "high": 0.1, "scale": "log"}, "optimizer": ["gd", "adam"]},
        "trials": 4,
        "seeds": [1, 2],
        "search_seed": 9,
    }
    first = spec(content)
    again = parse_spec(first.to_json(), source="sweep.json")
    assert [t.parameters for t in again.generate("s")] == [t.parameters for t in first.generate("s")]


def test_vary_flags():
    assert parse_vary(["learning_rate=1e-4:0.1:log", "optimizer=gd,adam", "neurons=4/1,8/1"]) == {
        "learning_rate": {"low": 1e-4, "high": 0.1, "scale": "log"},
        "optimizer": ["gd", "adam"],
        "neurons": [[4, 1], [8, 1]],
    }


def test_yaml_and_json_files(tmp_path):
    (tmp_path / "s.yaml").write_text("base:\n  epochs: 3\nparameters:\n  optimizer: [gd, adam]\n")
    (tmp_path / "s.json").write_text(json.dumps({"base": {"epochs": 3}, "parameters": {"optimizer": ["gd", "adam"]}}))
    assert read_sweep_file(tmp_path / "s.yaml") == read_sweep_file(tmp_path / "s.json")


def test_range_draw_rounds_integers_into_the_range():
    import numpy as np

    values = {Range(1, 3, "log").draw(np.random.RandomState(seed), True) for seed in range(50)}
    assert values == {1, 2, 3}


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"parametres": {}}, "unknown key 'parametres'; a sweep file has name, base, parameters"),
        ({"base": [1]}, "base must be an object of parameters"),
        ({"parameters": ["learning_rate"]}, "parameters must be an object"),
        (
            {"parameters": {"learning_rat": [0.1]}},
            "parameters.learning_rat is not a training parameter that can vary; use one of",
        ),
        ({"parameters": {"layers": [2, 3]}}, "parameters.layers is not a training parameter that can vary"),
        ({"parameters": {"optimizer": []}}, "parameters.optimizer is an empty list; give at least one value"),
        ({"parameters": {"optimizer": "adam"}}, "parameters.optimizer must be a list of values; got 'adam'"),
        (
            {"parameters": {"learning_rate": 0.1}},
            "parameters.learning_rate must be a list of values or a {low, high, scale} range",
        ),
        (
            {"parameters": {"optimizer": {"low": 1, "high": 2}}, "trials": 2},
            "parameters.optimizer is one of gd, momentum, adam, which has no range",
        ),
        (
            {"parameters": {"learning_rate": {"low": 0.1}}, "trials": 2},
            'parameters.learning_rate must be a range {"low": L',
        ),
        (
            {"parameters": {"learning_rate": {"low": 0.1, "high": 1, "scale": "ln"}}, "trials": 2},
            "parameters.learning_rate.scale must be linear or log; got 'ln'",
        ),
        (
            {"parameters": {"learning_rate": {"low": 0.1, "high": 20}}, "trials": 2},
            "parameters.learning_rate.high: learning_rate must be a number in (0, 10]; got 20",
        ),
        (
            {"parameters": {"learning_rate": {"low": 0.1, "high": 0.01}}, "trials": 2},
            "parameters.learning_rate has low 0.1 above high 0.01; swap them",
        ),
        (
            {"parameters": {"l2": {"low": 0, "high": 1, "scale": "log"}}, "trials": 2},
            "parameters.l2 has a log scale but low 0; a log range needs low > 0",
        ),
        (
            {"parameters": {"batch_size": {"low": 2.5, "high": 8}}, "trials": 2},
            "parameters.batch_size.low: batch_size must be an integer from 1 to 10000000; got 2.5",
        ),
        (
            {"parameters": {"learning_rate": {"low": 0.001, "high": 0.1}}},
            "parameters.learning_rate is a range, which a random search draws from; give trials N",
        ),
        (
            {"parameters": {"optimizer": ["gd"]}, "trials": 0},
            f"trials must be an integer from 1 to {MAX_TRIALS}; got 0",
        ),
        ({"parameters": {"optimizer": ["gd"]}, "trials": "5"}, "trials must be an integer from 1"),
        ({"parameters": {"optimizer": ["gd"]}, "search_seed": -1}, "search_seed must be an integer from 0 to"),
        ({"parameters": {"optimizer": ["gd"]}, "seeds": 3}, "seeds must be a list of integers"),
        ({"parameters": {"seed": [1, 2]}, "seeds": [3]}, "seed is varied twice, in parameters and in seeds; keep one"),
        ({"seeds": [-1]}, "seed must be an integer from 0 to"),
        ({}, "nothing varies; give parameters (per parameter a list or a range) or seeds"),
        ({"seeds": [1], "trials": 3}, "trials 3 draws from parameters, but none are given"),
        ({"name": "bad name", "seeds": [1]}, "sweep name 'bad name' is invalid"),
        ({"name": "x" * 60, "seeds": [1]}, "sweep name 'xxxx"),
    ],
)
def test_bad_sweep_files_are_one_clear_line(content, expected):
    with pytest.raises(LnnInputError) as raised:
        spec(content)
    assert expected in str(raised.value)
    assert "\n" not in str(raised.value) and str(raised.value).startswith(("sweep.json: ", "seed ", "sweep name"))


@pytest.mark.parametrize(
    "content, expected",
    [
        (
            {"parameters": {"optimizer": ["gd", "sgd"]}},
            "sweep trial 2 (optimizer='sgd') is not a valid run: "
            "optimizer must be one of gd, momentum, adam; got 'sgd'",
        ),
        (
            {"parameters": {"neurons": [[4, 1], [4, 2]]}},
            "sweep trial 2 (neurons=[4, 2]) is not a valid run: a sigmoid output needs 1 neuron, not 2",
        ),
        (
            {"parameters": {"batch_size": [16, 0]}},
            "sweep trial 2 (batch_size=0) is not a valid run: batch_size must be an integer from 1",
        ),
        (
            {"parameters": {"optimizer": ["gd"] * 11}, "seeds": list(range(100))},
            f"the sweep has 1100 trials, more than {MAX_TRIALS}",
        ),
    ],
)
def test_invalid_trials_are_refused_before_anything_starts(content, expected):
    with pytest.raises(LnnInputError) as raised:
        spec(content).generate("s")
    assert expected in str(raised.value)


@pytest.mark.parametrize(
    "write, expected",
    [
        (None, "sweep file {path} does not exist; give a sweep file"),
        ("{not json", "sweep file {path} is not valid JSON ("),
        ("[1, 2]", "sweep file {path} must hold an object with base, parameters"),
    ],
)
def test_bad_sweep_file_contents(tmp_path, write, expected):
    path = tmp_path / "sweep.json"
    if write is not None:
        path.write_text(write)
    with pytest.raises(LnnInputError) as raised:
        read_sweep_file(path)
    assert str(raised.value).startswith(expected.format(path=path))


def test_bad_yaml(tmp_path):
    path = tmp_path / "sweep.yaml"
    path.write_text("base: [1\n")
    with pytest.raises(LnnInputError, match="is not valid YAML"):
        read_sweep_file(path)


def test_bad_vary_flags():
    with pytest.raises(LnnInputError, match="must be NAME=a,b,c or NAME=LOW:HIGH"):
        parse_vary(["learning_rate"])
    with pytest.raises(LnnInputError, match="a range is LOW:HIGH or LOW:HIGH:log"):
        parse_vary(["learning_rate=1:2:log:x"])


def test_trial_run_ids():
    assert trial_run_id("cats", 7) == "cats-t007"
