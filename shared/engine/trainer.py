"""The one training loop every paper uses.

Mixed precision (off/fp16/bf16), gradient clipping, timm LR schedulers, optional EMA, DDP through
torchrun, atomic checkpoints (``last``, ``best``, every-N) with RNG states so that a run killed
mid-epoch and resumed ends with the same weights, JSONL/CSV metrics, ``env.json``, tqdm on rank 0.

Guarantees (tests/test_engine.py, tests/test_reliability.py):
- Nothing half-written: the model is built and a resume checkpoint loaded and checked before the run
  directory, ``config.yaml`` and ``env.json`` are written; a run that fails before its first update
  removes the folder it created.
- ``last.pt`` keeps its predecessor (``last.prev.pt``); ``--resume auto`` falls back to it, with a
  warning, when ``last.pt`` is truncated or corrupt.
- No checkpoint holds non-finite weights, and a checkpoint whose weights then give a non-finite loss is
  replaced by the one before it (``last.pt`` stays the last good state).
- Resuming under a config that differs from the checkpoint's (``optim.lr=...``) is refused with the
  changed keys named, except for keys that do not change the computation (:data:`RESUME_MAY_CHANGE`).
- A mid-epoch resume restores the epoch's running loss sums (the logged epoch means are unchanged).
"""
from __future__ import annotations

import csv
import json
import math
import os
import shutil
import signal
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, Sampler
from tqdm.auto import tqdm

from ..config import save_config, to_dict
from ..errors import CheckpointError, UserError
from . import dist
from .checkpoint import atomic_save, load_resume, prev_path, resolve_resume, save_rotating
from .config import RunConfig
from .envinfo import write_env_json
from .optim import build_optimizer, build_scheduler, default_param_groups
from .seed import loader_generator, rng_state, seed_everything, set_rng_state, worker_init_fn
from .task import Task


class NonFiniteLossError(RuntimeError):
    """A loss became NaN/inf; training stopped before the bad step touched the weights."""


# Tests of resume after a crash: the process SIGKILLs itself after this global step (before that step's
# checkpoint); never set in normal use.
_KILL_AT_STEP = int(os.environ.get("VISIONREPRO_FAULT_KILL_AT_STEP", "0") or 0)

# Config keys a resume may change: they do not change what is computed (where output goes, logging,
# loader workers, checkpoint cadence). Anything else differing from the checkpoint's config is refused.
RESUME_MAY_CHANGE = ("logger.", "engine.num_workers", "engine.log_every", "engine.eval_every", "engine.ckpt_every",
                     "engine.ckpt_every_steps", "engine.device", "engine.deterministic",
                     "engine.dist_timeout_min", "engine.eval_timeout_min",
                     # applied: the run continues to the new length, the LR schedule is rebuilt for it
                     "engine.epochs")


def check_wandb(cfg: RunConfig) -> None:
    """``logger.wandb=true`` without wandb installed: an error when the config is loaded, not after the model."""
    import importlib.util

    if cfg.logger.wandb and importlib.util.find_spec("wandb") is None:
        raise UserError("logger.wandb=true but wandb is not installed: pip install wandb "
                        "(or pip install -e '.[wandb]'), or set logger.wandb=false")


