"""MotionRGBD (Zhou et al., CVPR 2022): DSN + FRP + RCM + DTN per modality, CAPF fusion of two modalities.

Module and attribute names follow damo-cv/MotionRGBD so an official ``state_dict`` loads directly
(:func:`load_official_checkpoint`). Widths are arguments: ``width_div=1`` and ``dim=512`` give the
official sizes, the embedded miniature divides them.

Shapes (official): clip ``x`` (B, 3, T=64, 224, 224), motion map ``g`` (B, 1, T, 224, 224) ->
DSN features ``F`` (B, T, 512) -> RCM -> DTN -> logits (B, K).
"""
from __future__ import annotations

import math
import os
import random

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from knn_attention.model import knn_scores_scatter
from shared.errors import CheckpointError

# Official I3D-Inception widths: [b0, b1a, b1b, b2a, b2b, b3b] per Mixed block.
INCEPTION_WIDTHS = {
    "Mixed_3b": [64, 96, 128, 16, 32, 32], "Mixed_3c": [128, 128, 192, 32, 96, 64],
    "Mixed_4b": [192, 96, 208, 16, 48, 64], "Mixed_4c": [160, 112, 224, 24, 64, 64],
    "Mixed_5b": [256, 160, 320, 32, 128, 128], "Mixed_5c": [384, 192, 384, 48, 128, 128],
}
TEMPORAL_INCEPTION = [160, 112, 224, 24, 64, 64]  # DTN layer-1 temporal Inception for dim 512
FRP_SITES = ("Mixed_3b", "Mixed_4b", "Mixed_5b")


def same_pad(size: tuple[int, ...], kernel: tuple[int, ...], stride: tuple[int, ...]) -> list[int]:
    """TF-"same" padding as the official Unit3D computes it at run time (F.pad order: last dim first).

    Per dim: total = max(k - s, 0) if size % s == 0 else max(k - size % s, 0); before = total // 2.
    """
    pads: list[int] = []
    for n, k, s in zip(size, kernel, stride):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pads = [total // 2, total - total // 2] + pads
    return pads


class Unit3D(nn.Module):
    """conv3d (no bias) + BN(eps 1e-3, momentum 0.01) + ReLU with run-time "same" padding."""

    def __init__(self, cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), bn: bool = True, act: bool = True):
        super().__init__()
        self.kernel, self.stride, self.act = tuple(kernel), tuple(stride), act
        self.conv3d = nn.Conv3d(cin, cout, self.kernel, self.stride, bias=not bn)
        self.bn = nn.BatchNorm3d(cout, eps=1e-3, momentum=0.01) if bn else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, same_pad(x.shape[2:], self.kernel, self.stride)))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.act else x


class MaxPool3dSame(nn.Module):
    """Max-pool with "same" padding by zeros (official MaxPool3dSamePadding pads with 0, not -inf)."""

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = tuple(kernel), tuple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(F.pad(x, same_pad(x.shape[2:], self.kernel, self.stride)), self.kernel, self.stride)


class InceptionModule(nn.Module):
    """Inception block: 1x1 | 1x1->k | 1x1->k | 3x3x3 max-pool (stride 1) -> 1x1, concatenated on channels.

    ``k`` is 1x3x3 in the DSN (spatial) and 3x1x1 in the DTN's temporal Inception. The pool branch is
    3x3x3 in the DSN (the only temporal mixing of the "decoupled" spatial trunk) and 3x1x1 in the DTN.
    """

    def __init__(self, cin: int, w: list[int], kernel=(1, 3, 3), pool=(3, 3, 3)):
        super().__init__()
        self.b0 = Unit3D(cin, w[0])
        self.b1a = Unit3D(cin, w[1])
        self.b1b = Unit3D(w[1], w[2], kernel)
        self.b2a = Unit3D(cin, w[3])
        self.b2b = Unit3D(w[3], w[4], kernel)
        self.b3a = MaxPool3dSame(pool, (1, 1, 1))
        self.b3b = Unit3D(cin, w[5])
        self.out_channels = w[0] + w[2] + w[4] + w[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], 1)


