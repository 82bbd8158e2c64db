"""MHFormer: Multi-Hypothesis Transformer for 3D human pose estimation (Li et al., CVPR 2022).

Module names, shapes and the order of operations follow the official code (Vegetebird/MHFormer,
``model/mhformer.py``, ``model/module/trans.py``, ``model/module/trans_hypothesis.py``) so that the
released checkpoints load strictly (see :func:`load_official_checkpoint`).

Shapes: B batch, N frames (a multiple of 9), J = 17 joints, C = ``channel`` (512).

    X (B, N, J, 2) --rearrange--> (B, 2J, N): each of the 34 coordinate trajectories is a token whose
    feature vector is its N-frame time series.
    MHG (Sec. 3.2, Eq. 1-3):   X_m = X_{m-1} + Enc_m(LN_m(X_{m-1})),  m = 1..3     (B, 34, N) each
    temporal embedding:        Z_m = Conv1x1_m(X_m)^T + P_m                        (B, N, C) each
    SHR (Sec. 3.3, Eq. 4-5):   Z_m += MSA_m(LN(Z_m));  Z = [Z_1 Z_2 Z_3] += MLP(LN(Z))   x (layers-1)
    CHI (Sec. 3.4, Eq. 6-7):   Z_1 += MCA(LN Z_2, LN Z_3, LN Z_1); Z_2 += MCA(LN Z_1, LN Z_3, LN Z_2);
                               Z_3 += MCA(LN Z_1, LN Z_2, LN Z_3); then the mixing MLP      x 1
                               (sequential: Z_2 and Z_3 see the updated Z_1, as the official code does;
                               the paper writes the three updates as if parallel)
    head (Sec. 3.5):           LN(3C) -> BN1d(3C) -> Conv1x1(3C -> 3J) -> (B, N, J, 3)

Every frame is predicted; the centre frame (index (N - 1) / 2) is the one that is scored.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from timm.layers import DropPath
from torch import nn

from shared.backbones import load_local_file

VALID_FRAMES = (9, 27, 81, 243, 351)  # the released/used settings; any multiple of 9 works


def check_frames(frames: int) -> None:
    """MHG runs 9-head attention over a feature width of N, so N must be a positive multiple of 9."""
    if frames < 9 or frames % 9:
        raise ValueError(f"model.frames={frames}: MHFormer needs a multiple of 9 frames "
                         f"(the MHG encoders use 9 heads of width N/9), e.g. {', '.join(map(str, VALID_FRAMES))}")


def _layer_norm(dim: int) -> nn.LayerNorm:
    return nn.LayerNorm(dim, eps=1e-6)  # every LN inside the transformers uses eps 1e-6 (official)


class Mlp(nn.Module):
    """fc1 -> GELU -> dropout -> fc2 -> dropout."""

    def __init__(self, dim: int, hidden: int, out: int | None = None, drop: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, out or dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, fused: bool = True) -> torch.Tensor:
    """Scaled dot-product attention over (B, H, L, d) tensors; no attention dropout (official: 0).

    ``fused`` uses ``F.scaled_dot_product_attention``; the explicit softmax form beside it is the
    reference the tests compare against.
    """
    if fused:
        return F.scaled_dot_product_attention(q, k, v)
    attn = (q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5
    return attn.softmax(dim=-1) @ v


class Attention(nn.Module):
    """Multi-head self-attention with a joint qkv projection: (B, L, D) -> (B, L, D)."""

    def __init__(self, dim: int, heads: int, drop: float = 0.0, fused: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention width {dim} is not divisible by {heads} heads")
        self.heads, self.fused = heads, fused
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        out = attend(q, k, v, self.fused).transpose(1, 2).reshape(b, n, d)
        return self.proj_drop(self.proj(out))


class CrossAttention(nn.Module):
    """Multi-head cross-attention MCA(Q, K, V) with separate q/k/v projections (CHI, Eq. 6)."""

    def __init__(self, dim: int, heads: int, drop: float = 0.0, fused: bool = True):
        super().__init__()
        self.heads, self.fused = heads, fused
        self.linear_q = nn.Linear(dim, dim, bias=True)
        self.linear_k = nn.Linear(dim, dim, bias=True)
        self.linear_v = nn.Linear(dim, dim, bias=True)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(drop)

    def forward(self, xq: torch.Tensor, xk: torch.Tensor, xv: torch.Tensor) -> torch.Tensor:
        b, n, d = xq.shape
        split = lambda t: t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)  # noqa: E731
        q, k, v = split(self.linear_q(xq)), split(self.linear_k(xk)), split(self.linear_v(xv))
        out = attend(q, k, v, self.fused).transpose(1, 2).reshape(b, n, d)
        return self.proj_drop(self.proj(out))


class Block(nn.Module):
    """Pre-LN ViT block: x += DP(MSA(LN x)); x += DP(MLP(LN x))."""

    def __init__(self, dim: int, heads: int, hidden: int, drop: float, drop_path: float, fused: bool):
        super().__init__()
        self.norm1 = _layer_norm(dim)
        self.attn = Attention(dim, heads, drop, fused)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _layer_norm(dim)
        self.mlp = Mlp(dim, hidden, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class Encoder(nn.Module):
    """One MHG encoder (official ``Transformer`` in trans.py): pos-embed, dropout, blocks, final LN.

    Tokens (B, L, D): L = 34 coordinate trajectories, D = N frames in MHG.
    """

    def __init__(self, depth: int, dim: int, hidden: int, length: int, heads: int, drop: float = 0.1,
                 drop_path_rate: float = 0.2, fused: bool = True):
        super().__init__()
        self.pos_embed = nn.Parameter(torch.zeros(1, length, dim))
        self.pos_drop = nn.Dropout(drop)
        dpr = torch.linspace(0, drop_path_rate, depth).tolist()
        self.blocks = nn.ModuleList(Block(dim, heads, hidden, drop, dpr[i], fused) for i in range(depth))
        self.norm = _layer_norm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pos_drop(x + self.pos_embed)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class SHRBlock(nn.Module):
    """Self-Hypothesis Refinement: per-hypothesis MSA (own weights), then the hypothesis-mixing MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, drop: float, drop_path: float, fused: bool):
        super().__init__()
        for m in (1, 2, 3):
            setattr(self, f"norm1_{m}", _layer_norm(dim))
            setattr(self, f"attn_{m}", Attention(dim, heads, drop, fused))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _layer_norm(dim * 3)
        self.mlp = Mlp(dim * 3, hidden, drop=drop)

    def forward(self, x_1, x_2, x_3):
        x_1 = x_1 + self.drop_path(self.attn_1(self.norm1_1(x_1)))
        x_2 = x_2 + self.drop_path(self.attn_2(self.norm1_2(x_2)))
        x_3 = x_3 + self.drop_path(self.attn_3(self.norm1_3(x_3)))
        x = torch.cat([x_1, x_2, x_3], dim=2)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.chunk(3, dim=2)


