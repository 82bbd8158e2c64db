"""BP-Triplet math: the loss on hand-built embeddings, its weights, the batch-hard baseline, the GRL and
the adversarial loss."""
from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from bp_triplet.adversarial import (
    domain_accuracy,
    domain_adversarial_loss,
    gradient_reverse,
    grl_coeff,
    sample_weights,
)
from bp_triplet.losses import (
    batch_hard_triplet_loss,
    bp_triplet_loss,
    bp_triplet_weights,
    pairwise_sq_dist,
)


def unit(*angles_deg: float) -> torch.Tensor:
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=1)


def brute_force_bp(z, labels, domains, conf, gamma, margin, a_intra, a_inter, tau):
    """Straight from the written definition: loops over every (a, p, n)."""
    n = len(labels)
    d = [[float(((z[i] - z[j]) ** 2).sum()) for j in range(n)] for i in range(n)]
    prior = lambda i, j: a_inter if domains[i] != domains[j] else a_intra  # noqa: E731
    num = den = 0.0
    for a in range(n):
        P = [p for p in range(n) if p != a and labels[p] == labels[a]]
        N = [q for q in range(n) if labels[q] != labels[a]]
        if not P or not N:
            continue
        if tau is None:
            hp = {p: 1.0 for p in P}
            hn = {q: 1.0 for q in N}
        else:
            sp = sum(math.exp(d[a][p] / tau) for p in P)
            sn = sum(math.exp(-d[a][q] / tau) for q in N)
            hp = {p: len(P) * math.exp(d[a][p] / tau) / sp for p in P}
            hn = {q: len(N) * math.exp(-d[a][q] / tau) / sn for q in N}
        for p, q in itertools.product(P, N):
            w = prior(a, p) * prior(a, q) * hp[p] * hn[q] * conf[a] * conf[p] * conf[q]
            num += w * math.log1p(math.exp(gamma * (d[a][p] - d[a][q] + margin)))
            den += w
    return num / den


# Two classes on the unit circle; source (domain 0) and target (domain 1) members of each.
Z = unit(0, 20, 50, 180, 160, 100)
Y = torch.tensor([0, 0, 0, 1, 1, 1])
DOM = torch.tensor([0, 1, 1, 0, 1, 1])
CONF = torch.tensor([1.0, 0.95, 0.7, 1.0, 0.9, 0.8], dtype=torch.float64)


@pytest.mark.parametrize("tau", [None, 0.5, 0.1])
@pytest.mark.parametrize("priors", [(0.5, 1.0), (1.0, 1.0), (1.0, 0.25)])
def test_bp_loss_matches_brute_force_definition(tau, priors):
    got = bp_triplet_loss(Z, Y, DOM, CONF, gamma=10.0, margin=0.1, alpha_intra=priors[0],
                          alpha_inter=priors[1], tau=tau)
    want = brute_force_bp(Z, Y.tolist(), DOM.tolist(), CONF.tolist(), 10.0, 0.1, *priors, tau)
    assert float(got) == pytest.approx(want, rel=1e-9)


def test_hard_attention_picks_farthest_positive_and_nearest_negative():
    # anchor 0 at 0 deg: positives at 20 and 50 deg (50 is the hard one), negatives at 180, 160, 100
    # (100 deg is the hard one). With a small tau the attention is ~one-hot on those, scaled by |P|, |N|.
    d = pairwise_sq_dist(Z)
    w = bp_triplet_weights(d, Y, DOM, None, alpha_intra=1.0, alpha_inter=1.0, tau=0.01)
    anchor = w[0]  # (p, n)
    p_star, n_star = divmod(int(anchor.argmax()), anchor.shape[1])
    assert (p_star, n_star) == (2, 5)
    assert float(anchor.sum()) == pytest.approx(2 * 3, rel=1e-6)  # mean weight 1 per anchor
    assert float(anchor[p_star, n_star]) == pytest.approx(6.0, rel=1e-3)


def test_weights_zero_on_invalid_triplets_and_prior_ratio():
    d = pairwise_sq_dist(Z)
    w = bp_triplet_weights(d, Y, DOM, None, alpha_intra=0.5, alpha_inter=1.0, tau=None)
    for a, p, n in itertools.product(range(6), repeat=3):
        valid = p != a and Y[p] == Y[a] and Y[n] != Y[a]
        if not valid:
            assert w[a, p, n] == 0
    # anchor 0 (source): p=1 is cross-domain, n=3 same-domain -> 1.0 * 0.5; n=4 cross -> 1.0 * 1.0
    assert float(w[0, 1, 3]) == pytest.approx(0.5)
    assert float(w[0, 1, 4]) == pytest.approx(1.0)
    assert float(w[1, 2, 3]) == pytest.approx(0.5)  # target anchor, target positive, source negative


