"""Embedded skeleton motion in the Human3.6M 17-joint layout, written as VideoPose3D ``.npz`` files.

:func:`skeleton_motion` builds a small motion-capture set, deterministic for a seed and cached on disk:

* the H36M-17 skeleton (joint order, parents, left/right lists as VideoPose3D keeps them after removing
  the 15 static joints) with approximately Human3.6M bone lengths, scaled per subject by U(0.9, 1.1);
* periodic "actions" driven by forward kinematics from per-joint Euler angles that are sums of
  sinusoids (0.5-2 Hz, 50 fps): ``Walking`` (circling, counter-phase arms), ``Squat``, ``Waving``
  (one arm), ``Twist`` (spine yaw); random amplitude, frequency and phase per sequence, root
  translation and yaw drift, feet kept on the floor;
* subjects named as in Human3.6M (S1, S5, S6, S7, S8 for training, S9, S11 for testing), two
  sub-sequences per action (``"Walking"``, ``"Walking 1"``), so a real H36M loader splits them as usual;
* 4 pinhole cameras with H36M-like intrinsics (f ~ 1145 px, centre ~ (512, 508), 1000 x 1000/1002)
  and extrinsics (5 m away, 1.5 m high, azimuths 70/-70/110/-110 deg, aimed at the pelvis height);
* 2D projections in pixels: exact (``gt``), mildly noisy (``detected``: N(0, 4 px) plus 5 % outliers of
  15 px) and detector-like with local, temporally resolvable ambiguity (``detector``, see
  :func:`detector_keypoints`): per-joint confidence-dependent noise, joints occluded for a few frames
  (frozen at a displaced guess), left/right limb swaps for a few frames. Its file also carries
  ``corrupted`` {subject: {action: [4 x (T, 17) bool]}}: the joints whose 2D is an occlusion guess or a swap.

Files (VideoPose3D formats, see its DATASETS.md)::

    data_3d_<dataset>.npz            positions_3d: {subject: {action: (T, 17, 3) float32, world, metres}}
                                     cameras:      {subject: [4 x {id, orientation (w,x,y,z), translation
                                                    (mm, camera centre in world), focal_length, center,
                                                    radial_distortion, tangential_distortion, res_w, res_h}]}
    data_2d_<dataset>_<kps>.npz      positions_2d: {subject: {action: [4 x (T, 17, 2) float32 pixels]}}
                                     metadata:     {layout_name, num_joints, keypoints_symmetry}
                                     corrupted:    (``detector`` only) {subject: {action: [4 x (T, 17) bool]}}

The real ``data_3d_h36m.npz`` stores 32 joints and no ``cameras`` entry (loaders hard-code the H36M
calibration); here the 17 joints are stored directly and the cameras ride along under ``cameras``.
The camera convention is VideoPose3D's: ``X_cam = q^-1 * (X_world - t)``.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from .digits import cache_dir

# ----------------------------------------------------------------------------- the H36M-17 layout
JOINT_NAMES = ("Pelvis", "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Spine", "Thorax",
               "Neck", "Head", "LShoulder", "LElbow", "LWrist", "RShoulder", "RElbow", "RWrist")
PARENTS = (-1, 0, 1, 2, 0, 4, 5, 0, 7, 8, 9, 8, 11, 12, 8, 14, 15)
JOINTS_LEFT = (4, 5, 6, 11, 12, 13)
JOINTS_RIGHT = (1, 2, 3, 14, 15, 16)
# Bone length to the parent, mm (approximate Human3.6M averages).
BONE_LENGTHS_MM = (0.0, 133.0, 443.0, 454.0, 133.0, 443.0, 454.0, 233.0, 257.0, 121.0, 115.0,
                   151.0, 279.0, 252.0, 151.0, 279.0, 252.0)
# Rest-pose bone directions in the body frame: x = the subject's right, y = forward, z = up (right-handed,
# so the skeleton is not mirrored: forward x up = right).
_REST_DIRS = np.array([
    [0, 0, 0], [1, 0, 0], [0, 0, -1], [0, 0, -1], [-1, 0, 0], [0, 0, -1], [0, 0, -1],
    [0, 0, 1], [0, 0, 1], [0, 0.25, 1], [0, 0.2, 1], [-1, 0, -0.15], [0, 0, -1], [0, 0, -1],
    [1, 0, -0.15], [0, 0, -1], [0, 0, -1],
], dtype=np.float64)
ACTIONS = ("Walking", "Squat", "Waving", "Twist")
TRAIN_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
TEST_SUBJECTS = ("S9", "S11")
FPS = 50
_GEN_VERSION = 2  # bump when generation changes, so stale caches are not reused

# H36M-like pinhole intrinsics (rounded from the published calibration) and camera azimuths (deg).
_INTRINSICS = (
    {"id": "cam0", "focal_length": (1145.0, 1144.0), "center": (512.5, 515.5), "res_w": 1000, "res_h": 1002,
     "azimuth": 70.0},
    {"id": "cam1", "focal_length": (1150.0, 1148.0), "center": (509.0, 508.0), "res_w": 1000, "res_h": 1000,
     "azimuth": -70.0},
    {"id": "cam2", "focal_length": (1149.0, 1149.0), "center": (520.0, 501.5), "res_w": 1000, "res_h": 1000,
     "azimuth": 110.0},
    {"id": "cam3", "focal_length": (1145.5, 1145.0), "center": (515.0, 502.0), "res_w": 1000, "res_h": 1002,
     "azimuth": -110.0},
)


# ----------------------------------------------------------------------------- quaternions and cameras
def qrot(q: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Rotate vectors ``v`` (..., 3) by unit quaternions ``q`` (..., 4) in (w, x, y, z) order (broadcasts)."""
    q, v = np.asarray(q, np.float64), np.asarray(v, np.float64)
    qvec = q[..., 1:]
    uv = np.cross(qvec, v)
    uuv = np.cross(qvec, uv)
    return v + 2.0 * (q[..., :1] * uv + uuv)


