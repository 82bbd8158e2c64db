"""List-file image datasets: one ``relative/path label`` per line, paths relative to the list's folder.

This is the format of the Office-31 / Office-Home / VisDA / DomainNet / ImageCLEF lists the UDA papers
ship. A list file is UTF-8 (a leading byte-order mark is accepted). A malformed line or a byte that is
not UTF-8 raises :class:`ListFileError` naming the file and line number; a missing or unreadable image
names its path.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset


class ListFileError(ValueError):
    """A list file is malformed; the message names the file and line."""


def parse_list_file(list_file: str | Path, root: str | Path | None = None,
                    num_classes: int | None = None) -> list[tuple[Path, int]]:
    """Parse ``list_file`` into ``[(image path, label), ...]``.

    Paths are joined to ``root`` (default: the list file's folder). Labels must be integers in
    ``[0, num_classes)`` when ``num_classes`` is given. The path may contain spaces: the label is the
    last whitespace-separated field.
    """
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: list file not found")
    base = Path(root) if root is not None else list_file.parent
    items: list[tuple[Path, int]] = []
    for lineno, raw in enumerate(read_text_lines(list_file), start=1):
        line = raw.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) != 2:
            raise ListFileError(f"{list_file}:{lineno}: expected '<relative/path> <label>', got {raw!r}")
        rel, lab = parts
        try:
            label = int(lab)
        except ValueError:
            raise ListFileError(f"{list_file}:{lineno}: label {lab!r} is not an integer") from None
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise ListFileError(f"{list_file}:{lineno}: label {label} outside [0, {num_classes})")
        items.append((base / rel, label))
    if not items:
        raise ListFileError(f"{list_file}: no entries")
    return items


def read_text_lines(path: str | Path) -> list[str]:
    """The lines of a UTF-8 text file (a leading BOM dropped); a non-UTF-8 byte names the file and line."""
    path = Path(path)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        lineno = data.count(b"\n", 0, e.start) + 1
        raise ListFileError(f"{path}:{lineno}: not UTF-8 (byte 0x{data[e.start]:02x}); "
                            f"re-save the file as UTF-8") from None
    return text.splitlines()


def check_images_exist(items: list[tuple[Path, int]], list_file: str | Path) -> None:
    """Raise naming the first listed image that is missing (and how many are), before a run starts."""
    missing = [p for p, _ in items if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{list_file}: listed image {missing[0]} is missing{more}")


def load_rgb(path: str | Path):
    """Open an image as RGB PIL; a missing or unreadable file raises naming the path."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image listed but missing") from None
    except (UnidentifiedImageError, OSError) as e:
        raise OSError(f"{path}: unreadable image ({e})") from None


class ListFileDataset(Dataset):
    """``(transform(image), label, index)`` for every line of a list file."""

    def __init__(self, list_file: str | Path, transform: Callable | None = None,
                 root: str | Path | None = None, num_classes: int | None = None, check_files: bool = True):
        self.list_file = Path(list_file)
        self.items = parse_list_file(list_file, root, num_classes)
        if check_files:  # a missing image stops the run before it starts, not hours into it
            check_images_exist(self.items, self.list_file)
        self.transform = transform

    @property
    def labels(self) -> list[int]:
        return [y for _, y in self.items]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        path, y = self.items[i]
        img = load_rgb(path)
        return (self.transform(img) if self.transform else img), y, i