class CHIBlock(nn.Module):
    """Cross-Hypothesis Interaction: three sequential cross-attentions (9 LNs), then the mixing MLP."""

    def __init__(self, dim: int, heads: int, hidden: int, drop: float, drop_path: float, fused: bool):
        super().__init__()
        for i in (1, 2, 3):
            for j in (1, 2, 3):
                setattr(self, f"norm3_{i}{j}", _layer_norm(dim))
            setattr(self, f"attn_{i}", CrossAttention(dim, heads, drop, fused))
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = _layer_norm(dim * 3)
        self.mlp = Mlp(dim * 3, hidden, drop=drop)

    def forward(self, x_1, x_2, x_3):
        # Official order: x_2's and x_3's updates already see the updated x_1 (and x_3 the updated x_2).
        x_1 = x_1 + self.drop_path(self.attn_1(self.norm3_11(x_2), self.norm3_12(x_3), self.norm3_13(x_1)))
        x_2 = x_2 + self.drop_path(self.attn_2(self.norm3_21(x_1), self.norm3_22(x_3), self.norm3_23(x_2)))
        x_3 = x_3 + self.drop_path(self.attn_3(self.norm3_31(x_1), self.norm3_32(x_2), self.norm3_33(x_3)))
        x = torch.cat([x_1, x_2, x_3], dim=2)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x.chunk(3, dim=2)


