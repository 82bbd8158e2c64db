"""Optimiser and timm LR scheduler construction from the typed config."""
from __future__ import annotations

import torch
from timm.scheduler import CosineLRScheduler, MultiStepLRScheduler, StepLRScheduler
from timm.scheduler.scheduler import Scheduler
from torch import nn

from .config import OptimConfig, SchedConfig


def default_param_groups(model: nn.Module, cfg: OptimConfig) -> list[dict]:
    """One group per (lr factor, weight decay) combination, TransReID-style bias handling."""
    groups: dict[tuple[float, float], list] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        is_bias = name.endswith(".bias") or name == "bias"
        lr_f = cfg.bias_lr_factor if is_bias else 1.0
        wd = cfg.weight_decay
        if (is_bias and not cfg.bias_weight_decay) or any(k in name for k in cfg.no_decay_keys):
            wd = 0.0
        groups.setdefault((lr_f, wd), []).append(p)
    return [{"params": ps, "lr_factor": f, "weight_decay": wd} for (f, wd), ps in groups.items()]


def build_optimizer(params: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    for g in params:
        g.setdefault("lr_factor", 1.0)
        g["lr"] = cfg.lr * g["lr_factor"]
    name = cfg.name.lower()
    if name == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                               weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay, amsgrad=cfg.amsgrad)
    raise ValueError(f"optim.name: unknown optimiser '{cfg.name}' (sgd | adam | adamw)")


class PlateauScheduler:
    """torch's ``ReduceLROnPlateau`` (what MotionRGBD's official code calls) behind the timm scheduler calls the
    trainer makes: ``step(epoch, metric)`` once per epoch start with the last evaluation's metric (``None``
    before the first: no change), ``step_update`` a no-op; its state (best, bad epochs, cooldown) is saved in
    checkpoints, so a resumed run decays exactly as an uninterrupted one (timm's plateau scheduler does not).
    A linear warm-up over the first ``warmup_t`` epochs (timm's form: ``init + t (lr - init) / warmup_t``)
    comes first; the plateau logic starts after it."""

    def __init__(self, optimizer: torch.optim.Optimizer, factor: float, patience: int, cooldown: int, mode: str,
                 warmup_t: int = 0, warmup_lr_init: float = 0.0):
        self.optimizer, self.warmup_t, self.warmup_lr_init = optimizer, warmup_t, warmup_lr_init
        self.inner = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode=mode, factor=factor,
                                                                patience=patience, cooldown=cooldown)
        if warmup_t:
            self.step(0)

    def step(self, epoch: int, metric: float | None = None) -> None:
        if epoch < self.warmup_t:
            for g in self.optimizer.param_groups:
                g["lr"] = self.warmup_lr_init + epoch * (g["initial_lr"] - self.warmup_lr_init) / self.warmup_t
            return
        if epoch == self.warmup_t:
            for g in self.optimizer.param_groups:
                g["lr"] = g["initial_lr"]
        if metric is not None:
            self.inner.step(metric)

    def step_update(self, num_updates: int, metric: float | None = None) -> None:
        pass

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


