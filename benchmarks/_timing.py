"""Interleaved training-step timing shared by the speed benchmarks.

Each model does forward, cross-entropy, backward and an AdamW update on the same batch. Models run
round-robin, step by step, after one warm-up step each, so load from other processes hits all alike.
"""
from __future__ import annotations

import time

import torch


def interleaved_step_times(models: dict[str, torch.nn.Module], x: torch.Tensor, y: torch.Tensor,
                           steps: int, lr: float = 1e-4) -> dict[str, list[float]]:
    """Seconds per training step of every model, ``steps`` timed steps each (warm-up excluded)."""
    opts = {n: torch.optim.AdamW(m.parameters(), lr=lr) for n, m in models.items()}

    def step(name: str) -> float:
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(models[name](x), y)
        opts[name].zero_grad(set_to_none=True)
        loss.backward()
        opts[name].step()
        return time.perf_counter() - t0

    for name in models:  # warm-up (allocator, one-off index tables)
        step(name)
    times: dict[str, list[float]] = {n: [] for n in models}
    for _ in range(steps):
        for name in models:
            times[name].append(step(name))
    return times
