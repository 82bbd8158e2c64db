"""Unsupervised semantic segmentation scores: mIoU and pixel accuracy after Hungarian matching.

Protocol (PiCIE / STEGO / TransFGU): accumulate one confusion histogram over the WHOLE evaluation set,
find the one-to-one cluster -> class assignment that maximises the matched pixels
(``scipy.optimize.linear_sum_assignment`` in the official TransFGU form, see :func:`match_confusion`),
then score the remapped predictions:
pixel accuracy = matched pixels / labelled pixels; IoU_c = TP / (TP + FP + FN); mIoU = nanmean over
classes (a class absent from both ground truth and prediction is NaN and dropped). Percentages.

Protocol traps:
- Matching per image or per batch instead of over the whole set inflates the scores: feed every batch to
  one :class:`ConfusionAccumulator` and match once at the end.
- Ground-truth pixels equal to ``ignore_index`` (255) or negative (TransFGU maps 255 -> -1) are ignored.
- With more clusters than classes (over-clustering) the clusters left unmatched map to -1: their pixels
  count as errors (a false negative for their true class, a false positive for no class).

The confusion is ``hist[pred_cluster, true_class]``, shape ``(num_pred_classes, num_classes)``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from ._common import to_numpy


def confusion_matrix(
    pred: Any, target: Any, num_pred_classes: int, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """Pixel confusion ``(num_pred_classes, num_classes)`` int64 of ``pred`` against ``target``.

    Args:
        pred: predicted cluster ids, any shape, values in ``[0, num_pred_classes)``.
        target: class ids of the same shape; ``ignore_index`` and negative values are skipped.
    """
    p = to_numpy(pred).reshape(-1).astype(np.int64)
    t = to_numpy(target).reshape(-1).astype(np.int64)
    if p.shape != t.shape:
        raise ValueError(f"pred has {p.size} pixels but target has {t.size}")
    keep = (t != ignore_index) & (t >= 0)
    p, t = p[keep], t[keep]
    if p.size and (p.min() < 0 or p.max() >= num_pred_classes):
        raise ValueError(f"predictions must lie in [0, {num_pred_classes}), got [{p.min()}, {p.max()}]")
    if t.size and t.max() >= num_classes:
        raise ValueError(f"target classes must lie in [0, {num_classes}) or be {ignore_index}, got {t.max()}")
    hist = np.bincount(p * num_classes + t, minlength=num_pred_classes * num_classes)
    return hist.reshape(num_pred_classes, num_classes).astype(np.int64)


def match_confusion(hist: np.ndarray) -> np.ndarray:
    """Hungarian cluster -> class mapping ``(num_pred_classes,)`` maximising matches; -1 unmatched.

    ``hist`` is ``[pred, true]``. The solve follows the official TransFGU evaluation exactly:
    ``linear_sum_assignment(h.max() - h)`` on the transposed ``h = hist[true, pred]``. Every optimum matches
    the same number of pixels, but ties between optima are broken by the matrix's orientation and form, and
    a different optimum gives a different mIoU; so the form is kept, not only the objective.
    """
    h = np.asarray(hist).T
    true_rows, pred_cols = linear_sum_assignment(h.max() - h)
    mapping = np.full(h.shape[1], -1, dtype=np.int64)
    mapping[pred_cols] = true_rows
    return mapping


def hungarian_match(
    pred: Any, target: Any, num_pred_classes: int, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """One-to-one cluster -> class mapping over the whole set (see module docstring).

    Args:
        pred: predicted cluster ids, any shape (e.g. ``(N, H, W)`` for a whole set), in
            ``[0, num_pred_classes)``.
        target: class ids, same shape; ``ignore_index`` / negative pixels are skipped.

    Returns:
        ``mapping`` ``(num_pred_classes,)`` int64, ``mapping[cluster] = class`` or -1 if unmatched;
        apply it as ``mapping[pred]``.
    """
    return match_confusion(confusion_matrix(pred, target, num_pred_classes, num_classes, ignore_index))


def scores_from_confusion(hist: np.ndarray, match: bool = True) -> dict[str, Any]:
    """mIoU, pixel accuracy and per-class IoU (percent) from a ``(num_pred_classes, num_classes)`` confusion.

    ``match=False`` scores cluster c as class c (needs ``num_pred_classes == num_classes``).
    """
    hist = np.asarray(hist, dtype=np.int64)
    n_pred, n_cls = hist.shape
    if match:
        mapping = match_confusion(hist)
    else:
        if n_pred != n_cls:
            raise ValueError(f"match=False needs as many clusters as classes, got {n_pred} and {n_cls}")
        mapping = np.arange(n_cls, dtype=np.int64)
    matched = mapping >= 0
    remapped = np.zeros((n_cls, n_cls), dtype=np.int64)  # remapped[predicted class, true class]
    np.add.at(remapped, mapping[matched], hist[matched])
    tp = np.diag(remapped).astype(np.float64)
    fp = remapped.sum(axis=1) - tp
    fn = hist.sum(axis=0) - tp  # includes pixels of unmatched clusters
    union = tp + fp + fn
    iou = np.full(n_cls, np.nan)
    iou[union > 0] = 100.0 * tp[union > 0] / union[union > 0]
    total = hist.sum()
    return {
        "mIoU": float(np.nanmean(iou)) if np.any(union > 0) else float("nan"),
        "pixel_accuracy": float(100.0 * tp.sum() / total) if total > 0 else float("nan"),
        "per_class_iou": iou,
        "mapping": mapping,
    }


def segmentation_scores(
    pred: Any,
    target: Any,
    num_classes: int,
    num_pred_classes: int | None = None,
    ignore_index: int = 255,
    match: bool = True,
) -> dict[str, Any]:
    """Hungarian-matched mIoU and pixel accuracy of a whole set given at once.

    Args:
        pred: predicted cluster ids ``(N, H, W)`` (any shape), in ``[0, num_pred_classes)``.
        target: true classes, same shape; ``ignore_index`` / negative pixels are skipped.
        num_classes: number of true classes.
        num_pred_classes: number of clusters (default ``num_classes``).
        match: Hungarian matching over the whole set (unsupervised); ``False`` for supervised predictions.

    Returns:
        dict ``mIoU``, ``pixel_accuracy`` (percent), ``per_class_iou`` ``(num_classes,)`` (percent, NaN for
        classes absent from ground truth and prediction), ``mapping`` ``(num_pred_classes,)``.
    """
    num_pred_classes = num_classes if num_pred_classes is None else num_pred_classes
    hist = confusion_matrix(pred, target, num_pred_classes, num_classes, ignore_index)
    return scores_from_confusion(hist, match)


class ConfusionAccumulator:
    """Whole-set confusion fed batch by batch; match and score once at the end.

    Example::

        acc = ConfusionAccumulator(num_classes=27)
        for images, labels in loader:
            acc.update(model(images).argmax(1), labels)   # (B, H, W) each
        scores = acc.scores()                             # Hungarian over the whole set
    """

    def __init__(self, num_classes: int, num_pred_classes: int | None = None, ignore_index: int = 255):
        self.num_classes = num_classes
        self.num_pred_classes = num_classes if num_pred_classes is None else num_pred_classes
        self.ignore_index = ignore_index
        self.confusion = np.zeros((self.num_pred_classes, num_classes), dtype=np.int64)

    def update(self, pred: Any, target: Any) -> None:
        """Add a batch: ``pred`` cluster ids and ``target`` classes of the same shape."""
        self.confusion += confusion_matrix(pred, target, self.num_pred_classes, self.num_classes,
                                           self.ignore_index)

    def reset(self) -> None:
        self.confusion[:] = 0

    def mapping(self) -> np.ndarray:
        """Hungarian cluster -> class mapping of everything seen so far."""
        return match_confusion(self.confusion)

    def scores(self, match: bool = True) -> dict[str, Any]:
        """:func:`segmentation_scores` of everything seen so far."""
        return scores_from_confusion(self.confusion, match)
