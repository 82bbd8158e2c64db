"""Progressive target pseudo-labels (spec 4).

The paper says the pseudo-label quality "is progressively improved" together with the adversarial loss
[V]; how is not stated. Reconstruction [L/R]: after a warm-up of ``L_cls + L_adv`` only, every
``every_steps`` iterations the eval-mode model labels all target training images (test transform),
``y_hat = argmax p``, and keeps those with ``max p >= threshold`` (optionally at most
``max_per_class`` per class, the most confident first). Coverage ``|T_hat| / |T|`` and precision are
logged at every refresh: both rising is the measurable form of "progressively improved".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset


@torch.no_grad()
def predict_probs(model: nn.Module, dataset: Dataset, device: torch.device, batch_size: int = 256) -> torch.Tensor:
    """Softmax outputs ``(N, C)`` of ``model`` (in its current mode) over ``dataset``, in order."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    out = [model(x.to(device))["logits"].softmax(1).float().cpu() for x, *_ in loader]
    return torch.cat(out)


def select_confident(probs: torch.Tensor, threshold: float,
                     max_per_class: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``(labels (N,), confidence (N,))``: argmax labels where ``max p >= threshold``, else -1.

    ``max_per_class > 0`` keeps at most that many per class, the most confident first, against
    pseudo-label class imbalance.
    """
    conf, pred = probs.max(1)
    labels = torch.where(conf >= threshold, pred, torch.full_like(pred, -1))
    if max_per_class > 0:
        for c in labels[labels >= 0].unique():
            idx = (labels == c).nonzero().squeeze(1)
            if len(idx) > max_per_class:
                drop = idx[conf[idx].argsort(descending=True)[max_per_class:]]
                labels[drop] = -1
    return labels, conf


def pseudo_label_stats(labels: torch.Tensor, true_labels: np.ndarray | torch.Tensor) -> dict[str, float]:
    """Coverage (% of target kept) and precision (% of kept that are right; NaN when none kept)."""
    true = torch.as_tensor(np.asarray(true_labels), dtype=torch.long)
    kept = labels >= 0
    n = int(kept.sum())
    precision = float((labels[kept] == true[kept]).float().mean() * 100) if n else float("nan")
    return {"pl_coverage": 100.0 * n / max(len(labels), 1), "pl_precision": precision}


@dataclass
class PseudoLabelState:
    """Per-target-index pseudo-labels (-1: none), their confidence, and the refresh history."""

    num_target: int
    labels: torch.Tensor = field(init=False)
    confidence: torch.Tensor = field(init=False)
    history: list[dict[str, float]] = field(default_factory=list)

    def __post_init__(self):
        self.labels = torch.full((self.num_target,), -1, dtype=torch.long)
        self.confidence = torch.zeros(self.num_target)

    def update(self, probs: torch.Tensor, threshold: float, max_per_class: int, true_labels, step: int) -> dict:
        self.labels, self.confidence = select_confident(probs, threshold, max_per_class)
        stats = {"step": float(step), **pseudo_label_stats(self.labels, true_labels)}
        self.history.append(stats)
        return stats

    def lookup(self, index: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        i = index.cpu()
        return self.labels[i].to(device), self.confidence[i].to(device)

    def state_dict(self) -> dict:
        keys = ["step", "pl_coverage", "pl_precision"]
        hist = torch.tensor([[h[k] for k in keys] for h in self.history]) if self.history else torch.zeros(0, 3)
        return {"labels": self.labels, "confidence": self.confidence, "history": hist}

    def load_state_dict(self, state: dict) -> None:
        self.labels, self.confidence = state["labels"].long(), state["confidence"].float()
        keys = ["step", "pl_coverage", "pl_precision"]
        self.history = [dict(zip(keys, map(float, row))) for row in state["history"]]
