"""Pose metrics: hand-computed MPJPE, alignment invariances, action-wise mean, PCK/AUC."""

import numpy as np
import pytest
import torch

from shared.metrics import auc, mean_per_action, mpjpe, n_mpjpe, p_mpjpe, pck


def random_rotation(rng):
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] *= -1
    return q


def test_mpjpe_two_joints_by_hand():
    target = np.array([[0.0, 0.0, 0.0], [100.0, 0.0, 0.0]])
    pred = np.array([[3.0, 4.0, 0.0], [100.0, 0.0, 12.0]])  # errors 5 mm and 12 mm
    assert mpjpe(pred, target) == pytest.approx(8.5)
    assert mpjpe(torch.tensor(pred), torch.tensor(target)) == pytest.approx(8.5)
    per_pose = mpjpe(np.stack([pred, target]), np.stack([target, target]), reduction="none")
    np.testing.assert_allclose(per_pose, [8.5, 0.0])


def test_p_mpjpe_ignores_similarity_transform():
    rng = np.random.default_rng(0)
    target = rng.normal(scale=300.0, size=(4, 5, 17, 3))  # (B, T, J, 3)
    pred = np.empty_like(target)
    for idx in np.ndindex(4, 5):
        R, s, t = random_rotation(rng), rng.uniform(0.5, 2.0), rng.normal(scale=500.0, size=3)
        pred[idx] = s * target[idx] @ R.T + t
    assert mpjpe(pred, target) > 100.0
    assert p_mpjpe(pred, target) == pytest.approx(0.0, abs=1e-6)
    assert p_mpjpe(torch.tensor(pred, dtype=torch.float32), torch.tensor(target)) < 1e-2


def test_p_mpjpe_does_not_undo_a_reflection():
    rng = np.random.default_rng(1)
    target = rng.normal(scale=300.0, size=(2, 17, 3))
    mirrored = target * np.array([-1.0, 1.0, 1.0])  # improper transform: not a rotation
    assert p_mpjpe(mirrored, target) > 10.0
    assert p_mpjpe(mirrored, target) <= mpjpe(mirrored, target)


def test_n_mpjpe_ignores_scale_only():
    rng = np.random.default_rng(2)
    target = rng.normal(scale=300.0, size=(6, 17, 3))
    scales = rng.uniform(0.5, 2.0, size=(6, 1, 1))
    assert n_mpjpe(scales * target, target) == pytest.approx(0.0, abs=1e-9)
    R = random_rotation(rng)
    assert n_mpjpe(target @ R.T, target) > 10.0  # rotation is not undone


def test_n_mpjpe_scale_by_hand():
    # one joint at (1,0,0) predicted at (2,0,0), one at (0,1,0) predicted at (0,0,0):
    # s = <p,g>/|p|^2 = 2/4 = 0.5 -> scaled pred (1,0,0),(0,0,0): errors 0 and 1 -> 0.5.
    target = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    pred = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    assert n_mpjpe(pred, target) == pytest.approx(0.5)


def test_mean_per_action_averages_actions_not_frames():
    errors = [10.0, 20.0, 30.0, 100.0]  # Walking: 3 frames (mean 20), Sitting: 1 frame (100)
    actions = ["Walking", "Walking 1", "Walking", "Sitting 2"]
    overall, per_action = mean_per_action(errors, actions, merge_subactions=True)
    assert per_action == {"Walking": pytest.approx(20.0), "Sitting": pytest.approx(100.0)}
    assert overall == pytest.approx(60.0)  # frame-wise mean would be 40
    _, separate = mean_per_action(errors, actions)
    assert set(separate) == {"Walking", "Walking 1", "Sitting 2"}


def test_pck_and_auc_by_hand():
    target = np.zeros((1, 4, 3))
    pred = np.zeros((1, 4, 3))
    pred[0, :, 0] = [0.0, 50.0, 150.0, 200.0]  # errors 0, 50, 150 (not < 150), 200
    assert pck(pred, target) == pytest.approx(50.0)
    assert pck(pred, target, threshold=150.001) == pytest.approx(75.0)
    # thresholds 0,5,...,150: error 0 counts for 30 of 31 thresholds (not at t=0), error 50 for 20
    # (t = 55..150), 150 and 200 never.
    assert auc(pred, target) == pytest.approx(100.0 * (30 + 20) / (31 * 4))
    assert auc(pred, target, thresholds=[100.0]) == pytest.approx(pck(pred, target, 100.0))