def wandb_logged_in() -> bool:
    """A user's own wandb set-up: an API key, a mode, or a netrc entry for api.wandb.ai."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_MODE"):
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return "api.wandb.ai" in netrc.read_text()
    except OSError:
        return False


_WEIGHT_FIELDS = ("pretrained", "imagenet_init", "init_checkpoint", "weights")


def warn_real_run(cfg: Any, device: torch.device) -> None:
    """A real-dataset config (``data.root`` set) on CPU by default is almost always a missing GPU: say so
    loudly. Also say when such a run starts from scratch because every pretrained-weights field is empty."""
    data, model = getattr(cfg, "data", None), getattr(cfg, "model", None)
    if not str(getattr(data, "root", "") or ""):
        return
    if device.type == "cpu" and cfg.engine.device == "auto":
            print("WARNING: a real-dataset config (data.root is set) is training on CPU: no usable GPU was found "
              "(torch.cuda.is_available() is False). This will be very slow; set engine.device=cuda on a GPU "
              "machine, or engine.device=cpu to silence this.", file=sys.stderr, flush=True)
    fields = [f for f in _WEIGHT_FIELDS if model is not None and hasattr(model, f)]
    if fields and not getattr(model, "from_scratch", False) and not any(getattr(model, f) for f in fields):
        print(f"WARNING: model.{'/'.join(fields)} empty: training from scratch, unlike the paper's recipe "
              f"(set model.from_scratch=true where the config has it to mean it)", file=sys.stderr, flush=True)


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def config_changes(old: dict, new: dict, defaults: dict | None = None) -> list[str]:
    """``key: old -> new`` for every config value that differs (and may not) between two configs. A key ``old``
    lacks (added to the schema after its checkpoint was written) is no change while ``new`` holds its
    ``defaults`` value: a new setting's default keeps the old behaviour."""
    a, b, d = _flatten(old), _flatten(new), _flatten(defaults or {})
    keys = [k for k in dict.fromkeys([*a, *b]) if a.get(k, "<absent>") != b.get(k, "<absent>")]
    allowed = [k for k in keys if k.startswith(RESUME_MAY_CHANGE) or k.split(".")[-1].endswith(("root", "dir"))
               or (k not in a and k in d and b.get(k) == d[k])]
    return [f"{k}: {a.get(k, '<absent>')!r} -> {b.get(k, '<absent>')!r}" for k in keys if k not in allowed]


class _SkipSampler(Sampler):
    """Yields a sampler's indices after the first ``skip`` (mid-epoch resume without loading them)."""

    def __init__(self, sampler: Sampler, skip: int):
        self.sampler, self.skip = sampler, skip

    def __iter__(self):
        for i, idx in enumerate(self.sampler):
            if i >= self.skip:
                yield idx

    def __len__(self) -> int:
        return max(0, len(self.sampler) - self.skip)


def _fmt_metrics(m: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in m.items()
                    if isinstance(v, (int, float)) and k not in ("epoch", "lr", "epoch_seconds")) or "-"


def move_to(batch: Any, device: torch.device) -> Any:
    """Recursively move tensors in tuples/lists/dicts to ``device``."""
    if torch.is_tensor(batch):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, DistributedDataParallel) else model