class PolyScheduler(Scheduler):
    """mmcv's ``PolyLrUpdaterHook`` (what mmseg's ``*_160k`` configs use) with its linear warm-up, in timm's
    scheduler calls: ``lr(t) = (base - lr_min) * (1 - min(t, t_initial) / t_initial) ** power + lr_min``, and
    for ``t < warmup_t`` that value times ``1 - (1 - t / warmup_t) * (1 - warmup_ratio)``. Unlike timm's
    ``PolyLRScheduler`` (a ramp from ``warmup_lr_init`` up to the base lr), mmcv's warm-up scales the poly
    value itself, so it starts at ``base * warmup_ratio`` and meets the poly curve at ``warmup_t``. ``t`` is
    the epoch about to run, or the number of updates done (``t_in_epochs=False``)."""

    def __init__(self, optimizer: torch.optim.Optimizer, t_initial: int, power: float = 1.0, lr_min: float = 0.0,
                 warmup_t: int = 0, warmup_ratio: float = 0.0, t_in_epochs: bool = True):
        super().__init__(optimizer, param_group_field="lr", t_in_epochs=t_in_epochs)
        if t_initial < 1:
            raise ValueError(f"poly schedule: t_initial={t_initial} must be >= 1")
        self.t_initial, self.power, self.lr_min = t_initial, power, lr_min
        self.warmup_t, self.warmup_ratio = warmup_t, warmup_ratio
        self.update_groups(self._get_lr(0))

    def _get_lr(self, t: int) -> list[float]:
        # The operation order is mmcv's (and the ELSA task's before the engine had poly): same floats.
        lrs = [(base - self.lr_min) * (1 - min(t, self.t_initial) / self.t_initial) ** self.power + self.lr_min
               for base in self.base_values]
        if t < self.warmup_t:
            lrs = [lr * (1 - (1 - t / self.warmup_t) * (1 - self.warmup_ratio)) for lr in lrs]
        return lrs


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: SchedConfig, base_lr: float,
                    epochs: int, steps_per_epoch: int = 1, monitor_mode: str = "max"):
    """A timm scheduler; ``t`` is in epochs, or in updates when ``per_iter``. ``plateau`` watches the engine's
    ``monitor`` metric (the trainer passes it to ``step``), in ``monitor_mode``."""
    name = cfg.name.lower()
    scale = steps_per_epoch if cfg.per_iter else 1
    # timm schedulers write group['lr'] from group['initial_lr']; give each group its factor-scaled lr.
    for g in optimizer.param_groups:
        g["initial_lr"] = base_lr * g.get("lr_factor", 1.0)
    if cfg.warmup_updates and not cfg.per_iter:
        raise ValueError(f"sched.warmup_updates={cfg.warmup_updates} counts updates: set sched.per_iter=true "
                         "(or use sched.warmup_epochs)")
    if cfg.warmup_updates and cfg.warmup_epochs:
        raise ValueError("sched.warmup_updates and sched.warmup_epochs are both set: keep one")
    warmup_t = cfg.warmup_updates or cfg.warmup_epochs * scale
    common = dict(warmup_t=warmup_t, warmup_lr_init=base_lr * cfg.warmup_lr_factor, t_in_epochs=not cfg.per_iter)
    if name == "cosine":
        if not 0 <= cfg.cooldown_epochs < epochs:
            raise ValueError(f"sched.cooldown_epochs={cfg.cooldown_epochs} must be in [0, engine.epochs={epochs})")
        return CosineLRScheduler(optimizer, t_initial=(epochs - cfg.cooldown_epochs) * scale,
                                 lr_min=base_lr * cfg.min_lr_factor,
                                 cycle_limit=cfg.cycle_limit, **common)
    if name == "step":
        return StepLRScheduler(optimizer, decay_t=cfg.decay_epochs * scale, decay_rate=cfg.decay_rate,
                               **common)
    if name == "multistep":
        return MultiStepLRScheduler(optimizer, decay_t=[m * scale for m in cfg.decay_milestones],
                                    decay_rate=cfg.decay_rate, **common)
    if name == "plateau":
        if cfg.per_iter:
            raise ValueError("sched.name=plateau steps once per evaluation: set sched.per_iter=false")
        return PlateauScheduler(optimizer, cfg.decay_rate, cfg.patience_epochs, cfg.plateau_cooldown_epochs,
                                monitor_mode, cfg.warmup_epochs, base_lr * cfg.warmup_lr_factor)
    if name == "poly":  # lr_min is one value for every group, as in timm's cosine and mmcv's min_lr
        return PolyScheduler(optimizer, t_initial=epochs * scale, power=cfg.poly_power,
                             lr_min=base_lr * cfg.min_lr_factor, warmup_t=warmup_t,
                             warmup_ratio=cfg.warmup_lr_factor, t_in_epochs=not cfg.per_iter)
    if name in ("const", "none"):
        return None
    raise ValueError(f"sched.name: unknown scheduler '{cfg.name}' "
                     "(cosine | step | multistep | plateau | poly | const)")
