"""CDTrans data: the four real UDA benchmarks as list files, the embedded digit domains, pair datasets.

Real layouts (spec section 6; list paths are relative to the list file's folder)::

    <root>/office31/{amazon,dslr,webcam}/images/<class>/frame_XXXX.jpg    + <root>/office31/<domain>_list.txt
    <root>/OfficeHomeDataset/{Art,Clipart,Product,Real_World}/<Class>/NNNNN.jpg  + <Domain>.txt
    <root>/visda/train/<class>/*           + train/train_image_list.txt
    <root>/visda/validation/<class>/*      + validation/valid_image_list.txt
    <root>/domainnet/<domain>/<class>/*    + <domain>.txt (full domain = train + test, the CDTrans protocol)

``data.root`` points at the benchmark folder itself (``.../office31``). Office-Home uses the CDAN label
order (0 Drill, 1 Exit_Sign, 2 Bottle, ..., 64 Marker), not alphabetical; its "Real World" folder must be
renamed ``Real_World``. The target list used for adaptation is also the test list (transductive).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from shared.data import ListFileDataset, digit_domains, parse_list_file
from shared.data.listfile import ListFileError
from shared.data.registry import register

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Benchmark:
    num_classes: int
    lists: dict[str, str]  # domain -> list file relative to the benchmark root
    sizes: dict[str, int]  # documented image counts per domain list
    metric: str = "acc"  # acc (overall top-1) | mean_class_acc (VisDA)
    class_order: dict[int, str] = field(default_factory=dict)  # documented label -> class folder


BENCHMARKS: dict[str, Benchmark] = {
    "office31": Benchmark(31, {d: f"{d}_list.txt" for d in ("amazon", "dslr", "webcam")},
                          {"amazon": 2817, "dslr": 498, "webcam": 795},
                          class_order={0: "back_pack", 30: "trash_can"}),
    "officehome": Benchmark(65, {d: f"{d}.txt" for d in ("Art", "Clipart", "Product", "Real_World")},
                            {"Art": 2427, "Clipart": 4365, "Product": 4439, "Real_World": 4357},
                            class_order={0: "Drill", 1: "Exit_Sign", 2: "Bottle", 64: "Marker"}),
    "visda": Benchmark(12, {"train": "train/train_image_list.txt", "validation": "validation/valid_image_list.txt"},
                       {"train": 152397, "validation": 55388}, metric="mean_class_acc",
                       class_order={0: "aeroplane", 11: "truck"}),
    "domainnet": Benchmark(345, {d: f"{d}.txt" for d in ("clipart", "infograph", "painting", "quickdraw", "real",
                                                          "sketch")},
                           {"clipart": 48129, "infograph": 51605, "painting": 72266, "quickdraw": 172500,
                            "real": 172947, "sketch": 69128}),
}


def benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise ValueError(f"data.name: unknown benchmark '{name}' (digits | {' | '.join(BENCHMARKS)})")
    return BENCHMARKS[name]


def list_file(name: str, root: str | Path, domain: str) -> Path:
    b = benchmark(name)
    if domain not in b.lists:
        raise ValueError(f"data: domain '{domain}' is not in {name} ({', '.join(b.lists)})")
    return Path(root) / b.lists[domain]


# ---------------------------------------------------------------------------- transforms
def train_transform(size: int = 224, resize: int = 256) -> Callable:
    """Official train augmentation: Resize(256x256), RandomCrop(224), hflip 0.5, ImageNet mean/std."""
    import torchvision.transforms as T

    return T.Compose([T.Resize((resize, resize)), T.RandomCrop((size, size)), T.RandomHorizontalFlip(),
                      T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


def eval_transform(size: int = 224, resize: int = 256) -> Callable:
    """Official val transform: Resize(256x256), CenterCrop(224)."""
    import torchvision.transforms as T

    return T.Compose([T.Resize((resize, resize)), T.CenterCrop((size, size)), T.ToTensor(),
                      T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])


# ---------------------------------------------------------------------------- embedded digits
class ArrayDataset(Dataset):
    """``(image (C, H, W), label, index)`` from arrays, with an optional random shift of +-``shift`` px."""

    def __init__(self, x: np.ndarray, y: np.ndarray, shift: int = 0):
        self.x, self.y, self.shift = torch.from_numpy(x), torch.from_numpy(y), shift

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labels(self) -> list[int]:
        return self.y.tolist()

    def __getitem__(self, i: int):
        s = self.shift
        return self.items([i], torch.randint(-s, s + 1, (1, 2)) if s else None)[0]

    def __getitems__(self, idx: list[int]) -> list[tuple]:
        """A whole batch at once (the DataLoader's batched fetch): the same items, the same global-RNG draws
        in the same order as ``[self[i] for i in idx]`` (a ``(n, 2)`` ``randint`` draws what n ``(1, 2)``
        draws do), one gather for the batch."""
        return self.items(idx, torch.randint(-self.shift, self.shift + 1, (len(idx), 2)) if self.shift else None)

    def items(self, idx: list[int], shifts: torch.Tensor | None) -> list[tuple]:
        """``[(image, label, index)]`` for ``idx``, image ``k`` shifted by ``shifts[k] = (dy, dx)`` (None: as is)."""
        t = torch.as_tensor(idx, dtype=torch.long)
        img = self.x[t] if shifts is None else shift_images(self.x[t], shifts, self.shift)
        return list(zip(img, self.y[t].tolist(), idx))


def shift_images(x: torch.Tensor, shifts: torch.Tensor, s: int) -> torch.Tensor:
    """``(B, C, H, W)`` images, image ``b`` moved by ``shifts[b] = (dy, dx)`` (each in ``[-s, s]``) with zeros
    entering: ``out[b, :, y, x] = x[b, :, y - dy, x - dx]`` (0 outside): pad by ``s``, roll by (dy, dx), crop,
    for the whole batch in one gather (a copy, no arithmetic)."""
    b, _, h, w = x.shape
    xp = torch.nn.functional.pad(x, (s, s, s, s))
    rows = torch.arange(h)[None, :] + s - shifts[:, :1]  # (B, H): |dy| <= s never wraps in the padded image
    cols = torch.arange(w)[None, :] + s - shifts[:, 1:]  # (B, W)
    out = xp[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2)


@dataclass
class Domains:
    """Source/target datasets in train (augmented) and eval (deterministic) form."""

    source_train: Dataset
    source_eval: Dataset
    target_train: Dataset
    target_eval: Dataset
    num_classes: int
    metric: str

    @property
    def source_labels(self) -> torch.Tensor:
        return torch.as_tensor(self.source_eval.labels)

    @property
    def target_labels(self) -> torch.Tensor:
        """True target labels: used only for evaluation and for reporting pair precision."""
        return torch.as_tensor(self.target_eval.labels)


def build_domains(name: str, root: str = "", source: str = "", target: str = "", seed: int = 0,
                  n_source: int = 3000, shift: int = 1, img_size: int = 224, n_target: int = 0) -> Domains:
    """The embedded digit domains (``name='digits'``: source and target both drawn from ``seed``, the target a
    subset of ``n_target`` handwritten digits, 0 = all) or a real benchmark's source/target lists."""
    if name == "digits":
        d = digit_domains(seed=seed, n_source=n_source, n_target=n_target)
        return Domains(ArrayDataset(d.source_x, d.source_y, shift), ArrayDataset(d.source_x, d.source_y),
                       ArrayDataset(d.target_x, d.target_y, shift), ArrayDataset(d.target_x, d.target_y),
                       d.num_classes, "acc")
    if not root:
        raise ValueError(f"data.root: the {name} benchmark folder is required (e.g. data.root=/data/{name})")
    b = benchmark(name)
    ls, lt = list_file(name, root, source), list_file(name, root, target)
    tr, ev = train_transform(img_size, int(img_size * 256 / 224)), eval_transform(img_size, int(img_size * 256 / 224))
    c = b.num_classes
    return Domains(ListFileDataset(ls, tr, num_classes=c), ListFileDataset(ls, ev, num_classes=c),
                   ListFileDataset(lt, tr, num_classes=c), ListFileDataset(lt, ev, num_classes=c), c, b.metric)


class PairDataset(Dataset):
    """Stage-B items ``((x_s, x_t), (y_s, y^_t), (s_idx, t_idx))``, each image independently augmented."""

    def __init__(self, source: Dataset, target: Dataset, pairs):
        self.source, self.target, self.pairs = source, target, pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        s, t = int(self.pairs.source_idx[i]), int(self.pairs.target_idx[i])
        xs, ys, _ = self.source[s]
        xt, _, _ = self.target[t]
        return (xs, xt), (ys, int(self.pairs.pseudo_label[i])), (s, t)

    def __getitems__(self, idx: list[int]) -> list[tuple]:
        """A whole batch at once, equal item for item (and draw for draw) to ``[self[i] for i in idx]``.

        Per item the source image draws its shift, then the target image; for two shifted
        :class:`ArrayDataset` s one ``(n, 2, 2)`` draw is that same sequence. Other datasets go item by item.
        """
        src, tgt = self.source, self.target
        if not (isinstance(src, ArrayDataset) and isinstance(tgt, ArrayDataset) and src.shift == tgt.shift):
            return [self[i] for i in idx]  # image lists with transforms, or unequal shift ranges
        si, ti = self.pairs.source_idx[idx].tolist(), self.pairs.target_idx[idx].tolist()
        shifts = torch.randint(-src.shift, src.shift + 1, (len(idx), 2, 2)) if src.shift else None
        s_items = src.items(si, None if shifts is None else shifts[:, 0])
        t_items = tgt.items(ti, None if shifts is None else shifts[:, 1])
        return [((xs, xt), (ys, yt), (s, t)) for (xs, ys, s), (xt, _, t), yt
                in zip(s_items, t_items, self.pairs.pseudo_label[idx].tolist())]


# ---------------------------------------------------------------------------- verify
def verify_benchmark(name: str, root: Path, check_images: bool = True) -> list[str]:
    """Problems with a benchmark folder: missing lists, malformed lines, wrong counts, missing images,
    a label order that is not the documented one."""
    b = benchmark(name)
    problems: list[str] = []
    if name == "officehome" and (root / "Real World").exists() and not (root / "Real_World").exists():
        problems.append(f"{root / 'Real World'}: rename the folder to 'Real_World' (the lists use that name)")
    for domain, rel in b.lists.items():
        lst = root / rel
        if not lst.is_file():
            problems.append(f"{lst}: list file missing")
            continue
        try:
            items = parse_list_file(lst, num_classes=b.num_classes)
        except ListFileError as e:
            problems.append(str(e))
            continue
        if len(items) != b.sizes[domain]:
            problems.append(f"{lst}: expected {b.sizes[domain]} entries, found {len(items)}")
        seen: dict[int, str] = {}
        for path, y in items:
            seen.setdefault(y, path.parent.name)
        for y, cls in b.class_order.items():
            if y in seen and seen[y] != cls:
                problems.append(f"{lst}: label {y} is '{seen[y]}', expected '{cls}' (documented label order)")
        if check_images:
            missing = [p for p, _ in items if not p.is_file()]
            if missing:
                problems.append(f"{lst}: {len(missing)} listed images missing, e.g. {missing[0]}")
    return problems


def _register(name: str, doc: str) -> None:
    register(name, paper="cdtrans", doc=doc)(lambda root: verify_benchmark(name, Path(root)))


_register("office31", "<root>/{amazon,dslr,webcam}/images/<class>/*.jpg + <domain>_list.txt (31 classes)")
_register("officehome", "<root>/{Art,Clipart,Product,Real_World}/<Class>/*.jpg + <Domain>.txt (CDAN label order)")
_register("visda", "<root>/{train,validation}/<class>/* + train/train_image_list.txt, validation/valid_image_list.txt")
_register("domainnet", "<root>/<domain>/<class>/* + <domain>.txt (full domain lists, 345 classes)")
