"""MotionRGBD data: FRP motion maps, the official video list format, RGB-D folder datasets and verify entries
(the embedded synthetic set is ``motion_rgbd.synthetic``).

Official list line: ``<rel_dir> <num_frames> <label(0-based)>`` (extra fields ignored; PAMI THU-READ
lists begin with a space, so lines are split on whitespace). Frames: ``<root>/<rel_dir>/%06d.jpg``.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.data.listfile import ListFileError
from shared.data.registry import register

from .depth import RawDepthOptions, is_raw_depth, preprocess_raw_depth


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


DEPTH_SUB = {"nvgesture": ("rgb", "depth"), "isogd": ("M_", "K_"), "thu_read": ("RGB_", "D_")}
# Frame file name and the index of a video's first frame, per dataset and modality (official get_path).
FRAME_FORMAT = {("ntu", "rgb"): ("%06d.jpg", 1), ("ntu", "depth"): ("MDepth-%08d.png", 1)}
DEFAULT_FORMAT = ("%06d.jpg", 0)


def ntu_dirs(root: Path, rel: str) -> tuple[Path, Path]:
    """NTU RGB+D folders of a list name ``S001C001P001R001A001_rgb``: ``Images/<name>`` and
    ``nturgb+d_depth_masked/<name minus _rgb>`` (official ``NTU.py`` cuts the last 4 characters)."""
    return root / "Images" / rel, root / "nturgb+d_depth_masked" / rel[:-4]


def read_frame(path: Path, raw_depth: RawDepthOptions | None = None) -> np.ndarray:
    """One frame as RGB uint8 (H, W, 3). A frame that is not H x W x 3 (NTU's 16-bit depth PNGs) is raw
    depth: contour crop + JET colormap (:mod:`motion_rgbd.depth`); 3-channel depth JPEGs are used as they are."""
    import cv2

    im = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if im is None:
        raise FileNotFoundError(f"{path}: missing or unreadable frame")
    if is_raw_depth(im):
        return preprocess_raw_depth(im, raw_depth or RawDepthOptions(), path)
    return np.ascontiguousarray(im[:, :, ::-1])


def eval_geometry(im: np.ndarray, size: int, resize: tuple[int, int] | None = None, crop: int = 0,
                  offset: tuple[int, int] | None = None, final_resize: bool = True) -> np.ndarray:
    """Official test transform: resize to ``resize`` (w, h), crop ``crop`` x ``crop`` at ``offset`` (left, top;
    default the centre; NvGesture's loader uses (32, 32)), resize to ``size`` (pixels). Without ``resize``
    the frame is resized straight to ``size``."""
    import cv2

    if resize:
        im = cv2.resize(im, tuple(resize))
        if crop:
            w, h = resize
            left, top = offset or ((w - crop) // 2, (h - crop) // 2)
            im = im[top:top + crop, left:left + crop]
    return cv2.resize(im, (size, size)) if final_resize else im


@dataclass
class TrainAugment:
    """Official training augmentation (``lib/datasets/base.py`` ``image_propose`` / ``transform_params``; the
    values per benchmark are the official ``config/*.yml`` ``dataset:`` blocks): with probability ``rotate_p``
    rotate by an integer angle drawn from ``[lo, hi)`` (``np.random.randint``) about the frame centre, then
    resize, crop ``crop`` at a random (left, top) in ``[0, W - crop) x [0, H - crop)``, flip left-right with
    probability ``flip``. One draw per clip (all frames alike). NvGesture and IsoGD: flip 0 (a mirrored
    left-to-right or clockwise gesture is another class), rotation 0.5 of [-10, 10); NTU: flip 0.5, rotation
    0.5 of [-10, 10); THU-READ: flip 0.5, rotation 0.8 of [-45, 45), crop 200. ``offsets``: NvGesture's
    ``NvData.transform_params`` draws left and top from ``random.randint(10, 32)`` (both ends included)
    instead; ``offsets = (10, 32)`` gives that."""
    flip: float = 0.0
    rotate_p: float = 0.0
    angle: tuple[int, int] = (-10, 10)
    offsets: tuple[int, int] | None = None

    def draw(self, rng: np.random.Generator, resize: tuple[int, int] | None, crop: int) -> dict:
        angle = int(rng.integers(*self.angle)) if rng.uniform() < self.rotate_p else 0
        left = top = None
        if resize and crop and self.offsets:
            left, top = (int(v) for v in rng.integers(self.offsets[0], self.offsets[1] + 1, 2))
        elif resize and crop:
            left, top = int(rng.integers(0, resize[0] - crop)), int(rng.integers(0, resize[1] - crop))
        offset = None if left is None else (left, top)
        return {"angle": angle, "offset": offset, "flip": bool(rng.uniform() < self.flip)}


def rotate(im: np.ndarray, angle: float) -> np.ndarray:
    """Official ``rotate``: ``cv2.getRotationMatrix2D`` about the centre (w/2, h/2), ``warpAffine`` (zero border)."""
    import cv2

    if not angle:
        return im
    h, w = im.shape[:2]
    return cv2.warpAffine(im, cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0), (w, h))


def train_geometry(im: np.ndarray, size: int, params: dict, resize: tuple[int, int] | None = None,
                   crop: int = 0) -> np.ndarray:
    """Official training transform of one frame: rotate, resize to ``resize`` (w, h), crop at
    ``params['offset']``, flip, resize to ``size``. ``params`` from :meth:`TrainAugment.draw` (one per clip)."""
    im = eval_geometry(rotate(im, params["angle"]), 0, resize, crop, params["offset"], final_resize=False)
    if params["flip"]:
        im = np.ascontiguousarray(im[:, ::-1])
    import cv2

    return cv2.resize(im, (size, size))


class RGBDVideoDataset(Dataset):
    """Frames from an official folder layout: item (clip (3, T, S, S), motion map (1, T, S, S), label),
    or for ``modality='rgbd'`` ((rgb, depth), (g_rgb, g_depth), label). Test: centre crop, middle frames.

    ``drop_short``: videos with at most this many frames are left out (official: 16, train and test lists).
    ``augment``: the official training augmentation (:class:`TrainAugment`), used when ``train``; in ``rgbd``
    mode the RGB and depth clips get independent draws (official: ``image_propose`` runs once per modality).
    """

    def __init__(self, root: str | Path, list_file: str | Path, dataset: str, modality: str = "rgb",
                 frames: int = 64, size: int = 224, window: int = 10, train: bool = False,
                 resize: tuple[int, int] | None = None, crop: int = 0, drop_short: int = 0,
                 raw_depth: RawDepthOptions | None = None, crop_offset: tuple[int, int] | None = None,
                 augment: TrainAugment | None = None):
        self.root, self.dataset, self.modality = Path(root), dataset, modality
        self.entries = [e for e in parse_video_list(list_file) if e.frames > drop_short]
        if not self.entries:
            raise ListFileError(f"{list_file}: no video with more than {drop_short} frames")
        self.frames, self.size, self.window, self.train = frames, size, window, train
        self.resize, self.crop, self.raw_depth, self.crop_offset = resize, crop, raw_depth, crop_offset
        self.augment = augment

    def __len__(self):
        return len(self.entries)

    def _dir(self, rel: str, depth: bool) -> Path:
        if self.dataset == "nvgesture":
            return self.root / ("depth" if depth else "rgb") / rel
        if self.dataset == "ntu":
            return ntu_dirs(self.root, rel)[int(depth)]
        a, b = DEPTH_SUB[self.dataset]
        return self.root / (rel.replace(a, b) if depth else rel)

    def frame_path(self, rel: str, depth: bool, i: int) -> Path:
        """Path of 0-based frame ``i`` of video ``rel``."""
        pattern, first = FRAME_FORMAT.get((self.dataset, "depth" if depth else "rgb"), DEFAULT_FORMAT)
        return self._dir(rel, depth) / (pattern % (i + first))

    def _clip(self, rel: str, depth: bool, idx: list[int], params: dict | None = None
              ) -> tuple[torch.Tensor, torch.Tensor]:
        def frame(i):
            im = read_frame(self.frame_path(rel, depth, i), self.raw_depth)
            if params is not None:
                return train_geometry(im, self.size, params, self.resize, self.crop)
            return eval_geometry(im, self.size, self.resize, self.crop, self.crop_offset)

        imgs = [frame(i).astype(np.float32) / 255.0 for i in idx]
        x = normalise(np.stack(imgs))
        g = frp_maps(x, self.window)
        return torch.from_numpy(x).permute(3, 0, 1, 2).float(), torch.from_numpy(g)[None]

    def __getitem__(self, i):
        e = self.entries[i]
        idx = sample_frames(e.frames, self.frames, self.train)
        rng = np.random.default_rng()

        def params():
            return self.augment.draw(rng, self.resize, self.crop) if self.train and self.augment else None

        if self.modality == "rgbd":
            (xr, gr), (xd, gd) = self._clip(e.rel, False, idx, params()), self._clip(e.rel, True, idx, params())
            return (xr, xd), (gr, gd), e.label
        x, g = self._clip(e.rel, self.modality == "depth", idx, params())
        return x, g, e.label


def _verify_lists(root: Path, lists: dict[str, Path], dataset: str, num_classes: int, check_depth: bool = True,
                  max_check: int = 50) -> list[str]:
    """List files parse; the first ``max_check`` videos of each have their folders and first/last frames."""
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
                    continue
                for i in sorted({0, max(e.frames - 1, 0)}):
                    if not ds.frame_path(e.rel, depth, i).is_file():
                        problems.append(f"{lf}: {e.rel}: missing frame {ds.frame_path(e.rel, depth, i)} "
                                        f"(list says {e.frames} frames)")
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


# NTU RGB+D 60 protocols (Shahroudy et al. 2016; official data_preprose_for_NTU.py GeneratLabel).
NTU_CS_TRAIN_SUBJECTS = frozenset({1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38})
NTU_CV_TEST_CAMERA = 1
NTU_NAME = re.compile(r"^S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})_rgb$")


def ntu_split_problems(list_file: Path, protocol: str, split: str) -> list[str]:
    """Names, labels (action - 1) and split membership of an NTU list: @CS train = the 20 training subjects,
    @CV valid = camera C001 (the other two cameras train). One ``file:line: what`` per problem."""
    problems = []
    for ln, raw in enumerate(list_file.read_text().splitlines(), 1):
        parts = raw.split()
        if not parts:
            continue
        m = NTU_NAME.match(parts[0])
        if not m:
            problems.append(f"{list_file}:{ln}: {parts[0]!r} is not an NTU name 'SsssCcccPpppRrrrAaaa_rgb'")
            continue
        cam, subj, action = int(m[2]), int(m[3]), int(m[5])
        if len(parts) >= 3 and parts[2].lstrip("-").isdigit() and int(parts[2]) != action - 1:
            problems.append(f"{list_file}:{ln}: label {parts[2]} but action A{action:03d} (label = action - 1)")
        in_train = subj in NTU_CS_TRAIN_SUBJECTS if protocol == "@CS" else cam != NTU_CV_TEST_CAMERA
        if in_train != (split == "train"):
            why = f"subject P{subj:03d}" if protocol == "@CS" else f"camera C{cam:03d}"
            problems.append(f"{list_file}:{ln}: {why} belongs to the {protocol} "
                            f"{'train' if in_train else 'valid'} split, not {split}")
    return problems


@register("ntu_rgbd", paper="motion_rgbd", doc="<root>/Images/<S..C..P..R..A.._rgb>/%06d.jpg (1-indexed) + "
          "<root>/nturgb+d_depth_masked/<S..A..>/MDepth-%08d.png + <root>/dataset_splits/{@CS,@CV}/{train,valid}.txt")
def verify_ntu(root: Path) -> list[str]:
    root = Path(root)
    problems = []
    for proto in ("@CS", "@CV"):
        lists = {s: root / "dataset_splits" / proto / f"{s}.txt" for s in ("train", "valid")}
        problems += _verify_lists(root, lists, "ntu", 60)
        for split, lf in lists.items():
            if lf.is_file():
                problems += ntu_split_problems(lf, proto, split)[:20]
    return problems
