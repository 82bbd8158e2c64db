"""MHFormer loaders on fixture files in the real VideoPose3D / P-STMO layouts, windows, flips, metrics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from mhformer.data import (
    H36M_KEEP_32,
    DataFormatError,
    PoseWindows,
    flip_pose,
    h36m_camera_table,
    load_3dhp,
    load_h36m,
    normalize_screen_coordinates,
    verify_h36m,
)
from mhformer.evaluate import predict_centre, score_h36m
from mhformer.train import DecayConfig, official_lr
from shared.data.skeleton import world_to_camera

KPS_SYM = [[4, 5, 6, 11, 12, 13], [1, 2, 3, 14, 15, 16]]


def write_h36m(root, t=12, extra_2d=3, drop=None, shape3d=(32, 3)):
    """data_3d_h36m.npz (32 joints, world metres) + data_2d_h36m_gt.npz, as VideoPose3D writes them."""
    rng = np.random.default_rng(0)
    pos3d, pos2d = {}, {}
    for s in ("S1", "S9", "S11"):
        pos3d[s], pos2d[s] = {}, {}
        for a in ("Directions", "Walking 1"):
            world = (rng.normal(size=(t, *shape3d)) * 0.3 + [0, 0, 1]).astype(np.float32)
            pos3d[s][a] = world
            pos2d[s][a] = [rng.uniform(0, 1000, size=(t + extra_2d, 17, 2)).astype(np.float32) for _ in range(4)]
    if drop:
        del pos2d[drop[0]][drop[1]]
    np.savez_compressed(root / "data_3d_h36m.npz", positions_3d=pos3d)
    np.savez_compressed(root / "data_2d_h36m_gt.npz", positions_2d=pos2d,
                        metadata={"layout_name": "h36m", "num_joints": 17, "keypoints_symmetry": KPS_SYM})
    return pos3d, pos2d


def test_h36m_loader_follows_videopose3d(tmp_path):
    pos3d, pos2d = write_h36m(tmp_path)
    data = load_h36m(tmp_path, ["S1", "S11"], keypoints="gt")
    # S11 Directions is dropped; 2 subjects x actions x 4 cameras otherwise.
    names = {(s.subject, s.action) for s in data.sequences}
    assert names == {("S1", "Directions"), ("S1", "Walking 1"), ("S11", "Walking 1")}
    assert len(data.sequences) == 12
    seq = next(s for s in data.sequences if s.subject == "S1" and s.action == "Walking 1" and s.camera == 2)
    assert seq.pose_3d.shape == (12, 17, 3) and seq.pose_2d.shape == (12, 17, 2)  # 2D truncated to the mocap
    cam = h36m_camera_table("S1")[2]
    world17 = pos3d["S1"]["Walking 1"][:, list(H36M_KEEP_32)]
    expect = world_to_camera(world17.astype(np.float64), cam["orientation"], cam["translation"])
    np.testing.assert_allclose(seq.pose_3d[:, 0], expect[:, 0], atol=1e-5)  # root stays absolute
    np.testing.assert_allclose(seq.pose_3d[:, 5], expect[:, 5] - expect[:, 0], atol=1e-5)  # others relative
    u, v = pos2d["S1"]["Walking 1"][2][4, 7]
    np.testing.assert_allclose(seq.pose_2d[4, 7], [2 * u / 1000 - 1, 2 * v / 1000 - 1000 / 1000], atol=1e-6)
    assert data.kps_left == KPS_SYM[0] and data.joints_right == [1, 2, 3, 14, 15, 16]


def test_normalize_screen_coordinates_hand_values():
    x = np.array([[0.0, 0.0], [1000.0, 1002.0], [500.0, 501.0]])
    np.testing.assert_allclose(normalize_screen_coordinates(x, 1000, 1002),
                               [[-1, -1.002], [1, 1.002], [0, 0]], atol=1e-6)


def test_h36m_camera_world_round_trip():
    from shared.data.skeleton import camera_to_world

    x = np.random.default_rng(0).normal(size=(5, 17, 3))
    for cam in h36m_camera_table("S9"):
        back = camera_to_world(world_to_camera(x, cam["orientation"], cam["translation"]),
                               cam["orientation"], cam["translation"])
        assert np.abs(back - x).max() < 1e-5


@pytest.mark.parametrize("case, message", [
    ("missing_action", "action 'Walking 1' of S9 is missing from the 2D detections"),
    ("short_2d", "camera 0 has 10 2D frames but the mocap has 12"),
    ("bad_joints", r"positions_3d\[S1\]\[Directions\] has shape \(12, 20, 3\)"),
    ("not_npz", "data_3d_h36m.npz: not a readable .npz"),
    ("no_key", "data_3d_h36m.npz: no 'positions_3d' entry"),
    ("no_file", "data_2d_h36m_gt.npz: file not found"),
])
def test_malformed_h36m_files_name_file_and_problem(tmp_path, case, message):
    if case == "missing_action":
        write_h36m(tmp_path, drop=("S9", "Walking 1"))
    elif case == "short_2d":
        write_h36m(tmp_path, extra_2d=-2)
    elif case == "bad_joints":
        write_h36m(tmp_path, shape3d=(20, 3))
    elif case == "not_npz":
        write_h36m(tmp_path)
        (tmp_path / "data_3d_h36m.npz").write_bytes(b"garbage")
    elif case == "no_key":
        write_h36m(tmp_path)
        np.savez(tmp_path / "data_3d_h36m.npz", poses=np.zeros(3))
    elif case == "no_file":
        write_h36m(tmp_path)
        (tmp_path / "data_2d_h36m_gt.npz").unlink()
    with pytest.raises(DataFormatError, match=message):
        load_h36m(tmp_path, ["S1", "S9"], keypoints="gt")


def test_verify_reports_problems(tmp_path):
    write_h36m(tmp_path)
    problems = verify_h36m(tmp_path)
    assert any("data_2d_h36m_cpn_ft_h36m_dbb.npz: file not found" in p for p in problems)
    assert any("data_3d_h36m.npz: subject S5 is missing" in p for p in problems)


def write_3dhp(root):
    rng = np.random.default_rng(0)
    view = lambda: {"data_2d": rng.uniform(0, 2048, (8, 17, 2)), "data_3d": rng.normal(size=(8, 17, 3)) * 300}  # noqa: E731
    train = {"S1 Seq1": [{0: view(), 2: view()}]}
    test = {f"TS{i}": {"data_2d": rng.uniform(0, 1000, (6, 17, 2)), "data_3d": rng.normal(size=(6, 17, 3)) * 300,
                       "valid": np.array([1, 0, 1, 1, 0, 1])} for i in range(1, 7)}
    np.savez(root / "data_train_3dhp.npz", data=train)
    np.savez(root / "data_test_3dhp.npz", data=test)
    return train, test


def test_3dhp_loader_pstmo_layout(tmp_path):
    train, test = write_3dhp(tmp_path)
    tr = load_3dhp(tmp_path, train=True)
    assert len(tr.sequences) == 2 and tr.root == 14 and tr.kps_left == [5, 6, 7, 11, 12, 13]
    p3 = train["S1 Seq1"][0][2]["data_3d"] / 1000
    s = tr.sequences[1]
    np.testing.assert_allclose(s.pose_3d[:, 3], p3[:, 3] - p3[:, 14], atol=1e-6)
    np.testing.assert_allclose(s.pose_3d[:, 14], p3[:, 14], atol=1e-6)
    te = load_3dhp(tmp_path, train=False)
    ts5 = next(q for q in te.sequences if q.subject == "TS5")
    u, v = test["TS5"]["data_2d"][0, 0]
    np.testing.assert_allclose(ts5.pose_2d[0, 0], [2 * u / 1920 - 1, 2 * v / 1920 - 1080 / 1920], atol=1e-5)
    w = PoseWindows(te, 9, out_all=False, valid_only=True)
    assert len(w) == 6 * 4  # valid frames only
    bad = {"S1 Seq1": [{0: {"data_2d": np.zeros((8, 16, 2)), "data_3d": np.zeros((8, 17, 3))}}]}
    np.savez(tmp_path / "data_train_3dhp.npz", data=bad)
    with pytest.raises(DataFormatError, match="data_train_3dhp.npz: entry 'S1 Seq1' is malformed"):
        load_3dhp(tmp_path, train=True)


def test_windows_edge_padding_and_flip_symmetry(tmp_path):
    write_h36m(tmp_path)
    data = load_h36m(tmp_path, ["S1"], keypoints="gt")
    w = PoseWindows(data, 9, flip=True, out_all=True)
    n_frames = sum(len(s.pose_2d) for s in data.sequences)
    assert len(w) == 2 * n_frames  # official augment: every window un-flipped and flipped
    x, y, i = w[0]
    seq = data.sequences[i]
    assert x.shape == (9, 17, 2) and y.shape == (9, 17, 3)
    np.testing.assert_array_equal(x[:5].numpy(), np.repeat(seq.pose_2d[:1], 5, 0))  # 'edge' padding at the start
    np.testing.assert_array_equal(x[5:].numpy(), seq.pose_2d[1:5])
    xf, yf, _ = w[n_frames]  # the flipped copy of item 0
    torch.testing.assert_close(xf, flip_pose(x, data.kps_left, data.kps_right))
    torch.testing.assert_close(yf, flip_pose(y, data.joints_left, data.joints_right))
    torch.testing.assert_close(flip_pose(xf, data.kps_left, data.kps_right), x)  # an involution
    assert xf[4, 4, 0] == -x[4, 1, 0]  # LHip <- mirrored RHip


class _Lift(torch.nn.Module):
    """A perfectly flip-equivariant 'model': (x, y) -> (x, y, 1)."""

    def forward(self, x):
        return torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)


def test_flip_tta_undoes_the_flip(tmp_path):
    write_h36m(tmp_path)
    w = PoseWindows(load_h36m(tmp_path, ["S1"], keypoints="gt"), 9, out_all=False)
    r = predict_centre(_Lift(), w, batch_size=7, flip_test=True)
    np.testing.assert_allclose(r["pred"], r["pred_noflip"], atol=1e-6)
    assert (r["pred"][:, 0] == 0).all() and r["pred"].shape == (len(w), 17, 3)


def test_scores_hand_computed():
    rng = np.random.default_rng(0)
    target = rng.normal(size=(6, 17, 3))
    angle = 0.7
    rot = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    pred = 1.3 * target @ rot.T + 0.05  # a rotated, scaled, shifted copy
    acts = ["Walking", "Walking 1", "Walking", "Eating", "Eating", "Eating"]
    s = score_h36m(pred, target, acts)
    assert s["p_mpjpe"] < 1e-6
    shifted = target + np.array([0.003, 0.004, 0.0])  # 5 mm everywhere
    s = score_h36m(shifted, target, acts)
    assert s["mpjpe"] == pytest.approx(5.0)
    off = target.copy()
    off[3:] += [0.0, 0.0, 0.010]  # Eating: 10 mm, Walking (3 samples, sub-sequences pooled): 0
    s = score_h36m(off, target, acts)
    assert s["per_action"]["mpjpe"] == pytest.approx({"Walking": 0.0, "Eating": 10.0})
    assert s["mpjpe"] == pytest.approx(5.0)  # unweighted over actions


def test_official_lr_schedule_matches_issue_10_log():
    d = DecayConfig()
    lrs = [official_lr(1e-3, e, d) for e in range(7)]
    np.testing.assert_allclose(lrs[:5], [1e-3, 9.5e-4, 9.025e-4, 8.57375e-4, 8.1450625e-4])
    assert lrs[5] == pytest.approx(8.1450625e-4 * 0.5)  # after epoch 5: x0.5 instead of x0.95 (4.073e-4)
    assert lrs[6] == pytest.approx(8.1450625e-4 * 0.5 * 0.95)


def test_corruption_masks_ride_along_and_score_the_hard_frames(tmp_path):
    from mhformer.evaluate import evaluate_windows
    from shared.metrics.pose import mpjpe

    _, pos2d = write_h36m(tmp_path)
    rng = np.random.default_rng(1)
    masks = {s: {a: [rng.random((len(v[0]), 17)) < 0.03 for _ in v] for a, v in acts.items()}
             for s, acts in pos2d.items()}
    with np.load(tmp_path / "data_2d_h36m_gt.npz", allow_pickle=True) as z:
        meta = z["metadata"].item()
    np.savez_compressed(tmp_path / "data_2d_h36m_gt.npz", positions_2d=pos2d, metadata=meta, corrupted=masks)
    data = load_h36m(tmp_path, ["S1"], keypoints="gt")
    seq = data.sequences[5]
    np.testing.assert_array_equal(seq.hard, masks["S1"][seq.action][seq.camera][:12].any(-1))  # truncated too
    w = PoseWindows(data, 9, stride=2, out_all=False)
    hard = w.hard()
    assert hard.shape == (len(w),) and hard.any() and not hard.all()
    i = int(np.flatnonzero(hard)[0])
    assert data.sequences[w.seq_ids[i]].hard[w.centres[i]]
    m = evaluate_windows(_Lift(), w, batch_size=5)
    r = predict_centre(_Lift(), w, batch_size=5)
    err = mpjpe(r["pred"] * 1000, r["target"] * 1000, reduction="none")
    assert m["mpjpe_hard"] == pytest.approx(err[hard].mean()) and m["mpjpe_clean"] == pytest.approx(err[~hard].mean())
    assert m["hard_fraction"] == pytest.approx(hard.mean())
    assert PoseWindows(load_h36m(tmp_path, ["S1"], keypoints="gt"), 9).hard() is not None
    write_h36m(tmp_path)  # the real files carry no masks: no hard-frame metrics
    assert "mpjpe_hard" not in evaluate_windows(_Lift(), PoseWindows(load_h36m(tmp_path, ["S1"], keypoints="gt"),
                                                                     9, out_all=False))


def test_single_frame_output_is_scored_like_the_centre_of_a_window(tmp_path):
    write_h36m(tmp_path)
    w = PoseWindows(load_h36m(tmp_path, ["S1"], keypoints="gt"), 9, out_all=False)

    class Centre(torch.nn.Module):  # a VideoPose3D-like model: only the centre frame comes out
        def forward(self, x):
            return _Lift()(x)[:, 4:5]

    a, b = predict_centre(_Lift(), w, batch_size=7), predict_centre(Centre(), w, batch_size=7)
    np.testing.assert_allclose(a["pred"], b["pred"])
    np.testing.assert_allclose(a["pred_noflip"], b["pred_noflip"])
