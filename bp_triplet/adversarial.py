"""Adversarial alignment: gradient reversal, the domain discriminator, DANN / CDAN losses.

BP-Triplet's abstract names only "a commonly used adversarial loss" [V]. The form here follows the
lineage the authors build on [L]: DANN (Ganin & Lempitsky 2015) and CDAN (Long et al. 2018, thuml/CDAN),
with SRADA's entropy re-weighting (Wang & Zhang 2020) as a switch.

Gradient reversal (DANN eq. 13): forward ``R(x) = x``, backward ``dR/dx = -c(i) I`` with the warm-start
coefficient (thuml/CDAN ``calc_coeff``)::

    c(i) = 2 (hi - lo) / (1 + exp(-alpha * i / max_iters)) - (hi - lo) + lo      (alpha = 10, hi = 1)

Adversarial loss with per-sample weights ``w`` (``D(h)`` = probability "source")::

    L_adv = -[ sum_s w_s log D(h_s) + sum_t w_t log(1 - D(h_t)) ] / sum w

``h = f`` (DANN) or ``h = f (x) softmax(F(f))`` (CDAN multilinear map; a random projection to
``random_dim`` when ``dim(f) * C`` is larger than ``max_multilinear``, as in thuml/CDAN).

Example::

    D = DomainDiscriminator(256, 1024)
    d = D(gradient_reverse(torch.cat([f_s, f_t]), grl_coeff(i, max_iters=10000))).squeeze(1)
    loss = domain_adversarial_loss(d[: len(f_s)], d[len(f_s):])     # DANN
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd import Function


class GradientReverseFunction(Function):
    """Identity forward; gradient times ``-coeff`` backward."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
        ctx.coeff = coeff
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return grad.neg() * ctx.coeff, None


def grl_coeff(step: int, max_iters: int, alpha: float = 10.0, lo: float = 0.0, hi: float = 1.0) -> float:
    """Warm-start ramp ``c(i)`` from ``lo`` (i = 0) towards ``hi`` (thuml/CDAN ``calc_coeff``)."""
    return float(2.0 * (hi - lo) / (1.0 + math.exp(-alpha * step / max(max_iters, 1))) - (hi - lo) + lo)


def gradient_reverse(x: torch.Tensor, coeff: float = 1.0) -> torch.Tensor:
    """``R(x)``: identity forward, ``-coeff * grad`` backward."""
    return GradientReverseFunction.apply(x, coeff)


