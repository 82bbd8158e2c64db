"""Divergence detection for the stability study (issue 25): a run *diverged* when its loss became
non-finite or blew up.

    blown up  <=>  the mean loss over ``window`` consecutive steps exceeds ``factor * ln(C)``

``ln(C)`` is the loss of a uniform prediction over C classes (what a freshly initialised classifier
gives), so the default ``factor = 2`` flags a run whose loss has settled at twice the chance level, i.e. a
model that has become confidently wrong, not one that is merely stuck at chance. The window mean keeps
a single spike that recovers at once from counting. The engine itself stops at a NaN/inf loss
(``shared.engine.NonFiniteLossError``); :class:`LossBlowupError` is the same stop for a finite blow-up.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


class LossBlowupError(RuntimeError):
    """The training loss blew up (see :func:`detect_divergence`); the run is stopped."""


@dataclass
class StabilityConfig:
    """``blowup_factor``: stop a run (and count it as diverged) when the ``window``-step mean loss exceeds
    ``blowup_factor * ln(num_classes)``; 0 turns the check off (only NaN/inf stop a run)."""

    blowup_factor: float = 0.0
    window: int = 10


def detect_divergence(losses: Sequence[float], num_classes: int, factor: float = 2.0,
                      window: int = 10) -> tuple[bool, int | None, str]:
    """``(diverged, step, reason)`` for a loss curve (one value per step, 0-based steps).

    ``reason`` is ``"non-finite"`` (a NaN/inf loss at ``step``), ``"blow-up"`` (the mean of the
    ``window`` losses ending at ``step`` exceeds ``factor * ln(num_classes)``) or ``""``.
    """
    if num_classes < 2 or factor <= 0 or window < 1:
        raise ValueError(f"need num_classes >= 2, factor > 0, window >= 1; got {num_classes}, {factor}, {window}")
    limit = factor * math.log(num_classes)
    acc = 0.0
    for i, v in enumerate(losses):
        v = float(v)
        if not math.isfinite(v):
            return True, i, "non-finite"
        acc += v
        if i >= window:
            acc -= float(losses[i - window])
        if i >= window - 1 and acc / window > limit:
            return True, i, "blow-up"
    return False, None, ""
