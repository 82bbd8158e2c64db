"""The interface a paper plugs into the engine: a task object, never a copied loop."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.data import Dataset, Sampler

if TYPE_CHECKING:
    from .trainer import Trainer


class Task:
    """Subclass and implement ``build_model``, ``train_dataset`` and ``training_step``.

    The engine owns the loop, optimiser, scheduler, AMP, clipping, EMA, DDP, checkpoints and logs.
    Hooks default to no-ops. ``state_dict``/``load_state_dict`` carry task state that must survive a
    resume (CDTrans saves its pseudo-label pairs there).
    """

    collate_fn = None  # optional DataLoader collate function

    def build_model(self) -> nn.Module:
        raise NotImplementedError

    def train_dataset(self, epoch: int) -> Dataset:
        """The dataset for ``epoch`` (0-based); the engine shuffles it with a per-epoch seed."""
        raise NotImplementedError

    def training_step(self, model: nn.Module, batch: Any, trainer: Trainer) -> dict[str, torch.Tensor]:
        """Return named losses; ``'loss'`` is what gets back-propagated."""
        raise NotImplementedError

    def evaluate(self, model: nn.Module, trainer: Trainer) -> dict[str, float]:
        """Named metrics (rank 0 only, model unwrapped, eval mode set by the engine)."""
        return {}

    def train_sampler(self, dataset: Dataset, epoch: int, world_size: int, rank: int) -> Sampler | None:
        """Optional custom training sampler (e.g. DeiT's repeated augmentation); ``None``: the engine's
        shuffling ``DistributedSampler``. It must shard by ``rank`` itself; ``set_epoch`` is called if present."""
        return None

    def param_groups(self, model: nn.Module) -> list[dict] | None:
        """Optional custom parameter groups; ``None`` lets the engine build them from ``optim``."""
        return None

    def on_train_start(self, trainer: Trainer) -> None:
        pass

    def on_epoch_start(self, trainer: Trainer, epoch: int) -> None:
        pass

    def on_step_end(self, trainer: Trainer, global_step: int) -> None:
        pass

    def on_epoch_end(self, trainer: Trainer, epoch: int) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass
