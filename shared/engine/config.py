"""Typed config sections every paper's config inherits (``engine``, ``optim``, ``sched``, ``logger``)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OptimConfig:
    name: str = "sgd"  # sgd | adam | adamw
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    amsgrad: bool = False
    # Parameter groups: biases get lr * bias_lr_factor (TransReID/CDTrans use 2.0) and, unless
    # bias_weight_decay is false, the same weight decay as weights (the official CDTrans code does).
    bias_lr_factor: float = 1.0
    bias_weight_decay: bool = True
    # Names (substrings) of parameters that get no weight decay, e.g. ["pos_embed", "cls_token"].
    no_decay_keys: list[str] = field(default_factory=list)


@dataclass
class SchedConfig:
    """timm scheduler settings; lr-relative where a paper states factors rather than values."""

    name: str = "cosine"  # cosine | step | multistep | plateau | poly | const
    warmup_epochs: int = 0
    # per_iter schedules: the warm-up length in updates instead (mmseg's 1,500 iterations); 0: warmup_epochs
    warmup_updates: int = 0
    warmup_lr_factor: float = 0.01  # warmup starts at optim.lr * this
    min_lr_factor: float = 0.0  # lr_min = optim.lr * this
    decay_epochs: float = 30.0  # step: period; multistep: see decay_milestones
    decay_milestones: list[int] = field(default_factory=list)
    decay_rate: float = 0.1
    cycle_limit: int = 1
    cooldown_epochs: int = 0  # timm train.py: the last N epochs run at lr_min after the cosine cycle
    poly_power: float = 1.0  # poly: lr = (lr - lr_min) * (1 - t / T) ** poly_power + lr_min (mmcv)
    # timm steps epoch schedulers with the number of the epoch about to run. CDTrans calls
    # scheduler.step(epoch) with 1-based epochs, i.e. t_offset = 1 (its warmup quirk depends on it).
    t_offset: int = 0
    per_iter: bool = False  # step per optimiser update instead of per epoch
    # plateau: decay by decay_rate when engine.monitor (mode engine.monitor_mode) has not improved for
    # patience_epochs evaluations, then wait plateau_cooldown_epochs (torch ReduceLROnPlateau semantics)
    patience_epochs: int = 10
    plateau_cooldown_epochs: int = 0


@dataclass
class EngineConfig:
    epochs: int = 10
    batch_size: int = 64  # global batch over all ranks
    num_workers: int = 0
    drop_last: bool = True
    amp: str = "off"  # off | fp16 | bf16
    clip_grad: float | None = None  # max global grad norm
    ema: bool = False
    ema_decay: float = 0.9998
    eval_ema: bool = True  # with ema: evaluate the EMA copy (False: the raw model, as DeiT reports)
    eval_every: int = 1  # epochs; the last epoch is always evaluated
    ckpt_every: int = 0  # keep epoch_N.pt every N epochs (0: only last/best)
    ckpt_every_steps: int = 0  # refresh last.pt every N steps, for mid-epoch resume
    monitor: str = ""  # metric for best.pt (empty: no best.pt)
    monitor_mode: str = "max"
    seed: int = 0
    deterministic: bool = False
    log_every: int = 10
    device: str = "auto"  # auto | cpu | cuda
    find_unused_parameters: bool = False
    # DDP: minutes any collective may wait (None: torch's default, 10 min for NCCL); and minutes the other
    # ranks may wait for rank 0 when a task evaluates on rank 0 only (they wait on a gloo group of this
    # timeout, not in an NCCL collective). A task with ``evaluate_sharded = True`` evaluates on all ranks.
    dist_timeout_min: float | None = None
    eval_timeout_min: float = 180.0


@dataclass
class LoggerConfig:
    progress: bool = True  # tqdm bars on rank 0
    wandb: bool = False  # optional; offline unless the user configured wandb themselves
    wandb_project: str = "visionrepro"


@dataclass
class RunConfig:
    """Base of every paper's config dataclass: subclass it and add ``model``, ``data``, ..."""

    engine: EngineConfig = field(default_factory=EngineConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sched: SchedConfig = field(default_factory=SchedConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
