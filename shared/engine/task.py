"""The interface a paper plugs into the engine: a task object, never a copied loop."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler


class TrainerView(Protocol):
    """What a task may read from the engine's trainer (:class:`shared.engine.trainer.Trainer`, which
    has these and more): the type of every hook's ``trainer`` argument. Declared here so that this
    module does not import the trainer, which imports it."""

    cfg: Any
    epoch: int  # 0-based
    global_step: int
    device: torch.device
    model: nn.Module  # unwrapped
    wrapped: nn.Module  # DDP or the model
    world_size: int
    rank: int
    run_dir: Path
    history: list[dict]


class Task:
    """Subclass and implement ``build_model``, ``train_dataset`` and ``training_step``.

    The engine owns the loop, optimiser, scheduler, AMP, clipping, EMA, DDP, checkpoints and logs.
    Hooks default to no-ops. ``state_dict``/``load_state_dict`` carry task state that must survive a
    resume (CDTrans saves its pseudo-label pairs there).
    """

    collate_fn = None  # optional DataLoader collate function
    # True: under DDP every rank calls ``evaluate`` and must take its part of the evaluation set from
    # ``shared.engine.dist.eval_loader`` and ``gather_cat`` the per-sample outputs before computing the
    # metric (so no rank idles while rank 0 evaluates a big set). False: rank 0 alone evaluates.
    evaluate_sharded = False

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def train_dataset(self, epoch: int) -> Dataset:
        """The dataset for ``epoch`` (0-based); the engine shuffles it with a per-epoch seed."""
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any, trainer: TrainerView) -> dict[str, torch.Tensor]:
        """Return named losses; ``'loss'`` is what gets back-propagated."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, trainer: TrainerView) -> dict[str, float]:
        """Named metrics (model unwrapped, eval mode set by the engine): on rank 0 only, or on every rank
        with ``evaluate_sharded`` (rank 0's values are logged)."""
        return {}

    def train_sampler(self, dataset: Dataset, epoch: int, world_size: int, rank: int) -> Sampler | None:
        """Optional custom training sampler (e.g. DeiT's repeated augmentation); ``None``: the engine's
        shuffling ``DistributedSampler``. It must shard by ``rank`` itself; ``set_epoch`` is called if present."""
        return None

    def param_groups(self, model: nn.Module) -> list[dict] | None:
        """Optional custom parameter groups; ``None`` lets the engine build them from ``optim``."""
        return None

    def on_train_start(self, trainer: TrainerView) -> None:
        pass

    def on_epoch_start(self, trainer: TrainerView, epoch: int) -> None:
        pass

    def on_step_end(self, trainer: TrainerView, global_step: int) -> None:
        pass

    def on_epoch_end(self, trainer: TrainerView, epoch: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
