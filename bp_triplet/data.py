"""Datasets for BP-Triplet: the embedded digit domains, real digit files, image-list benchmarks.

Every dataset item is ``(image tensor, label, index)``; the index lets the task look up a target
sample's pseudo-label. Target labels are read only to log pseudo-label precision and to evaluate.

Real layouts (``data.root``), checked by ``python -m shared.data.verify bp_triplet.<name> <root>``:

* digits: ``<root>/mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]`` (LeCun idx),
  ``<root>/usps/usps{,.t}[.bz2]`` (libsvm text as torchvision's USPS: ``label 1:v ... 256:v``,
  labels 1..10, values in [-1, 1], 16x16), ``<root>/svhn/{train,test}_32x32.mat`` (``X`` (32,32,3,N)
  uint8, ``y`` (N,1) with 10 for digit 0).
* image lists (TLlib / thuml-CDAN lists, ``relative/path label`` per line, paths relative to root):
  Office-31 ``image_list/{amazon,dslr,webcam}.txt``; ImageCLEF-DA ``list/{i,p,c}List.txt``;
  Office-Home ``image_list/{Art,Clipart,Product,Real_World}.txt``; VisDA-2017
  ``image_list/{train,validation}.txt``.
"""
from __future__ import annotations

import bz2
import gzip
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from shared.data import ListFileDataset, ListFileError, digit_domains, parse_list_file
from shared.data.registry import check_counts, register


class ArrayDataset(Dataset):
    """``(transform(x[i]), y[i], i)`` over in-memory arrays."""

    def __init__(self, x: np.ndarray, y: np.ndarray, transform: Callable | None = None):
        self.x, self.y, self.transform = x, np.asarray(y, dtype=np.int64), transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        x = torch.as_tensor(self.x[i])
        return (self.transform(x) if self.transform else x), int(self.y[i]), i

    @property
    def labels(self) -> np.ndarray:
        return self.y


# ----------------------------------------------------------------------------- digit files
class DigitFileError(ValueError):
    """A digit file is malformed or truncated; the message names the file."""


def _open(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rb")
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    return open(path, "rb")


def _find(folder: Path, stem: str, exts: tuple[str, ...] = ("", ".gz", ".bz2")) -> Path:
    for ext in exts:
        p = folder / f"{stem}{ext}"
        if p.is_file():
            return p
    raise FileNotFoundError(f"{folder / stem}: file not found (also tried {', '.join(e for e in exts if e)})")


def read_idx(path: str | Path) -> np.ndarray:
    """A LeCun idx file (``.gz`` too): big-endian magic ``0x0000 08 ndim``, dims, uint8 data."""
    path = Path(path)
    with _open(path) as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise DigitFileError(f"{path}: not an idx uint8 file (bad magic {raw[:4].hex() or 'empty'})")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DigitFileError(f"{path}: truncated idx header ({len(raw)} bytes)")
    dims = [int.from_bytes(raw[4 + 4 * k: 8 + 4 * k], "big") for k in range(ndim)]
    need = int(np.prod(dims))
    if len(raw) - header != need:
        raise DigitFileError(f"{path}: truncated idx file: header says {'x'.join(map(str, dims))} = "
                             f"{need} bytes of data, found {len(raw) - header}")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims).copy()


