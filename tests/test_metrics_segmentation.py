"""Segmentation scores: Hungarian matching over the whole set, hand-computed partial case."""

import numpy as np
import pytest
import torch

from shared.metrics import ConfusionAccumulator, hungarian_match, segmentation_scores
from shared.metrics.segmentation import scores_from_confusion

# target 0 0 0 1 1 2 (+ one ignored pixel); clusters 1 1 0 0 0 2.
TARGET = np.array([0, 0, 0, 1, 1, 2, 255])
PRED = np.array([1, 1, 0, 0, 0, 2, 0])


def test_permuted_labels_score_100_after_matching():
    rng = np.random.default_rng(0)
    target = rng.integers(0, 5, (4, 16, 16))
    target[:, :2] = 255
    perm = np.array([3, 0, 4, 1, 2])  # true class c is predicted as cluster perm[c]
    pred = perm[np.where(target == 255, 0, target)]
    pred[:, :2] = rng.integers(0, 5, (4, 2, 16))  # whatever is predicted on ignored pixels
    mapping = hungarian_match(pred, target, 5, 5)
    np.testing.assert_array_equal(mapping[perm], np.arange(5))
    res = segmentation_scores(torch.from_numpy(pred), torch.from_numpy(target), num_classes=5)
    assert res["mIoU"] == pytest.approx(100.0) and res["pixel_accuracy"] == pytest.approx(100.0)
    assert segmentation_scores(pred, target, 5, match=False)["mIoU"] < 100.0


def test_hand_computed_partial_case():
    # Confusion hist[cluster, class]: (1,0)=2, (0,0)=1, (0,1)=2, (2,2)=1. Best one-to-one: 1->0, 0->1, 2->2
    # (5 matched pixels). Remapped: class 0 TP 2 FN 1 -> 2/3; class 1 TP 2 FP 1 -> 2/3; class 2 -> 1.
    res = segmentation_scores(PRED, TARGET, num_classes=3)
    np.testing.assert_array_equal(res["mapping"], [1, 0, 2])
    np.testing.assert_allclose(res["per_class_iou"], [200 / 3, 200 / 3, 100.0])
    assert res["mIoU"] == pytest.approx(700 / 9)
    assert res["pixel_accuracy"] == pytest.approx(500 / 6)
    # Without matching (cluster c = class c): class 0 TP 1 FP 2 FN 2 -> 1/5, class 1 -> 0, class 2 -> 1.
    plain = segmentation_scores(PRED, TARGET, num_classes=3, match=False)
    np.testing.assert_allclose(plain["per_class_iou"], [20.0, 0.0, 100.0])
    assert plain["pixel_accuracy"] == pytest.approx(200 / 6)


def test_accumulator_matches_once_over_the_whole_set():
    # Two batches, each a perfect permutation on its own, but with different permutations:
    # per-batch matching would claim 100 %; whole-set matching cannot.
    target = np.array([0, 0, 1, 1])
    acc = ConfusionAccumulator(num_classes=2)
    acc.update(torch.tensor([0, 0, 1, 1]), torch.tensor(target))
    acc.update(np.array([1, 1, 0, 0]), target)
    assert segmentation_scores(np.array([1, 1, 0, 0]), target, 2)["mIoU"] == pytest.approx(100.0)
    res = acc.scores()
    assert res["pixel_accuracy"] == pytest.approx(50.0)
    assert res["mIoU"] == pytest.approx(100 / 3)  # each class: TP 2, FP 2, FN 2
    one_shot = segmentation_scores(np.array([0, 0, 1, 1, 1, 1, 0, 0]), np.tile(target, 2), 2)
    assert res["mIoU"] == pytest.approx(one_shot["mIoU"])
    acc.reset()
    assert acc.confusion.sum() == 0


def test_overclustering_leaves_a_cluster_unmatched():
    # 4 clusters for 3 classes: the unique best matching is 2->0, 0->1, 1->2; cluster 3 stays unmatched
    # (-1) and its pixel is an error (a false negative for class 1).
    target = np.array([0, 0, 1, 1, 1, 2])
    pred = np.array([2, 2, 0, 0, 3, 1])
    res = segmentation_scores(pred, target, num_classes=3, num_pred_classes=4)
    np.testing.assert_array_equal(res["mapping"], [1, 2, 0, -1])
    assert res["pixel_accuracy"] == pytest.approx(500 / 6)
    np.testing.assert_allclose(res["per_class_iou"], [100.0, 200 / 3, 100.0])


def test_class_absent_from_truth_and_prediction_is_dropped():
    res = segmentation_scores(np.array([0, 0, 1, 1]), np.array([0, 0, 1, 1]), num_classes=3, match=False)
    assert np.isnan(res["per_class_iou"][2])
    assert res["mIoU"] == pytest.approx(100.0)


def test_out_of_range_inputs_are_errors():
    with pytest.raises(ValueError, match="predictions"):
        segmentation_scores(np.array([0, 5]), np.array([0, 1]), num_classes=2)
    with pytest.raises(ValueError, match="target"):
        segmentation_scores(np.array([0, 1]), np.array([0, 7]), num_classes=2)


def test_tie_between_optimal_matchings_is_broken_as_the_official_code():
    """Two matchings both match 6 of 14 pixels; the official ``linear_sum_assignment(h.max() - h)`` on
    ``h[true, pred]`` picks pred 0->2, 1->0, 2->1 (the maximise-on-``hist[pred, true]`` form picks 0->1, 1->0,
    2->2, mIoU 26.389). Hand computation for the official pick, ``h`` rows = true class:
    class 0 <- pred 1: TP 3, FN 5-3, FP 6-3 -> 3/8;  class 1 <- pred 2: TP 2, FN 3, FP 4 -> 2/9;
    class 2 <- pred 0: TP 1, FN 3, FP 1 -> 1/5;  mIoU = (37.5 + 22.22 + 20) / 3; accuracy 6/14."""
    h_true_pred = np.array([[0, 3, 2], [1, 2, 2], [1, 1, 2]])
    hist = h_true_pred.T  # our confusion is [pred, true]
    s = scores_from_confusion(hist)
    assert s["mapping"].tolist() == [2, 0, 1]
    assert s["mIoU"] == pytest.approx((100 * 3 / 8 + 100 * 2 / 9 + 100 * 1 / 5) / 3)
    assert s["pixel_accuracy"] == pytest.approx(100 * 6 / 14)
