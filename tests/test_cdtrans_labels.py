"""Two-way center-aware labelling: neighbours, SHOT pseudo labels, pair filter and union, guards."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cdtrans.pseudo_labels import (
    build_pairs,
    center_aware_pseudo_labels,
    nearest_neighbours,
    two_way_center_aware_pairs,
)


def _clusters(n_per=20, seed=0):
    """Three tight clusters on orthogonal axes; labels 0, 1, 2."""
    g = torch.Generator().manual_seed(seed)
    centres = torch.eye(3) * 5
    feat = torch.cat([centres[k] + 0.3 * torch.randn(n_per, 3, generator=g) for k in range(3)])
    return feat, torch.arange(3).repeat_interleave(n_per)


def test_center_aware_labels_recover_clusters_from_noisy_classifier():
    feat, y = _clusters()
    # A poor classifier: right on average, but 35 % of its argmaxes are wrong.
    g = torch.Generator().manual_seed(1)
    logits = torch.nn.functional.one_hot(y, 3).float() * 1.0 + 0.9 * torch.randn(len(y), 3, generator=g)
    assert (logits.argmax(1) != y).float().mean() > 0.2
    pred = center_aware_pseudo_labels(feat, logits)
    np.testing.assert_array_equal(pred, y.numpy())


def test_label_set_is_restricted_to_predicted_classes():
    feat, y = _clusters()
    logits = torch.zeros(len(y), 4)
    logits[:, 3] = -10  # class 3 is nobody's argmax: never assigned, even if its centre were close
    logits[torch.arange(len(y)), y] = 2
    pred = center_aware_pseudo_labels(feat, logits)
    assert set(pred.tolist()) == {0, 1, 2}


def _collapse_case():
    """Round one assigns nobody to class 2 (whose soft centre sits between clusters 0 and 1)."""
    feat = torch.tensor([[5.0, 0.0], [5.0, 0.2], [0.0, 5.0], [0.2, 5.0], [4.0, 0.1]])
    logits = torch.tensor([[3.0, 0, 0], [3.0, 0, 0], [0, 3.0, 0], [0, 3.0, 0], [0.0, 0.0, 0.5]])
    return feat, logits


def test_empty_centre_does_not_collapse_labels():
    feat, logits = _collapse_case()
    pred = center_aware_pseudo_labels(feat, logits)
    np.testing.assert_array_equal(pred, [0, 0, 1, 1, 0])


def test_official_behaviour_collapses_on_empty_centre():
    """With skip_empty_centres=False (the official code) the empty class's zero centre gives NaN distances and
    argmin hands that class to every sample -- the collapse our default avoids."""
    feat, logits = _collapse_case()
    with np.errstate(invalid="ignore", divide="ignore"):
        pred = center_aware_pseudo_labels(feat, logits, skip_empty_centres=False)
    assert set(pred.tolist()) == {2}


def test_nearest_neighbours_both_ways():
    fs = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.1]])
    ft = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    s2t, t2s = nearest_neighbours(fs, ft)
    assert s2t.tolist() == [1, 0, 1]
    assert t2s.tolist() == [1, 0]  # target 1 is closest to source 0 (exactly parallel)


def test_pairs_filter_order_and_union():
    ys = torch.tensor([0, 1, 2])
    pseudo = torch.tensor([1, 0, 2, 2])  # 4 targets
    s2t = torch.tensor([1, 0, 3])  # source -> target
    t2s = torch.tensor([1, 0, 0, 2])  # target -> source
    p = build_pairs(ys, pseudo, s2t, t2s, use_filter=True)
    # Target loop first (target order): t0-s1 (1==1 keep), t1-s0 (0==0 keep), t2-s0 (0!=2 drop), t3-s2 (keep);
    # then the source loop: s0-t1 (0==0 keep), s1-t0 (1==1 keep), s2-t3 (2==2 keep). Mutual pairs twice.
    assert list(zip(p.source_idx.tolist(), p.target_idx.tolist())) == [(1, 0), (0, 1), (2, 3), (0, 1), (1, 0), (2, 3)]
    assert (p.source_label == p.pseudo_label).all()
    unfiltered = build_pairs(ys, pseudo, s2t, t2s, use_filter=False)
    assert len(unfiltered) == 4 + 3
    one_way = build_pairs(ys, pseudo, s2t, t2s, use_filter=False, two_way=False)
    assert one_way.target_idx.tolist() == [0, 1, 2, 3]
    yt_true = torch.tensor([1, 0, 2, 2])  # t2 is a 2 but its neighbour s0 is a 0
    assert p.precision(yt_true) == pytest.approx(100.0)
    assert unfiltered.precision(yt_true) == pytest.approx(100.0 * 6 / 7)


def test_too_few_pairs_falls_back_with_warning():
    feat_s, ys = _clusters(n_per=4, seed=2)
    feat_t, _ = _clusters(n_per=4, seed=3)
    wrong = torch.nn.functional.one_hot((ys + 1) % 3, 3).float() * 5  # pseudo labels all shifted: no match
    with pytest.warns(UserWarning, match="falling back"):
        r = two_way_center_aware_pairs(feat_s, feat_t, wrong, ys, min_pairs=64)
    assert r.fell_back and len(r.pairs) == len(feat_s) + len(feat_t)
    r2 = two_way_center_aware_pairs(feat_s, feat_t, wrong, ys, min_pairs=0)
    assert not r2.fell_back and len(r2.pairs) == 0


def test_corrupt_pairs_changes_exactly_the_requested_share_to_wrong_labels():
    from cdtrans.pseudo_labels import PairSet
    from cdtrans.train import corrupt

    n = 200
    labels = torch.arange(n) % 10
    pairs = PairSet(torch.arange(n), torch.arange(n), labels, labels.clone())
    noisy = corrupt(pairs, 0.3, 10, seed=0)
    changed = noisy.pseudo_label != labels
    assert int(changed.sum()) == 60  # every picked label became a *different* class
    assert noisy.pseudo_label.min() >= 0 and noisy.pseudo_label.max() < 10
    assert torch.equal(noisy.source_label, labels)  # source labels untouched