class HypothesisTransformer(nn.Module):
    """SHR x (layers - 1) then CHI x 1 over three (B, N, C) hypotheses; returns LN([Z_1 Z_2 Z_3]) (B, N, 3C)."""

    def __init__(self, layers: int, dim: int, hidden: int, length: int, heads: int = 8, drop: float = 0.1,
                 drop_path_rate: float = 0.2, fused: bool = True):
        super().__init__()
        for m in (1, 2, 3):
            setattr(self, f"pos_embed_{m}", nn.Parameter(torch.zeros(1, length, dim)))
            setattr(self, f"pos_drop_{m}", nn.Dropout(drop))
        dpr = torch.linspace(0, drop_path_rate, layers).tolist()
        self.SHR_blocks = nn.ModuleList(SHRBlock(dim, heads, hidden, drop, dpr[i], fused) for i in range(layers - 1))
        self.CHI_blocks = nn.ModuleList([CHIBlock(dim, heads, hidden, drop, dpr[layers - 1], fused)])
        self.norm = _layer_norm(dim * 3)

    def forward(self, x_1, x_2, x_3):
        x_1 = self.pos_drop_1(x_1 + self.pos_embed_1)
        x_2 = self.pos_drop_2(x_2 + self.pos_embed_2)
        x_3 = self.pos_drop_3(x_3 + self.pos_embed_3)
        for blk in self.SHR_blocks:
            x_1, x_2, x_3 = blk(x_1, x_2, x_3)
        x_1, x_2, x_3 = self.CHI_blocks[0](x_1, x_2, x_3)
        return self.norm(torch.cat([x_1, x_2, x_3], dim=2))


def _embedding(in_ch: int, channel: int, frames: int) -> nn.Module:
    # N <= 27 in the official code: Conv + BN + ReLU + Dropout(0.25) (keys embedding_k.0/.1);
    # N > 27: a bare Conv1d (keys embedding_k.weight/.bias).
    conv = nn.Conv1d(in_ch, channel, kernel_size=1)
    if frames > 27:
        return conv
    return nn.Sequential(conv, nn.BatchNorm1d(channel, momentum=0.1), nn.ReLU(inplace=True), nn.Dropout(0.25))


