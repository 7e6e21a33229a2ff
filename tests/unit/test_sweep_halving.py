"""Successive halving's choices against a hand-worked example, and its sweep-file checks."""

import pytest

from lnn_cli.sweeps.commands import checked_trials
from lnn_cli.sweeps.spec import parse_spec
from lnn_core.errors import LnnInputError
from lnn_core.launch.launcher import LaunchLimits
from lnn_core.sweep.halving import Halving, arrivals, parse_halving, rung_reports, stops
from tests.conftest import blobs
from tests.support.arrays import npz_bytes

ORDER = {"A": 1, "B": 2, "C": 3, "D": 4, "E": 5}


def test_the_hand_worked_example():
    """keep 0.5 (so 2 arrivals before any stop), rungs 10 and 20. At rung 10 they arrive A, B, C, D:
    A 0.30: 1 arrived, fewer than 2: continues.
    B 0.50: of A, B it ranks 2nd; ceil(2 * 0.5) = 1 continue: B stops at 10.
    C 0.40: of A, B, C (0.30, 0.40, 0.50) it ranks 2nd; ceil(1.5) = 2 continue: C continues.
    D 0.60: of the 4 it ranks 4th; 2 continue: D stops at 10.
    At rung 20, C arrives before A: C 0.20 continues (1 arrived); A 0.25 ranks 2nd of 2, 1 continues: A stops at 20.
    E reaches rung 10 last (0.10): first of 5, continues."""
    reports = {
        "A": {10: ("t01", 0.30), 20: ("t07", 0.25)},
        "B": {10: ("t02", 0.50)},
        "C": {10: ("t03", 0.40), 20: ("t06", 0.20)},
        "D": {10: ("t04", 0.60)},
        "E": {10: ("t05", 0.10)},
    }
    decided = stops(Halving((10, 20), 0.5), reports, ORDER)
    assert {run_id: (stop.rung, stop.rank, stop.arrived, stop.kept) for run_id, stop in decided.items()} == {
        "B": (10, 2, 2, 1),
        "D": (10, 4, 4, 2),
        "A": (20, 2, 2, 1),
    }
    assert (
        decided["B"].reason
        == "stopped by successive halving at epoch 10: validation cost 0.5 ranked 2 of 2, 1 continue"
    )


def test_a_decision_is_never_revised_by_later_arrivals():
    """C was kept at rung 10 on arrival; E arriving later with a better cost does not stop C after the fact."""
    early = {"A": {10: ("t1", 0.3)}, "C": {10: ("t2", 0.4)}}
    assert "C" in stops(Halving((10,), 0.5), early, ORDER)  # 2nd of 2: stops
    kept = {"A": {10: ("t1", 0.3)}, "B": {10: ("t2", 0.5)}, "C": {10: ("t3", 0.4)}, "E": {10: ("t4", 0.1)}}
    assert "C" not in stops(Halving((10,), 0.5), kept, ORDER)


def test_ties_go_to_the_earlier_trial():
    reports = {"A": {10: ("t1", 0.3)}, "B": {10: ("t2", 0.3)}}
    assert list(stops(Halving((10,), 0.5), reports, ORDER)) == ["B"]


def test_rung_reports_read_the_epoch_items():
    items = [
        {"epoch": 9, "cost": 1.0},
        {"epoch": 10, "cost": 0.9, "validation_cost": 0.7, "finished_at": "t"},
        {"epoch": 20, "cost": 0.8},
    ]
    assert rung_reports(Halving((10, 20), 0.5), items) == {10: ("t", 0.7)}


BASE = {"epochs": 100, "validation_split": 0.2, "eval_every": 10}


@pytest.mark.parametrize(
    "value, base, expected",
    [
        ({"rungs": [10]}, BASE, 'halving must be {"rungs": [epochs, ...], "keep": fraction}'),
        ({"rungs": [20, 10], "keep": 0.5}, BASE, "halving.rungs must be increasing epoch numbers"),
        ({"rungs": [10], "keep": 1}, BASE, "halving.keep must be the fraction that continues at a rung, in (0, 1)"),
        (
            {"rungs": [10], "keep": 0.5},
            {**BASE, "validation_split": 0},
            "halving compares validation costs; give base a validation_split",
        ),
        ({"rungs": [15], "keep": 0.5}, BASE, "give base an eval_every that divides each of [15] (got eval_every 10)"),
        ({"rungs": [100], "keep": 0.5}, BASE, "halving's last rung 100 must be before the last epoch (100)"),
        (
            {"rungs": [10], "keep": 0.5},
            {**BASE, "granularity": "auto"},
            "granularity auto commits many epochs at once; use granularity epoch or layer",
        ),
    ],
)
def test_bad_halving_is_one_clear_line(value, base, expected):
    with pytest.raises(LnnInputError) as raised:
        parse_halving(value, source="sweep.json", base=base)
    assert str(raised.value).startswith("sweep.json: ") and expected in str(raised.value)


def test_halving_refuses_a_varied_granularity_auto():
    """An auto step commits many epochs at once: its rung arrives with later epochs, out of order with the others."""
    content = {"base": {**BASE, "granularity": "epoch"}, "parameters": {"granularity": ["epoch", "auto"]}}
    with pytest.raises(LnnInputError, match="^s.json: halving judges .* use granularity epoch or layer$"):
        parse_spec({**content, "halving": {"rungs": [10], "keep": 0.5}}, source="s.json")
    assert parse_spec({**content, "parameters": {"granularity": ["epoch", "layer"]}}, source="s.json")


def test_halving_refuses_a_stack_whose_default_granularity_is_auto(tmp_path):
    """The base names no granularity and the stack's default is auto: the trials are checked with it."""
    X, y = blobs(40, features=3)
    data = tmp_path / "data.npz"
    data.write_bytes(npz_bytes(X=X, y=y))
    base = {**BASE, "epochs": 20, "neurons": [3, 1], "activations": ["tanh", "sigmoid"], "learning_rate": 0.3}
    spec = parse_spec({"base": base, "seeds": [1, 2], "halving": {"rungs": [10], "keep": 0.5}}, source="s.json")
    with pytest.raises(
        LnnInputError, match=r"^sweep trial 1 \(sw-t001\) is not a valid run: halving: .* epoch or layer$"
    ):
        checked_trials(
            spec, "sw", str(data), defaults={"granularity": "auto"}, limits=LaunchLimits(), label_column=None
        )
    trials, _ = checked_trials(spec, "sw", str(data), defaults={}, limits=LaunchLimits(), label_column=None)
    assert len(trials) == 2


def test_a_late_arrival_comes_after_the_recorded_ones_and_decisions_stand():
    """C's rung item finished first but was seen after a pass recorded A, B: it arrives third. B's stop stands, and C,
    worst of three, is stopped (ordered by finish time alone, C would come first and nothing would be decided)."""
    halving, recorded = Halving((10,), 0.5), {"10": ["A", "B"]}
    reports = {"A": {10: ("t2", 1.0)}, "B": {10: ("t3", 2.0)}, "C": {10: ("t1", 3.0)}}
    arrived = arrivals(halving, reports, ORDER, recorded)
    assert arrived == {"10": ["A", "B", "C"]}
    assert set(stops(halving, reports, ORDER, arrived)) == {"B", "C"}
    assert set(stops(halving, reports, ORDER)) == set()
