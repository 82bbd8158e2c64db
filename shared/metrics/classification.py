"""Classification metrics: overall top-1 and VisDA's mean per-class accuracy.

Both return percentages. Inputs are torch tensors or numpy arrays: either hard predictions ``(N,)`` or
logits/scores ``(N, C)`` (argmax over the last axis), and integer labels ``(N,)``.

Protocol trap: VisDA-2017 reports the *mean of per-class accuracies* (each class' recall, then the
unweighted mean over the 12 classes), not overall accuracy; Office-31/Office-Home/DomainNet report overall
top-1. Papers mix the two (val-iisc/SDAT#1), so name which one you print.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import to_numpy


def _predictions(pred_or_logits: Any, labels: Any) -> tuple[np.ndarray, np.ndarray, int | None]:
    """Return hard predictions ``(N,)``, labels ``(N,)`` and the logit width C (``None`` for hard preds)."""
    pred = to_numpy(pred_or_logits)
    lab = to_numpy(labels).reshape(-1).astype(np.int64)
    width = None
    if pred.ndim == 2:
        width = pred.shape[1]
        pred = pred.argmax(axis=1)
    elif pred.ndim != 1:
        raise ValueError(f"expected predictions (N,) or logits (N, C), got shape {pred.shape}")
    pred = pred.astype(np.int64)
    if pred.shape[0] != lab.shape[0]:
        raise ValueError(f"{pred.shape[0]} predictions but {lab.shape[0]} labels")
    if lab.shape[0] == 0:
        raise ValueError("empty input: accuracy is undefined")
    return pred, lab, width


def top1_accuracy(pred_or_logits: Any, labels: Any) -> float:
    """Overall top-1 accuracy in percent: ``100 * mean(pred == label)``.

    Args:
        pred_or_logits: predictions ``(N,)`` or logits ``(N, C)`` (torch or numpy).
        labels: integer labels ``(N,)``.
    """
    pred, lab, _ = _predictions(pred_or_logits, labels)
    return float(100.0 * np.mean(pred == lab))


def mean_class_accuracy(
    pred_or_logits: Any, labels: Any, num_classes: int | None = None
) -> tuple[float, np.ndarray]:
    """Mean per-class accuracy (VisDA-2017's metric), in percent.

    Per-class accuracy of class c = ``100 * #{pred == c and label == c} / #{label == c}`` (the class'
    recall, the diagonal of the row-normalised confusion matrix); the result is the unweighted mean over
    classes. Classes with no sample in ``labels`` have an undefined accuracy: they are NaN in the per-class
    array and excluded from the mean (so on a subset missing a class the mean is over the classes present).

    Args:
        pred_or_logits: predictions ``(N,)`` or logits ``(N, C)`` (torch or numpy).
        labels: integer labels ``(N,)`` in ``[0, num_classes)``.
        num_classes: length of the per-class array; default C of the logits, else ``max(pred, label) + 1``.

    Returns:
        ``(mean over present classes, per-class accuracies (num_classes,) with NaN for absent classes)``.
    """
    pred, lab, width = _predictions(pred_or_logits, labels)
    if num_classes is None:
        num_classes = width if width is not None else int(max(pred.max(), lab.max())) + 1
    if lab.min() < 0 or lab.max() >= num_classes:
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{lab.min()}, {lab.max()}]")
    count = np.bincount(lab, minlength=num_classes).astype(np.float64)
    correct = np.bincount(lab[pred == lab], minlength=num_classes).astype(np.float64)
    per_class = np.full(num_classes, np.nan)
    present = count > 0
    per_class[present] = 100.0 * correct[present] / count[present]
    return float(per_class[present].mean()), per_class