class MHFormer(nn.Module):
    """The official ``Model``: (B, N, J, 2) normalised 2D keypoints -> (B, N, J, 3) metres (root-relative).

    Args:
        frames: N, a multiple of 9. channel: C (512). d_hid: mixing-MLP width (1024). layers: SHR + CHI
        blocks (3 -> 2 SHR + 1 CHI). n_joints: J. fused_attention: SDPA (True) or explicit softmax.
    """

    def __init__(self, frames: int = 27, channel: int = 512, d_hid: int = 1024, layers: int = 3,
                 n_joints: int = 17, out_joints: int = 17, mhg_depth: int = 4, mhg_heads: int = 9,
                 heads: int = 8, drop_rate: float = 0.1, drop_path_rate: float = 0.2,
                 fused_attention: bool = True):
        super().__init__()
        check_frames(frames)
        if layers < 1:
            raise ValueError(f"model.layers={layers}: need at least the CHI block (layers >= 1)")
        self.frames, self.n_joints, self.out_joints = frames, n_joints, out_joints
        tokens = 2 * n_joints
        for m in (1, 2, 3):  # MHG
            setattr(self, f"norm_{m}", nn.LayerNorm(frames))  # eps 1e-5 here (official default)
        for m in (1, 2, 3):
            setattr(self, f"Transformer_encoder_{m}",
                    Encoder(mhg_depth, frames, frames * 2, tokens, mhg_heads, drop_rate, drop_path_rate,
                            fused_attention))
        for m in (1, 2, 3):
            setattr(self, f"embedding_{m}", _embedding(tokens, channel, frames))
        self.Transformer_hypothesis = HypothesisTransformer(layers, channel, d_hid, frames, heads, drop_rate,
                                                            drop_path_rate, fused_attention)
        self.regression = nn.Sequential(nn.BatchNorm1d(channel * 3, momentum=0.1),
                                        nn.Conv1d(channel * 3, 3 * out_joints, kernel_size=1))

    def hypotheses(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """MHG: the three initial hypotheses X_1, X_2, X_3, each (B, 2J, N)."""
        x = rearrange(x, "b f j c -> b (j c) f")
        x_1 = x + self.Transformer_encoder_1(self.norm_1(x))
        x_2 = x_1 + self.Transformer_encoder_2(self.norm_2(x_1))
        x_3 = x_2 + self.Transformer_encoder_3(self.norm_3(x_2))
        return x_1, x_2, x_3

    def forward(self, x: torch.Tensor, pick: tuple[int, int, int] = (0, 1, 2)) -> torch.Tensor:
        """``pick[m]``: which MHG hypothesis feeds stream m (the default is the model; others are probes,
        ``mhformer.diagnose``)."""
        b, f, j, c = x.shape
        if f != self.frames or j != self.n_joints or c != 2:
            raise ValueError(f"MHFormer expects (B, {self.frames}, {self.n_joints}, 2) input, got {tuple(x.shape)}")
        hyp = self.hypotheses(x)
        z = self.Transformer_hypothesis(*(getattr(self, f"embedding_{m + 1}")(hyp[p]).transpose(1, 2)
                                          for m, p in enumerate(pick)))
        out = self.regression(z.transpose(1, 2))  # (B, 3J, N)
        return rearrange(out, "b (j c) f -> b f j c", j=self.out_joints)


class SingleHypothesis(nn.Module):
    """The M = 1 ablation: one MHG encoder, one embedding, ``layers`` standard transformer blocks over
    the N frames (width C, MLP d_hid), the same regression head. (B, N, J, 2) -> (B, N, J, 3)."""

    def __init__(self, frames: int = 27, channel: int = 512, d_hid: int = 1024, layers: int = 3,
                 n_joints: int = 17, out_joints: int = 17, mhg_depth: int = 4, mhg_heads: int = 9,
                 heads: int = 8, drop_rate: float = 0.1, drop_path_rate: float = 0.2,
                 fused_attention: bool = True):
        super().__init__()
        check_frames(frames)
        self.frames, self.n_joints, self.out_joints = frames, n_joints, out_joints
        tokens = 2 * n_joints
        self.norm_1 = nn.LayerNorm(frames)
        self.Transformer_encoder_1 = Encoder(mhg_depth, frames, frames * 2, tokens, mhg_heads, drop_rate,
                                             drop_path_rate, fused_attention)
        self.embedding_1 = _embedding(tokens, channel, frames)
        self.Transformer = Encoder(layers, channel, d_hid, frames, heads, drop_rate, drop_path_rate,
                                   fused_attention)
        self.regression = nn.Sequential(nn.BatchNorm1d(channel, momentum=0.1),
                                        nn.Conv1d(channel, 3 * out_joints, kernel_size=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = rearrange(x, "b f j c -> b (j c) f")
        x = x + self.Transformer_encoder_1(self.norm_1(x))
        z = self.Transformer(self.embedding_1(x).transpose(1, 2))
        return rearrange(self.regression(z.transpose(1, 2)), "b (j c) f -> b f j c", j=self.out_joints)


class PerFrameMLP(nn.Module):
    """A frame-by-frame lifter (Martinez et al. 2017 style): Linear -> 2 residual blocks -> Linear.

    (B, N, J, 2) -> (B, N, J, 3); every frame is lifted alone, so it has no temporal context.
    """

    def __init__(self, n_joints: int = 17, out_joints: int = 17, hidden: int = 1024, blocks: int = 2,
                 dropout: float = 0.25):
        super().__init__()
        self.out_joints = out_joints

        def unit(d_in: int) -> list[nn.Module]:
            return [nn.Linear(d_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Dropout(dropout)]

        self.inp = nn.Sequential(*unit(2 * n_joints))
        self.blocks = nn.ModuleList(nn.Sequential(*unit(hidden), *unit(hidden)) for _ in range(blocks))
        self.out = nn.Linear(hidden, 3 * out_joints)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f = x.shape[:2]
        h = self.inp(x.reshape(b * f, -1))
        for blk in self.blocks:
            h = h + blk(h)
        return self.out(h).reshape(b, f, self.out_joints, 3)


class VideoPose3D(nn.Module):
    """Pavllo et al., "3D human pose estimation in video with temporal convolutions and semi-supervised
    training" (CVPR 2019): the dilated temporal-convolution lifter, as ``TemporalModel`` in
    facebookresearch/VideoPose3D ``common/model.py`` (non-causal, not dense; same module names and order).

    ``expand_conv`` (Conv1d 2J -> C, width W_0, no bias) + BN + ReLU + Dropout, then per further filter width
    W_i a residual block: Conv1d(C, C, W_i, dilation = prod W_<i, no bias) + BN + ReLU + Dropout, Conv1d(C, C,
    1, no bias) + BN + ReLU + Dropout, added to the centre crop of its input; ``shrink`` Conv1d(C, 3J, 1).
    (B, N, J, 2) with N = the receptive field prod W_i (27 for 3, 3, 3) -> (B, N - rf + 1, J, 3) = (B, 1, J, 3):
    the centre frame only. BatchNorm momentum 0.1 (the official code decays it during training from 0.1
    towards 0.001; here every row shares the MHFormer recipe, so it stays 0.1).
    """

    def __init__(self, n_joints: int = 17, out_joints: int = 17, filter_widths: tuple[int, ...] = (3, 3, 3),
                 channels: int = 1024, dropout: float = 0.25, in_features: int = 2):
        super().__init__()
        for fw in filter_widths:
            if fw % 2 == 0:
                raise ValueError(f"VideoPose3D: filter widths must be odd, got {list(filter_widths)}")
        self.num_joints_out = out_joints
        self.drop = nn.Dropout(dropout)
        self.relu = nn.ReLU(inplace=True)
        self.pad = [filter_widths[0] // 2]
        self.expand_bn = nn.BatchNorm1d(channels, momentum=0.1)
        self.shrink = nn.Conv1d(channels, out_joints * 3, 1)
        self.expand_conv = nn.Conv1d(n_joints * in_features, channels, filter_widths[0], bias=False)
        layers_conv, layers_bn = [], []
        next_dilation = filter_widths[0]
        for fw in filter_widths[1:]:
            self.pad.append((fw - 1) * next_dilation // 2)
            layers_conv.append(nn.Conv1d(channels, channels, fw, dilation=next_dilation, bias=False))
            layers_bn.append(nn.BatchNorm1d(channels, momentum=0.1))
            layers_conv.append(nn.Conv1d(channels, channels, 1, dilation=1, bias=False))
            layers_bn.append(nn.BatchNorm1d(channels, momentum=0.1))
            next_dilation *= fw
        self.layers_conv = nn.ModuleList(layers_conv)
        self.layers_bn = nn.ModuleList(layers_bn)

    def receptive_field(self) -> int:
        return 1 + 2 * sum(self.pad)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, f = x.shape[:2]
        if f < self.receptive_field():
            raise ValueError(f"VideoPose3D: {f} input frames < receptive field {self.receptive_field()}")
        x = x.reshape(b, f, -1).permute(0, 2, 1)
        x = self.drop(self.relu(self.expand_bn(self.expand_conv(x))))
        for i in range(len(self.pad) - 1):
            pad = self.pad[i + 1]
            res = x[:, :, pad:x.shape[2] - pad]
            x = self.drop(self.relu(self.layers_bn[2 * i](self.layers_conv[2 * i](x))))
            x = res + self.drop(self.relu(self.layers_bn[2 * i + 1](self.layers_conv[2 * i + 1](x))))
        x = self.shrink(x).permute(0, 2, 1)
        return x.reshape(b, -1, self.num_joints_out, 3)


def filter_widths_for(frames: int) -> tuple[int, ...]:
    """VideoPose3D's architectures: 3,3,3 -> 27 frames, 3,3,3,3 -> 81, 3,3,3,3,3 -> 243 (N must be 3^k)."""
    k, n = 0, frames
    while n > 1 and n % 3 == 0:
        n, k = n // 3, k + 1
    if n != 1 or k == 0:
        raise ValueError(f"videopose3d: frames={frames} must be a power of 3 (27, 81, 243)")
    return (3,) * k


def build_model(arch: str, **kwargs) -> nn.Module:
    """``mhformer`` | ``single_hypothesis`` | ``per_frame_mlp`` | ``videopose3d``."""
    if arch == "mhformer":
        return MHFormer(**kwargs)
    if arch == "single_hypothesis":
        return SingleHypothesis(**kwargs)
    if arch == "per_frame_mlp":
        keep = {k: kwargs[k] for k in ("n_joints", "out_joints") if k in kwargs}
        if "channel" in kwargs:
            keep["hidden"] = kwargs["channel"]
        return PerFrameMLP(**keep)
    if arch == "videopose3d":
        keep = {k: kwargs[k] for k in ("n_joints", "out_joints") if k in kwargs}
        return VideoPose3D(filter_widths=filter_widths_for(kwargs.get("frames", 27)),
                           channels=kwargs.get("channel", 1024), **keep)
    raise ValueError(f"model.arch: unknown '{arch}' (mhformer | single_hypothesis | per_frame_mlp | videopose3d)")


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- official checkpoints
_OLD_LAYOUT_PREFIXES = ("trans_auto_", "encoder_1.", "Transformer.", "fcn.")


def load_official_checkpoint(model: MHFormer, ckpt: str | Path | Mapping[str, torch.Tensor]) -> None:
    """Load a released ``model_XXXX.pth`` (a plain ``state_dict``) strictly.

    The official loader keeps only the keys it recognises, so a checkpoint with stale names loads
    almost nothing without a word; here every key must match. Checkpoints saved before the module
    rename of May 2022 (official commit 0060a9b: ``trans_auto_k``, ``encoder_k``, ``Transformer.``,
    ``fcn``) are recognised and refused with a message saying so.
    """
    name = str(ckpt) if not isinstance(ckpt, Mapping) else "<state_dict>"
    if not isinstance(ckpt, Mapping):
        path = Path(ckpt)
        ckpt = load_local_file(path)
        for wrapper in ("model", "state_dict", "model_pos"):
            if isinstance(ckpt, Mapping) and wrapper in ckpt and isinstance(ckpt[wrapper], Mapping):
                ckpt = ckpt[wrapper]
    state = {k.removeprefix("module."): v for k, v in ckpt.items()}
    if any(k.startswith(_OLD_LAYOUT_PREFIXES) for k in state) and "Transformer_hypothesis.norm.weight" not in state:
        raise ValueError(f"{name}: this checkpoint uses the pre-May-2022 MHFormer key layout (trans_auto_k / "
                         "encoder_k / Transformer / fcn, renamed in official commit 0060a9b); download the "
                         "current release (keys Transformer_encoder_k / embedding_k / Transformer_hypothesis "
                         "/ regression)")
    pe = state.get("Transformer_encoder_1.pos_embed")
    if pe is not None and hasattr(model, "frames") and pe.shape[-1] != model.frames:
        raise ValueError(f"{name}: checkpoint was trained with N={pe.shape[-1]} frames, the model has "
                         f"N={model.frames} (set model.frames={pe.shape[-1]})")
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(f"{name}: key mismatch, {len(missing)} missing (e.g. {missing[:3]}), "
                         f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
    bad = [k for k in own if own[k].shape != state[k].shape]
    if bad:
        raise ValueError(f"{name}: shape mismatch for {bad[:3]}: checkpoint {tuple(state[bad[0]].shape)} "
                         f"vs model {tuple(own[bad[0]].shape)} (model.channel / d_hid / frames?)")
    model.load_state_dict(state, strict=True)
