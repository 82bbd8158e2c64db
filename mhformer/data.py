"""Human3.6M and MPI-INF-3DHP for MHFormer: VideoPose3D / P-STMO ``.npz`` files -> N-frame windows.

Human3.6M (as the official ``common/load_data_hm36.py`` + ``h36m_dataset.py``)::

    <root>/data_3d_<dataset>.npz               positions_3d {subject: {action: (T, 32|17, 3) world metres}}
    <root>/data_2d_<dataset>_<keypoints>.npz   positions_2d {subject: {action: [4 x (T', 17, 2) pixels]}},
                                               metadata {keypoints_symmetry: [left, right], ...}

``dataset="h36m"``, ``keypoints="cpn_ft_h36m_dbb"`` (CPN detections) or ``"gt"``. 32 joints are reduced to
the 17 of VideoPose3D; every (subject, action, camera) is one sequence; 3D goes to the camera frame with
joints 1..16 made root-relative (the root keeps its camera coordinates; the loss zeroes it); 2D is
normalised as ``u' = 2u/w - 1, v' = 2v/w - h/w``; 2D longer than the mocap is truncated. Cameras come
from the built-in H36M calibration, or from a ``cameras`` entry of the 3D file (the embedded
``shared.data.skeleton`` data carries its own).

MPI-INF-3DHP in P-STMO's layout (no official MHFormer code exists)::

    <root>/data_train_3dhp.npz   data {"S1 Seq1": [{cam: {data_2d (T,17,2) px, data_3d (T,17,3) mm}}]}
    <root>/data_test_3dhp.npz    data {"TS1": {data_2d, data_3d, valid (T,)}}      root joint = 14

Every frame is a window centre (edge-replicated at the ends); training doubles the windows with the
horizontal flip (x -> -x and the left/right swap), as the official ``ChunkedGenerator``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.data.registry import register
from shared.data.skeleton import JOINTS_LEFT, JOINTS_RIGHT, world_to_camera

from . import h36m_cameras

H36M_KEEP_32 = (0, 1, 2, 3, 6, 7, 8, 12, 13, 14, 15, 17, 18, 19, 25, 26, 27)  # 32 -> 17 (VideoPose3D)
H36M_TRAIN = ("S1", "S5", "S6", "S7", "S8")
H36M_TEST = ("S9", "S11")
H36M_ACTIONS = ("Directions", "Discussion", "Eating", "Greeting", "Phoning", "Photo", "Posing", "Purchases",
                "Sitting", "SittingDown", "Smoking", "Waiting", "WalkDog", "Walking", "WalkTogether")
# MPI-INF-3DHP in P-STMO's 17-joint order: the root is joint 14, and left/right differ from H36M's.
MPI3DHP_ROOT = 14
MPI3DHP_LEFT = (5, 6, 7, 11, 12, 13)
MPI3DHP_RIGHT = (2, 3, 4, 8, 9, 10)


class DataFormatError(ValueError):
    """A dataset file is missing or malformed; the message names the file and what is wrong."""


@dataclass
class PoseSequence:
    """One (subject, action, camera) sequence: camera-frame 3D (T, J, 3) metres and normalised 2D (T, J, 2)."""

    subject: str
    action: str
    camera: int
    pose_3d: np.ndarray
    pose_2d: np.ndarray
    valid: np.ndarray | None = None  # (T,) bool; 3DHP test marks frames to score
    hard: np.ndarray | None = None  # (T,) bool; frames whose 2D has an occluded/swapped joint (embedded data)


@dataclass
class PoseData:
    sequences: list[PoseSequence]
    kps_left: list[int]
    kps_right: list[int]
    joints_left: list[int]
    joints_right: list[int]
    root: int = 0
    extra: dict = field(default_factory=dict)


def normalize_screen_coordinates(x: np.ndarray, w: int, h: int) -> np.ndarray:
    """Pixels -> [-1, 1] along x, keeping the aspect ratio: both axes are divided by the width."""
    return (x / w * 2 - np.array([1.0, h / w])).astype(np.float32)


def _load_npz_dict(path: Path, key: str) -> dict:
    """``np.load(path)[key].item()`` with one-line errors naming the file."""
    if not path.is_file():
        raise DataFormatError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=True) as z:
            if key not in z.files:
                raise DataFormatError(f"{path}: no '{key}' entry (found {', '.join(z.files) or 'nothing'})")
            obj = z[key]
            obj = obj.item() if obj.dtype == object and obj.shape == () else obj
    except DataFormatError:
        raise
    except Exception as e:  # noqa: BLE001 - zip/pickle errors of every kind, re-raised with the file named
        raise DataFormatError(f"{path}: not a readable .npz ({type(e).__name__}: {e})") from None
    if not isinstance(obj, dict):
        raise DataFormatError(f"{path}: '{key}' must be a pickled dict, got {type(obj).__name__}")
    return obj


def _npz_entry(path: Path, key: str):
    with np.load(path, allow_pickle=True) as z:
        if key not in z.files:
            return None
        obj = z[key]
        return obj.item() if obj.dtype == object and obj.shape == () else obj


def h36m_camera_table(subject: str) -> list[dict]:
    """The 4 built-in Human3.6M cameras of ``subject`` (orientation, translation in metres, intrinsics)."""
    if subject not in h36m_cameras.EXTRINSICS:
        raise DataFormatError(f"subject {subject}: no Human3.6M calibration (known: "
                              f"{', '.join(h36m_cameras.EXTRINSICS)}); put a 'cameras' entry in the 3D file")
    cams = []
    for (cid, f, c, k, p, w, h), (q, t) in zip(h36m_cameras.INTRINSICS, h36m_cameras.EXTRINSICS[subject]):
        cams.append({"id": cid, "orientation": np.array(q), "translation": np.array(t) / 1000.0,
                     "focal_length": np.array(f), "center": np.array(c), "radial_distortion": np.array(k),
                     "tangential_distortion": np.array(p), "res_w": w, "res_h": h})
    return cams


def _cameras_from_file(table: dict, subject: str, path: Path) -> list[dict]:
    try:
        cams = [dict(c) for c in table[subject]]
        for c in cams:
            c["orientation"] = np.asarray(c["orientation"], np.float64)
            c["translation"] = np.asarray(c["translation"], np.float64) / 1000.0  # mm, like the H36M tables
            c["res_w"], c["res_h"] = int(c["res_w"]), int(c["res_h"])
    except (KeyError, TypeError, ValueError) as e:
        raise DataFormatError(f"{path}: 'cameras' entry for {subject} is malformed ({type(e).__name__}: {e})") from None
    return cams


def load_h36m(root: str | Path, subjects: tuple[str, ...] | list[str], dataset: str = "h36m",
              keypoints: str = "cpn_ft_h36m_dbb", actions: str = "*", downsample: int = 1) -> PoseData:
    """Sequences of ``subjects`` from the VideoPose3D files under ``root`` (see the module docstring).

    ``actions``: ``"*"`` or comma-separated prefixes (official ``-a``). ``downsample``: keep every k-th frame.
    """
    root = Path(root)
    p3 = root / f"data_3d_{dataset}.npz"
    p2 = root / f"data_2d_{dataset}_{keypoints}.npz"
    pos3d = _load_npz_dict(p3, "positions_3d")
    pos2d = _load_npz_dict(p2, "positions_2d")
    meta = _npz_entry(p2, "metadata")
    try:
        left, right = (list(map(int, s)) for s in meta["keypoints_symmetry"])
    except (TypeError, KeyError, ValueError):
        raise DataFormatError(f"{p2}: 'metadata' must hold keypoints_symmetry [[left...], [right...]]") from None
    cam_table = _npz_entry(p3, "cameras")
    corrupted = _npz_entry(p2, "corrupted")  # optional (the embedded detector-like 2D): (T, 17) masks
    wanted = None if actions == "*" else [a.strip() for a in actions.split(",")]
    seqs: list[PoseSequence] = []
    for subject in subjects:
        if subject not in pos3d:
            raise DataFormatError(f"{p3}: subject {subject} is missing (found {', '.join(map(str, pos3d))})")
        if subject not in pos2d:
            raise DataFormatError(f"{p2}: subject {subject} is missing from the 2D detections")
        cams = _cameras_from_file(cam_table, subject, p3) if cam_table else h36m_camera_table(subject)
        for action, world in pos3d[subject].items():
            if subject == "S11" and action == "Directions":
                continue  # corrupt video; VideoPose3D's preparation already leaves it out of its files
            if wanted is not None and not any(action.startswith(a) for a in wanted):
                continue
            world = np.asarray(world, np.float32)
            if world.ndim != 3 or world.shape[1] not in (17, 32) or world.shape[2] != 3:
                raise DataFormatError(f"{p3}: positions_3d[{subject}][{action}] has shape {world.shape}; "
                                      "expected (T, 32, 3) or (T, 17, 3)")
            if world.shape[1] == 32:
                world = world[:, H36M_KEEP_32]
            if action not in pos2d[subject]:
                raise DataFormatError(f"{p2}: action '{action}' of {subject} is missing from the 2D detections")
            views = pos2d[subject][action]
            if len(views) != len(cams):
                raise DataFormatError(f"{p2}: {subject}/{action} has {len(views)} camera views, expected {len(cams)}")
            for ci, (kp, cam) in enumerate(zip(views, cams)):
                kp = np.asarray(kp, np.float32)
                if kp.ndim != 3 or kp.shape[1:] != (17, 2):
                    raise DataFormatError(f"{p2}: positions_2d[{subject}][{action}][{ci}] has shape {kp.shape}; "
                                          "expected (T, 17, 2)")
                if kp.shape[0] < world.shape[0]:
                    raise DataFormatError(f"{p2}: {subject}/{action} camera {ci} has {kp.shape[0]} 2D frames but "
                                          f"the mocap has {world.shape[0]}")
                kp = normalize_screen_coordinates(kp[:world.shape[0]], cam["res_w"], cam["res_h"])
                pose = world_to_camera(world.astype(np.float64), cam["orientation"], cam["translation"])
                pose[:, 1:] -= pose[:, :1]
                hard = None
                if corrupted is not None:
                    hard = np.asarray(corrupted[subject][action][ci], bool)[:world.shape[0]].any(-1)[::downsample]
                seqs.append(PoseSequence(subject, action, ci, pose.astype(np.float32)[::downsample],
                                         kp[::downsample], hard=hard))
    if not seqs:
        raise DataFormatError(f"{p3}: no sequences for subjects {list(subjects)} and actions '{actions}'")
    return PoseData(seqs, left, right, list(JOINTS_LEFT), list(JOINTS_RIGHT), root=0)


def load_3dhp(root: str | Path, train: bool, units: float = 1e-3) -> PoseData:
    """MPI-INF-3DHP from P-STMO's ``data_{train,test}_3dhp.npz`` (3D in mm, scaled by ``units`` to metres).

    Joints other than the root (14) are made root-relative; 2D is normalised with 2048 x 2048 images
    (train, TS1-TS4) or 1920 x 1080 (TS5, TS6). Test sequences keep their ``valid`` mask.
    """
    path = Path(root) / ("data_train_3dhp.npz" if train else "data_test_3dhp.npz")
    data = _load_npz_dict(path, "data")
    seqs: list[PoseSequence] = []
    for name, entry in data.items():
        try:
            if train:
                subject, seq = str(name).split(" ")
                views = [(cam, anim, 2048, 2048, None) for cam, anim in entry[0].items()]
            else:
                subject, seq = str(name), str(name)
                w, h = (1920, 1080) if name in ("TS5", "TS6") else (2048, 2048)
                views = [(0, entry, w, h, np.asarray(entry["valid"]).astype(bool))]
            for cam, anim, w, h, valid in views:
                p3, p2 = np.asarray(anim["data_3d"], np.float32), np.asarray(anim["data_2d"], np.float32)
                if p3.shape[1:] != (17, 3) or p2.shape[1:] != (17, 2) or len(p3) != len(p2):
                    raise ValueError(f"shapes data_3d {p3.shape}, data_2d {p2.shape}")
                p3 = p3 * units
                rel = p3 - p3[:, MPI3DHP_ROOT:MPI3DHP_ROOT + 1]
                rel[:, MPI3DHP_ROOT] = p3[:, MPI3DHP_ROOT]
                seqs.append(PoseSequence(subject, seq, int(cam), rel, normalize_screen_coordinates(p2, w, h), valid))
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
            raise DataFormatError(f"{path}: entry '{name}' is malformed ({type(e).__name__}: {e})") from None
    if not seqs:
        raise DataFormatError(f"{path}: 'data' holds no sequences")
    return PoseData(seqs, list(MPI3DHP_LEFT), list(MPI3DHP_RIGHT), list(MPI3DHP_LEFT), list(MPI3DHP_RIGHT),
                    root=MPI3DHP_ROOT)


# ----------------------------------------------------------------------------- windows
def flip_pose(x: np.ndarray | torch.Tensor, left: list[int], right: list[int]):
    """Horizontal flip of (..., J, C) poses: negate x, swap left/right joints (2D or 3D)."""
    y = x.clone() if torch.is_tensor(x) else x.copy()
    y[..., 0] *= -1
    y[..., left + right, :] = y[..., right + left, :]
    return y


class PoseWindows(Dataset):
    """N-frame windows centred on every ``stride``-th frame of each sequence.

    Items: ``(input_2d (N, J, 2), target_3d (N, J, 3) or (1, J, 3), sequence index)``, float32. With
    ``flip`` every window appears twice, un-flipped and flipped (official ``augment``). ``out_all``: the
    target is the whole window (training) or only its centre frame (testing). ``valid_only`` keeps centres
    whose sequence ``valid`` mask is set (3DHP test).
    """

    def __init__(self, data: PoseData, frames: int, stride: int = 1, flip: bool = False, out_all: bool = True,
                 valid_only: bool = False):
        if stride < 1:
            raise ValueError(f"window stride must be >= 1, got {stride}")
        self.data, self.frames, self.pad, self.out_all = data, frames, (frames - 1) // 2, out_all
        seq_ids, centres = [], []
        for i, s in enumerate(data.sequences):
            c = np.arange(0, len(s.pose_2d), stride)
            if valid_only and s.valid is not None:
                c = c[s.valid[c]]
            seq_ids.append(np.full(len(c), i))
            centres.append(c)
        seq_ids, centres = np.concatenate(seq_ids), np.concatenate(centres)
        n = len(centres)
        flips = np.zeros(n, bool)
        if flip:
            seq_ids, centres = np.concatenate([seq_ids, seq_ids]), np.concatenate([centres, centres])
            flips = np.concatenate([flips, np.ones(n, bool)])
        self.seq_ids, self.centres, self.flips = seq_ids, centres, flips

    def __len__(self) -> int:
        return len(self.centres)

    def actions(self) -> list[str]:
        """Action name of every item (for per-action averaging)."""
        names = [s.action for s in self.data.sequences]
        return [names[i] for i in self.seq_ids]

    def hard(self) -> np.ndarray | None:
        """Per item: is the centre frame's 2D corrupted (occluded/swapped joint)? None without masks."""
        if any(s.hard is None for s in self.data.sequences):
            return None
        return np.array([self.data.sequences[i].hard[c] for i, c in zip(self.seq_ids, self.centres)], bool)

    def window(self, seq: PoseSequence, centre: int) -> tuple[np.ndarray, np.ndarray]:
        t = len(seq.pose_2d)
        idx = np.clip(np.arange(centre - self.pad, centre + self.pad + 1), 0, t - 1)  # 'edge' padding
        x = seq.pose_2d[idx]
        y = seq.pose_3d[idx] if self.out_all else seq.pose_3d[centre:centre + 1]
        return x, y

    def __getitem__(self, i: int):
        seq = self.data.sequences[self.seq_ids[i]]
        x, y = self.window(seq, int(self.centres[i]))
        if self.flips[i]:
            x = flip_pose(x, self.data.kps_left, self.data.kps_right)
            y = flip_pose(y, self.data.joints_left, self.data.joints_right)
        as_tensor = lambda a: torch.from_numpy(np.ascontiguousarray(a))  # noqa: E731
        return as_tensor(x), as_tensor(y), int(self.seq_ids[i])