class FRPModule(nn.Module):
    """Motion attention at an FRP site: x <- x + (w0 x + w1 x (1 + G)), w = rpconv1d initialised (1, 0).

    ``g`` (B, 1, T, H0, W0) is 2x2 max-pooled until its width equals the feature width (as official,
    only the width is checked). x: (B, C, T, H, W).
    """

    def __init__(self):
        super().__init__()
        self.rpconv1d = nn.Conv1d(2, 1, 1, bias=False)
        with torch.no_grad():
            self.rpconv1d.weight.copy_(torch.tensor([1.0, 0.0]).view(1, 2, 1))

    def forward(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        while g.shape[-1] > x.shape[-1]:
            g = F.max_pool3d(g, (1, 2, 2), (1, 2, 2))
        a = x * (1 + g)
        w = self.rpconv1d.weight.view(2)
        return x + (w[0] * x + w[1] * a)


class RCMModule(nn.Module):
    """Recoupling module (official ``RCMModule``, method 'New', merge 'GAP').

    F: (B, C, T). Frame weights u = sigmoid(LN(W2 GELU(W1 mean_c F))) (B, T); channel weights
    v = sigmoid(mean_queries(q k^T / sqrt(d))) with channels as tokens of T-dim profiles (B, C);
    F' = F * (v outer u). Also returns s = Linear(T -> D)(u), the distillation student (B, D).
    """

    def __init__(self, frames: int = 64, dim: int = 512, hidden: int = 256, heads: int = 1, dim_head: int = 64):
        super().__init__()
        self.heads = heads
        self.scale = dim_head ** -0.5
        self.q = nn.Linear(frames, dim_head * heads, bias=False)
        self.k = nn.Linear(frames, dim_head * heads, bias=False)
        self.project = nn.Sequential(nn.Linear(frames, hidden, bias=False), nn.GELU(),
                                     nn.Linear(hidden, frames, bias=False), nn.LayerNorm(frames))
        self.linear = nn.Linear(frames, dim)
        if heads > 1:
            self.mergefc = nn.Sequential(nn.Dropout(0.4), nn.Linear(dim * heads, dim, bias=False), nn.LayerNorm(dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, c, t = x.shape
        u = torch.sigmoid(self.project(x.mean(1)))  # (B, T)
        q = self.q(x).view(b, c, self.heads, -1).transpose(1, 2)
        k = self.k(x).view(b, c, self.heads, -1).transpose(1, 2)
        dots = (q @ k.transpose(-1, -2) * self.scale).mean(2)  # (B, h, C): mean over queries
        dots = self.mergefc(dots.reshape(b, -1)) if self.heads > 1 else dots[:, 0]
        v = torch.sigmoid(dots)  # (B, C)
        weight = v[:, :, None] * u[:, None, :]  # (B, C, T)
        return x * weight, self.linear(u), weight


class PreNorm(nn.Module):
    def __init__(self, dim: int, fn: nn.Module):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x):
        return self.fn(self.norm(x))


def knn_mask(dots: torch.Tensor, ratio: float) -> torch.Tensor:
    """Keep the top int(ratio * n) scores of each row (n includes the CLS token), others -> -inf: the
    official selection, shared with ``knn_attention`` (whose ratio rule is this one)."""
    return knn_scores_scatter(dots, float(ratio))


class Attention(nn.Module):
    """Multi-head self-attention with kNN selection (official trans_module.Attention)."""

    def __init__(self, dim: int, heads: int = 8, dim_head: int = 64, dropout: float = 0.0, knn: float = 0.7):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale, self.knn = heads, dim_head ** -0.5, knn
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, _ = x.shape
        q, k, v = (t.view(b, n, self.heads, -1).transpose(1, 2) for t in self.to_qkv(x).chunk(3, -1))
        dots = q @ k.transpose(-1, -2) * self.scale
        if self.knn:
            dots = knn_mask(dots, self.knn)
        out = dots.softmax(-1) @ v
        return self.to_out(out.transpose(1, 2).reshape(b, n, -1))


class FeedForward(nn.Module):
    def __init__(self, dim: int, hidden: int, dropout: float = 0.0):
        super().__init__()
        self.fc1, self.fc2, self.dropout = nn.Linear(dim, hidden), nn.Linear(hidden, dim), nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class Transformer(nn.Module):
    """Pre-LN blocks: x += Attn(LN x); x += FF(LN x). Official layout ``layers.i.{0,1}.{norm,fn}``."""

    def __init__(self, dim, depth, heads, dim_head, mlp_dim, dropout=0.0, knn=0.7):
        super().__init__()
        self.layers = nn.ModuleList(nn.ModuleList([PreNorm(dim, Attention(dim, heads, dim_head, dropout, knn)),
                                                   PreNorm(dim, FeedForward(dim, mlp_dim, dropout))])
                                    for _ in range(depth))

    def forward(self, x):
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return x


BRANCHES = ("small", "media", "large")


class MultiScaleLayer(nn.Module):
    """One DTN layer: per branch (no interaction) an optional temporal Inception + max-pool 3 on the
    non-CLS tokens (layer 1 only, since the official Oct-2022 "DTN fix"), then one transformer block."""

    def __init__(self, dim, heads, dim_head, mlp_dim, dropout, knn, local: bool):
        super().__init__()
        self.local = local
        widths = [max(1, round(w * dim / 512)) for w in TEMPORAL_INCEPTION]
        widths[0] += dim - (widths[0] + widths[2] + widths[4] + widths[5])  # keep output == dim
        for br in BRANCHES:
            setattr(self, f"transformer_enc_{br}", Transformer(dim, 1, heads, dim_head, mlp_dim, dropout, knn))
            if local:
                setattr(self, f"Mixed_{br}", InceptionModule(dim, widths, kernel=(3, 1, 1), pool=(3, 1, 1)))
        self.MaxPool = MaxPool3dSame((3, 1, 1), (1, 1, 1))

    def forward(self, xs: list[torch.Tensor]) -> list[torch.Tensor]:
        out = []
        for br, x in zip(BRANCHES, xs):
            if self.local:
                cls, tok = x[:, :1], x[:, 1:]
                tok = self.MaxPool(getattr(self, f"Mixed_{br}")(tok.transpose(1, 2)[..., None, None]))
                x = torch.cat([cls, tok.flatten(2).transpose(1, 2)], 1)
            out.append(getattr(self, f"transformer_enc_{br}")(x))
        return out


def segment_indices(n: int, segments: int, rng: random.Random | None = None) -> list[int]:
    """Official DTN segment sampler: segment i covers [int(n i/s), max(int(n i/s)+1, int(n (i+1)/s))).

    One random frame per segment (``rng``), or the middle frame when ``rng`` is None (deterministic eval).
    """
    idx = []
    for i in range(segments):
        lo = int(n * i / segments)
        hi = max(lo + 1, int(n * (i + 1) / segments))
        idx.append(rng.randrange(lo, hi) if rng is not None else (lo + hi - 1) // 2)
    return idx


def temperature_schedule(epochs: int, warm: float = 0.04, final: float = 0.07, warm_epochs: int = 30) -> np.ndarray:
    """Sharpness tau_e: linspace(warm, final, warm_epochs) then final (official temp_schedule)."""
    return np.concatenate([np.linspace(warm, final, warm_epochs), np.full(max(0, epochs - warm_epochs), final)])


class DTNNet(nn.Module):
    """Decoupled multi-scale temporal net with the RCM in front (official ``DTNNet``).

    Input F (B, T, D). Returns ((z, z_s, z_m, z_l), L_KL, (h_s, h_m, h_l)) where z = max of the branch
    logits (or the max of branch CLS features when ``num_classes`` is 0, the fusion endpoint).
    """

    def __init__(self, num_classes: int, frames: int = 64, samples=(16, 32, 48), dim: int = 512, depth: int = 6,
                 heads: int = 8, dim_head: int = 64, mlp_dim: int = 768, dropout: float = 0.1, knn: float = 0.7,
                 recoupling: bool = True, rcm_hidden: int = 256, temper: float = 0.5, sharpness: bool = True,
                 epochs: int = 100, temp=(0.04, 0.07), temp_warm_epochs: int = 30):
        super().__init__()
        self.frames, self.samples, self.temper, self.sharpness = frames, tuple(samples), temper, sharpness
        for br, n in zip(BRANCHES, self.samples):
            setattr(self, f"pos_embedding_{br}", nn.Parameter(torch.randn(1, n + 1, dim)))
            setattr(self, f"cls_token_{br}", nn.Parameter(torch.randn(1, 1, dim)))
        self.multi_scale_transformers = nn.ModuleList(
            MultiScaleLayer(dim, heads, dim_head, mlp_dim, dropout, knn, local=i == 0) for i in range(depth))
        self.rcm = RCMModule(frames, dim, rcm_hidden) if recoupling else None
        self.num_classes = num_classes
        if num_classes:
            for br in BRANCHES:
                setattr(self, f"mlp_head_{br}", nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes)))
        self.temp_schedule = temperature_schedule(epochs, *temp, temp_warm_epochs)
        self.epoch = 0
        self.rng: random.Random | None = random.Random(123)
        self.eval_center = True  # eval: middle frame of each segment (official: random, also at eval)
        self.init_weights()

    @torch.no_grad()
    def init_weights(self):
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.normal_(m.bias, std=1e-6)

    def forward(self, img: torch.Tensor):
        if self.rcm is not None:
            y, student, _ = self.rcm(img.transpose(1, 2))
            img = y.transpose(1, 2)
        rng = None if (not self.training and self.eval_center) else self.rng
        xs = []
        for br, n in zip(BRANCHES, self.samples):
            x = img[:, segment_indices(img.shape[1], n, rng)]
            x = torch.cat([getattr(self, f"cls_token_{br}").expand(x.shape[0], -1, -1), x], 1)
            xs.append(x + getattr(self, f"pos_embedding_{br}")[:, : n + 1])
        for layer in self.multi_scale_transformers:
            xs = layer(xs)
        h = [x[:, 0] for x in xs]
        if self.rcm is not None:
            from .losses import distillation_kl
            kl = distillation_kl(student, torch.stack(h).mean(0), self.temper)
        else:
            kl = img.new_zeros(())
        if not self.num_classes:
            return (torch.stack(h, -1).amax(-1), *h), kl, tuple(h)
        tau = float(self.temp_schedule[min(self.epoch, len(self.temp_schedule) - 1)]) if self.sharpness else 1.0
        logits = [getattr(self, f"mlp_head_{br}")(x) / tau for br, x in zip(BRANCHES, h)]
        return (torch.stack(logits, -1).amax(-1), *logits), kl, tuple(h)


class MotionNet(nn.Module):
    """Unimodal network (official ``DSNNet``): DSN trunk with FRP at Mixed_3b/4b/5b, LinearMap, DTN.

    ``width_div`` divides every trunk width (1 = official); ``coupled`` makes every k x k trunk conv 3 x k x k
    (the decoupled-vs-coupled ablation, same widths; ours); ``bn_momentum`` 0.01 is official (a few hundred
    steps leave the running statistics near their initial values, so the miniature uses 0.1).
    ``forward(x, g)`` with x (B, 3, T, H, W),
    g (B, 1, T, H, W) or None (FRP off). ``endpoint='spatial'`` returns F (B, T, dim).
    """

    def __init__(self, num_classes: int, frames: int = 64, width_div: int = 1, dim: int = 512, frp: bool = True,
                 bn_momentum: float = 0.01, coupled: bool = False, **dtn_kwargs):
        super().__init__()
        w = lambda c: max(1, math.ceil(c / width_div))  # noqa: E731
        kt = 3 if coupled else 1  # coupled (ours, the I3D-style ablation): every k x k conv spans 3 frames
        self.frp = frp
        self.Conv3d_1a_7x7 = Unit3D(3, w(64), (kt, 7, 7), (1, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(w(64), w(64))
        self.Conv3d_2c_3x3 = Unit3D(w(64), w(192), (kt, 3, 3))
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        cin = w(192)
        for name in ("Mixed_3b", "Mixed_3c", "Mixed_4b", "Mixed_4c", "Mixed_5b", "Mixed_5c"):
            mod = InceptionModule(cin, [w(c) for c in INCEPTION_WIDTHS[name]], kernel=(kt, 3, 3))
            setattr(self, name, mod)
            cin = mod.out_channels
        self.MaxPool3d_4a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame((1, 2, 2), (1, 2, 2))
        self.LinearMap = nn.Sequential(nn.LayerNorm(cin), nn.Linear(cin, dim))
        self.frp_module = FRPModule()
        self.dtn = DTNNet(num_classes, frames=frames, dim=dim, **dtn_kwargs)
        for m in self.modules():  # official Unit3D BN momentum 0.01; the short embedded runs need more
            if isinstance(m, nn.BatchNorm3d):
                m.momentum = bn_momentum

    def spatial(self, x: torch.Tensor, g: torch.Tensor | None) -> torch.Tensor:
        x = self.Conv3d_2c_3x3(self.Conv3d_2b_1x1(self.MaxPool3d_2a_3x3(self.Conv3d_1a_7x7(x))))
        x = self.MaxPool3d_3a_3x3(x)
        for name in ("Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "MaxPool3d_5a_2x2",
                     "Mixed_5b", "Mixed_5c"):
            x = getattr(self, name)(x)
            if name in FRP_SITES and self.frp and g is not None:
                x = self.frp_module(x, g)
        return self.LinearMap(x.mean((3, 4)).transpose(1, 2))  # (B, T, dim)

    def forward(self, x=None, g=None, endpoint: str = "all", feats: torch.Tensor | None = None):
        if endpoint == "temporal":
            return self.dtn(feats)
        f = self.spatial(x, g)
        return f if endpoint == "spatial" else self.dtn(f)


def interaction(cin: int, cout: int) -> nn.Sequential:
    """g_s / g_t: 1x1 conv 2D->D (no bias), BN, ReLU, 1x1 conv D->D, dropout 0.4 (keys 0, 1, 3)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                         nn.Conv2d(cout, cout, 1, bias=False), nn.Dropout(0.4))


class Encoder(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.enconv = nn.Sequential(
            nn.Conv2d(cin, cin, 1, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
            nn.Conv2d(cin, cin // 2, 1, bias=False), nn.BatchNorm2d(cin // 2), nn.ReLU(),
            nn.Conv2d(cin // 2, cin // 4, 1, bias=False), nn.BatchNorm2d(cin // 4), nn.ReLU(),
            nn.Conv2d(cin // 4, cout, 1, bias=False))


class Decoder(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.deconv = nn.Sequential(nn.Conv2d(cin, cout // 4, 1, bias=False), nn.BatchNorm2d(cout // 4), nn.ReLU(),
                                    nn.Conv2d(cout // 4, cout // 2, 1, bias=False), nn.BatchNorm2d(cout // 2),
                                    nn.ReLU())


class FusionModule(nn.Module):
    """Posterior fusion: z = E([h_M; h_K]) (2D -> 2D -> D -> D/2 -> D/2), y = efc(z), x_hat = D(z) (D/2 -> D)."""

    def __init__(self, dim: int, num_classes: int):
        super().__init__()
        self.encoder = Encoder(2 * dim, dim // 2)
        self.decoder = Decoder(dim // 2, 2 * dim)
        self.efc = nn.Conv2d(dim // 2, num_classes, 1, bias=False)

    def forward(self, hm: torch.Tensor, hk: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = self.encoder.enconv(torch.cat([hm, hk], 1)[..., None, None])
        return self.efc(z).flatten(1), self.decoder.deconv(z).flatten(1)


class CrossFusionNet(nn.Module):
    """CAPF (official ``CrossFusionNet``): two MotionNets (no heads) + spatial/temporal interaction +
    posterior fusion + shared modality discriminator.

    ``official_view=True`` reproduces the official ``.view(b, 2c, t, 1)`` of a (B, T, 2D) tensor without a
    permute (memory reinterpretation, kept for checkpoint compatibility); False applies g_s per frame.
    forward -> (y, r, d), dict of losses (ce, bce, mse, kl).
    """

    def __init__(self, num_classes: int, spatial_interact: bool = True, temporal_interact: bool = True,
                 official_view: bool = True, label_smoothing: float = 0.1, **net_kwargs):
        super().__init__()
        net_kwargs = dict(net_kwargs)
        dim = net_kwargs.get("dim", 512)
        self.spatial_interact, self.temporal_interact = spatial_interact, temporal_interact
        self.official_view, self.label_smoothing = official_view, label_smoothing
        self.fusion_model = FusionModule(dim, num_classes)
        self.fc = nn.Conv2d(dim, 1, 1, bias=False)
        self.dropout = nn.Dropout(0.5)
        self.Modalit_rgb = MotionNet(0, **net_kwargs)
        self.Modalit_depth = MotionNet(0, **net_kwargs)
        if spatial_interact:
            self.crossFusion = interaction(2 * dim, dim)
        if temporal_interact:
            self.crossFusionT = interaction(2 * dim, dim)
        self.classifier1 = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))
        self.classifier2 = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def spatial_fusion(self, fm: torch.Tensor, fk: torch.Tensor) -> torch.Tensor:
        b, t, c = fm.shape
        cat = F.normalize(torch.cat([fm, fk], -1), p=2, dim=-1)
        if self.official_view:
            return self.crossFusion(cat.reshape(b, 2 * c, t, 1)).reshape(b, t, c)
        return self.crossFusion(cat.permute(0, 2, 1)[..., None])[..., 0].permute(0, 2, 1)

    def forward(self, rgb, depth, g_rgb=None, g_depth=None, target=None):
        from .losses import capf_losses
        fm = self.Modalit_rgb(rgb, g_rgb, endpoint="spatial")
        fk = self.Modalit_depth(depth, g_depth, endpoint="spatial")
        if self.spatial_interact:
            fs = self.spatial_fusion(fm, fk)
            fm, fk = fm + fs, fk + fs
        (hm, *_), klm, _ = self.Modalit_rgb(endpoint="temporal", feats=fm)
        (hk, *_), klk, _ = self.Modalit_depth(endpoint="temporal", feats=fk)
        r, d = self.classifier1(hm), self.classifier2(hk)
        if self.temporal_interact:
            ft = self.crossFusionT(F.normalize(torch.cat([hm, hk], -1), p=2, dim=-1)[..., None, None]).flatten(1)
            hm, hk = hm + ft, hk + ft
        y, x_hat = self.fusion_model(hm, hk)
        p_m = torch.sigmoid(self.fc(self.dropout(hm)[..., None, None]).flatten(1))
        p_k = torch.sigmoid(self.fc(self.dropout(hk)[..., None, None]).flatten(1))
        losses = capf_losses(y, r, d, p_m, p_k, x_hat, hm, hk, klm + klk, target, self.label_smoothing) \
            if target is not None else {}
        return (y, r, d), losses


def read_checkpoint(path) -> dict:
    """The checkpoint file as a dict (official ``*.pth.tar`` or ours); a missing or unreadable one is a one-line
    :class:`~shared.errors.CheckpointError` naming the file."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated / not a torch file: name the file
        raise CheckpointError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict ({{'model': state_dict, ...}} or a state dict), "
                              f"got {type(state).__name__}")
    return state


def strip_module(state: dict) -> dict:
    return {k.removeprefix("module."): v for k, v in state.items()}


def load_official_checkpoint(model: nn.Module, path_or_state, skip_heads: bool = False,
                             required_prefix: str | None = "") -> list[str]:
    """Load an official ``{'model': state_dict, ...}`` (``checkpoint.pth.tar`` / ``model_best.pth.tar``).

    Keys are the official ones (``module.`` stripped). As the official ``load_pretrained_checkpoint``,
    only shape-matched keys are kept; ``skip_heads`` drops ``mlp_head_*`` (fusion init from unimodal nets).
    A unimodal checkpoint loaded into :class:`CrossFusionNet` must be prefixed first (see
    :func:`unimodal_to_fusion`). Returns the model keys left missing.

    Unlike the official loader (which prints and goes on, so a wrong file trains from scratch), every model
    key starting with ``required_prefix`` (all keys by default; ``"Modalit_"`` for the fusion init, whose own
    modules are new; heads excepted with ``skip_heads``) must load, or a one-line
    :class:`~shared.backbones.CheckpointMismatchError` names the file and the keys. ``None``: official, lenient.
    """
    from shared.backbones import CheckpointMismatchError

    state = path_or_state
    name = "<state dict>" if isinstance(state, dict) else str(state)
    if not isinstance(state, dict):
        state = read_checkpoint(state)
    state = strip_module(state.get("model", state.get("state_dict", state)))
    own = model.state_dict()
    keep = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape
            and not (skip_heads and "mlp_head" in k)}
    model.load_state_dict(keep, strict=False)
    missing = [k for k in own if k not in keep]
    if required_prefix is not None:
        bad = [k for k in missing if k.startswith(required_prefix) and not (skip_heads and "mlp_head" in k)]
        if bad:
            raise CheckpointMismatchError(f"{name}: checkpoint does not match the model: missing or wrong shape "
                                          f"{len(bad)} ({', '.join(bad[:6])}{', ...' if len(bad) > 6 else ''})")
    return missing


def unimodal_to_fusion(rgb_state: dict, depth_state: dict) -> dict:
    """Fusion init from the two unimodal best checkpoints: ``Modalit_rgb.*`` / ``Modalit_depth.*``, no heads."""
    out = {}
    for prefix, st in (("Modalit_rgb.", rgb_state), ("Modalit_depth.", depth_state)):
        st = strip_module(st.get("model", st))
        out.update({prefix + k: v for k, v in st.items() if "mlp_head" not in k})
    return out
