"""TransFGU (Yin et al., ECCV'22): frozen DINO ViT -> concept discovery -> CAM pseudo labels -> decoder.

Pieces, in pipeline order (official damo-cv/TransFGU behaviour, spec ``transfgu.md`` sections in brackets):

* :func:`box_anchors` -- the sliding windows of ``models/utils/bbox_anchors.py`` [2.1]: square boxes of side
  ``b = int(s * min(h, w))`` tokens centred on an interval-``b/2`` lattice (142 windows on 80x80 at
  s = .5,.4,.3,.2; 70 on VOC's .6,.5,.4,.3; 306 on 80x160).
* :func:`fg_bg_crops` -- crops whose window is > 50 % foreground (fg) / > 80 % background (bg) under the
  mean-thresholded CLS attention; the official slice ``[y0:y1, x0:x1]`` drops the window's last row/column.
* :func:`kmeans` -- L2 k-means, k-means++ init, restarts (official: faiss / MiniBatchKMeans).
* :func:`cam_pseudo_labels` -- Eq. (CAM) [2.2]: ``CAM_c = (A_bar + G_c) * 1[g_c <= 0]`` with ``g_c`` the
  gradient of ``mean_n(1 - cos(z_n, mu_c))`` w.r.t. the last block's post-softmax attention.
* :class:`MaskTransformer` -- the Segmenter decoder [2.3] in the released ``*_decoder.pt`` key layout.
* :func:`load_dino_encoder` -- DINO ``*_pretrain.pth`` / full checkpoints into a timm ViT [6].
"""
from __future__ import annotations

import math
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shared.backbones import create_vit, load_state_dict_file, load_weights


# ----------------------------------------------------------------------------- encoder
def dino_interpolate_pos_encoding(pos_embed: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """DINO's ``VisionTransformer.interpolate_pos_encoding`` for an ``h x w`` token grid (rows x columns).

    ``pos_embed (1, 1 + N, D)`` holds the stored square grid (28x28 for DINO ViT-S/8 at 224). DINO resamples it
    at every forward with ``F.interpolate(..., scale_factor=((h + 0.1) / sqrt(N), (w + 0.1) / sqrt(N)),
    mode="bicubic")`` -- a scale factor, not a target size, and no antialiasing -- and skips this only when the
    token count matches *and* the input is square. (DINO's code calls the image height ``w``: the first scale
    factor belongs to the rows.) Returns ``(1, 1 + h*w, D)``.
    """
    n = pos_embed.shape[1] - 1
    if n == h * w and h == w:
        return pos_embed
    side = math.sqrt(n)
    grid = pos_embed[:, 1:].reshape(1, int(side), int(side), -1).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((h + 0.1) / side, (w + 0.1) / side), mode="bicubic")
    if grid.shape[-2:] != (h, w):
        raise ValueError(f"DINO pos-embed resampling gave {tuple(grid.shape[-2:])} tokens for a {h}x{w} grid")
    return torch.cat([pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, h * w, -1)], dim=1)


