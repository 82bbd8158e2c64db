"""TCL / mutual learning / VKD / TKP losses: hand-computed values, invariances, gradient routing."""
import math

import pytest
import torch
import torch.nn.functional as F

from tcl_i2v import losses as L


def _batch(seed=0, p=4, k=3, d=6):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(p * k, d, generator=g), torch.arange(p).repeat_interleave(k)


def test_tcl_zero_for_identical_and_scaled_embeddings():
    t, y = _batch()
    assert L.tcl_loss(t.clone(), t, y).item() == pytest.approx(0.0, abs=1e-6)
    # normalised: a x10 teacher (the stress test) changes nothing
    assert L.tcl_loss(t.clone(), 10 * t, y).item() == pytest.approx(0.0, abs=1e-6)
    assert L.tcl_loss(t.clone(), t, y, k=3).item() == pytest.approx(0.0, abs=1e-6)


def test_triplet_distribution_shift_invariant_and_k1_is_sigmoid():
    d = torch.rand(5, 5)
    pos, neg = torch.tensor([1, 0, 3, 2, 0]), torch.tensor([[2], [3], [0], [4], [1]])
    a = L.triplet_distribution(d, pos, neg, 0.1)
    b = L.triplet_distribution(d + 3.7, pos, neg, 0.1)  # D^S = D^T + b
    assert torch.allclose(a, b, atol=1e-5)
    r = torch.arange(5)
    want = torch.sigmoid((d[r, neg[:, 0]] - d[r, pos]) / 0.1)
    assert torch.allclose(a[:, 0].exp(), want, atol=1e-6)


def test_tcl_positive_when_a_student_triplet_is_inverted_hand_value():
    # teacher: anchor 0 near its positive 1, far from negative 2; student swaps them
    t = torch.tensor([[0.0, 1.0], [0.0, 1.0], [1.0, 0.0], [1.0, 0.0]])
    s = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    loss = L.tcl_loss(s, t, y, tau=1.0, normalize=False)
    r2 = math.sqrt(2.0)
    # q^T(pos) = sigmoid(sqrt2 - 0); q^S(pos) = sigmoid(0 - sqrt2) for anchors 0 and 1; anchors 2, 3 unchanged?
    qt, qs = torch.sigmoid(torch.tensor(r2)), torch.sigmoid(torch.tensor(-r2))
    kl = qt * torch.log(qt / qs) + (1 - qt) * torch.log((1 - qt) / (1 - qs))
    per_anchor = []
    ds, dt = L.pairwise_euclidean(s), L.pairwise_euclidean(t)
    pos, neg = L.mine_triplets(dt, y, 1, "hard")
    for i in range(4):
        a = torch.sigmoid(dt[i, neg[i, 0]] - dt[i, pos[i]])
        b = torch.sigmoid(ds[i, neg[i, 0]] - ds[i, pos[i]])
        per_anchor.append(a * torch.log(a / b) + (1 - a) * torch.log((1 - a) / (1 - b)))
    assert loss.item() == pytest.approx(torch.stack(per_anchor).mean().item(), rel=1e-4)
    assert loss.item() > 0 and per_anchor[0].item() == pytest.approx(kl.item(), rel=1e-4)


def test_tcl_gradient_reaches_student_only_and_tau_sq():
    t, y = _batch(1)
    s = torch.randn_like(t, requires_grad=True)
    t = t.requires_grad_(True)
    L.tcl_loss(s, t, y).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0 and t.grad is None
    a = L.tcl_loss(s, t, y, tau=0.5)
    assert L.tcl_loss(s, t, y, tau=0.5, tau_sq=True).item() == pytest.approx(0.25 * a.item(), rel=1e-6)


def test_hard_mining_picks_farthest_positive_and_nearest_negatives():
    x = torch.tensor([[0.0], [1.0], [5.0], [2.0], [3.0], [10.0]])
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    pos, neg = L.mine_triplets(L.pairwise_euclidean(x), y, k=2)
    assert pos[0].item() == 2 and pos[3].item() == 5
    assert neg[0].tolist() == [3, 4] and neg[5].tolist() == [2, 1]
    rpos, rneg = L.mine_triplets(L.pairwise_euclidean(x), y, k=1, mining="random",
                                 generator=torch.Generator().manual_seed(0))
    assert all(y[rpos] == y) and all(y[rneg[:, 0]] != y) and all(rpos != torch.arange(6))


def test_batch_hard_soft_triplet_hand_value():
    x = torch.tensor([[0.0], [1.0], [3.0], [7.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchors: d_ap = 1, 1, 4, 4; d_an = 3, 2, 2, 6
    want = F.softplus(torch.tensor([1 - 3.0, 1 - 2.0, 4 - 2.0, 4 - 6.0])).mean()
    assert L.batch_hard_soft_triplet(x, y).item() == pytest.approx(want.item(), rel=1e-5)


def test_mutual_kl_directions_and_vkd_kd_scale():
    zt, zs = torch.randn(4, 5, requires_grad=True), torch.randn(4, 5, requires_grad=True)
    ml_s, ml_t = L.mutual_kl(zt, zs, tau=2.0, tau_sq=False)
    pt, ps = F.softmax(zt / 2, 1), F.softmax(zs / 2, 1)
    assert ml_s.item() == pytest.approx((pt * (pt / ps).log()).sum(1).mean().item(), rel=1e-5)
    assert ml_t.item() == pytest.approx((ps * (ps / pt).log()).sum(1).mean().item(), rel=1e-5)
    # default: x tau^2, so the term keeps its size as tau grows (at tau 10 it would otherwise be ~1e-3)
    assert L.mutual_kl(zt, zs, tau=2.0)[1].item() == pytest.approx(4 * ml_t.item(), rel=1e-6)
    ml_s.backward()
    assert zt.grad is None and zs.grad is not None
    assert L.vkd_kd(zt, zs, 10.0).item() == pytest.approx(100 * L.softened_kl(zt, zs, 10.0).item(), rel=1e-6)
    assert L.mutual_kl(zs, zs)[0].item() == pytest.approx(0.0, abs=1e-7)


def test_distance_kd_baselines():
    t, y = _batch(2)
    assert L.vkd_simdist(t, t).item() == pytest.approx(0.0, abs=1e-5)
    assert L.vkd_simdist(t, 2 * t).item() > 0
    s = t + 1.0
    assert L.tkp_feature(s, t).item() == pytest.approx(t.shape[1], rel=1e-5)  # sum over D of 1^2
    assert L.tkp_distance(s, t).item() == pytest.approx(0.0, abs=1e-4)  # a translation keeps distances
    assert L.hetero_triplet(t, y, t, y, margin=0.3).item() >= 0
