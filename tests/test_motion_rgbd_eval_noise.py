"""motion_rgbd.eval_noise: variance components by hand, the stratified SE, the validation-seed guard, smoke run."""
import json

import numpy as np
import pytest

from motion_rgbd import eval_noise


def test_noise_components_by_hand():
    # seed 0 on two draws: 50, 52; seed 1: 60, 62 -> within-seed var 2 each, seed means 51, 61 (var 50)
    c = eval_noise.noise_components(np.array([[50.0, 52.0], [60.0, 62.0]]))
    assert c["eval_var"] == pytest.approx(2.0)
    assert c["train_var"] == pytest.approx(50.0 - 2.0 / 2)
    assert c["total_var"] == pytest.approx(51.0)
    assert c["eval_share"] == pytest.approx(2.0 / 51.0)
    assert (c["seeds"], c["draws"]) == (2, 2)


def test_stratified_se_equals_binomial_at_equal_classes():
    # every class at p = 0.5, 40 per class: the SE of a 240-clip binomial, sqrt(.25 / 240) = 3.23 points
    assert eval_noise.stratified_se(np.full(6, 0.5), 40) == pytest.approx(100 * np.sqrt(0.25 / 240))
    # classes at 0 and 1 add no variance
    assert eval_noise.stratified_se(np.array([0.0, 1.0, 0.5, 0.5, 0.5, 0.5]), 40) == pytest.approx(
        100 * np.sqrt(4 * 0.25 / 40) / 6)


def test_reported_seeds_refused(tmp_path):
    with pytest.raises(SystemExit, match="validation draws only"):
        eval_noise.main(["--seeds", "0,100", "--out", str(tmp_path), "--run-root", str(tmp_path / "r")])


def test_quick_run(tmp_path):
    assert eval_noise.main(["--quick", "--seeds", "100,101", "--draws", "2", "--jobs", "1", "--out", str(tmp_path),
                            "--run-root", str(tmp_path / "runs")]) == 0
    s = json.loads((tmp_path / "summary.json").read_text())
    assert set(s["rows"]) == {"rgb", "rgb_coupled3d", "rgb_no_rcm"}
    assert s["draw_seeds"] == [9800, 9801] and s["n_test_per_class"] == 2
    for r in s["rows"].values():
        assert np.array(r["acc"]).shape == (2, 2)
        assert r["own_reloaded"] == r["own_draw"]  # the saved weights round-trip
    assert (tmp_path / "summary.md").exists()
