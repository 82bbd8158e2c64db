"""KDTask wiring of the reconstructed switches: frame-level TCL, the teacher x10 stress, ML scale; the
embedded study's seed-following data draw and its claim rule."""
import numpy as np
import pytest
import torch

from shared.config import load_config
from tcl_i2v import reproduce
from tcl_i2v.data import synvideo
from tcl_i2v.train import KDTask, TCLConfig

TINY = ["engine.batch_size=8", "data.train_ids=6", "data.test_ids=4", "model.tiny_widths=[4,4,4,8]",
        "kd.student_init=scratch"]


def _task_and_batch(overrides, n_frames=4):
    cfg = load_config(reproduce.RECIPE, TCLConfig, [*TINY, f"data.n_frames={n_frames}", *overrides])
    splits = synvideo(6, 4, frames=4, size=(32, 16), seed=3)
    task = KDTask(cfg, splits)
    torch.manual_seed(0)
    model = task.build_model().train()
    items = [task.dataset[i] for i in range(8)]
    batch = [torch.stack([torch.as_tensor(it[j]) for it in items]) for j in range(4)]
    return task, model, batch


def test_frame_level_tcl_equals_clip_level_on_one_frame_clips():
    losses = {}
    for level in ("clip", "frame"):
        task, model, batch = _task_and_batch(["kd.method=tcl", "kd.ml=none", f"kd.tcl_level={level}",
                                              "kd.tcl_k=2"], n_frames=1)
        losses[level] = task.training_step(model, batch)["tcl"].item()
    assert losses["clip"] > 0 and losses["frame"] == pytest.approx(losses["clip"], rel=1e-5)


def test_frame_level_tcl_trains_the_student_only_and_ignores_the_teacher_scale():
    task, model, batch = _task_and_batch(["kd.method=tcl", "kd.ml=none", "kd.tcl_level=frame", "kd.tcl_k=3"])
    out = task.training_step(model, batch)
    out["tcl"].backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.student.parameters())
    task.kd.teacher_scale = 10.0  # the misalignment stress: normalised TCL cannot see it ...
    assert task.training_step(model, batch)["tcl"].item() == pytest.approx(out["tcl"].item(), rel=1e-5)
    task, model, batch = _task_and_batch(["kd.method=vkd", "kd.ml=none"])
    base = task.training_step(model, batch)["simdist"].item()
    task.kd.teacher_scale = 10.0  # ... VKD's distance MSE can
    assert task.training_step(model, batch)["simdist"].item() > 100 * base


def test_mutual_learning_is_scaled_by_tau_squared_and_trains_the_teacher():
    task, model, batch = _task_and_batch(["kd.method=tcl", "kd.ml=A", "kd.ml_weight=1"])
    with_sq = task.training_step(model, batch)
    task.kd.ml_tau_sq = False
    without = task.training_step(model, batch)
    assert with_sq["ml_s"].item() == pytest.approx(100 * without["ml_s"].item(), rel=1e-4)
    assert not task.teacher_is_frozen and "t_id" in with_sq


def test_each_seed_draws_its_own_data_and_validation_is_apart():
    cfg0 = reproduce.row_config("tcl", 0, [], 0)
    cfg1 = reproduce.row_config("tcl", 1, [], 1)
    assert (cfg0.data.seed, cfg1.data.seed, cfg0.engine.seed) == (0, 1, 0)
    assert cfg0.kd.method == "tcl" and reproduce.row_config("tcl_ml", 0, [], 0).kd.ml == "A"
    a, b = synvideo(4, 2, seed=0), synvideo(4, 2, seed=1)
    assert not torch.equal(a["train"][0].frames, b["train"][0].frames)
    assert torch.equal(a["train"][0].frames, synvideo(4, 2, seed=0)["train"][0].frames)
    assert reproduce.VALIDATION_OFFSET > 100  # far from any reported seed


def test_claim_rule_hand_values():
    c = reproduce.claim([3.0, 5.0, 4.0], [1.0, 2.0, 3.0])  # diff 2, stds 1 and 1 -> pooled 1
    assert c["diff"] == pytest.approx(2.0) and c["pooled_std"] == pytest.approx(1.0) and c["holds"]
    c = reproduce.claim([3.0, 5.0, 4.0], [2.5, 3.5, 4.5])  # diff 0.5 < pooled 1
    assert not c["holds"] and np.isclose(c["pooled_std"], 1.0)


def test_every_student_of_a_seed_starts_from_one_shared_initialisation():
    """reproduce.fit seeds torch, then builds teacher and student: every row's student (and the teacher before
    its checkpoint is loaded) gets the same weights, whatever kd.method / kd.ml / kd.teacher_scale name it."""
    splits = synvideo(4, 2, frames=4, size=(32, 16), seed=0)
    students = {}
    for row in reproduce.ROWS:
        cfg = reproduce.row_config(row, 7, [*reproduce.QUICK, "data.train_ids=4", "data.test_ids=2"], 0)
        torch.manual_seed(cfg.engine.seed)  # as reproduce.fit
        students[row] = KDTask(cfg, splits).build_model().student.state_dict()
    first = students["image_only"]
    for row, sd in students.items():
        assert all(torch.equal(sd[k], v) for k, v in first.items()), row
    torch.manual_seed(8)
    other = KDTask(reproduce.row_config("tcl", 8, reproduce.QUICK, 0), splits).build_model().student.state_dict()
    assert not all(torch.equal(other[k], v) for k, v in first.items())  # the seed sets it


def test_tuning_trials_are_the_sweep_settings_per_row():
    from tcl_i2v import tune

    trials = reproduce.TUNING_TRIALS
    assert set(trials) == set(reproduce.ROWS)
    assert {r: trials[r] for r in tune.GRID} == {r: len(g) for r, g in tune.GRID.items()}
    assert trials["image_only"] == 1  # no KD knob
    assert trials["vkd_teacher_x10"] == trials["vkd"] and trials["tcl_teacher_x10"] == trials["tcl"]
    assert len({trials[r] for r in ("vkd", "tkp", "tcl", "tcl_ml")}) == 1  # the baselines get as many as TCL