class DomainDiscriminator(nn.Module):
    """``D``: ``in -> hidden -> hidden -> 1`` with ReLU and dropout 0.5, sigmoid output (thuml/CDAN
    ``AdversarialNetwork``). Layer names ``ad_layer{1,2,3}`` match that code's state dict.

    Shape: ``(B, in_features) -> (B, 1)`` probabilities of "source".
    """

    def __init__(self, in_features: int, hidden: int = 1024, dropout: float = 0.5):
        super().__init__()
        self.ad_layer1 = nn.Linear(in_features, hidden)
        self.ad_layer2 = nn.Linear(hidden, hidden)
        self.ad_layer3 = nn.Linear(hidden, 1)
        self.dropout = nn.Dropout(dropout)
        for layer, std in ((self.ad_layer1, 0.01), (self.ad_layer2, 0.01), (self.ad_layer3, 0.3)):
            nn.init.normal_(layer.weight, 0.0, std)  # thuml/CDAN init_weights for the discriminator
            nn.init.zeros_(layer.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.dropout(F.relu(self.ad_layer1(h)))
        h = self.dropout(F.relu(self.ad_layer2(h)))
        return torch.sigmoid(self.ad_layer3(h))


class RandomMultilinearMap(nn.Module):
    """CDAN's randomised multilinear map ``(R_f f) * (R_g g) / sqrt(d)``; fixed Gaussian matrices."""

    def __init__(self, feat_dim: int, num_classes: int, out_dim: int = 1024):
        super().__init__()
        self.out_dim = out_dim
        self.register_buffer("rf", torch.randn(feat_dim, out_dim))
        self.register_buffer("rg", torch.randn(num_classes, out_dim))

    def forward(self, f: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        return (f @ self.rf) * (g @ self.rg) / math.sqrt(float(self.out_dim))


def entropy(p: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Shannon entropy (nats) of each row of ``p``: ``(B, C) -> (B,)``."""
    return -(p * (p + eps).log()).sum(dim=1)


def sample_weights(probs: torch.Tensor, mode: str) -> torch.Tensor:
    """Per-sample adversarial weights ``w`` from class probabilities ``(B, C)`` (detached).

    * ``none``: ``w = 1`` (plain DANN / CDAN) [L].
    * ``srada``: ``w = 1 + H(p) / log C``: up-weights uncertain, poorly aligned samples (SRADA's
      self-adaptive re-weighting as stated in its abstract; exact form [R]).
    * ``cdan_e``: ``w = 1 + exp(-H(p))``: CDAN+E, which does the opposite (up-weights confident samples).
    """
    if mode == "none":
        return torch.ones(probs.shape[0], device=probs.device)
    h = entropy(probs.detach())
    if mode == "srada":
        return 1.0 + h / math.log(probs.shape[1])
    if mode == "cdan_e":
        return 1.0 + torch.exp(-h)
    raise ValueError(f"adv.weighting must be none | srada | cdan_e, got '{mode}'")


def adversarial_features(f: torch.Tensor, p: torch.Tensor | None, variant: str = "dann",
                         multilinear: RandomMultilinearMap | None = None) -> torch.Tensor:
    """The discriminator's input ``h``: ``f`` (DANN) or ``f (x) p`` (CDAN), ``(B, D) -> (B, D or C*D)``.

    CDAN conditions on ``p`` detached, as thuml/CDAN passes ``softmax_output.detach()``.
    """
    if variant == "dann":
        return f
    if variant != "cdan":
        raise ValueError(f"adv.variant must be dann | cdan, got '{variant}'")
    if p is None:
        raise ValueError("CDAN needs the classifier probabilities p")
    p = p.detach()
    if multilinear is not None:
        return multilinear(f, p)
    return torch.bmm(p.unsqueeze(2), f.unsqueeze(1)).flatten(1)


def domain_adversarial_loss(d_s: torch.Tensor, d_t: torch.Tensor, w_s: torch.Tensor | None = None,
                            w_t: torch.Tensor | None = None) -> torch.Tensor:
    """``L_adv`` (module docstring) from discriminator outputs on gradient-reversed features.

    ``d_s (Bs,)``, ``d_t (Bt,)``: probabilities "source"; ``w_s``, ``w_t``: per-sample weights (detached;
    default 1). Returns the weighted binary cross-entropy, normalised by ``sum w``.
    """
    d = torch.cat([d_s, d_t]).clamp(1e-6, 1 - 1e-6)
    label = torch.cat([torch.ones_like(d_s), torch.zeros_like(d_t)])
    w = torch.cat([w_s if w_s is not None else torch.ones_like(d_s),
                   w_t if w_t is not None else torch.ones_like(d_t)]).detach()
    # float32 with autocast off: CUDA autocast refuses binary_cross_entropy on probabilities
    with torch.autocast(d.device.type, enabled=False):
        bce = F.binary_cross_entropy(d.float(), label.float(), reduction="none")
    return (w.float() * bce).sum() / w.float().sum()


@torch.no_grad()
def domain_accuracy(d_s: torch.Tensor, d_t: torch.Tensor) -> torch.Tensor:
    """Discriminator accuracy (%) on a batch; 50 means the domains are confused."""
    return torch.cat([(d_s > 0.5).float(), (d_t <= 0.5).float()]).mean() * 100