class Trainer:
    """Runs ``task`` under ``cfg`` into ``run_dir``; ``fit()`` returns the last evaluation's metrics.

    Attributes a task may read: ``epoch`` (0-based), ``global_step``, ``device``, ``cfg``, ``model``
    (unwrapped), ``wrapped`` (DDP or the model), ``world_size``, ``rank``, ``run_dir``, ``history``.
    """

    def __init__(self, task: Task, cfg: RunConfig, run_dir: str | Path, resume: str | None = None,
                 device: torch.device | None = None):
        self.task, self.cfg = task, cfg
        self.run_dir = Path(run_dir)
        self._created_run_dir = not self.run_dir.exists()
        self.device = device or dist.init_distributed(cfg.engine.device, cfg.engine.dist_timeout_min)
        self.rank, self.world_size = dist.rank(), dist.world_size()
        # The other ranks wait for a rank-0-only evaluation here, not in an NCCL collective (dist.py).
        self._eval_wait = dist.wait_group(cfg.engine.eval_timeout_min)
        self.is_main = self.rank == 0
        e = cfg.engine
        if e.batch_size % self.world_size:
            raise ValueError(f"engine.batch_size={e.batch_size} is not divisible by {self.world_size} ranks")
        if e.amp == "fp16" and self.device.type == "cpu":
            # fp16 autocast on CPU is several times slower than fp32 and not what any paper ran.
            print("warning: engine.amp=fp16 has no effect on CPU (running in fp32)", file=sys.stderr)
        check_wandb(cfg)
        if self.is_main:
            warn_real_run(cfg, self.device)
        seed_everything(e.seed, self.rank, e.deterministic)

        self.model = task.build_model().to(self.device)
        self.wrapped: nn.Module = self.model
        if self.world_size > 1:
            self.wrapped = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=e.find_unused_parameters)
        groups = task.param_groups(self.model) or default_param_groups(self.model, cfg.optim)
        self.optimizer = build_optimizer(groups, cfg.optim)
        self.scheduler = None  # built lazily: per-iter schedules need the epoch length
        self.amp_dtype = {"off": None, "fp16": torch.float16, "bf16": torch.bfloat16}.get(e.amp, "bad")
        if self.amp_dtype == "bad":
            raise ValueError(f"engine.amp must be off | fp16 | bf16, got '{e.amp}'")
        if self.amp_dtype is torch.float16 and self.device.type == "cpu":
            self.amp_dtype = None
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.amp_dtype is torch.float16)
        self.ema = None
        if e.ema:
            from timm.utils import ModelEmaV3
            self.ema = ModelEmaV3(self.model, decay=e.ema_decay)

        self.epoch, self.global_step, self.step_in_epoch = 0, 0, 0
        self.best: float | None = None
        self.history: list[dict] = []
        self._wandb = None
        self._epoch_sums: dict[str, float] = {}
        self._epoch_n = 0
        self._saved_at_step: int | None = None  # global step of the state in last.pt (this process)
        self._epochs_changed = False
        ckpt = resolve_resume(resume, self.run_dir)
        self._resume_state = None
        self.resumed_from = None
        if ckpt is not None:
            self.resumed_from, self._resume_state = load_resume(ckpt, fallback=resume == "auto")
            self._check_resume_config(self._resume_state.get("config"))
            self._check_resume_model(self._resume_state["model"])
        if self.is_main:  # only now: the model is built and the checkpoint to resume from is sound
            self.run_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.run_dir / "config.yaml")
            write_env_json(self.run_dir / "env.json", world_size=self.world_size)

    def _check_resume_config(self, saved: dict | None) -> None:
        if not saved:
            return
        old_epochs = saved.get("engine", {}).get("epochs", self.cfg.engine.epochs)
        self._epochs_changed = old_epochs != self.cfg.engine.epochs
        if self._epochs_changed and self.is_main:
            print(f"resume: engine.epochs {old_epochs} -> {self.cfg.engine.epochs} (applied; the LR schedule "
                  f"is rebuilt for {self.cfg.engine.epochs} epochs)", flush=True)
        changes = config_changes(saved, to_dict(self.cfg), to_dict(type(self.cfg)()))
        if changes:
            raise UserError(
                f"{self.resumed_from}: the config differs from the checkpoint's ({'; '.join(changes)}); a "
                f"resumed run keeps its settings: drop these overrides, or start a new run (--run-dir) from "
                f"these weights")

    def _check_resume_model(self, sd: dict) -> None:
        own = self.model.state_dict()
        missing = [k for k in own if k not in sd]
        unexpected = [k for k in sd if k not in own]
        shapes = [k for k in own if k in sd and tuple(own[k].shape) != tuple(sd[k].shape)]
        if missing or unexpected or shapes:
            parts = []
            for name, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", shapes)):
                if keys:
                    more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
                    parts.append(f"{name}: {', '.join(keys[:3])}{more}")
            raise CheckpointError(f"{self.resumed_from}: model weights do not fit this config's model ("
                                  f"{'; '.join(parts)})")

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "task": self.task.state_dict(),
            "rng": rng_state(),
            "epoch": self.epoch,
            "step_in_epoch": self.step_in_epoch,
            "global_step": self.global_step,
            "best": self.best,
            "history": self.history,
            "epoch_sums": dict(self._epoch_sums),
            "epoch_n": self._epoch_n,
            "config": to_dict(self.cfg),
        }

    def save(self, name: str) -> Path | None:
        """Write a checkpoint (rank 0); ``last.pt`` keeps its predecessor as ``last.prev.pt``.

        Raises :class:`NonFiniteLossError` instead of writing non-finite weights.
        """
        if not self.is_main:
            return None
        bad = [k for k, v in self.model.state_dict().items() if v.is_floating_point() and not bool(v.isfinite().all())]
        if bad:
            raise NonFiniteLossError(
                f"non-finite weights ({', '.join(bad[:3])}) at epoch {self.epoch + 1}, step {self.global_step}; "
                f"not saved ({self._kept_message()})")
        if name == "last.pt":
            self._saved_at_step = self.global_step
            return save_rotating(self.state_dict(), self.run_dir / name)
        return atomic_save(self.state_dict(), self.run_dir / name)

    def _kept_message(self) -> str:
        last = self.run_dir / "last.pt"
        return f"last good checkpoint: {last}" if last.exists() else "no checkpoint was written yet"

    def _discard_suspect_last(self) -> None:
        """``last.pt`` written right after the update whose weights now give a non-finite loss is not good:
        put the one before it back."""
        if not self.is_main or self._saved_at_step is None or self._saved_at_step != self.global_step:
            return
        last = self.run_dir / "last.pt"
        prev = prev_path(last)
        if prev.is_file():
            prev.replace(last)
        elif last.is_file():
            last.unlink()
        self._saved_at_step = None

    def _load_state(self, s: dict) -> None:
        self.model.load_state_dict(s["model"])
        self.optimizer.load_state_dict(s["optimizer"])
        if self.scheduler is not None and s["scheduler"] and not self._epochs_changed:
            self.scheduler.load_state_dict(s["scheduler"])
        elif self.scheduler is not None and self.cfg.sched.per_iter:
            # The optimizer state holds the lr of the old length's schedule; an epoch schedule is stepped at the
            # epoch start anyway, a per-update one must set the next update's lr from the rebuilt one now.
            self.scheduler.step_update(s["global_step"])
        self.scaler.load_state_dict(s["scaler"])
        if self.ema is not None and s["ema"]:
            self.ema.load_state_dict(s["ema"])
        self.task.load_state_dict(s["task"])
        self.epoch, self.step_in_epoch = s["epoch"], s["step_in_epoch"]
        self.global_step, self.best = s["global_step"], s["best"]
        self.history = list(s.get("history", []))
        self._epoch_sums = dict(s.get("epoch_sums", {}))
        self._epoch_n = int(s.get("epoch_n", 0))

    # ----------------------------------------------------------------- data
    def build_loader(self, dataset, epoch: int, skip_batches: int = 0, shuffle: bool = True) -> DataLoader:
        e = self.cfg.engine
        per_rank = e.batch_size // self.world_size
        sampler = self.task.train_sampler(dataset, epoch, self.world_size, self.rank) if shuffle else None
        if sampler is None:
            # DistributedSampler also for one process: 1 rank x B and n ranks x B/n see the same batches.
            sampler = DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank,
                                         shuffle=shuffle, seed=e.seed, drop_last=False)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if skip_batches:
            sampler = _SkipSampler(sampler, skip_batches * per_rank)
        return DataLoader(dataset, batch_size=per_rank, sampler=sampler, drop_last=e.drop_last,
                          num_workers=e.num_workers, worker_init_fn=worker_init_fn,
                          generator=loader_generator(e.seed, epoch, self.rank),
                          collate_fn=self.task.collate_fn, pin_memory=self.device.type == "cuda",
                          persistent_workers=False)

    # ----------------------------------------------------------------- logging
    def log(self, record: dict) -> None:
        if not self.is_main:
            return
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._wandb is not None:
            self._wandb.log(record, step=self.global_step)

    def _write_csv(self) -> None:
        if not self.is_main or not self.history:
            return
        keys: list[str] = []
        for row in self.history:
            keys += [k for k in row if k not in keys]
        tmp = self.run_dir / ".metrics.csv.tmp"
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=keys)
            w.writeheader()
            w.writerows(self.history)
        tmp.replace(self.run_dir / "metrics.csv")

    def _init_wandb(self) -> None:
        if not (self.cfg.logger.wandb and self.is_main):
            return
        import wandb  # optional extra: pip install -e '.[wandb]' (checked in __init__)
        if not wandb_logged_in():  # respect a user's own login; offline only when none is set
            os.environ.setdefault("WANDB_MODE", "offline")
        self._wandb = wandb.init(project=self.cfg.logger.wandb_project, dir=str(self.run_dir),
                                 config=to_dict(self.cfg))

    # ----------------------------------------------------------------- evaluation
    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The task's metrics, on every rank. ``Task.evaluate_sharded``: every rank runs it (on its shard,
        gathering what the metric needs; rank 0's result counts); else rank 0 alone, the others waiting on
        the gloo group of ``engine.eval_timeout_min`` minutes (see ``shared/engine/dist.py``)."""
        sharded = self.world_size > 1 and getattr(self.task, "evaluate_sharded", False)
        metrics: dict[str, float] = {}
        if self.is_main or sharded:
            model = self.ema.module if self.ema is not None and self.cfg.engine.eval_ema else self.model
            was_training = model.training
            model.eval()
            metrics = self.task.evaluate(model, self)
            model.train(was_training)
        return dist.broadcast_object(metrics, group=None if sharded else self._eval_wait)

    # ----------------------------------------------------------------- the loop
    def fit(self) -> dict[str, float]:
        start_step = self.global_step if self._resume_state is None else self._resume_state["global_step"]
        try:
            return self._fit()
        except BaseException:
            # A new run that failed before its first update leaves no half-made run directory behind.
            if self.is_main and self._created_run_dir and self.global_step == start_step == 0:
                shutil.rmtree(self.run_dir, ignore_errors=True)
            raise

    def _fit(self) -> dict[str, float]:
        e = self.cfg.engine
        self.task.on_train_start(self)
        probe_len = None
        if self.cfg.sched.per_iter:
            probe_len = len(self.build_loader(self.task.train_dataset(0), 0))
        self.scheduler = build_scheduler(self.optimizer, self.cfg.sched, self.cfg.optim.lr, e.epochs,
                                         probe_len or 1, e.monitor_mode)
        if self._resume_state is not None:
            self._load_state(self._resume_state)
            if self.is_main:
                print(f"resumed from {self.resumed_from} at epoch {self.epoch} step {self.step_in_epoch}")
        self._init_wandb()
        metrics: dict[str, float] = {}
        start_epoch = self.epoch
        for epoch in range(start_epoch, e.epochs):
            metrics = self._run_epoch(epoch)
        if self._resume_state is not None and start_epoch >= e.epochs:
            metrics = self.history[-1] if self.history else {}
        if self._wandb is not None:
            self._wandb.finish()
        if self.is_main:
            best = f" (best {e.monitor} {self.best:.4g})" if e.monitor and self.best is not None else ""
            print(f"final, epoch {self.epoch}/{e.epochs}: {_fmt_metrics(metrics)}{best}; run dir {self.run_dir}",
                  flush=True)
        return metrics

    def _last_monitored(self) -> float | None:
        """``engine.monitor`` at the last evaluation (rank 0 evaluates; broadcast so every rank decays alike)."""
        m = self.cfg.engine.monitor
        rows = [r for r in self.history if m and m in r]
        value = float(rows[-1][m]) if rows else None
        return dist.broadcast_object(value) if self.world_size > 1 else value

    def _run_epoch(self, epoch: int) -> dict[str, float]:
        e = self.cfg.engine
        self.epoch = epoch
        resuming_mid = self._resume_state is not None and self.step_in_epoch > 0
        skip = self.step_in_epoch if resuming_mid else 0
        if self._resume_state is not None and not resuming_mid:
            # At an epoch boundary the checkpoint's RNG state was taken before this epoch's hook (which may
            # draw, e.g. CDTrans' pair refresh) and dataset: restore it first (model init is behind us).
            set_rng_state(self._resume_state["rng"])
            self._resume_state = None
        self.task.on_epoch_start(self, epoch)
        if self.scheduler is not None and not self.cfg.sched.per_iter:
            if self.cfg.sched.name.lower() == "plateau":  # the monitored metric of the last evaluation
                self.scheduler.step(epoch + self.cfg.sched.t_offset, self._last_monitored())
            else:
                self.scheduler.step(epoch + self.cfg.sched.t_offset)
        loader = self.build_loader(self.task.train_dataset(epoch), epoch, skip_batches=skip)
        if self._resume_state is not None:
            # Mid-epoch, the uninterrupted run had already run this epoch's hook and built its dataset (both
            # may draw from the global RNG) when the checkpoint's RNG state was taken: restore it only now,
            # so those draws do not shift the random stream.
            set_rng_state(self._resume_state["rng"])
            self._resume_state = None
        self.step_in_epoch = skip
        if not resuming_mid:
            self._epoch_sums, self._epoch_n = {}, 0
        # Running sums live on the trainer so a mid-epoch checkpoint carries them (same logged means).
        sums = self._epoch_sums
        t0 = time.time()
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{e.epochs}", leave=False,
                   disable=not (self.is_main and self.cfg.logger.progress), dynamic_ncols=True)
        self.wrapped.train()
        for batch in bar:
            losses = self._train_step(move_to(batch, self.device))
            self.step_in_epoch += 1
            self.global_step += 1
            self._epoch_n += 1
            for k, v in losses.items():
                sums[k] = sums.get(k, 0.0) + v
            if self.global_step % max(1, e.log_every) == 0:
                lr = self.optimizer.param_groups[0]["lr"]
                self.log({"epoch": epoch + 1, "step": self.global_step, "lr": lr, **losses})
                bar.set_postfix({k: f"{v:.3f}" for k, v in losses.items()})
            self.task.on_step_end(self, self.global_step)
            if _KILL_AT_STEP and self.global_step == _KILL_AT_STEP:  # fault-injection tests: kill -9 here
                os.kill(os.getpid(), signal.SIGKILL)
            if e.ckpt_every_steps and self.global_step % e.ckpt_every_steps == 0:
                self.save("last.pt")
        bar.close()
        row: dict[str, Any] = {"epoch": epoch + 1, "lr": self.optimizer.param_groups[0]["lr"],
                               "epoch_seconds": round(time.time() - t0, 3)}
        row.update({f"train/{k}": v / max(self._epoch_n, 1) for k, v in sums.items()})
        self.task.on_epoch_end(self, epoch)
        last = epoch + 1 == e.epochs
        if last or (e.eval_every and (epoch + 1) % e.eval_every == 0):
            evaluated = self.evaluate()
            row.update(evaluated)
            if self.is_main:  # one line per evaluation, also without progress bars (SLURM logs)
                print(f"epoch {epoch + 1}/{e.epochs}: " + _fmt_metrics(
                    {**{k: v for k, v in row.items() if k.startswith("train/")}, **evaluated}), flush=True)
        self.history.append(row)
        self.log({"epoch": epoch + 1, "step": self.global_step, **row})
        self._write_csv()
        self.epoch, self.step_in_epoch = epoch + 1, 0
        self._epoch_sums, self._epoch_n = {}, 0
        better = False
        if e.monitor and e.monitor in row:
            v = float(row[e.monitor])
            better = self.best is None or (v > self.best if e.monitor_mode == "max" else v < self.best)
            if better:
                self.best = v  # before saving last.pt, so its 'best' value is consistent
        self.save("last.pt")
        if better:
            self.save("best.pt")
        if e.ckpt_every and (epoch + 1) % e.ckpt_every == 0:
            self.save(f"epoch_{epoch + 1}.pt")
        dist.barrier()
        return {k: v for k, v in row.items() if isinstance(v, (int, float))}

    def _train_step(self, batch: Any) -> dict[str, float]:
        e = self.cfg.engine
        ctx = (torch.autocast(self.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
               else nullcontext())
        with ctx:
            out = self.task.training_step(self.wrapped, batch, self)
        if "loss" not in out:
            raise KeyError("Task.training_step must return a dict with a 'loss' entry")
        # One host sync for every named loss (not one per loss): this runs each step.
        names = list(out)
        values = dict(zip(names, torch.stack([out[k].detach().float().reshape(()) for k in names]).tolist()))
        bad = {k: v for k, v in values.items() if not math.isfinite(v)}
        if bad:
            self._discard_suspect_last()
            raise NonFiniteLossError(
                f"non-finite loss {bad} at epoch {self.epoch + 1}, step {self.global_step + 1}; "
                f"stopped before updating the weights ({self._kept_message()})")
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(out["loss"]).backward()
        grad_norm = None
        if e.clip_grad:
            self.scaler.unscale_(self.optimizer)
            grad_norm = float(nn.utils.clip_grad_norm_(self.model.parameters(), e.clip_grad))
            values["grad_norm"] = grad_norm
        elif not self.scaler.is_enabled():  # with fp16 the scaler itself skips non-finite steps
            grads = [p.grad for p in self.model.parameters() if p.grad is not None]
            grad_norm = float(nn.utils.get_total_norm(grads)) if grads else 0.0
        if grad_norm is not None and not math.isfinite(grad_norm) and not self.scaler.is_enabled():
            self.optimizer.zero_grad(set_to_none=True)
            raise NonFiniteLossError(
                f"non-finite gradients at epoch {self.epoch + 1}, step {self.global_step + 1}; stopped before "
                f"updating the weights ({self._kept_message()})")
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.scheduler is not None and self.cfg.sched.per_iter:
            self.scheduler.step_update(self.global_step + 1)
        if self.ema is not None:
            self.ema.update(self.model, step=self.global_step)
        return values
