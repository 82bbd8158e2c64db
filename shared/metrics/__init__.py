"""Evaluation metrics as pure functions (numpy/torch in, Python floats or numpy arrays out).

- :mod:`.classification`: top-1, VisDA mean per-class accuracy (percent).
- :mod:`.pose`: MPJPE (Protocol #1), P-MPJPE (#2), N-MPJPE, action-wise averaging, 3D PCK and AUC (mm).
- :mod:`.reid`: Market-1501 protocol CMC / mAP / mINP, chunked torch version and per-query reference.
- :mod:`.segmentation`: Hungarian-matched mIoU and pixel accuracy over a whole set, incremental confusion.
"""

from .classification import mean_class_accuracy, top1_accuracy
from .pose import auc, joint_errors, mean_per_action, mpjpe, n_mpjpe, p_mpjpe, pck, procrustes_align
from .reid import reid_evaluate, reid_evaluate_reference
from .segmentation import (
    ConfusionAccumulator,
    confusion_matrix,
    hungarian_match,
    scores_from_confusion,
    segmentation_scores,
)

__all__ = [
    "top1_accuracy",
    "mean_class_accuracy",
    "mpjpe",
    "p_mpjpe",
    "n_mpjpe",
    "procrustes_align",
    "joint_errors",
    "mean_per_action",
    "pck",
    "auc",
    "reid_evaluate",
    "reid_evaluate_reference",
    "hungarian_match",
    "segmentation_scores",
    "ConfusionAccumulator",
    "confusion_matrix",
    "scores_from_confusion",
]