def _dino_pos_embed(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Replaces timm's ``_pos_embed`` (size-based, antialiased resampling) with DINO's forward-time form.
    ``x (B, h, w, D)`` patch tokens (timm ``dynamic_img_size``) -> ``(B, 1 + h*w, D)``."""
    b, h, w, d = x.shape
    x = torch.cat([self.cls_token.expand(b, -1, -1), x.reshape(b, h * w, d)], dim=1)
    return self.pos_drop(x + dino_interpolate_pos_encoding(self.pos_embed, h, w))


def create_encoder(embed_dim: int = 384, depth: int = 12, num_heads: int = 6, patch_size: int = 8,
                   pretrain_size: int = 224, drop_path_rate: float = 0.0) -> nn.Module:
    """DINO ViT (timm layout, = DINO's names), LN eps 1e-6, attention left un-fused so that the post-softmax
    attention (and its gradient, needed by the CAM) exists as a tensor.

    ``pretrain_size`` is the image size the position embedding is *stored* for (224 for the released DINO
    files: a 28x28 grid at patch 8); it is never resized at load time. Any input size is accepted and the grid
    is resampled at forward time exactly as DINO does (:func:`dino_interpolate_pos_encoding`).
    """
    vit = create_vit("vit_small_patch8_224", num_classes=0, embed_dim=embed_dim, depth=depth, num_heads=num_heads,
                     patch_size=patch_size, img_size=pretrain_size, dynamic_img_size=True,
                     drop_path_rate=drop_path_rate)
    vit._pos_embed = types.MethodType(_dino_pos_embed, vit)
    for blk in vit.blocks:
        blk.attn.fused_attn = False
    return vit


def dino_key_map(key: str) -> str | None:
    """DINO file key -> timm key: ``backbone.`` stripped (``module.`` is stripped by the loader), head dropped."""
    key = key.removeprefix("backbone.")
    return None if key.startswith("head.") else key


def load_dino_encoder(model: nn.Module, path: str | Path, strict: bool = True):
    """Load DINO weights: a flat ``dino_deitsmall8_pretrain.pth`` or a full checkpoint (its ``teacher`` entry,
    as TransFGU's ``load_pretrained_weights``). Strict, local file only (the official loader is non-strict and
    downloads on a missing file: a wrong file there silently loads nothing). A truncated or corrupt file, or one
    that holds no state dict, is a :class:`shared.errors.CheckpointError` naming the file (one line at every
    entry point, like a missing or mismatching file)."""
    sd = load_state_dict_file(path, key="teacher")
    return load_weights(model, path, key_map=dino_key_map, strict=strict, sd=sd)


class AttentionTap:
    """Context manager: keeps the last block's post-softmax attention ``(B, H, 1+hw, 1+hw)`` *in the graph*.

    timm's un-fused Attention applies ``attn_drop`` right after the softmax; a forward hook there sees the
    attention tensor that the output depends on, so ``torch.autograd.grad(loss, tap.attn)`` is the CAM's g.
    """

    def __init__(self, vit: nn.Module):
        self.module = vit.blocks[-1].attn
        self.attn: torch.Tensor | None = None

    def _hook(self, module, inputs, output):
        self.attn = output

    def __enter__(self):
        if self.module.fused_attn:
            raise RuntimeError("AttentionTap needs blk.attn.fused_attn = False (see create_encoder)")
        self.handle = self.module.attn_drop.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def encode(vit: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(cls (B, D), patches (B, hw, D), attention (B, H, 1+hw, 1+hw))`` after the final LN."""
    with AttentionTap(vit) as tap:
        tokens = vit.forward_features(x)
    return tokens[:, 0], tokens[:, vit.num_prefix_tokens:], tap.attn


def cls_attention(attn: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Head-mean CLS->patch attention ``(B, h, w)`` from ``(B, H, 1+hw, 1+hw)``."""
    return attn.mean(1)[:, 0, 1:].reshape(-1, h, w)


# ----------------------------------------------------------------------------- concept discovery [2.1]
def box_anchors(h: int, w: int, scales=(0.5, 0.4, 0.3, 0.2)) -> torch.Tensor:
    """Official window masks ``(A, h, w)`` (bool), ``generate_box_anchors_by_scale``.

    Side ``b = int(min(h, w) * s)``, interval ``b / 2``; a centre (y, x) is kept when the box
    ``|dy| <= b/2, |dx| <= b/2`` lies inside the grid and (both coordinates on the lattice) or (one on the
    lattice and the box touching the far/near edge on the other axis) or (the box in the bottom-right corner).
    """
    out = []
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    for s in scales:
        b = int(min(h * s, w * s))
        half, step = b / 2, b / 2
        for y in range(h):
            for x in range(w):
                if not (x - half >= 0 and y - half >= 0 and x + half < w and y + half < h):
                    continue
                on_x, on_y = x % step == 0, y % step == 0
                edge_x = (x - half == 0) or (x + half == w - 1)
                edge_y = (y - half == 0) or (y + half == h - 1)
                corner = (x + half == w - 1) and (y + half == h - 1)
                if (on_x and on_y) or (on_y and edge_x) or (on_x and edge_y) or corner:
                    out.append(((ys - y).abs() <= half) & ((xs - x).abs() <= half))
    if not out:
        raise ValueError(f"no window fits a {h}x{w} grid at scales {scales}")
    return torch.stack(out)


def fg_bg_crops(image: torch.Tensor, fg: torch.Tensor, anchors: torch.Tensor, out_size: tuple[int, int],
                th_fg: float = 0.5, th_bg: float = 0.8, split: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Crops of one image ``(3, H, W)`` for the CLS bank (``crop_image_slide_window_fgbg``).

    ``fg`` ``(h, w)`` bool token mask, ``anchors`` ``(A, h, w)``; both are nearest-upsampled to pixels. A crop
    is ``image[:, y0:y1, x0:x1]`` with y1/x1 the window's *last* pixel index (the official slice drops it),
    resized bilinearly to ``out_size``. ``split=False`` (Cityscapes/LIP) keeps every window as fg.
    Returns ``(fg_crops (F, 3, *out_size), bg_crops (G, 3, *out_size))``.
    """
    _, hh, ww = image.shape
    anchors = F.interpolate(anchors[None].float(), (hh, ww))[0]
    fgp = F.interpolate(fg[None, None].float(), (hh, ww))[0, 0]
    fgs, bgs = [], []
    for a in anchors:
        yx = a.nonzero()
        y0, y1, x0, x1 = yx[:, 0].min(), yx[:, 0].max(), yx[:, 1].min(), yx[:, 1].max()
        crop = F.interpolate(image[None, :, y0:y1, x0:x1], out_size, mode="bilinear", align_corners=False)
        frac = fgp[y0:y1, x0:x1].mean()
        if not split or frac > th_fg:
            fgs.append(crop)
        elif split and 1 - frac > th_bg:
            bgs.append(crop)
    empty = image.new_zeros(0, 3, *out_size)
    return (torch.cat(fgs) if fgs else empty), (torch.cat(bgs) if bgs else empty)


def kmeans(x: torch.Tensor, k: int, iters: int = 100, restarts: int = 5, seed: int = 0) -> torch.Tensor:
    """L2 k-means (k-means++ init, Lloyd, best of ``restarts`` by inertia). ``x`` ``(N, D)`` -> ``(k, D)``."""
    g = torch.Generator().manual_seed(seed)
    best, best_inertia = None, math.inf
    for _ in range(restarts):
        c = x[torch.randint(len(x), (1,), generator=g)]
        for _ in range(1, k):
            d = torch.cdist(x, c).min(1).values ** 2
            c = torch.cat([c, x[torch.multinomial(d + 1e-12, 1, generator=g)]])
        for _ in range(iters):
            assign = torch.cdist(x, c).argmin(1)
            new = torch.stack([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(k)])
            if torch.allclose(new, c):
                break
            c = new
        inertia = (torch.cdist(x, c).min(1).values ** 2).sum().item()
        if inertia < best_inertia:
            best, best_inertia = c, inertia
    return best


# ----------------------------------------------------------------------------- CAM pseudo labels [2.2]
def mass_binarize(g: torch.Tensor, keep: float = 0.8) -> torch.Tensor:
    """Mask ``(N, h, w)`` of the largest entries of each map holding ``keep`` of its mass (``binarize_mask``):
    sort ascending, normalise, keep where the cumulative sum exceeds ``1 - keep``."""
    flat = g.flatten(1)
    vals, idx = flat.sort(1)
    cum = (vals / vals.sum(1, keepdim=True).clamp_min(1e-12)).cumsum(1)
    mask = torch.zeros_like(flat).scatter(1, idx, (cum > 1 - keep).float())
    return mask.view_as(g)


def cam_pseudo_labels(vit: nn.Module, images: torch.Tensor, centroids: torch.Tensor, patch: int,
                      sign: float = -1.0) -> torch.Tensor:
    """Eq. (CAM): class maps ``(N, C, h, w)`` of one batch ``images`` ``(N, 3, H, W)``, ``centroids`` ``(C, D)``.

    ``A_bar`` = head-mean CLS attention / its per-image max; for each c, ``L_c = mean_n(1 - cos(z_n, mu_c))``,
    ``g_c = dL_c/dA`` (head mean, CLS row, patch columns), ``G_c = relu(-g_c)`` masked to 80 % of its mass,
    ``CAM_c = (A_bar + G_c) * 1[g_c <= 0]``. The batch mean makes g scale as 1/N (official N = 8 or 2).
    ``sign=+1`` is the wrong-sign ablation (uses +g_c). The encoder's train/eval mode is restored.
    """
    was_training = vit.training
    vit.eval()
    h, w = images.shape[-2] // patch, images.shape[-1] // patch
    try:
        with torch.enable_grad():
            # a leaf that needs grad keeps the graph even when the frozen encoder's weights do not
            z, _, attn = encode(vit, images.detach().requires_grad_(True))
            a_bar = cls_attention(attn.detach(), h, w)
            a_bar = a_bar / a_bar.flatten(1).max(1).values.view(-1, 1, 1)
            zn = F.normalize(z, dim=-1)
            cams = []
            for c in range(len(centroids)):
                loss = (1 - zn @ F.normalize(centroids[c], dim=0)).mean()
                (g,) = torch.autograd.grad(loss, attn, retain_graph=c < len(centroids) - 1)
                g = cls_attention(g, h, w) * sign  # -g_c (official, sign=-1) or +g_c (ablation)
                gpos = F.relu(g)
                gc = gpos * mass_binarize(gpos)
                cams.append((a_bar + gc) * (g >= 0).float())
    finally:
        vit.train(was_training)
    return torch.stack(cams, 1).detach()


# ----------------------------------------------------------------------------- decoder [2.3]
class DecoderBlock(nn.Module):
    """Pre-LN transformer block of the Segmenter decoder (no qkv bias, LN eps 1e-5, dropout 0.1)."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float = 0.1):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, dim * 3, bias=False)
        self.attn.proj = nn.Linear(dim, dim)
        self.mlp = nn.Module()
        self.mlp.fc1, self.mlp.fc2 = nn.Linear(dim, mlp_dim), nn.Linear(mlp_dim, dim)
        self.heads, self.drop = heads, nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.attn.qkv(self.norm1(x)).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = self.drop(((q @ k.transpose(-2, -1)) * (d // self.heads) ** -0.5).softmax(-1))
        x = x + self.drop(self.attn.proj((a @ v).transpose(1, 2).reshape(b, n, d)))
        return x + self.drop(self.mlp.fc2(self.drop(F.gelu(self.mlp.fc1(self.norm2(x))))))


class MaskTransformer(nn.Module):
    """Segmenter mask transformer on frozen patch tokens; logits ``(N, C, h, w)``.

    ``proj_dec`` -> append C class embeddings (orthogonal init) -> blocks -> ``decoder_norm`` -> patches @
    ``proj_patch``, classes @ ``proj_classes``, both L2-normalised (``x / x.norm()``, no eps) -> cosine
    ``(N, hw, C)`` -> ``mask_norm`` (LayerNorm over C). Keys match the released ``*_decoder.pt`` files.
    """

    def __init__(self, n_cls: int, d_encoder: int = 384, d_model: int = 384, n_layers: int = 2, n_heads: int = 6,
                 mlp_dim: int = 1536, dropout: float = 0.1):
        super().__init__()
        self.n_cls = n_cls
        self.proj_dec = nn.Linear(d_encoder, d_model)
        self.cls_emb = nn.Parameter(torch.empty(1, n_cls, d_model))
        nn.init.orthogonal_(self.cls_emb[0])
        self.blocks = nn.ModuleList([DecoderBlock(d_model, n_heads, mlp_dim, dropout) for _ in range(n_layers)])
        self.proj_patch = nn.Parameter(d_model ** -0.5 * torch.randn(d_model, d_model))
        self.proj_classes = nn.Parameter(d_model ** -0.5 * torch.randn(d_model, d_model))
        self.decoder_norm = nn.LayerNorm(d_model)
        self.mask_norm = nn.LayerNorm(n_cls)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, patches: torch.Tensor, grid: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        """``patches`` ``(N, hw, D)`` -> ``(logits (N, C, h, w), normalised class embeddings (N, C, d))``."""
        x = torch.cat([self.proj_dec(patches), self.cls_emb.expand(len(patches), -1, -1)], 1)
        for blk in self.blocks:
            x = blk(x)
        x = self.decoder_norm(x)
        p, c = x[:, :-self.n_cls] @ self.proj_patch, x[:, -self.n_cls:] @ self.proj_classes
        p, c = p / p.norm(dim=-1, keepdim=True), c / c.norm(dim=-1, keepdim=True)
        masks = self.mask_norm(p @ c.transpose(1, 2))
        return masks.transpose(1, 2).reshape(len(patches), self.n_cls, *grid), c