def read_usps(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """USPS in libsvm text (``usps``/``usps.t``, optionally ``.bz2``) -> uint8 (N, 16, 16), labels 0..9."""
    path = Path(path)
    images, labels = [], []
    with _open(path) as f:
        for lineno, line in enumerate(f.read().decode().splitlines(), start=1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                lab = int(float(parts[0]))
                vals = np.zeros(256, np.float32)
                for tok in parts[1:]:
                    k, v = tok.split(":")
                    vals[int(k) - 1] = float(v)
            except (ValueError, IndexError):
                raise DigitFileError(f"{path}:{lineno}: expected 'label k:v ...' (libsvm), got "
                                     f"{line[:60]!r}") from None
            if not 1 <= lab <= 10:
                raise DigitFileError(f"{path}:{lineno}: label {lab} outside 1..10")
            images.append(np.clip((vals + 1.0) * 127.5, 0, 255).astype(np.uint8).reshape(16, 16))
            labels.append(lab - 1)
    if not labels:
        raise DigitFileError(f"{path}: no samples")
    return np.stack(images), np.asarray(labels, np.int64)


def read_svhn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """SVHN cropped digits ``*_32x32.mat`` -> uint8 (N, 32, 32, 3), labels 0..9 (10 means 0)."""
    from scipy.io import loadmat

    path = Path(path)
    try:
        m = loadmat(str(path))
    except Exception as e:  # noqa: BLE001 - scipy raises several types for a bad file
        raise DigitFileError(f"{path}: not a readable .mat file ({type(e).__name__}: {e})") from None
    if "X" not in m or "y" not in m:
        raise DigitFileError(f"{path}: expected variables 'X' and 'y', found {sorted(k for k in m if k[0] != '_')}")
    x, y = m["X"], m["y"].reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise DigitFileError(f"{path}: X has shape {x.shape}, expected (32, 32, 3, {len(y)})")
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), np.where(y == 10, 0, y)


DIGIT_COUNTS = {"mnist": (60000, 10000), "usps": (7291, 2007), "svhn": (73257, 26032)}


def load_digit_split(root: str | Path, name: str, train: bool) -> tuple[np.ndarray, np.ndarray]:
    """uint8 images ``(N, H, W)`` or ``(N, H, W, 3)`` and labels for ``mnist`` | ``usps`` | ``svhn``."""
    root = Path(root)
    if name == "mnist":
        pre = "train" if train else "t10k"
        x = read_idx(_find(root / "mnist", f"{pre}-images-idx3-ubyte"))
        y = read_idx(_find(root / "mnist", f"{pre}-labels-idx1-ubyte")).astype(np.int64)
        if len(x) != len(y):
            raise DigitFileError(f"{root / 'mnist'}: {len(x)} {pre} images but {len(y)} labels")
        return x, y
    if name == "usps":
        return read_usps(_find(root / "usps", "usps" if train else "usps.t"))
    if name == "svhn":
        return read_svhn(_find(root / "svhn", "train_32x32" if train else "test_32x32", (".mat",)))
    raise ValueError(f"data.source/target for digits must be mnist | usps | svhn, got '{name}'")


def digit_transform(size: int, channels: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 ``(H, W)`` or ``(H, W, 3)`` -> float ``(channels, size, size)`` normalised with (0.5, 0.5)
    (thuml/CDAN digits). Grey is repeated to 3 channels; RGB is averaged to grey for 1 channel."""

    def tf(x: torch.Tensor) -> torch.Tensor:
        x = x.float().div(255.0)
        x = x.permute(2, 0, 1) if x.ndim == 3 else x[None]
        if channels == 3 and x.shape[0] == 1:
            x = x.expand(3, -1, -1)
        elif channels == 1 and x.shape[0] == 3:
            x = x.mean(0, keepdim=True)
        if x.shape[-1] != size:
            x = F.interpolate(x[None], size=(size, size), mode="bilinear", align_corners=False)[0]
        return (x - 0.5) / 0.5

    return tf


# ----------------------------------------------------------------------------- image lists
IMAGE_LISTS: dict[str, dict[str, tuple[str, int]]] = {
    "office31": {"A": ("image_list/amazon.txt", 2817), "D": ("image_list/dslr.txt", 498),
                 "W": ("image_list/webcam.txt", 795)},
    "imageclef": {"I": ("list/iList.txt", 600), "P": ("list/pList.txt", 600), "C": ("list/cList.txt", 600)},
    "officehome": {"Ar": ("image_list/Art.txt", 2427), "Cl": ("image_list/Clipart.txt", 4365),
                   "Pr": ("image_list/Product.txt", 4439), "Rw": ("image_list/Real_World.txt", 4357)},
    "visda": {"Synthetic": ("image_list/train.txt", 152397), "Real": ("image_list/validation.txt", 55388)},
}
NUM_CLASSES = {"office31": 31, "imageclef": 12, "officehome": 65, "visda": 12, "digits": 10, "embedded": 10}


def image_transforms(train: bool, size: int = 224, resize: int = 256):
    """Resize 256, random crop 224 + flip (train) / single centre crop 224 (test; CDAN uses 10 crops)."""
    from torchvision import transforms as T

    norm = T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
    if train:
        return T.Compose([T.Resize((resize, resize)), T.RandomCrop(size), T.RandomHorizontalFlip(),
                          T.ToTensor(), norm])
    return T.Compose([T.Resize((resize, resize)), T.CenterCrop(size), T.ToTensor(), norm])


def list_dataset(root: str | Path, dataset: str, domain: str, train: bool, size: int = 224,
                 resize: int = 256) -> ListFileDataset:
    if dataset not in IMAGE_LISTS or domain not in IMAGE_LISTS[dataset]:
        known = ", ".join(IMAGE_LISTS.get(dataset, {})) or ", ".join(IMAGE_LISTS)
        raise ValueError(f"unknown {dataset} domain '{domain}' (choose from {known})")
    rel, _ = IMAGE_LISTS[dataset][domain]
    return ListFileDataset(Path(root) / rel, image_transforms(train, size, resize), root=root,
                           num_classes=NUM_CLASSES[dataset])


# ----------------------------------------------------------------------------- P x K batches
class ClassChunkPairs(Dataset):
    """P x K batches for the triplet term (spec 4.3): item ``i`` is K source samples of one class
    ``c_i`` and K target samples pseudo-labelled ``c_i`` (random target samples while that class has
    no pseudo-label yet), so every source anchor has positives in its batch.

    With this dataset ``engine.batch_size`` counts classes per batch (P); a batch holds P*K source and
    P*K target samples. :func:`collate_chunks` flattens it to the layout ``RandomPairDataset`` gives.
    Classes are drawn by concatenated random permutations fixed by ``(seed, epoch)``.
    """

    def __init__(self, source: Dataset, source_labels, target: Dataset, target_pseudo, k: int, seed: int,
                 epoch: int, length: int):
        rng = np.random.default_rng([seed, epoch, 17])
        src_labels, pseudo = np.asarray(source_labels), np.asarray(target_pseudo)
        classes = np.unique(src_labels)
        order = np.concatenate([rng.permutation(classes) for _ in range(-(-length // len(classes)))])[:length]
        by_src = {c: np.flatnonzero(src_labels == c) for c in classes}
        by_tgt = {c: np.flatnonzero(pseudo == c) for c in classes}
        all_tgt = np.arange(len(target))
        self.source, self.target = source, target
        self.items = []
        for c in order:
            s = rng.choice(by_src[c], k, replace=len(by_src[c]) < k)
            pool = by_tgt[c] if len(by_tgt[c]) else all_tgt
            self.items.append((s, rng.choice(pool, k, replace=len(pool) < k)))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        s, t = self.items[i]
        return [self.source[int(j)] for j in s], [self.target[int(j)] for j in t]


def collate_chunks(batch):
    """A list of :class:`ClassChunkPairs` items -> ``((xs, ys, is), (xt, yt, it))``."""
    from torch.utils.data import default_collate

    return default_collate([pair for s, t in batch for pair in zip(s, t)])


# ----------------------------------------------------------------------------- one task's data
@dataclass
class DomainData:
    """``source`` (train transform), ``target_train`` (train transform) and ``target_train_plain``
    (the same items, test transform, for pseudo-labelling), ``target_test`` and the target train
    labels (used only to log pseudo-label precision)."""

    source: Dataset
    target_train: Dataset
    target_train_plain: Dataset
    target_test: Dataset
    target_train_labels: np.ndarray
    num_classes: int


def build_domains(dataset: str, root: str = "", source: str = "", target: str = "", seed: int = 0,
                  n_source: int = 3000, reverse: bool = False, image_size: int = 224,
                  resize: int = 256, n_target: int = 0) -> DomainData:
    """The data of one adaptation task. ``embedded``: rendered -> handwritten digits (``reverse``
    swaps them), both drawn from ``seed``: the rendered source is generated from it and the handwritten
    side is the seed's ``shared.data.target_subset`` of ``n_target`` of the 1,797 digits (0: all of them);
    ``digits``: two of mnist/usps/svhn; image lists: two domains of one benchmark.

    Protocols: digits adapt on source train + target train and test on target test; image UDA is
    transductive (all target images unlabelled for training, all evaluated).
    """
    if dataset == "embedded":
        d = digit_domains(seed=seed, n_source=n_source, n_target=n_target)
        s = ArrayDataset(d.source_x, d.source_y)
        t = ArrayDataset(d.target_x, d.target_y)
        if reverse:
            s, t = t, s
        return DomainData(s, t, t, t, t.labels, 10)
    if not root:
        raise ValueError(f"data.root is required for data.dataset={dataset}")
    if dataset == "digits":
        size, ch = (32, 3) if "svhn" in (source, target) else (28, 1)
        tf = digit_transform(size, ch)
        xs, ys = load_digit_split(root, source, train=True)
        xt, yt = load_digit_split(root, target, train=True)
        xe, ye = load_digit_split(root, target, train=False)
        t = ArrayDataset(xt, yt, tf)
        return DomainData(ArrayDataset(xs, ys, tf), t, t, ArrayDataset(xe, ye, tf), t.labels, 10)
    if dataset in IMAGE_LISTS:
        s = list_dataset(root, dataset, source, True, image_size, resize)
        t_train = list_dataset(root, dataset, target, True, image_size, resize)
        t_plain = list_dataset(root, dataset, target, False, image_size, resize)
        return DomainData(s, t_train, t_plain, t_plain, np.asarray(t_plain.labels), NUM_CLASSES[dataset])
    raise ValueError(f"data.dataset must be embedded | digits | {' | '.join(IMAGE_LISTS)}, got '{dataset}'")


# ----------------------------------------------------------------------------- verify
def _verify_digits(root: Path, name: str) -> list[str]:
    problems = []
    for train, expected in zip((True, False), DIGIT_COUNTS[name]):
        try:
            _, y = load_digit_split(root, name, train)
        except (FileNotFoundError, DigitFileError) as e:
            problems.append(str(e))
            continue
        if len(y) != expected:
            problems.append(f"{name} {'train' if train else 'test'}: expected {expected} samples, found {len(y)}")
    return problems


def _verify_lists(root: Path, dataset: str) -> list[str]:
    problems, found, expected = [], {}, {}
    for rel, count in IMAGE_LISTS[dataset].values():
        expected[rel] = count
        try:
            items = parse_list_file(root / rel, root=root, num_classes=NUM_CLASSES[dataset])
        except (FileNotFoundError, ListFileError) as e:
            problems.append(str(e))
            continue
        found[rel] = len(items)
        missing = [p for p, _ in items if not p.is_file()]
        if missing:
            problems.append(f"{rel}: {len(missing)} listed images missing, e.g. {missing[0]}")
    return problems + [p for p in check_counts(found, expected) if p.split(":")[0] in found]


for _name in DIGIT_COUNTS:
    register(f"bp_triplet.{_name}", paper="bp_triplet",
             doc=f"<root>/{_name}/... (see bp_triplet/data.py; {DIGIT_COUNTS[_name][0]} train / "
                 f"{DIGIT_COUNTS[_name][1]} test)")(lambda root, n=_name: _verify_digits(Path(root), n))
for _name, _lists in IMAGE_LISTS.items():
    register(f"bp_triplet.{_name}", paper="bp_triplet",
             doc="<root>/" + " + ".join(rel for rel, _ in _lists.values()) + " (relative/path label)")(
        lambda root, n=_name: _verify_lists(Path(root), n))