def test_unlabelled_targets_are_left_out_and_empty_batch_is_zero():
    labels = Y.clone()
    labels[[4, 5]] = -1
    got = bp_triplet_loss(Z, labels, DOM, None)
    keep = labels >= 0
    want = bp_triplet_loss(Z[keep], labels[keep], DOM[keep], None)
    assert float(got) == pytest.approx(float(want))
    z = Z.clone().requires_grad_(True)
    zero = bp_triplet_loss(z, torch.tensor([0, -1, -1, -1, -1, -1]), DOM, None)  # one anchor, no pairs
    zero.backward()
    assert float(zero.detach()) == 0.0 and torch.all(z.grad == 0)


def test_bp_gradient_pulls_hard_positive_in():
    z = Z.clone().requires_grad_(True)
    bp_triplet_loss(z, Y, DOM, None).backward()
    assert torch.isfinite(z.grad).all()
    # moving z[2] (hard positive of class 0) towards z[0] must reduce the loss: -grad points that way
    step = -z.grad[2]
    assert float(step @ (Z[0] - Z[2])) > 0


def test_plain_settings_equal_uniform_soft_margin_mean():
    d = pairwise_sq_dist(Z)
    terms = [F.softplus(10 * (d[a, p] - d[a, n] + 0.1)) for a, p, n in itertools.product(range(6), repeat=3)
             if p != a and Y[p] == Y[a] and Y[n] != Y[a]]
    got = bp_triplet_loss(Z, Y, DOM, None, alpha_intra=1.0, alpha_inter=1.0, tau=None)
    assert float(got) == pytest.approx(float(torch.stack(terms).mean()))


def test_batch_hard_hand_computed():
    z = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [3.0, 0.0]])
    y = torch.tensor([0, 0, 1, 1])
    # anchor0: d_ap=1, d_an=min(2,3)=2 -> relu(.3+1-2)=0; anchor1: d_ap=1, d_an=min(sqrt5,2)=2 -> 0
    # anchor2: d_ap=sqrt(13), d_an=min(2,sqrt5)=2 -> .3+3.6056-2; anchor3: d_ap=sqrt13, d_an=2 -> same
    want = (0 + 0 + 2 * (0.3 + math.sqrt(13) - 2)) / 4
    assert float(batch_hard_triplet_loss(z, y, 0.3)) == pytest.approx(want, rel=1e-5)


def test_gradient_reversal_and_ramp():
    x = torch.randn(4, 3, requires_grad=True)
    y = gradient_reverse(x, 0.7)
    assert torch.equal(y, x)
    (y * 2).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -1.4))
    assert grl_coeff(0, 1000) == 0.0
    assert grl_coeff(500, 1000) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    assert 0.999 < grl_coeff(10_000, 1000) <= 1.0


def test_adversarial_loss_is_weighted_bce_and_reverses_into_features():
    d_s, d_t = torch.tensor([0.9, 0.6]), torch.tensor([0.2, 0.7])
    want = -(math.log(0.9) + math.log(0.6) + math.log(0.8) + math.log(0.3)) / 4
    assert float(domain_adversarial_loss(d_s, d_t)) == pytest.approx(want, rel=1e-6)
    w_s, w_t = torch.tensor([2.0, 1.0]), torch.tensor([1.0, 1.0])
    want_w = -(2 * math.log(0.9) + math.log(0.6) + math.log(0.8) + math.log(0.3)) / 5
    assert float(domain_adversarial_loss(d_s, d_t, w_s, w_t)) == pytest.approx(want_w, rel=1e-6)
    assert float(domain_accuracy(d_s, d_t)) == pytest.approx(75.0)
    # the discriminator descends L_adv while the features ascend it (through the GRL)
    f = torch.randn(6, 2, requires_grad=True)
    lin = torch.nn.Linear(2, 1)
    d = torch.sigmoid(lin(gradient_reverse(f, 1.0))).squeeze(1)
    domain_adversarial_loss(d[:3], d[3:]).backward()
    f2 = f.detach().clone().requires_grad_(True)
    d2 = torch.sigmoid(lin(f2)).squeeze(1)
    domain_adversarial_loss(d2[:3], d2[3:]).backward()
    assert torch.allclose(f.grad, -f2.grad)


def test_sample_weights():
    uniform, onehot = torch.full((1, 10), 0.1), F.one_hot(torch.tensor([3]), 10).float()
    assert float(sample_weights(uniform, "srada")) == pytest.approx(2.0, rel=1e-5)
    assert float(sample_weights(onehot, "srada")) == pytest.approx(1.0, abs=1e-5)
    assert float(sample_weights(onehot, "cdan_e")) == pytest.approx(2.0, abs=1e-5)
    assert float(sample_weights(uniform, "none")) == 1.0
    with pytest.raises(ValueError, match="weighting"):
        sample_weights(uniform, "bogus")