# ----------------------------------------------------------------------------- verify
@register("h36m", paper="mhformer",
          doc="<root>/data_3d_h36m.npz + data_2d_h36m_{cpn_ft_h36m_dbb,gt}.npz (VideoPose3D format)")
def verify_h36m(root: Path) -> list[str]:
    problems = []
    for kps in ("cpn_ft_h36m_dbb", "gt"):
        try:
            data = load_h36m(root, H36M_TRAIN + H36M_TEST, keypoints=kps)
        except DataFormatError as e:
            problems.append(str(e))
            continue
        found = {a.split(" ")[0] for a in (s.action for s in data.sequences)}
        missing = sorted(set(H36M_ACTIONS) - found)
        if missing:
            problems.append(f"{kps}: actions missing: {', '.join(missing)}")
        n = {sub: sum(len(s.pose_2d) for s in data.sequences if s.subject == sub) for sub in H36M_TRAIN + H36M_TEST}
        print(f"{kps}: {len(data.sequences)} sequences, frames per subject {n}")
    return list(dict.fromkeys(problems))  # the 3D file's problems would otherwise appear once per 2D file


@register("mpi_inf_3dhp", paper="mhformer",
          doc="<root>/data_train_3dhp.npz + data_test_3dhp.npz (P-STMO format)")
def verify_3dhp(root: Path) -> list[str]:
    problems = []
    for train in (True, False):
        try:
            data = load_3dhp(root, train)
            print(f"{'train' if train else 'test'}: {len(data.sequences)} sequences, "
                  f"{sum(len(s.pose_2d) for s in data.sequences)} frames")
        except DataFormatError as e:
            problems.append(str(e))
    if not problems:
        test = load_3dhp(root, False)
        names = sorted({s.subject for s in test.sequences})
        if names != [f"TS{i}" for i in range(1, 7)]:
            problems.append(f"data_test_3dhp.npz: expected TS1..TS6, found {names}")
    return problems
