"""A tiny regression task for the engine tests; also runnable as a script (``python tests/toy_task.py``)
so that tests can kill a real process mid-epoch (``VISIONREPRO_FAULT_KILL_AT_STEP``) and resume it, or launch
it under torchrun."""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import TensorDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from shared.engine import EngineConfig, RunConfig, Task  # noqa: E402


@dataclass
class ToyConfig(RunConfig):
    n: int = 96
    dim: int = 6
    dropout: float = 0.1
    nan_at_step: int = 0  # return a NaN loss at this global step
    blowup_at_step: int = 0  # after this global step's update, scale the weights by 1e30 (finite, useless)
    fail_at_step: int = 0  # raise ``fail_with`` in this global step's training_step
    fail_with: str = "OSError"
    sharded_eval: bool = False  # evaluate on every rank's shard and gather (Task.evaluate_sharded)
    eval_sleep: float = 0.0  # seconds the evaluation takes longer (a big validation set)
    engine: EngineConfig = field(default_factory=lambda: EngineConfig(epochs=3, batch_size=8, log_every=1))


class ToyTask(Task):
    def __init__(self, cfg: ToyConfig):
        self.cfg = cfg
        g = torch.Generator().manual_seed(123)
        self.x = torch.randn(cfg.n, cfg.dim, generator=g)
        self.y = self.x @ torch.randn(cfg.dim, 1, generator=g) + 0.1 * torch.randn(cfg.n, 1, generator=g)
        self.refreshes: list[int] = []

    def build_model(self) -> nn.Module:
        return nn.Sequential(nn.Linear(self.cfg.dim, 16), nn.Tanh(), nn.Dropout(self.cfg.dropout), nn.Linear(16, 1))

    def train_dataset(self, epoch: int):
        return TensorDataset(self.x, self.y)

    def training_step(self, model, batch, trainer):
        x, y = batch
        if self.cfg.fail_at_step and trainer.global_step + 1 == self.cfg.fail_at_step:
            import builtins
            raise getattr(builtins, self.cfg.fail_with)("/data/img_0007.jpg: unreadable image (truncated)")
        loss = nn.functional.mse_loss(model(x), y)
        if self.cfg.nan_at_step and trainer.global_step + 1 == self.cfg.nan_at_step:
            loss = loss * float("nan")
        return {"loss": loss, "mse": loss.detach()}

    @property
    def evaluate_sharded(self) -> bool:
        return self.cfg.sharded_eval

    def evaluate(self, model, trainer):
        import time

        from shared.engine.dist import eval_loader, gather_cat

        time.sleep(self.cfg.eval_sleep)
        with torch.no_grad():
            if not self.cfg.sharded_eval:
                return {"val_mse": float(nn.functional.mse_loss(model(self.x), self.y))}
            preds, ys, idx = [], [], []
            for x, y, i in eval_loader(TensorDataset(self.x, self.y, torch.arange(len(self.x))), batch_size=7):
                preds.append(model(x))
                ys.append(y)
                idx.append(i)
            pred, y, i = gather_cat(torch.cat(preds)), gather_cat(torch.cat(ys)), gather_cat(torch.cat(idx))
            return {"val_mse": float(nn.functional.mse_loss(pred, y)), "eval_n": len(i),
                    "eval_in_order": int(torch.equal(i, torch.arange(len(self.x)))),
                    "eval_shard": len(eval_loader(self.x, batch_size=1))}

    def on_epoch_start(self, trainer, epoch):
        self.refreshes.append(epoch)
        torch.rand(3)  # like a pseudo-label refresh that samples: resume must not shift the random stream

    def on_step_end(self, trainer, step):
        if self.cfg.blowup_at_step and step == self.cfg.blowup_at_step:
            with torch.no_grad():
                for p in trainer.model.parameters():
                    p.mul_(1e30)

    def state_dict(self):
        return {"refreshes": torch.tensor(self.refreshes)}

    def load_state_dict(self, state):
        self.refreshes = [int(v) for v in state["refreshes"]]


def main(argv=None):
    from shared.cli import train_main

    def build(cfg, run_dir):
        return ToyTask(cfg)

    return train_main("toy_task", "toy", ToyConfig, build, argv)


if __name__ == "__main__":
    main()
