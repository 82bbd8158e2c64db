"""shared.data.skeleton: the embedded H36M-17 motion generator and its camera math."""
from __future__ import annotations

import numpy as np
import pytest

from shared.data import skeleton as sk


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VISIONREPRO_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _load(folder, name, key):
    with np.load(folder / name, allow_pickle=True) as z:
        return z[key].item()


def test_layout_is_h36m17():
    assert len(sk.JOINT_NAMES) == len(sk.PARENTS) == len(sk.BONE_LENGTHS_MM) == 17
    assert sk.PARENTS == (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
    assert [sk.JOINT_NAMES[j] for j in sk.JOINTS_LEFT] == ["LHip", "LKnee", "LAnkle", "LShoulder", "LElbow", "LWrist"]
    assert [sk.JOINT_NAMES[j] for j in sk.JOINTS_RIGHT] == ["RHip", "RKnee", "RAnkle", "RShoulder", "RElbow", "RWrist"]


def test_files_in_videopose3d_format_and_deterministic(cache):
    a = sk.skeleton_motion(seed=3, frames=40, subseqs=2)
    names = sorted(p.name for p in a.glob("*.npz"))
    assert names == ["data_2d_h36m_synth_detected.npz", "data_2d_h36m_synth_detector.npz", "data_2d_h36m_synth_gt.npz",
                     "data_3d_h36m_synth.npz"]
    pos = _load(a, "data_3d_h36m_synth.npz", "positions_3d")
    kp = _load(a, "data_2d_h36m_synth_detected.npz", "positions_2d")
    meta = _load(a, "data_2d_h36m_synth_detected.npz", "metadata")
    assert sorted(pos) == sorted(sk.TRAIN_SUBJECTS + sk.TEST_SUBJECTS)
    assert set(pos["S9"]) == {f"{x}{s}" for x in sk.ACTIONS for s in ("", " 1")}
    assert pos["S1"]["Walking"].shape == (40, 17, 3) and pos["S1"]["Walking"].dtype == np.float32
    assert len(kp["S1"]["Walking"]) == 4 and kp["S1"]["Walking"][2].shape == (40, 17, 2)
    assert meta["keypoints_symmetry"] == [list(sk.JOINTS_LEFT), list(sk.JOINTS_RIGHT)]
    # Cached: the second call returns the same folder; the same seed elsewhere rebuilds identical data.
    assert sk.skeleton_motion(seed=3, frames=40, subseqs=2) == a
    other = cache / "rebuild"
    other.mkdir()
    sk._build(other, 3, 40, 2, 4.0, 0.05, 15.0, "h36m_synth")
    np.testing.assert_array_equal(_load(other, "data_3d_h36m_synth.npz", "positions_3d")["S11"]["Twist 1"],
                                  pos["S11"]["Twist 1"])
    b = sk.skeleton_motion(seed=4, frames=40, subseqs=2)
    assert not np.allclose(_load(b, "data_3d_h36m_synth.npz", "positions_3d")["S1"]["Walking"],
                           pos["S1"]["Walking"])


def test_bones_rigid_and_h36m_sized(cache):
    folder = sk.skeleton_motion(seed=0, frames=60, subseqs=1)
    pos = _load(folder, "data_3d_h36m_synth.npz", "positions_3d")
    parents = list(sk.PARENTS[1:])
    ref = np.asarray(sk.BONE_LENGTHS_MM[1:]) / 1000
    for subject, actions in pos.items():
        lengths = [np.linalg.norm(p[:, 1:] - p[:, parents], axis=-1) for p in actions.values()]
        lengths = np.concatenate(lengths)
        assert lengths.std(axis=0).max() < 1e-4  # rigid over time and across actions of one subject
        ratio = lengths.mean(axis=0) / ref
        assert np.all((ratio > 0.85) & (ratio < 1.15)), subject  # U(0.9, 1.1) x 3 % jitter
        lowest = np.minimum(actions["Walking"][:, 3, 2], actions["Walking"][:, 6, 2])
        np.testing.assert_allclose(lowest, 0.08, atol=1e-5)  # a foot stays on the floor


def test_noise_level_and_projection(cache):
    folder = sk.skeleton_motion(seed=0, frames=100, subseqs=1)
    gt = _load(folder, "data_2d_h36m_synth_gt.npz", "positions_2d")
    det = _load(folder, "data_2d_h36m_synth_detected.npz", "positions_2d")
    pos = _load(folder, "data_3d_h36m_synth.npz", "positions_3d")
    cams = _load(folder, "data_3d_h36m_synth.npz", "cameras")["S5"]
    err = np.concatenate([np.linalg.norm(d - g, axis=-1).ravel()
                          for a in gt["S5"] for d, g in zip(det["S5"][a], gt["S5"][a])])
    assert 3.5 < np.median(err) < 6.5  # 2D N(0, 4 px): median radius 4 * sqrt(2 ln 2) = 4.7 px
    for c, uv in zip(cams, gt["S5"]["Squat"]):
        assert uv.min() > 0 and uv[..., 0].max() < c["res_w"] and uv[..., 1].max() < c["res_h"]
        xc = sk.world_to_camera(pos["S5"]["Squat"].astype(np.float64), c["orientation"], c["translation"] / 1000)
        assert 3.0 < xc[..., 2].min() and xc[..., 2].max() < 7.5  # about 5 m in front of the camera
        np.testing.assert_allclose(sk.project_pinhole(xc, c["focal_length"], c["center"]), uv, atol=1e-3)


def test_world_camera_round_trip():
    rng = np.random.default_rng(0)
    q, t = sk.look_at_camera(70.0, 5.0, 1.5, (0.0, 0.0, 0.9))
    np.testing.assert_allclose(np.linalg.norm(q), 1.0, atol=1e-12)
    x = rng.normal(size=(50, 17, 3))
    back = sk.camera_to_world(sk.world_to_camera(x, q, t), q, t)
    assert np.abs(back - x).max() < 1e-5
    # The camera looks at its target: the target lands on the optical axis.
    on_axis = sk.world_to_camera(np.array([[0.0, 0.0, 0.9]]), q, t)[0]
    np.testing.assert_allclose(on_axis[:2], 0.0, atol=1e-9)
    assert on_axis[2] > 0


def test_3d_flip_reprojects_to_the_2d_flip_rule():
    """Negating camera-frame x and projecting with a centred principal point = negating normalised u."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(10, 17, 3)) * 0.3 + [0.0, 0.0, 5.0]
    f, w = 1145.0, 1000
    uv = sk.project_pinhole(x, (f, f), (w / 2, w / 2))
    flipped = x * [-1, 1, 1]
    uv_f = sk.project_pinhole(flipped, (f, f), (w / 2, w / 2))
    norm = lambda p: p / w * 2 - [1, 1]  # noqa: E731 - h == w here
    np.testing.assert_allclose(norm(uv_f), norm(uv) * [-1, 1], atol=1e-9)


def test_bad_arguments(cache):
    with pytest.raises(ValueError, match="frames=0"):
        sk.skeleton_motion(frames=0)
    with pytest.raises(ValueError, match="unknown action 'Dance'"):
        sk.action_angles("Dance", np.arange(5) / 50, np.random.default_rng(0))


def _flat_track(t=200, j=17):
    uv = np.zeros((t, j, 2))
    uv[..., 0] = np.arange(j)[None] * 10.0 + 100.0  # joint k at x = 100 + 10 k, y = 0
    return uv, np.full((t, j), 5.0)


def test_detector_noise_follows_confidence():
    uv, depth = _flat_track(4000)
    kp, bad = sk.detector_keypoints(uv, depth, np.random.default_rng(0), noise_px=2.0, occlusion_rate=0.0,
                                    swap_rate=0.0)
    assert not bad.any()
    std = (kp - uv).std(axis=0).mean(-1)  # per joint
    # the pelvis (confidence ~0.85-1) is the least noisy, the wrists (base 0.65) the noisiest
    assert std[0] < std[13] and std[0] < std[16]
    assert 1.9 < std[0] < 3.0 and 2.9 < std[13] < 4.7  # 2 / c with c ~ slow factor x base confidence
    far = depth.copy()
    far[:, 13] += 0.4  # the left wrist 40 cm behind the pelvis: self-occluded, half the confidence
    kp2, _ = sk.detector_keypoints(uv, far, np.random.default_rng(0), noise_px=2.0, occlusion_rate=0.0,
                                   swap_rate=0.0)
    assert (kp2 - uv)[:, 13].std() > 1.6 * (kp - uv)[:, 13].std()


def test_detector_occlusion_bursts_are_frozen_displaced_guesses():
    uv, depth = _flat_track(400)
    uv = uv + np.arange(400)[:, None, None] * np.array([10.0, 0.0])  # everything moves 10 px per frame
    kp, bad = sk.detector_keypoints(uv, depth, np.random.default_rng(1), noise_px=1e-6, occlusion_rate=0.01,
                                    occlusion_px=40.0, swap_rate=0.0)
    assert bad.any()
    np.testing.assert_allclose(kp[~bad], uv[~bad], atol=1e-3)  # untouched outside the bursts
    starts = bad & ~np.roll(bad, 1, axis=0)
    starts[0] = bad[0]
    d = np.linalg.norm(kp[starts] - uv[starts], axis=-1)
    assert (d > 10).all() and (d < 75).all()  # a guess displaced by 20-60 px (+ 2 px jitter)
    inside = bad & np.roll(bad, 1, axis=0)  # consecutive burst frames
    inside[0] = False
    step = np.linalg.norm(kp - np.roll(kp, 1, axis=0), axis=-1)[inside]
    assert np.median(step) < 8  # the guess stays put (jitter only) while the joint moves 10 px per frame
    edges = np.flatnonzero(np.diff(np.concatenate([[0], bad[:, 3].astype(int), [0]])))
    runs = [e - s for s, e in zip(edges[::2], edges[1::2]) if e < len(bad)]  # not cut by the sequence end
    assert min(runs) >= 3  # bursts last at least 3 frames


def test_detector_swaps_exchange_left_and_right_limbs():
    uv, depth = _flat_track(300)
    kp, bad = sk.detector_keypoints(uv, depth, np.random.default_rng(2), noise_px=1e-6, occlusion_rate=0.0,
                                    swap_rate=0.05)
    legs_r, legs_l = [1, 2, 3], [4, 5, 6]
    swapped = bad[:, 1]
    assert swapped.any() and (bad[:, legs_r] == bad[:, legs_l]).all()
    np.testing.assert_allclose(kp[swapped][:, legs_r], uv[swapped][:, legs_l], atol=1e-3)
    np.testing.assert_allclose(kp[~bad.any(-1)], uv[~bad.any(-1)], atol=1e-3)
    assert not bad[:, [0, 7, 8, 9, 10]].any()  # the spine and head are never swapped


def test_detector_file_carries_the_corruption_masks(cache):
    folder = sk.skeleton_motion(seed=5, frames=60, subseqs=1)
    kp = _load(folder, "data_2d_h36m_synth_detector.npz", "positions_2d")
    mask = _load(folder, "data_2d_h36m_synth_detector.npz", "corrupted")
    gt = _load(folder, "data_2d_h36m_synth_gt.npz", "positions_2d")
    assert mask["S9"]["Squat"][3].shape == (60, 17) and mask["S9"]["Squat"][3].dtype == bool
    frac = np.mean([m.any(-1).mean() for s in mask for a in mask[s] for m in mask[s][a]])
    assert 0.1 < frac < 0.6
    err = [np.linalg.norm(k - g, axis=-1) for s in kp for a in kp[s] for k, g in zip(kp[s][a], gt[s][a])]
    ms = [m for s in mask for a in mask[s] for m in mask[s][a]]
    e, m = np.concatenate([x.ravel() for x in err]), np.concatenate([x.ravel() for x in ms])
    assert e[m].mean() > 3 * e[~m].mean()  # the masked joints are the grossly wrong ones
