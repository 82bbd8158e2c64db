"""Seeds for python / numpy / torch, per rank and per loader worker; RNG state capture for resume."""
from __future__ import annotations

import os
import random

import numpy as np
import torch


def seed_everything(seed: int, rank: int = 0, deterministic: bool = False) -> None:
    """Seed every generator with ``seed + rank``; ``deterministic`` also forces deterministic kernels."""
    s = seed + rank
    random.seed(s)
    np.random.seed(s % 2**32)
    torch.manual_seed(s)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True


def worker_init_fn(worker_id: int) -> None:
    """DataLoader worker seeding: derive numpy/python seeds from torch's per-worker seed."""
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def loader_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """A generator private to one epoch's loader, so building a loader never consumes global RNG."""
    g = torch.Generator()
    g.manual_seed((seed * 1_000_003 + epoch * 997 + rank) % 2**63)
    return g


def rng_state() -> dict:
    """All global RNG states as weights_only-loadable objects."""
    np_state = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
