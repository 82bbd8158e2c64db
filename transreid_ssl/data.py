"""Datasets: Market-1501, MSMT17 (V1 lists), the LUPerson image folder, and the embedded SynPerson generator.

Loader conventions are the official ``transreid_pytorch/datasets`` ones (spec section 3):
Market names ``([-\\d]+)_c(\\d)`` -> pid, cam (0-based cam); pid -1 junk skipped; train pids relabelled.
Transforms: TransReID fine-tuning (mean = std = 0.5, pad + crop, timm RandomErasing 'pixel') and DINO's
person-shaped multi-crop (ImageNet mean/std).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset
from torchvision import transforms as T

from shared.data.listfile import ListFileError, load_rgb
from shared.data.registry import check_counts, register

MARKET_RE = re.compile(r"([-\d]+)_c(\d)")
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass
class ReIDSplit:
    """Parallel lists: ``sources[i]`` (a path or an HxWx3 uint8 array), ``pids[i]``, ``camids[i]``."""

    sources: list
    pids: list[int]
    camids: list[int]

    def __len__(self) -> int:
        return len(self.sources)

    @property
    def num_pids(self) -> int:
        return len(set(self.pids))


def _open(src) -> Image.Image:
    return Image.fromarray(src) if isinstance(src, np.ndarray) else load_rgb(src)


class ReIDDataset(Dataset):
    """``(transform(image), pid, camid, index)``; ``transform`` may return a list of crops (DINO)."""

    def __init__(self, split: ReIDSplit, transform=None):
        self.split, self.transform = split, transform

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int):
        img = _open(self.split.sources[i])
        return (self.transform(img) if self.transform else img), self.split.pids[i], self.split.camids[i], i


# ----------------------------------------------------------------------------- real datasets
def parse_market_folder(folder: Path, relabel: bool = False) -> ReIDSplit:
    """Market-1501 folder -> split. Junk (pid -1) skipped; pid 0 distractors kept; cam made 0-based."""
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: Market-1501 folder missing")
    items = []
    for p in sorted(folder.glob("*.jpg")):
        m = MARKET_RE.search(p.name)
        if m is None:
            raise ValueError(f"{p}: file name does not match '<pid>_c<cam>...' (Market-1501 naming)")
        pid, cam = int(m.group(1)), int(m.group(2))
        if pid == -1:
            continue
        if not (0 <= pid <= 1501 and 1 <= cam <= 6):
            raise ValueError(f"{p}: pid {pid} / camera {cam} outside Market-1501's 0..1501 / 1..6")
        items.append((p, pid, cam - 1))
    if relabel:
        lab = {pid: i for i, pid in enumerate(sorted({pid for _, pid, _ in items}))}
        items = [(p, lab[pid], c) for p, pid, c in items]
    return ReIDSplit([p for p, _, _ in items], [y for _, y, _ in items], [c for _, _, c in items])


def market1501(root: str | Path) -> tuple[ReIDSplit, ReIDSplit, ReIDSplit]:
    """``<root>/market1501/{bounding_box_train, query, bounding_box_test}`` (``root`` may be the inner folder)."""
    root = Path(root)
    base = root / "market1501" if (root / "market1501").is_dir() else root
    return (parse_market_folder(base / "bounding_box_train", relabel=True),
            parse_market_folder(base / "query"), parse_market_folder(base / "bounding_box_test"))


def parse_msmt_list(list_file: Path, img_dir: Path) -> ReIDSplit:
    """MSMT17 ``list_*.txt`` lines ``rel_path pid``; camera = ``name.split('_')[2]`` (1-based -> 0-based)."""
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: MSMT17 list file missing")
    src, pids, cams = [], [], []
    for n, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise ListFileError(f"{list_file}:{n}: expected '<rel/path.jpg> <pid>', got {line!r}")
        fields = Path(parts[0]).name.split("_")
        if len(fields) < 3 or not fields[2].isdigit():
            raise ListFileError(f"{list_file}:{n}: cannot read the camera from {parts[0]!r} (pid_idx_cam_...)")
        src.append(img_dir / parts[0])
        pids.append(int(parts[1]))
        cams.append(int(fields[2]) - 1)
    return ReIDSplit(src, pids, cams)


def msmt17(root: str | Path) -> tuple[ReIDSplit, ReIDSplit, ReIDSplit]:
    """``<root>/MSMT17/{train,test}`` + ``list_{train,val,query,gallery}.txt``; train = list_train + list_val."""
    root = Path(root)
    base = root / "MSMT17" if (root / "MSMT17").is_dir() else root
    tr, va = parse_msmt_list(base / "list_train.txt", base / "train"), parse_msmt_list(base / "list_val.txt",
                                                                                        base / "train")
    train = ReIDSplit(tr.sources + va.sources, tr.pids + va.pids, tr.camids + va.camids)
    if sorted(set(train.pids)) != list(range(train.num_pids)):
        raise ValueError(f"{base / 'list_train.txt'}: train pids are not contiguous 0..N-1 (the code asserts it)")
    return (train, parse_msmt_list(base / "list_query.txt", base / "test"),
            parse_msmt_list(base / "list_gallery.txt", base / "test"))


def mm(root: str | Path) -> tuple[ReIDSplit, ReIDSplit, ReIDSplit]:
    """"mm" (``datasets/mm.py``, the authors' CFS theta_1 data): MSMT17 ``list_train`` only (no list_val) +
    Market train with pids relabelled then offset by 1041 and cameras by 15; query / gallery = Market's."""
    root = Path(root)
    base = root / "MSMT17" if (root / "MSMT17").is_dir() else root
    ms = parse_msmt_list(base / "list_train.txt", base / "train")
    mk, query, gallery = market1501(root)
    train = ReIDSplit(ms.sources + mk.sources, ms.pids + [p + 1041 for p in mk.pids],
                      ms.camids + [c + 15 for c in mk.camids])
    return train, query, gallery


def luperson_images(root: str | Path, filter_list: str | Path | None = None, keep_num: int = 0) -> ReIDSplit:
    """Unlabelled ``LUP/images/*.jpg`` (decoded from the lmdb). ``filter_list``: a CFS ranking (one name a
    line, best first, or the official pickled list) of which the first ``keep_num`` are kept."""
    root = Path(root)
    img_dir = root / "images" if (root / "images").is_dir() else root / "LUP" / "images"
    if not img_dir.is_dir():
        raise FileNotFoundError(f"{root}: no LUP/images folder (decode the LUPerson lmdb to jpg first)")
    if filter_list:
        names = read_ranking(filter_list)
        names = names[:keep_num] if keep_num else names
        src = [img_dir / n for n in names]
    else:
        src = sorted(img_dir.glob("*.jpg"))
    if not src:
        raise FileNotFoundError(f"{img_dir}: no images")
    return ReIDSplit(src, [0] * len(src), [0] * len(src))


def read_ranking(path: str | Path) -> list[str]:
    """A CFS ranking: the official ``CFS_list.pkl`` (a pickled list of names) or our text file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CFS ranking file not found")
    if path.suffix == ".pkl":
        import pickle

        with open(path, "rb") as f:
            names = pickle.load(f)  # noqa: S301 (a local file the user points at)
        if not isinstance(names, (list, tuple)):
            raise ValueError(f"{path}: expected a pickled list of image names, got {type(names).__name__}")
        return [str(n) for n in names]
    return [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]


def _verify_market(root: Path) -> list[str]:
    base = root / "market1501" if (root / "market1501").is_dir() else root
    try:
        tr, q, g = market1501(root)
    except (FileNotFoundError, ValueError) as e:
        return [str(e)]
    found = {"bounding_box_train": len(tr), "query": len(q), "bounding_box_test": len(g), "train ids": tr.num_pids}
    return [f"{base}: {p}" for p in check_counts(found, {"bounding_box_train": 12936, "query": 3368,
                                                          "bounding_box_test": 15913, "train ids": 751})]


def _verify_msmt(root: Path) -> list[str]:
    try:
        tr, q, g = msmt17(root)
    except (FileNotFoundError, ValueError) as e:
        return [str(e)]
    probs = check_counts({"train": len(tr), "query": len(q), "gallery": len(g), "train ids": tr.num_pids},
                         {"train": 32621, "query": 11659, "gallery": 82161, "train ids": 1041})
    missing = [s for s in (tr.sources[0], q.sources[0], g.sources[0]) if not Path(s).is_file()]
    return probs + [f"{s}: listed image missing" for s in missing]


def _verify_lup(root: Path) -> list[str]:
    try:
        n = len(luperson_images(root))
    except FileNotFoundError as e:
        return [str(e)]
    return [] if n > 0 else [f"{root}: empty"]


register("market1501", paper="transreid_ssl",
         doc="<root>/market1501/{bounding_box_train,query,bounding_box_test}/<pid>_c<cam>s*_*.jpg")(_verify_market)
register("msmt17", paper="transreid_ssl",
         doc="<root>/MSMT17/{train,test}/ + list_{train,val,query,gallery}.txt (V1)")(_verify_msmt)
register("luperson", paper="transreid_ssl", doc="<root>/LUP/images/*.jpg (decoded lmdb)")(_verify_lup)


# ----------------------------------------------------------------------------- transforms
def reid_train_transform(size: tuple[int, int], pad: int = 10, re_prob: float = 0.5) -> T.Compose:
    """TransReID train: bicubic resize, flip .5, pad + random crop, Normalize(.5, .5), RandomErasing pixel."""
    from timm.data.random_erasing import RandomErasing

    return T.Compose([T.Resize(size, interpolation=T.InterpolationMode.BICUBIC), T.RandomHorizontalFlip(0.5),
                      T.Pad(pad), T.RandomCrop(size), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3),
                      RandomErasing(probability=re_prob, mode="pixel", max_count=1, device="cpu")])


def reid_test_transform(size: tuple[int, int]) -> T.Compose:
    """TransReID test (and the CFS scoring transform of issue #3): bilinear resize, Normalize(.5, .5)."""
    return T.Compose([T.Resize(size), T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
