"""elsa.tune: the validation studies give both micro-VOLO rows the same settings (the kernel axis through
each row's own key), only on validation seeds, and refuse an override that would replace an axis."""
from __future__ import annotations

import pytest

from elsa import tune
from elsa.reproduce import config_path
from elsa.train import ElsaConfig, build_model
from shared.config import load_config


def _settings(jobs, row):
    return sorted((j[1][2]["optim.lr"], j[1][2]["kernel"], j[1][3], j[1][4]) for j in jobs if j[1][1] == row)


def test_volo_micro_grid_is_the_same_for_both_rows(tmp_path):
    jobs = tune.grid_jobs("volo_micro", ["volo", "elsa_volo"], [100, 101], [], [], "", str(tmp_path))
    assert len(jobs) == 2 * 4 * 2 * 2  # rows x lr x kernel x draws
    assert _settings(jobs, "volo") == _settings(jobs, "elsa_volo")
    assert {(j[1][3], j[1][4]) for j in jobs} == {(100, 100), (101, 101)}  # draw = init, validation seeds
    for _, args in jobs:
        row, setting, ov = args[1], args[2], args[5]
        kernel_key = "model.outlook_kernel" if row == "volo" else "model.elsa_kernel"
        assert ov == ["engine.epochs=24", f"optim.lr={setting['optim.lr']}", f"{kernel_key}={setting['kernel']}"]
        cfg = load_config(config_path("default", row), ElsaConfig, ov)
        attn = build_model(cfg.model, 10).network[0][0].attn
        assert attn.kernel_size == setting["kernel"] and cfg.optim.lr == setting["optim.lr"]
    assert len({a[6] for _, a in jobs}) == len(jobs)  # one run folder each


def test_only_restricts_an_axis_and_overrides_may_not_replace_one(tmp_path):
    jobs = tune.grid_jobs("volo_micro", ["volo"], [100], ["kernel=5", "optim.lr=0.0005,0.016"], [], "", str(tmp_path))
    assert _settings(jobs, "volo") == [(0.0005, 5, 100, 100), (0.016, 5, 100, 100)]
    with pytest.raises(ValueError, match="set an axis"):
        tune.grid_jobs("volo_micro", ["volo"], [100], [], ["optim.lr=0"], "", str(tmp_path))
    with pytest.raises(ValueError, match="not an axis"):
        tune.grid_jobs("volo_micro", ["volo"], [100], ["engine.epochs=12"], [], "", str(tmp_path))


def test_scatter_grid_crosses_draws_and_inits_at_each_rows_lr(tmp_path):
    jobs = tune.grid_jobs("scatter", ["volo", "elsa_volo"], [0], [], [], "", str(tmp_path))
    assert sorted((a[3], a[4]) for _, a in jobs if a[1] == "volo") == [(100, 100), (100, 101), (101, 100), (101, 101)]
    ov = {a[1]: a[5] for _, a in jobs}  # the recipe as committed before the re-tuning round
    assert ov == {"volo": ["engine.epochs=12", "optim.lr=0.002", "model.outlook_kernel=3"],
                  "elsa_volo": ["engine.epochs=12", "optim.lr=0.004", "model.elsa_kernel=5"]}


def test_confirm_grid_runs_the_five_listed_settings_for_both_rows(tmp_path):
    jobs = tune.grid_jobs("volo_micro_confirm", ["volo", "elsa_volo"], [102, 103], [], [], "", str(tmp_path))
    listed = [(0.001, 5), (0.002, 5), (0.004, 5), (0.008, 5), (0.001, 3)]
    for row in ("volo", "elsa_volo"):
        assert _settings(jobs, row) == sorted((lr, k, d, d) for lr, k in listed for d in (102, 103))
    assert len(jobs) == 2 * 5 * 2 and len({a[6] for _, a in jobs}) == len(jobs)
    for _, args in jobs:
        row, setting, ov = args[1], args[2], args[5]
        kernel_key = "model.outlook_kernel" if row == "volo" else "model.elsa_kernel"
        assert ov == ["engine.epochs=24", f"optim.lr={setting['optim.lr']}", f"{kernel_key}={setting['kernel']}"]
    kept = tune.grid_jobs("volo_micro_confirm", ["volo"], [102], ["kernel=5"], [], "", str(tmp_path))
    assert _settings(kept, "volo") == [(lr, 5, 102, 102) for lr in (0.001, 0.002, 0.004, 0.008)]
