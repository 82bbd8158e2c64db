"""Classification metrics on hand-computed values."""

import numpy as np
import pytest
import torch

from shared.metrics import mean_class_accuracy, top1_accuracy


def test_top1_from_predictions_and_logits_agree():
    labels = [0, 1, 2, 2, 1]
    preds = [0, 2, 2, 2, 0]  # 3 of 5 right
    assert top1_accuracy(np.array(preds), np.array(labels)) == pytest.approx(60.0)
    logits = torch.nn.functional.one_hot(torch.tensor(preds), 3).float() * 5 - 1
    assert top1_accuracy(logits, torch.tensor(labels)) == pytest.approx(60.0)
    assert top1_accuracy(logits.to(torch.bfloat16), torch.tensor(labels)) == pytest.approx(60.0)


def test_mean_class_accuracy_is_not_overall_accuracy():
    # class 0: 8 samples, all right; class 1: 2 samples, 0 right -> overall 80 %, per-class mean 50 %.
    labels = np.array([0] * 8 + [1] * 2)
    preds = np.array([0] * 8 + [0] * 2)
    mean, per_class = mean_class_accuracy(preds, labels, num_classes=2)
    assert top1_accuracy(preds, labels) == pytest.approx(80.0)
    assert mean == pytest.approx(50.0)
    np.testing.assert_allclose(per_class, [100.0, 0.0])


def test_mean_class_accuracy_excludes_absent_classes():
    labels = np.array([0, 0, 0, 2])  # class 1 absent, class 3 absent
    logits = np.zeros((4, 4))
    logits[[0, 1, 2, 3], [0, 1, 0, 2]] = 1.0  # class 0: 2/3, class 2: 1/1
    mean, per_class = mean_class_accuracy(logits, labels)
    assert per_class.shape == (4,)
    assert np.isnan(per_class[1]) and np.isnan(per_class[3])
    assert per_class[0] == pytest.approx(200.0 / 3)
    assert per_class[2] == pytest.approx(100.0)
    assert mean == pytest.approx((200.0 / 3 + 100.0) / 2)


def test_shape_errors_are_reported():
    with pytest.raises(ValueError, match="labels"):
        top1_accuracy(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        mean_class_accuracy(np.zeros(2), np.array([0, 5]), num_classes=2)
