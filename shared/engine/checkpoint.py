"""Atomic checkpoint files, loadable with ``torch.load(weights_only=True)``."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint_file(path: str | Path) -> dict:
    """Load an engine checkpoint safely; a clear one-line error names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        raise RuntimeError(f"{path}: not a loadable checkpoint ({type(e).__name__}: {e})") from e


def resolve_resume(resume: str | None, run_dir: str | Path) -> Path | None:
    """``auto`` -> ``run_dir/last.pt`` when it exists, else a fresh start; a path must exist."""
    if not resume:
        return None
    if resume == "auto":
        p = Path(run_dir) / "last.pt"
        return p if p.is_file() else None
    p = Path(resume)
    if not p.is_file():
        raise FileNotFoundError(f"{p}: --resume checkpoint not found")
    return p