def qinverse(q: np.ndarray) -> np.ndarray:
    """Inverse (conjugate) of unit quaternions (..., 4), (w, x, y, z)."""
    q = np.asarray(q, np.float64)
    return np.concatenate([q[..., :1], -q[..., 1:]], axis=-1)


def world_to_camera(x: np.ndarray, orientation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """(..., 3) world points -> camera frame: ``q^-1 * (x - t)`` (VideoPose3D convention, same units as t)."""
    return qrot(qinverse(orientation), x - np.asarray(translation)).astype(x.dtype)


def camera_to_world(x: np.ndarray, orientation: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Inverse of :func:`world_to_camera`."""
    return (qrot(orientation, x) + np.asarray(translation)).astype(x.dtype)


def project_pinhole(x_cam: np.ndarray, focal_length, center) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 2) pixels, no distortion."""
    xy = x_cam[..., :2] / x_cam[..., 2:3]
    return xy * np.asarray(focal_length) + np.asarray(center)


def quaternion_from_matrix(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation matrix -> unit quaternion (w, x, y, z) with w >= 0."""
    from scipy.spatial.transform import Rotation

    x, y, z, w = Rotation.from_matrix(r).as_quat()
    q = np.array([w, x, y, z])
    return q if w >= 0 else -q


def look_at_camera(azimuth_deg: float, distance: float, height: float, target) -> tuple[np.ndarray, np.ndarray]:
    """Orientation (w, x, y, z; camera -> world) and centre (metres) of a camera on a circle around
    ``target`` looking at it. Camera axes as in OpenCV: x right, y down, z forward; world z is up."""
    a = np.deg2rad(azimuth_deg)
    target = np.asarray(target, np.float64)
    centre = np.array([distance * np.cos(a), distance * np.sin(a), height])
    fwd = target - centre
    fwd /= np.linalg.norm(fwd)
    right = np.cross(fwd, [0.0, 0.0, 1.0])
    right /= np.linalg.norm(right)
    down = np.cross(fwd, right)
    return quaternion_from_matrix(np.stack([right, down, fwd], axis=1)), centre


def make_cameras(distance: float = 5.0, height: float = 1.5, target_height: float = 0.95) -> list[dict]:
    """The 4 H36M-like cameras as VideoPose3D-style dicts (translation in mm, like the H36M tables)."""
    cams = []
    for c in _INTRINSICS:
        q, centre = look_at_camera(c["azimuth"], distance, height, (0.0, 0.0, target_height))
        cams.append({
            "id": c["id"], "orientation": q.astype(np.float32), "translation": (centre * 1000).astype(np.float32),
            "focal_length": np.array(c["focal_length"], np.float32), "center": np.array(c["center"], np.float32),
            "radial_distortion": np.zeros(3, np.float32), "tangential_distortion": np.zeros(2, np.float32),
            "res_w": c["res_w"], "res_h": c["res_h"], "azimuth": c["azimuth"],
        })
    return cams


# ----------------------------------------------------------------------------- kinematics
def _rot(axis: int, a: np.ndarray) -> np.ndarray:
    """(T, 3, 3) rotations by angles ``a`` (T,) radians about world axis 0/1/2."""
    c, s = np.cos(a), np.sin(a)
    r = np.zeros(a.shape + (3, 3))
    i, j = [(1, 2), (2, 0), (0, 1)][axis]
    r[..., axis, axis] = 1.0
    r[..., i, i], r[..., i, j], r[..., j, i], r[..., j, j] = c, -s, s, c
    return r


def euler_to_matrix(angles: np.ndarray) -> np.ndarray:
    """(..., 3) angles (rx, ry, rz) radians -> (..., 3, 3) ``Rz @ Ry @ Rx``."""
    return _rot(2, angles[..., 2]) @ _rot(1, angles[..., 1]) @ _rot(0, angles[..., 0])


def forward_kinematics(local_rot: np.ndarray, offsets: np.ndarray, root: np.ndarray) -> np.ndarray:
    """Joint positions (T, J, 3) from local rotations (T, J, 3, 3), bone offsets (J, 3) and root (T, 3).

    Joint ``j``'s rotation turns the bones of its children: ``p_j = p_parent + G_parent @ offset_j`` with
    ``G_j = G_parent @ R_j``.
    """
    t, j = local_rot.shape[:2]
    glob = np.empty_like(local_rot)
    pos = np.empty((t, j, 3))
    for k, p in enumerate(PARENTS):
        if p < 0:
            glob[:, k], pos[:, k] = local_rot[:, k], root
        else:
            glob[:, k] = glob[:, p] @ local_rot[:, k]
            pos[:, k] = pos[:, p] + glob[:, p] @ offsets[k]
    return pos


def bone_offsets(scale: float = 1.0, jitter: np.ndarray | None = None) -> np.ndarray:
    """(17, 3) rest-pose offsets in metres, bone lengths x ``scale`` (x per-bone ``jitter``)."""
    d = _REST_DIRS / np.maximum(np.linalg.norm(_REST_DIRS, axis=1, keepdims=True), 1e-9)
    lengths = np.asarray(BONE_LENGTHS_MM) / 1000.0 * scale
    if jitter is not None:
        lengths = lengths * jitter
    return d * lengths[:, None]


def _sin(t: np.ndarray, f: float, phase: float) -> np.ndarray:
    return np.sin(2 * np.pi * f * t + phase)


def action_angles(action: str, t: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Local Euler angles (T, 17, 3), root path (T, 2) in metres and heading (T,) for one sequence."""
    n = len(t)
    ang = np.zeros((n, 17, 3))
    amp = lambda lo, hi: np.deg2rad(rng.uniform(lo, hi))  # noqa: E731
    ph = rng.uniform(0, 2 * np.pi)
    # Small secondary motion everywhere so no two sequences are identical.
    for k in range(1, 17):
        f2 = rng.uniform(0.5, 2.0)
        ang[:, k] += np.deg2rad(rng.uniform(0, 4, size=3)) * _sin(t, f2, rng.uniform(0, 2 * np.pi))[:, None]
    radius, omega = rng.uniform(0.0, 0.4), rng.uniform(-0.15, 0.15)
    heading0 = rng.uniform(-np.pi, np.pi)
    if action == "Walking":
        f = rng.uniform(0.8, 1.2)
        hip, knee, arm = amp(22, 32), amp(45, 60), amp(15, 30)
        for side, sgn in ((1, 1.0), (4, -1.0)):  # right hip = joint 1, left hip = joint 4
            ang[:, side, 0] += sgn * hip * _sin(t, f, ph)
            # the knee flexes (shin backwards) mostly in the swing phase
            ang[:, side + 1, 0] -= knee * 0.5 * (1 + _sin(t, f, ph + sgn * np.pi / 2 + np.pi / 2))
        ang[:, 14, 0] -= arm * _sin(t, f, ph)  # arms swing against the legs
        ang[:, 11, 0] += arm * _sin(t, f, ph)
        ang[:, 15, 0] += amp(10, 25) * (1 + _sin(t, f, ph))
        ang[:, 12, 0] += amp(10, 25) * (1 + _sin(t, f, ph + np.pi))
        ang[:, 7, 2] += amp(3, 8) * _sin(t, f, ph)  # torso counter-rotation
        radius, omega = rng.uniform(1.2, 1.8), rng.choice([-1, 1]) * rng.uniform(0.35, 0.55)
    elif action == "Squat":
        f = rng.uniform(0.4, 0.7)
        depth = 0.5 * (1 - np.cos(2 * np.pi * f * t + ph))  # 0 standing .. 1 deepest
        hip, knee = amp(70, 95), amp(90, 115)
        for side in (1, 4):
            ang[:, side, 0] += hip * depth
            ang[:, side + 1, 0] -= knee * depth
            ang[:, side + 2, 0] += 0.35 * knee * depth  # ankle keeps the foot flat
        ang[:, 7, 0] += amp(15, 35) * depth  # lean forward
        ang[:, 11, 0] += amp(40, 80) * depth  # arms forward for balance
        ang[:, 14, 0] += amp(40, 80) * depth
    elif action == "Waving":
        f = rng.uniform(1.0, 2.0)
        arm, side = (11, 1.0) if rng.random() < 0.5 else (14, -1.0)
        ang[:, arm, 1] += side * amp(120, 160)  # raise the arm sideways
        ang[:, arm + 1, 1] += side * amp(20, 50) * _sin(t, f, ph)  # forearm swings
        ang[:, arm + 1, 0] += amp(10, 30)
        ang[:, 7, 1] += amp(2, 6) * _sin(t, f / 2, ph)
    elif action == "Twist":
        f = rng.uniform(0.4, 0.9)
        ang[:, 7, 2] += amp(30, 45) * _sin(t, f, ph)  # spine yaw +-40 deg
        ang[:, 8, 2] += amp(5, 15) * _sin(t, f, ph)
        ang[:, 11, 1] += amp(20, 50)  # arms slightly away from the body
        ang[:, 14, 1] -= amp(20, 50)
        ang[:, 12, 0] += amp(30, 80)
        ang[:, 15, 0] += amp(30, 80)
    else:
        raise ValueError(f"unknown action '{action}' (choose from {', '.join(ACTIONS)})")
    theta = heading0 + omega * t
    root_xy = radius * np.stack([np.cos(theta), np.sin(theta)], axis=1)
    # Walking follows the circle's tangent; the others turn slowly on the spot.
    heading = theta + (np.pi / 2 * np.sign(omega) if action == "Walking" else 0.0) - np.pi / 2
    if action != "Walking":
        heading = heading0 + amp(5, 20) * _sin(t, rng.uniform(0.05, 0.15), ph)
    return ang, root_xy, heading


def simulate_sequence(action: str, frames: int, offsets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(T, 17, 3) world positions in metres (z up) of one sequence; the lower ankle touches the floor."""
    t = np.arange(frames) / FPS
    ang, root_xy, heading = action_angles(action, t, rng)
    local = euler_to_matrix(ang)
    local[:, 0] = _rot(2, heading) @ local[:, 0]
    pos = forward_kinematics(local, offsets, np.zeros((frames, 3)))
    pos[:, :, :2] += root_xy[:, None]
    ankle_z = np.minimum(pos[:, 3, 2], pos[:, 6, 2])
    pos[:, :, 2] += 0.08 - ankle_z[:, None]  # ankle joint 8 cm above the floor
    return pos


# ----------------------------------------------------------------------------- detector-like 2D
# Limb pairs a detector confuses: legs (hip, knee, ankle) and arms (shoulder, elbow, wrist).
_SWAP_PAIRS = (((1, 2, 3), (4, 5, 6)), ((14, 15, 16), (11, 12, 13)))
# Per-joint base confidence: extremities (wrists, ankles) are detected less reliably.
_BASE_CONF = np.array([1.0, 0.95, 0.85, 0.7, 0.95, 0.85, 0.7, 1.0, 1.0, 0.95, 0.9,
                       0.9, 0.8, 0.65, 0.9, 0.8, 0.65])


def detector_keypoints(uv: np.ndarray, depth: np.ndarray, rng: np.random.Generator, noise_px: float = 2.5,
                       occlusion_rate: float = 0.004, occlusion_len: tuple[int, int] = (3, 8),
                       occlusion_px: float = 40.0, swap_rate: float = 0.006, swap_len: tuple[int, int] = (2, 6)
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Detector-like 2D from exact projections ``uv`` (T, 17, 2) pixels and camera depths ``depth`` (T, 17).

    * confidence c in [0.15, 1] per joint and frame: the joint's base confidence, lowered when the joint is
      more than 5 cm behind the pelvis as seen from the camera (self-occlusion), times a slow random factor;
      Gaussian noise of std ``noise_px / c`` (so 2.5-17 px);
    * occlusion bursts: each joint starts one with probability ``occlusion_rate`` per frame, lasting
      ``occlusion_len`` frames; the detector then reports a guess: the joint's position at the burst's start
      plus a fixed displacement of ~``occlusion_px`` and a small jitter (what a detector outputs for a joint
      it cannot see);
    * left/right swaps: with probability ``swap_rate`` per frame the legs' or the arms' 2D are exchanged for
      ``swap_len`` frames.

    A single frame cannot tell a guess or a swap from a real pose; the neighbouring frames can.
    Returns (keypoints (T, 17, 2) float32 pixels, corrupted (T, 17) bool).
    """
    t, j = uv.shape[:2]
    behind = np.clip((depth - depth[:, :1] - 0.05) / 0.25, 0.0, 1.0)  # 0 in front .. 1 >= 30 cm behind
    slow = np.cumsum(rng.normal(0.0, 0.08, size=(t, j)), axis=0)
    slow = 0.85 + 0.15 * np.tanh(slow - slow.mean(0))
    conf = np.clip(_BASE_CONF[None] * (1.0 - 0.5 * behind) * slow, 0.15, 1.0)
    out = uv + rng.normal(size=uv.shape) * (noise_px / conf)[..., None]
    corrupted = np.zeros((t, j), bool)
    for k in range(j):
        starts = np.flatnonzero(rng.random(t) < occlusion_rate)
        for s in starts:
            n = int(rng.integers(occlusion_len[0], occlusion_len[1] + 1))
            e = min(t, s + n)
            a = rng.uniform(0, 2 * np.pi)
            guess = uv[s, k] + occlusion_px * rng.uniform(0.5, 1.5) * np.array([np.cos(a), np.sin(a)])
            out[s:e, k] = guess + rng.normal(0.0, 2.0, size=(e - s, 2))
            corrupted[s:e, k] = True
    for s in np.flatnonzero(rng.random(t) < swap_rate):
        n = int(rng.integers(swap_len[0], swap_len[1] + 1))
        e = min(t, s + n)
        a, b = _SWAP_PAIRS[int(rng.integers(len(_SWAP_PAIRS)))]
        a, b = list(a), list(b)
        out[s:e, a + b] = out[s:e, b + a]
        corrupted[s:e, a + b] = True
    return out.astype(np.float32), corrupted


# ----------------------------------------------------------------------------- the dataset
def _build(folder: Path, seed: int, frames: int, subseqs: int, noise_px: float, outlier_rate: float,
           outlier_px: float, dataset: str) -> None:
    rng = np.random.default_rng(seed)
    rng_det = np.random.default_rng([seed, 2])  # its own stream: ``detected`` stays as before
    cams = make_cameras()
    pos3d: dict = {}
    gt2d: dict = {}
    det2d: dict = {}
    hard2d: dict = {}
    hard_mask: dict = {}
    for subject in TRAIN_SUBJECTS + TEST_SUBJECTS:
        offsets = bone_offsets(rng.uniform(0.9, 1.1), rng.uniform(0.97, 1.03, size=17))
        pos3d[subject], gt2d[subject], det2d[subject], hard2d[subject], hard_mask[subject] = {}, {}, {}, {}, {}
        for action in ACTIONS:
            for k in range(subseqs):
                name = action if k == 0 else f"{action} {k}"
                world = simulate_sequence(action, frames, offsets, rng).astype(np.float32)
                pos3d[subject][name] = world
                gts, dets, hards, masks = [], [], [], []
                for cam in cams:
                    xc = world_to_camera(world.astype(np.float64), cam["orientation"],
                                         cam["translation"].astype(np.float64) / 1000.0)
                    uv = project_pinhole(xc, cam["focal_length"], cam["center"])
                    noisy = uv + rng.normal(0.0, noise_px, size=uv.shape)
                    out = rng.random(uv.shape[:2]) < outlier_rate
                    direction = rng.normal(size=uv.shape)
                    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
                    noisy += out[..., None] * direction * outlier_px
                    gts.append(uv.astype(np.float32))
                    dets.append(noisy.astype(np.float32))
                    kp, bad = detector_keypoints(uv, xc[..., 2], rng_det)
                    hards.append(kp)
                    masks.append(bad)
                gt2d[subject][name], det2d[subject][name] = gts, dets
                hard2d[subject][name], hard_mask[subject][name] = hards, masks
    cam_table = {s: [{k: v for k, v in c.items() if k != "azimuth"} for c in cams] for s in pos3d}
    meta = {"layout_name": "h36m", "num_joints": 17,
            "keypoints_symmetry": [list(JOINTS_LEFT), list(JOINTS_RIGHT)]}
    np.savez_compressed(folder / f"data_3d_{dataset}.npz", positions_3d=pos3d, cameras=cam_table)
    np.savez_compressed(folder / f"data_2d_{dataset}_gt.npz", positions_2d=gt2d, metadata=meta)
    np.savez_compressed(folder / f"data_2d_{dataset}_detected.npz", positions_2d=det2d, metadata=meta)
    np.savez_compressed(folder / f"data_2d_{dataset}_detector.npz", positions_2d=hard2d, metadata=meta,
                        corrupted=hard_mask)


def skeleton_motion(seed: int = 0, frames: int = 600, subseqs: int = 2, noise_px: float = 4.0,
                    outlier_rate: float = 0.05, outlier_px: float = 15.0, dataset: str = "h36m_synth") -> Path:
    """Folder holding ``data_3d_<dataset>.npz`` and ``data_2d_<dataset>_{gt,detected,detector}.npz`` (module doc).

    7 subjects x 4 actions x ``subseqs`` sequences of ``frames`` frames (50 fps), 4 cameras each.
    Deterministic for the arguments; built once and cached under ``cache_dir()``.
    """
    if frames < 1 or subseqs < 1:
        raise ValueError(f"skeleton_motion: frames={frames} and subseqs={subseqs} must be >= 1")
    params = {"seed": seed, "frames": frames, "subseqs": subseqs, "noise_px": noise_px,
              "outlier_rate": outlier_rate, "outlier_px": outlier_px, "dataset": dataset, "v": _GEN_VERSION}
    key = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
    folder = cache_dir() / f"skeleton_motion_{key}"
    names = [f"data_3d_{dataset}.npz", f"data_2d_{dataset}_gt.npz", f"data_2d_{dataset}_detected.npz",
             f"data_2d_{dataset}_detector.npz"]
    if all((folder / n).is_file() for n in names):
        return folder
    tmp = Path(tempfile.mkdtemp(prefix=f".skeleton_motion_{key}.", dir=cache_dir()))
    try:
        _build(tmp, seed, frames, subseqs, noise_px, outlier_rate, outlier_px, dataset)
        (tmp / "params.json").write_text(json.dumps(params, indent=2))
        if folder.exists():  # an incomplete folder from a crashed run
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError:
        if all((folder / n).is_file() for n in names):  # another process won the race
            shutil.rmtree(tmp, ignore_errors=True)
            return folder
        raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return folder
