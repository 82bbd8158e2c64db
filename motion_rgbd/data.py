"""MotionRGBD data: FRP motion maps, the official video list format, RGB-D folder datasets, verify entries,
and the embedded synthetic RGB-D motion set (``SynRGBD``).

Official list line: ``<rel_dir> <num_frames> <label(0-based)>`` (extra fields ignored; PAMI THU-READ
lists begin with a space, so lines are split on whitespace). Frames: ``<root>/<rel_dir>/%06d.jpg``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.data.listfile import ListFileError
from shared.data.verify import register


# --------------------------------------------------------------------------- FRP motion maps
def rank_pool_weights(n: int) -> np.ndarray:
    """Weights (2i - n - 1), i = 1..n: they sum to 0, so a static window gives a zero map."""
    return 2 * np.arange(1, n + 1) - n - 1.0


def _minmax(a: np.ndarray) -> np.ndarray:
    lo, hi = a.min(), a.max()
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def to_grey(rgb: np.ndarray) -> np.ndarray:
    """``(H, W, 3) -> (H, W)`` with torchvision's ``rgb_to_grayscale`` (ITU-R 601-2 luma: 0.2989 R + 0.587 G +
    0.114 B), as the official loader converts; a single-channel ``(H, W, 1)`` map is returned as it is."""
    if rgb.shape[-1] == 1:
        return rgb[..., 0]
    from torchvision.transforms.functional import rgb_to_grayscale

    return rgb_to_grayscale(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1))[0].numpy()


def frp_maps(frames: np.ndarray, window: int) -> np.ndarray:
    """Motion maps G (T, H, W) in [0, 1] from normalised frames (T, H, W, C) (loader-side FRP).

    D_t = minmax(ReLU(sum_i (2i-n-1) I_{t+i-1})), grey (:func:`to_grey`) after the min-max;
    S_t = D_t where D_t > mean(D_t), eroded 2x2, dilated 3x3, min-max; G_t = (D_t + S_t) S_t.
    ``window - 1`` zero maps are prepended and the sequence truncated to T, so map t covers frames t-w+1..t.
    """
    import cv2

    t = frames.shape[0]
    w = rank_pool_weights(window)
    out = np.zeros(frames.shape[:3], dtype=np.float32)
    for s in range(t - window + 1):
        d = to_grey(_minmax(np.maximum(np.tensordot(w, frames[s:s + window], axes=(0, 0)), 0)).astype(np.float32))
        mask = np.where(d > d.mean(), d, 0).astype(np.float32)
        mask = cv2.dilate(cv2.erode(mask, np.ones((2, 2), np.uint8)), np.ones((3, 3), np.uint8))
        sm = _minmax(mask)
        out[s + window - 1] = (d + sm) * sm
    return out


def normalise(frames01: np.ndarray) -> np.ndarray:
    """Official pixel normalisation (x - 127.5) / 128 on a 0..255 scale, from [0, 1] floats."""
    return (frames01 * 255.0 - 127.5) / 128.0


# --------------------------------------------------------------------------- list files and folders
@dataclass
class VideoEntry:
    rel: str
    frames: int
    label: int


def parse_video_list(path: str | Path, num_classes: int | None = None) -> list[VideoEntry]:
    """Parse an official ``<rel_dir> <num_frames> <label>`` list; errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: list file not found")
    out = []
    for ln, raw in enumerate(path.read_text().splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        if len(parts) < 3:
            raise ListFileError(f"{path}:{ln}: expected '<rel_dir> <num_frames> <label>', got {raw!r}")
        try:
            n, lab = int(parts[1]), int(parts[2])
        except ValueError:
            raise ListFileError(f"{path}:{ln}: num_frames/label must be integers, got {raw!r}") from None
        if lab < 0 or (num_classes is not None and lab >= num_classes):
            raise ListFileError(f"{path}:{ln}: label {lab} outside [0, {num_classes})")
        out.append(VideoEntry(parts[0], n, lab))
    if not out:
        raise ListFileError(f"{path}: no entries")
    return out


def sample_frames(n: int, t: int, train: bool, rng: np.random.Generator | None = None) -> list[int]:
    """t segments over n frames: a random frame per segment (train) or the middle (test); n < t repeats."""
    edges = np.linspace(0, n, t + 1)
    lo = np.floor(edges[:-1]).astype(int)
    hi = np.maximum(lo + 1, np.floor(edges[1:]).astype(int))
    if train:
        rng = rng or np.random.default_rng()
        return [int(rng.integers(a, b)) for a, b in zip(lo, hi)]
    return [int((a + b - 1) // 2) for a, b in zip(lo, hi)]


DEPTH_SUB = {"nvgesture": ("rgb", "depth"), "isogd": ("M_", "K_"), "thu_read": ("RGB_", "D_"),
             "ntu": ("Images", "nturgb+d_depth_masked")}


class RGBDVideoDataset(Dataset):
    """Frames from an official folder layout: item (clip (3, T, S, S), motion map (1, T, S, S), label),
    or for ``modality='rgbd'`` ((rgb, depth), (g_rgb, g_depth), label). Test: centre crop, middle frames."""

    def __init__(self, root: str | Path, list_file: str | Path, dataset: str, modality: str = "rgb",
                 frames: int = 64, size: int = 224, window: int = 10, train: bool = False, pattern="%06d.jpg",
                 first_index: int = 0):
        self.root, self.dataset, self.modality = Path(root), dataset, modality
        self.entries = parse_video_list(list_file)
        self.frames, self.size, self.window, self.train = frames, size, window, train
        self.pattern, self.first = pattern, first_index

    def __len__(self):
        return len(self.entries)

    def _dir(self, rel: str, depth: bool) -> Path:
        if self.dataset == "nvgesture":
            return self.root / ("depth" if depth else "rgb") / rel
        a, b = DEPTH_SUB[self.dataset]
        return self.root / (rel.replace(a, b) if depth else rel)

    def _clip(self, folder: Path, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        import cv2

        imgs = []
        for i in idx:
            p = folder / (self.pattern % (i + self.first))
            im = cv2.imread(str(p))
            if im is None:
                raise FileNotFoundError(f"{p}: missing or unreadable frame")
            im = cv2.resize(im[:, :, ::-1], (self.size, self.size)).astype(np.float32) / 255.0
            imgs.append(im)
        x = normalise(np.stack(imgs))
        g = frp_maps(x, self.window)
        return torch.from_numpy(x).permute(3, 0, 1, 2).float(), torch.from_numpy(g)[None]

    def __getitem__(self, i):
        e = self.entries[i]
        idx = sample_frames(e.frames, self.frames, self.train)
        if self.modality == "rgbd":
            (xr, gr), (xd, gd) = self._clip(self._dir(e.rel, False), idx), self._clip(self._dir(e.rel, True), idx)
            return (xr, xd), (gr, gd), e.label
        x, g = self._clip(self._dir(e.rel, self.modality == "depth"), idx)
        return x, g, e.label


def _verify_lists(root: Path, lists: dict[str, Path], dataset: str, num_classes: int, check_depth: bool = True,
                  max_check: int = 50) -> list[str]:
    problems = []
    for lf in lists.values():
        try:
            entries = parse_video_list(lf, num_classes)
        except (ListFileError, FileNotFoundError) as e:
            problems.append(str(e))
            continue
        ds = RGBDVideoDataset(root, lf, dataset)
        for e in entries[:max_check]:
            for depth in (False, True) if check_depth else (False,):
                d = ds._dir(e.rel, depth)
                if not d.is_dir():
                    problems.append(f"{lf}: {e.rel}: missing folder {d}")
                elif len(list(d.glob("*.jpg"))) < min(e.frames, 1):
                    problems.append(f"{lf}: {e.rel}: no frames in {d}")
    return problems


@register("nvgesture", paper="motion_rgbd", doc="<root>/{rgb,depth}/train/class_XX/subjectY_rZ/%06d.jpg + "
          "<root>/dataset_splits/{train,valid}.txt ('<rel> <num_frames> <label>')")
def verify_nvgesture(root: Path) -> list[str]:
    root = Path(root)
    return _verify_lists(root, {s: root / "dataset_splits" / f"{s}.txt" for s in ("train", "valid")}, "nvgesture", 25)


@register("isogd", paper="motion_rgbd", doc="<root>/<path with M_>/%06d.jpg, depth 'K_' + "
          "<root>/dataset_splits/{train,valid}.txt")
def verify_isogd(root: Path) -> list[str]:
    root = Path(root)
    return _verify_lists(root, {s: root / "dataset_splits" / f"{s}.txt" for s in ("train", "valid")}, "isogd", 249)


@register("thu_read", paper="motion_rgbd", doc="<root>/{RGB_,D_}<action>_<subj>_<rep>/%06d.jpg + "
          "<root>/dataset_splits/@CS1/{train,valid}.txt")
def verify_thu_read(root: Path) -> list[str]:
    root = Path(root)
    return _verify_lists(root, {s: root / "dataset_splits" / "@CS1" / f"{s}.txt" for s in ("train", "valid")},
                         "thu_read", 40)


# --------------------------------------------------------------------------- embedded synthetic set
CLASSES = ("left_to_right", "top_to_bottom", "approach", "recede", "clockwise", "counter_clockwise")


def render_clip(label: int, rng: np.random.Generator, t: int = 16, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic RGB-D clip: rgb (T, S, S, 3) and depth (T, S, S) in [0, 1].

    Textured background at depth 0.9, a static distractor blob, and a striped disk whose motion is the
    class: 0/1 translate (both modalities), 2/3 depth 0.7->0.3 / 0.3->0.7 at fixed size and colour (depth
    only), 4/5 rotate in place clockwise / counter-clockwise at constant depth (RGB only).
    """
    yy, xx = np.mgrid[:size, :size].astype(np.float32)
    bg = np.clip(rng.uniform(0.2, 0.6, 3) + 0.15 * rng.standard_normal((size // 4, size // 4, 3)).repeat(4, 0)
                 .repeat(4, 1), 0, 1)
    r = rng.uniform(5, 8)
    col = rng.uniform(0.5, 1.0, 3)
    speed = rng.uniform(0.7, 1.3)
    bx, by, br = rng.uniform(4, size - 4, 2).tolist() + [rng.uniform(2, 4)]
    bcol, bdep = rng.uniform(0, 1, 3), rng.uniform(0.5, 0.8)
    cx0, cy0 = rng.uniform(r + 2, size - r - 2, 2)
    phase = rng.uniform(0, 2 * np.pi)
    rgb = np.empty((t, size, size, 3), np.float32)
    dep = np.empty((t, size, size), np.float32)
    for i in range(t):
        a = i / (t - 1)
        cx, cy, z, rot = cx0, cy0, 0.5, 0.0
        span = (size - 2 * r - 4) * min(1.0, speed)
        if label == 0:
            cx = r + 2 + a * span
        elif label == 1:
            cy = r + 2 + a * span
        elif label in (2, 3):
            z = 0.7 - 0.4 * a if label == 2 else 0.3 + 0.4 * a
        elif label in (4, 5):
            rot = (1 if label == 5 else -1) * a * np.pi * speed
        frame, d = bg.copy(), np.full((size, size), 0.9, np.float32)
        blob = (xx - bx) ** 2 + (yy - by) ** 2 <= br ** 2
        frame[blob], d[blob] = bcol, bdep
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2
        theta = np.arctan2(yy - cy, xx - cx)
        stripe = 0.35 + 0.65 * (np.sin(4 * (theta - rot - phase)) > 0)
        frame[disk] = (col[None] * stripe[disk, None])
        d[disk] = z
        rgb[i], dep[i] = frame, d
    rgb = np.clip(rgb + 0.05 * rng.standard_normal(rgb.shape), 0, 1)
    dep = np.clip(dep + 0.02 * rng.standard_normal(dep.shape), 0, 1)
    return rgb.astype(np.float32), dep.astype(np.float32)


@dataclass
class SynRGBD:
    """Tensors of the embedded set: rgb/depth (N, 3, T, S, S) normalised, g_rgb/g_depth (N, 1, T, S, S), y (N,)."""

    rgb: torch.Tensor
    depth: torch.Tensor
    g_rgb: torch.Tensor
    g_depth: torch.Tensor
    y: torch.Tensor


def make_synthetic(n_per_class: int, seed: int, t: int = 16, size: int = 32, window: int = 4) -> SynRGBD:
    """Render ``n_per_class`` clips of each of the 6 classes (seeded) with their FRP maps."""
    rng = np.random.default_rng(seed)
    rs, ds, gr, gd, ys = [], [], [], [], []
    for c in range(len(CLASSES)):
        for _ in range(n_per_class):
            rgb, dep = render_clip(c, rng, t, size)
            xr, xd = normalise(rgb), normalise(np.repeat(dep[..., None], 3, -1))
            rs.append(xr)
            ds.append(xd)
            gr.append(frp_maps(xr, window))
            gd.append(frp_maps(xd, window))
            ys.append(c)
    clip = lambda a: torch.from_numpy(np.stack(a)).permute(0, 4, 1, 2, 3).contiguous()  # noqa: E731
    maps = lambda a: torch.from_numpy(np.stack(a))[:, None]  # noqa: E731
    return SynRGBD(clip(rs), clip(ds), maps(gr), maps(gd), torch.tensor(ys))
