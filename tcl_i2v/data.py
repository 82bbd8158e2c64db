"""Tracklet data: the MARS layout (loader + ``verify``), clip sampling, and SynVideo (the embedded set).

A tracklet is ``Tracklet(frames, pid, cam)``; ``frames`` is a list of image paths (real data) or a
``(T, 3, H, W)`` uint8 tensor (SynVideo). :class:`ClipDataset` yields one training item per tracklet:
``(teacher_clip (N, 3, H, W), student_frames (M, 3, H, W), label, cam)``:

- teacher: N frames by VKD's random temporal chunk crop (one random frame from each of N equal chunks;
  ``temporal_transforms.py``; shorter tracklets are repeated);
- student: the first M of a random permutation of the teacher's frames (VKD ``train_distill.py``),
  M = 1 by default (the paper's "image-based" student) [REC].

Test (spec 4): query = the first frame of a query tracklet, gallery tracklet = mean over N frames (first
frame of each of N chunks, VKD); MARS gallery augmented with the query tracklets.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.data.listfile import read_text_lines
from shared.data.registry import check_counts, register


@dataclass
class Tracklet:
    frames: list | torch.Tensor
    pid: int
    cam: int


# ---------------------------------------------------------------- MARS
MARS_COUNTS = {"train tracklets": 8298, "train ids": 625, "query": 1980, "gallery": 9330}


def _loadmat(path: Path, key: str) -> np.ndarray:
    from scipy.io import loadmat

    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (MARS info/ file)")
    m = loadmat(str(path))
    if key not in m:
        raise ValueError(f"{path}: no key '{key}' (found {sorted(k for k in m if not k.startswith('__'))})")
    return np.asarray(m[key])


def _names(path: Path) -> list[str]:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: missing (MARS info/ file)")
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _tracks(root: Path, split: str, names: list[str], info: np.ndarray, info_file: Path) -> list[Tracklet]:
    """Rows ``[start, end, pid, cam]`` (1-based, inclusive) -> tracklets; pid -1 rows dropped."""
    if info.ndim != 2 or info.shape[1] != 4:
        raise ValueError(f"{info_file}: expected an (N, 4) track table [start, end, pid, cam], got {info.shape}")
    out = []
    for r, (s, e, pid, cam) in enumerate(info.astype(int)):
        if pid == -1:
            continue
        if s < 1 or e > len(names) or e < s:
            raise ValueError(f"{info_file}: row {r + 1} indexes frames {s}..{e} outside 1..{len(names)}")
        frames = names[s - 1:e]
        if {f[:4] for f in frames} != {f"{pid:04d}"} and pid != 0 or len({f[5] for f in frames}) != 1:
            raise ValueError(f"{info_file}: row {r + 1} mixes identities or cameras ({frames[0]}..{frames[-1]})")
        out.append(Tracklet([root / split / f[:4] / f for f in frames], int(pid), int(cam)))
    return out


def load_mars(root: str | Path) -> dict[str, list[Tracklet]]:
    """``{"train", "query", "gallery"}`` tracklets of MARS (spec 3). The gallery is NOT augmented here
    (see :func:`augment_gallery`). Raises with the file name on a malformed tree."""
    root = Path(root)
    info = root / "info"
    tr_names, te_names = _names(info / "train_name.txt"), _names(info / "test_name.txt")
    train = _tracks(root, "bbox_train", tr_names, _loadmat(info / "tracks_train_info.mat", "track_train_info"),
                    info / "tracks_train_info.mat")
    test_info = _loadmat(info / "tracks_test_info.mat", "track_test_info")
    q_idx = _loadmat(info / "query_IDX.mat", "query_IDX").ravel().astype(int) - 1
    if q_idx.size and (q_idx.min() < 0 or q_idx.max() >= len(test_info)):
        raise ValueError(f"{info / 'query_IDX.mat'}: indices outside 1..{len(test_info)}")
    keep = test_info[:, 2] != -1
    is_q = np.zeros(len(test_info), bool)
    is_q[q_idx] = True
    test = _tracks(root, "bbox_test", te_names, test_info, info / "tracks_test_info.mat")
    flags_q, flags_g = is_q[keep], ~is_q[keep]
    return {"train": train, "query": [t for t, f in zip(test, flags_q) if f],
            "gallery": [t for t, f in zip(test, flags_g) if f]}


def augment_gallery(query: list[Tracklet], gallery: list[Tracklet]) -> list[Tracklet]:
    """VKD/MARS ``augment_gallery``: the query tracklets join the gallery (their own tracklet is then junk:
    same pid and camera), otherwise ~140 MARS queries have no ground truth."""
    return list(gallery) + list(query)


@register("mars", paper="tcl_i2v", doc="<root>/{bbox_train,bbox_test}/<pid4>/<pid4>C<c>T<t4>F<f3>.jpg + info/"
          "{train_name,test_name}.txt, tracks_{train,test}_info.mat, query_IDX.mat")
def verify_mars(root: Path) -> list[str]:
    return _verify_tracklets(load_mars, root, MARS_COUNTS, lambda d: {
        "train tracklets": len(d["train"]), "train ids": len({t.pid for t in d["train"]}),
        "query": len(d["query"]), "gallery": len(d["gallery"])})


def _verify_tracklets(loader, root: Path, expected: dict[str, int], count) -> list[str]:
    """A ``verify`` entry: the loader's one-line error, or the first frame of up to 50 tracklets per split that
    is missing, plus the counts (``count(splits)``) that differ from the official ones."""
    try:
        d = loader(root)
    except (FileNotFoundError, ValueError) as e:
        return [str(e)]
    problems = [f"{p}: missing image" for split in d.values() for t in split[:50] for p in t.frames[:1]
                if not Path(p).is_file()]
    return problems + check_counts(count(d), expected)


# ---------------------------------------------------------------- DukeMTMC-VideoReID
DUKE_COUNTS = {"train tracklets": 2196, "train ids": 702, "query": 702, "gallery": 2636}
_DUKE_CAM = re.compile(r"C(\d+)")


def _duke_split(root: Path, split: str) -> list[Tracklet]:
    """``<root>/<split>/<pid4>/<trk4>/*.jpg``: one tracklet per folder (TKP's loader; VKD's hashes names on
    pid + camera and merges tracklets of one identity and camera), frames in name (frame-number) order."""
    base = root / split
    if not base.is_dir():
        raise FileNotFoundError(f"{base}: missing (DukeMTMC-VideoReID {split}/ folder)")
    out = []
    for pid_dir in sorted(p for p in base.iterdir() if p.is_dir()):
        if not pid_dir.name.isdigit():
            raise ValueError(f"{pid_dir}: identity folders are named by a number (<pid4>)")
        for trk in sorted(p for p in pid_dir.iterdir() if p.is_dir()):
            frames = sorted(trk.glob("*.jpg"))
            if not frames:
                raise ValueError(f"{trk}: empty tracklet folder")
            cams = set()
            for f in frames:  # 0001_C6_F0099_X30823.jpg or the older 0001C6F0099X30823.jpg
                m = _DUKE_CAM.search(f.name[4:])
                if m is None or not f.name[:4].isdigit() or int(f.name[:4]) != int(pid_dir.name):
                    raise ValueError(f"{f}: not a '<pid4>_C<cam>_F<frame>_X<id>.jpg' name of identity {pid_dir.name}")
                cams.add(int(m.group(1)))
            if len(cams) != 1:
                raise ValueError(f"{trk}: tracklet spans cameras {sorted(cams)}")
            out.append(Tracklet(frames, int(pid_dir.name), cams.pop() - 1))
    return out


def load_duke(root: str | Path) -> dict[str, list[Tracklet]]:
    """``{"train", "query", "gallery"}`` tracklets of DukeMTMC-VideoReID (``<root>/{train,query,gallery}``);
    the I2V query is the first frame of each query tracklet (at evaluation), the gallery is not augmented."""
    root = Path(root)
    return {s: _duke_split(root, s) for s in ("train", "query", "gallery")}


@register("duke_video", paper="tcl_i2v", doc="<root>/{train,query,gallery}/<pid4>/<trk4>/<pid4>_C<c>_F<f4>_X<x5>.jpg")
def verify_duke_video(root: Path) -> list[str]:
    return _verify_tracklets(load_duke, root, DUKE_COUNTS, lambda d: {
        "train tracklets": len(d["train"]), "train ids": len({t.pid for t in d["train"]}),
        "query": len(d["query"]), "gallery": len(d["gallery"])})


# ---------------------------------------------------------------- VeRi-776
VERI_COUNTS = {"train ids": 576, "query": 1678, "gallery images": 11579}
_VERI_NAME = re.compile(r"^(\d{4})_c(\d{3})_")


def _veri_id(name: str, where: str) -> tuple[int, int]:
    m = _VERI_NAME.match(name)
    if m is None:
        raise ValueError(f"{where}: '{name}' is not a '<id4>_c<cam3>_<frame>_<n>.jpg' VeRi name")
    return int(m.group(1)), int(m.group(2)) - 1


def load_veri(root: str | Path) -> dict[str, list[Tracklet]]:
    """VeRi-776 as VKD's ``data/veri/data_manager.py``: train = sorted ``name_train.txt`` grouped on the first 9
    characters (vehicle + camera) into tracklets; query = the ``name_query.txt`` images (1-frame tracklets);
    gallery = the tracks of ``test_track.txt`` (a line is ``<track name> <image> <image> ...``)."""
    root = Path(root)
    for f in ("name_train.txt", "name_query.txt", "test_track.txt"):
        if not (root / f).is_file():
            raise FileNotFoundError(f"{root / f}: missing (VeRi-776 list file)")
    train_names = sorted(_read_lines(root / "name_train.txt"))
    groups: dict[str, list[str]] = {}
    for n in train_names:
        groups.setdefault(n[:9], []).append(n)
    train = []
    for names in groups.values():
        pid, cam = _veri_id(names[0], str(root / "name_train.txt"))
        train.append(Tracklet([root / "image_train" / n for n in names], pid, cam))
    query = []
    for n in _read_lines(root / "name_query.txt"):
        pid, cam = _veri_id(n, str(root / "name_query.txt"))
        query.append(Tracklet([root / "image_query" / n], pid, cam))
    gallery = []
    for r, line in enumerate(_read_lines(root / "test_track.txt")):
        tokens = line.split()
        if len(tokens) < 2:
            raise ValueError(f"{root / 'test_track.txt'}:{r + 1}: a track line needs a name and its images")
        pid, cam = _veri_id(tokens[0], f"{root / 'test_track.txt'}:{r + 1}")
        gallery.append(Tracklet([root / "image_test" / n for n in tokens[1:]], pid, cam))
    return {"train": train, "query": query, "gallery": gallery}


def _read_lines(path: Path) -> list[str]:
    return [ln.strip() for ln in read_text_lines(path) if ln.strip()]


@register("veri", paper="tcl_i2v", doc="<root>/{image_train,image_query,image_test}/*.jpg + name_train.txt, "
          "name_query.txt, test_track.txt")
def verify_veri(root: Path) -> list[str]:
    return _verify_tracklets(load_veri, root, VERI_COUNTS, lambda d: {
        "train ids": len({t.pid for t in d["train"]}), "query": len(d["query"]),
        "gallery images": sum(len(t.frames) for t in d["gallery"])})


def load_tracklets(dataset: str, root: str | Path) -> dict[str, list[Tracklet]]:
    """The real datasets by name: ``mars`` | ``duke`` | ``veri``."""
    loaders = {"mars": load_mars, "duke": load_duke, "veri": load_veri}
    if dataset not in loaders:
        raise ValueError(f"data.dataset must be one of {', '.join(loaders)} | synvideo, got {dataset!r}")
    return loaders[dataset](root)


# ---------------------------------------------------------------- clips
def chunk_indices(length: int, n: int, rng: np.random.Generator | None) -> list[int]:
    """N frame indices: one per equal temporal chunk, random within it (``rng``) or its first (test)."""
    if length < n:
        return [i % length for i in range(n)] if rng is None else sorted(rng.integers(0, length, n).tolist())
    edges = np.linspace(0, length, n + 1).astype(int)
    return [int(a if rng is None else rng.integers(a, max(b, a + 1))) for a, b in zip(edges[:-1], edges[1:])]


def read_frames(frames: list | torch.Tensor, idx: list[int], transform=None) -> torch.Tensor:
    """``(len(idx), 3, H, W)`` float frames; paths are opened with PIL and passed through ``transform``."""
    if isinstance(frames, torch.Tensor):
        x = frames[idx].float() / 255.0
        return transform(x) if transform else x
    from PIL import Image

    return torch.stack([transform(Image.open(frames[i]).convert("RGB")) for i in idx])


class ClipDataset(Dataset):
    """Training items ``(teacher_clip (N,3,H,W), student (M,3,H,W), label, cam)``, one per tracklet."""

    def __init__(self, tracks: list[Tracklet], n_frames: int = 8, student_frames: int = 1, transform=None,
                 seed: int = 0):
        self.tracks, self.n, self.m, self.transform = tracks, n_frames, student_frames, transform
        self.pid2label = {p: i for i, p in enumerate(sorted({t.pid for t in tracks}))}
        self.labels = [self.pid2label[t.pid] for t in tracks]
        self.seed, self.epoch = seed, 0

    def __len__(self) -> int:
        return len(self.tracks)

    def __getitem__(self, i: int):
        rng = np.random.default_rng([self.seed, self.epoch, i])
        t = self.tracks[i]
        idx = chunk_indices(len(t.frames), self.n, rng)
        clip = read_frames(t.frames, idx, self.transform)
        student = clip[torch.from_numpy(rng.permutation(self.n)[:self.m])]
        return clip, student, self.labels[i], t.cam


# ---------------------------------------------------------------- SynVideo (embedded)
_PALETTE = np.array([[220, 40, 40], [40, 180, 60], [50, 80, 220], [230, 210, 40], [200, 60, 200],
                     [40, 200, 210], [240, 140, 30], [30, 30, 30], [235, 235, 235], [120, 70, 30]], np.float32)


def _identity(rng: np.random.Generator) -> dict:
    return {"top": int(rng.integers(10)), "stripes": bool(rng.integers(2)), "bottom": int(rng.integers(10)),
            "hat": int(rng.integers(-1, 10)), "bag": int(rng.integers(-1, 2)), "bag_col": int(rng.integers(10))}


def _render(ident: dict, cam_gain: np.ndarray, rng: np.random.Generator, hide: str, h: int, w: int) -> np.ndarray:
    """One (h, w, 3) frame: head/hat, top (+stripes), bag, bottom, then an occluder band over one half."""
    img = rng.normal(110, 25, (h, w, 3)).astype(np.float32)
    dx = int(rng.integers(-1, 2))
    x0, x1 = w // 4 + dx, 3 * w // 4 + dx
    r = [int(v * h) for v in (0.0, 0.2, 0.55, 1.0)]
    img[r[0]:r[1], x0 + 1:x1 - 1] = _PALETTE[ident["hat"]] if ident["hat"] >= 0 else (200, 160, 130)
    img[r[1]:r[2], x0:x1] = _PALETTE[ident["top"]]
    if ident["stripes"]:
        img[r[1]:r[2]:3, x0:x1] *= 0.35
    img[r[2]:r[3], x0:x1] = _PALETTE[ident["bottom"]]
    if ident["bag"] >= 0:
        bx = x0 - 2 if ident["bag"] == 0 else x1
        img[r[1] + 1:r[2], max(bx, 0):bx + 2] = _PALETTE[ident["bag_col"]]
    band = slice(0, int(0.55 * h) + 1) if hide == "upper" else slice(int(0.5 * h), h)
    img[band] = rng.normal(90, 10, (band.stop - band.start, w, 1))
    img = img * cam_gain + rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def synvideo(n_train_ids: int = 60, n_test_ids: int = 40, n_cams: int = 4, frames: int = 8, size=(32, 16),
             seed: int = 0) -> dict[str, list[Tracklet]]:
    """SynVideo (spec 8), in memory: identities = hat/top colour+stripes/bag/bottom compositions.

    Every frame hides the upper or the lower half behind an occluder band; within a tracklet the hidden
    half alternates (random phase), so the frames together show the whole identity but a single frame
    does not: the information gap the video teacher can pass to the image student. Per-camera colour
    gains, x-jitter and noise vary the rest. Each id appears in 2-3 cameras, one tracklet per camera.
    Test split: one query tracklet per id (its first camera); the gallery is the rest (MARS-style
    augmentation adds the queries back at evaluation).
    """
    rng = np.random.default_rng(seed)
    gains = rng.uniform(0.7, 1.3, (n_cams, 1, 1, 3)).astype(np.float32)
    h, w = size
    out = {"train": [], "query": [], "gallery": []}
    for pid in range(1, n_train_ids + n_test_ids + 1):
        ident = _identity(rng)
        cams = rng.choice(n_cams, int(rng.integers(2, 4)), replace=False)
        for j, cam in enumerate(cams):
            phase = int(rng.integers(2))
            clip = np.stack([_render(ident, gains[cam], rng, ("upper", "lower")[(f + phase) % 2], h, w)
                             for f in range(frames)])
            t = Tracklet(torch.from_numpy(clip).permute(0, 3, 1, 2).contiguous(), pid, int(cam))
            if pid <= n_train_ids:
                out["train"].append(t)
            else:
                out["query" if j == 0 else "gallery"].append(t)
    return out
