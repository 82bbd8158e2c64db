"""``bp_triplet.tune``: every row gets every setting of the grid, probe-only axes are not re-run for rows that train
on no pseudo label, and the choice is the setting with the best mean over the rows (hand-computed)."""
from __future__ import annotations

import json

import pytest

from bp_triplet import tune


def test_trained_setting_drops_probe_only_axes_for_pseudo_free_rows():
    grid = {"axes": {"optim.lr": [0.1], "pseudo.threshold": [0.9]}, "probe_only": ["pseudo.threshold"]}
    st = {"optim.lr": 0.1, "pseudo.threshold": 0.9}
    assert tune.trained_setting("dann", st, grid) == {"optim.lr": 0.1}
    assert tune.trained_setting("source_only", st, grid) == {"optim.lr": 0.1}
    assert tune.trained_setting("bp_triplet", st, grid) == st
    assert len(tune.settings({"axes": {"a": [1, 2], "b": [3, 4, 5]}})) == 6
    grid2 = {"axes": {"adv.weight": [0.5], "pseudo.threshold": [0.5]}, "probe_only": ["pseudo.threshold"]}
    st2 = {"adv.weight": 0.5, "pseudo.threshold": 0.5}
    assert tune.trained_setting("source_only", st2, grid2) == {}  # no adversarial loss, no pseudo labels
    assert tune.trained_setting("dann", st2, grid2) == {"adv.weight": 0.5}
    assert tune.trained_setting("bp_no_adv", st2, grid2) == {"pseudo.threshold": 0.5}


def test_search_table_and_choice(tmp_path, monkeypatch):
    # a stand-in for a training run with a known score: lr 0.02 helps the triplet rows, hurts the others
    calls = []

    def fake_run_one(method, seed, run_root, quick, extra):
        calls.append((method, seed, tuple(extra)))
        lr = float(next(e for e in extra if e.startswith("optim.lr=")).split("=")[1])
        thr = [float(e.split("=")[1]) for e in extra if e.startswith("pseudo.threshold=")] or [0.9]
        base = {"source_only": 60.0, "dann": 70.0, "plain_triplet": 72.0, "bp_triplet": 74.0}[method]
        bonus = (10.0 if lr == 0.02 else 0.0) if "triplet" in method else (-2.0 if lr == 0.02 else 0.0)
        score = base + bonus + (thr[0] - 0.9) * 100 + seed - 100  # threshold 0.97: +7 for the triplet rows
        return {"target_top1": score, "a_distance": 1.0, "lambda_star": 5.0}

    monkeypatch.setattr(tune, "run_one", fake_run_one)
    log = tmp_path / "t.jsonl"
    table, best = tune.search("main", [100, 101], ["source_only", "dann", "plain_triplet", "bp_triplet"], jobs=1,
                              log=str(log))
    # source_only, dann: 2 lr x 2 seeds each (the threshold is probe-only); the triplet rows: 4 settings x 2 seeds
    assert len(calls) == 2 * 4 + 2 * 8 and len(log.read_text().splitlines()) == 24
    assert all(json.loads(line)["seed"] in (100, 101) for line in log.read_text().splitlines())
    # seed mean adds 0.5; lr 0.02 / threshold 0.97: (58 + 68 + 89 + 91) / 4 + 0.5 = 77.0
    row = table["optim.lr=0.02,pseudo.threshold=0.97"]
    assert row == pytest.approx({"source_only": 58.5, "dann": 68.5, "plain_triplet": 89.5, "bp_triplet": 91.5})
    assert table["optim.lr=0.01,pseudo.threshold=0.97"]["dann"] == pytest.approx(70.5)  # the 0.01 run, shared
    assert best == "optim.lr=0.02,pseudo.threshold=0.97"


def test_cli_refuses_reported_seeds():
    with pytest.raises(SystemExit, match="seeds 0-8 are reported seeds"):
        tune.main(["--seeds", "2,100"])


def test_tuning_trials_per_row_read_back_from_the_search_logs(tmp_path, monkeypatch):
    """The summary's ``tuning_trials`` (issue 17: every row the same trials): counted from the logs the search
    writes. Two grids of 4 settings on seeds 100, 101: every row is scored on 8 settings; the threshold is
    probe-only, so source_only trains 2 lr x 2 seeds (main) + 1 x 2 (adv_threshold, no adversarial loss),
    dann 2 x 2 + 2 x 2 (adv weight), the triplet rows 8 x 2; a row absent from the logs has none."""
    from bp_triplet.reproduce import tuning_trials

    monkeypatch.setattr(tune, "run_one", lambda method, seed, run_root, quick, extra: {
        "target_top1": 50.0, "a_distance": 1.0, "lambda_star": 5.0})
    rows = ["source_only", "dann", "plain_triplet", "bp_triplet"]
    for grid in ("main", "adv_threshold"):
        tune.search(grid, [100, 101], rows, jobs=1, log=str(tmp_path / f"{grid}.jsonl"))
    trials = tuning_trials([*rows, "bp_no_adv"], tmp_path)
    assert {m: t["grid_settings"] for m, t in trials.items()} == {**dict.fromkeys(rows, 8), "bp_no_adv": 0}
    assert {m: t["trained_runs"] for m, t in trials.items()} == {
        "source_only": 6, "dann": 8, "plain_triplet": 16, "bp_triplet": 16, "bp_no_adv": 0}
    assert trials["dann"]["validation_seeds"] == [100, 101] and trials["bp_no_adv"]["validation_seeds"] == []
