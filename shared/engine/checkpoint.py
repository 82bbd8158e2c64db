"""Atomic checkpoint files, loadable with ``torch.load(weights_only=True)``.

- :func:`atomic_save` writes a temp file in the same folder and renames it over the target, so a crash
  (even ``kill -9``) never leaves half a checkpoint; temp files left by a killed save are removed by the
  next save into that folder.
- ``last.pt`` keeps its predecessor as ``last.prev.pt`` (:func:`save_rotating`): when ``last.pt`` is
  truncated or corrupt, ``--resume auto`` warns and resumes from ``last.prev.pt`` (:func:`load_resume`).
- Every load failure is a :class:`~shared.errors.CheckpointError` naming the file (one line at the CLI).
"""
from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import torch

from ..errors import CheckpointError

#: Keys of an engine checkpoint (``Trainer.state_dict``); a file without them is not resumable.
ENGINE_KEYS = ("model", "optimizer", "rng", "epoch", "step_in_epoch", "global_step")


def remove_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete ``.<name>.*.tmp`` files a killed :func:`atomic_save` left in ``folder`` (any name if None)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    gone = []
    for p in folder.glob(f".{name or '*'}.*.tmp"):
        try:
            p.unlink()
            gone.append(p)
        except OSError:
            pass
    return gone


def atomic_save(obj, path: str | Path) -> Path:
    """``torch.save`` to a temp file in the same folder, then rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
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


def prev_path(path: str | Path) -> Path:
    """``last.pt`` -> ``last.prev.pt``: where the previous good checkpoint is kept."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def save_rotating(obj, path: str | Path) -> Path:
    """:func:`atomic_save` that first moves an existing ``path`` to :func:`prev_path` (the last two are kept).

    A kill between the two renames leaves only the previous file, which :func:`load_resume` falls back to.
    """
    path = Path(path)
    if path.is_file():
        os.replace(path, prev_path(path))
    return atomic_save(obj, path)


def load_checkpoint_file(path: str | Path) -> dict:
    """Load an engine checkpoint safely; a clear one-line error names a bad file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - re-raised with the file named
        why = (str(e).strip().splitlines() or [""])[0][:160]
        raise CheckpointError(f"{path}: not a loadable checkpoint (truncated or corrupt? "
                              f"{type(e).__name__}: {why})") from None
    return obj


def check_engine_checkpoint(obj, path: str | Path) -> dict:
    """Raise naming ``path`` unless ``obj`` is a checkpoint this engine wrote (resumable)."""
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: not a training checkpoint (holds a {type(obj).__name__})")
    missing = [k for k in ENGINE_KEYS if k not in obj]
    if missing:
        hint = ("it looks like a plain state dict (weights only): load it as initial weights through the "
                "config, not with --resume" if all(torch.is_tensor(v) for v in obj.values())
                else f"keys present: {', '.join(list(map(str, obj))[:6])}")
        raise CheckpointError(f"{path}: not a training checkpoint of this engine (no {', '.join(missing)}); "
                              f"{hint}")
    return obj


def load_resume(path: str | Path, fallback: bool = False) -> tuple[Path, dict]:
    """``(file, state)`` of an engine checkpoint. With ``fallback`` a bad ``path`` (truncated, corrupt)
    falls back to its :func:`prev_path` with a warning; the error names both files when that fails too."""
    path = Path(path)
    try:
        return path, check_engine_checkpoint(load_checkpoint_file(path), path)
    except CheckpointError as e:
        prev = prev_path(path)
        if not (fallback and prev.is_file()):
            raise
        try:
            state = check_engine_checkpoint(load_checkpoint_file(prev), prev)
        except CheckpointError as e2:
            raise CheckpointError(f"{e}; the previous checkpoint is bad too: {e2}") from None
        print(f"warning: {e}; resuming from the previous checkpoint {prev} instead", file=sys.stderr, flush=True)
        return prev, state


def resolve_resume(resume: str | None, run_dir: str | Path) -> Path | None:
    """``auto`` -> ``run_dir/last.pt`` (or ``last.prev.pt`` when only it survived), else a fresh start;
    a path must exist."""
    if not resume:
        return None
    if resume == "auto":
        p = Path(run_dir) / "last.pt"
        if p.is_file() or prev_path(p).is_file():
            return p
        return None
    p = Path(resume)
    if not p.is_file():
        raise CheckpointError(f"{p}: --resume checkpoint not found")
    return p
