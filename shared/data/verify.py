"""``python -m shared.data.verify <dataset> <root>``: check a real dataset's documented layout.

Each paper registers its datasets with :func:`shared.data.registry.register` (re-exported here). A check
returns a list of problems (missing files, wrong counts, malformed lines). The command then
decodes every image under the root (``--fast`` skips that) and names each one that cannot be read
(a truncated JPEG passes a layout check and would stop training hours later). It prints the problems
and exits 1, or prints ``OK``.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from ..errors import cli_errors
from ..papers import PAPERS
from .registry import REGISTRY, VerifySpec, check_counts, register

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".webp", ".tif", ".tiff")


def load_all() -> None:
    """Import the shared datasets and every paper's ``data`` module so their datasets register."""
    importlib.import_module("shared.data.imagenet")
    for p in PAPERS:
        try:
            importlib.import_module(f"{p}.data")
        except ModuleNotFoundError as e:
            if e.name not in (f"{p}.data", p):
                raise


def image_problems(root: Path) -> tuple[int, list[str]]:
    """Decode every image file under ``root`` (fully: a truncated file fails); ``(count, problems)``."""
    from PIL import Image

    n, problems = 0, []
    for path in sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        n += 1
        try:
            with Image.open(path) as im:
                im.load()
        except Exception as e:  # noqa: BLE001 - PIL raises OSError, SyntaxError, ValueError, ...
            why = (str(e).splitlines() or [""])[0]
            problems.append(f"{path}: unreadable image ({type(e).__name__}: {why})")
    return n, problems


def main(argv: list[str] | None = None) -> int:
    with cli_errors("python -m shared.data.verify", argv):
        return _main(argv)


def _main(argv: list[str] | None = None) -> int:
    load_all()
    ap = argparse.ArgumentParser(prog="python -m shared.data.verify", description=__doc__.split("\n")[0])
    ap.add_argument("dataset", nargs="?", help="one of: " + ", ".join(sorted(REGISTRY)))
    ap.add_argument("root", nargs="?", type=Path)
    ap.add_argument("--fast", action="store_true", help="check the layout only; do not decode every image")
    ap.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    args = ap.parse_args(argv)
    if args.dataset not in REGISTRY or args.root is None:
        for s in sorted(REGISTRY.values(), key=lambda s: s.name):
            print(f"{s.name:16s} ({s.paper}) {s.doc}")
        return 2 if args.dataset else 0
    if not args.root.is_dir():
        print(f"python -m shared.data.verify: error: {args.root}: not a folder", file=sys.stderr)
        return 1
    problems = list(REGISTRY[args.dataset].fn(args.root))
    if not args.fast:
        n_images, bad = image_problems(args.root)
        problems += bad
        print(f"{args.dataset}: decoded {n_images - len(bad)}/{n_images} images under {args.root}")
    for p in problems:
        print(f"MISSING/BAD {p}")
    if problems:
        print(f"{args.dataset}: {len(problems)} problem(s) under {args.root}")
        return 1
    print(f"{args.dataset}: OK ({args.root})")
    return 0


__all__ = ["REGISTRY", "VerifySpec", "check_counts", "image_problems", "load_all", "main", "register"]

if __name__ == "__main__":
    raise SystemExit(main())
