"""CDTrans model: a timm ViT with a BN-neck head, run as one branch or as the weight-sharing triple branch.

Layout (official ``build_transformer`` / ``build_uda_transformer``, CDTrans/CDTrans ``model/make_model.py``)::

    base (ViT) -> final LN -> CLS token (global_feat) -> bottleneck (BatchNorm1d, bias frozen at 0)
               -> classifier (Linear, no bias, N(0, 0.001^2))

State-dict keys are the official ones (``base.cls_token``, ``base.pos_embed``, ``base.patch_embed.proj.*``,
``base.blocks.{i}.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,mlp.fc2}.*``, ``base.norm.*``, ``bottleneck.*``,
``classifier.weight``) because ``base`` is a timm ``VisionTransformer`` built without a head; the official
``base.fc`` (an unused 1000-way layer) is dropped when loading (:func:`load_official_checkpoint`).

Triple branch (``vit_pytorch_uda.py``, ``Block_3_branches``), one set of block weights for all three::

    xs  <- xs  + DP(SA(LN1 xs)),            xs  <- xs  + DP(MLP(LN2 xs))          source
    xt  <- xt  + DP(SA(LN1 xt)),            xt  <- xt  + DP(MLP(LN2 xt))          target
    xst <- xst + DP(CA(LN1 xs, LN1 xt)),    xst <- xst + DP(MLP(LN2 xst))         source-target fusion
    CA = proj(softmax(q_s k_t^T / sqrt(d_h)) v_t), q/k/v from the *same* qkv projection

The fusion stream starts from the target embeddings (``x1_x2_fusion = x2``) and its own tokens never
enter Q, K or V. In training the BN-neck runs per branch in the official order source, fusion, target
(three running-statistics updates per step). Inference uses the target branch only.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from shared.backbones import LoadReport, create_vit, load_state_dict_file, load_weights, strip_prefix


class CDTransModel(nn.Module):
    """ViT + BN-neck + bias-free classifier; ``forward(x)`` one branch, ``forward(xs, xt)`` three.

    Args:
        num_classes: C.
        arch: timm ViT name (``vit_small_patch16_224`` = DeiT-S shape, ``vit_base_patch16_224`` = DeiT-B).
        drop_path_rate: stochastic depth, linear 0 -> rate over the blocks (official 0.1).
        **vit_kwargs: timm overrides (``img_size``, ``patch_size``, ``in_chans``, ``embed_dim``, ``depth``,
            ``num_heads``, ``mlp_ratio``) for the small embedded model.
    """

    def __init__(self, num_classes: int, arch: str = "vit_small_patch16_224", drop_path_rate: float = 0.1,
                 **vit_kwargs):
        super().__init__()
        # LayerNorm eps 1e-6 and qkv bias are timm's ViT defaults, as in the official factory.
        self.base = create_vit(arch, num_classes=0, global_pool="token", drop_path_rate=drop_path_rate,
                               **vit_kwargs)
        dim = self.base.embed_dim
        self.bottleneck = nn.BatchNorm1d(dim)
        self.bottleneck.bias.requires_grad_(False)  # BNNeck: bias frozen at 0
        nn.init.constant_(self.bottleneck.weight, 1.0)
        nn.init.constant_(self.bottleneck.bias, 0.0)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)
        self.num_classes = num_classes

    # ------------------------------------------------------------------ single branch
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding + CLS + pos-embed: ``(B, C, H, W) -> (B, 1 + N, D)``."""
        b = self.base
        return b.norm_pre(b.patch_drop(b._pos_embed(b.patch_embed(x))))

    def head(self, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Final LN -> CLS -> BN-neck -> classifier. Returns ``(logits (B, C), bn_feat, global_feat)``."""
        global_feat = self.base.norm(tokens)[:, 0]
        feat = self.bottleneck(global_feat)
        return self.classifier(feat), feat, global_feat

    def forward_single(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Plain self-attention ViT (Stage A, the target branch at inference): logits, BN feat, CLS."""
        return self.head(self.base.blocks(self.embed(x)))

    # ------------------------------------------------------------------ three branches
    def forward_three(self, xs: torch.Tensor, xt: torch.Tensor,
                      fusion: bool = True) -> dict[str, tuple[torch.Tensor, ...]]:
        """Source, target and source-target fusion branches; each -> ``(logits, bn_feat, global_feat)``.

        ``fusion=False`` skips the fusion stream (the self-training ablation needs only two branches).
        """
        if xs.shape != xt.shape:
            raise ValueError(f"source and target batches must have the same shape, got {tuple(xs.shape)} "
                             f"and {tuple(xt.shape)}")
        s, t = self.embed(xs), self.embed(xt)
        st = t  # official: x1_x2_fusion = x2 (the fusion stream starts from the target embeddings)
        if not fusion:
            s, t = self.base.blocks(s), self.base.blocks(t)
            return {"source": self.head(s), "target": self.head(t)}
        for blk in self.base.blocks:
            s, t, st = three_branch_block(blk, s, t, st)
        # BN-neck order as the official forward: source, fusion, target (running stats updated thrice).
        out_s = self.head(s)
        out_st = self.head(st)
        out_t = self.head(t)
        return {"source": out_s, "target": out_t, "fusion": out_st}

    def forward(self, x: torch.Tensor, x2: torch.Tensor | None = None, fusion: bool = True):
        """``model(x)``: target/single-branch logits. ``model(xs, xt)``: the three-branch dict."""
        if x2 is None:
            return self.forward_single(x)[0]
        return self.forward_three(x, x2, fusion)


def _qkv(attn: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """timm ``Attention``'s q, k, v, each ``(B, H, N, d_h)``."""
    b, n, _ = x.shape
    qkv = attn.qkv(x).reshape(b, n, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return attn.q_norm(q), attn.k_norm(k), v


def _attend(attn: nn.Module, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``proj(softmax(q k^T / sqrt(d_h)) v)`` with timm's dropouts; ``(B, H, N, d_h) -> (B, N, D)``."""
    x = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    b, h, n, d = x.shape
    x = attn.norm(x.transpose(1, 2).reshape(b, n, h * d))
    return attn.proj_drop(attn.proj(x))


def three_branch_block(blk: nn.Module, xs: torch.Tensor, xt: torch.Tensor, xst: torch.Tensor):
    """One ``Block_3_branches`` step on a timm ``Block`` (shared weights); see the module docstring."""
    a = blk.attn
    qs, ks, vs = _qkv(a, blk.norm1(xs))
    qt, kt, vt = _qkv(a, blk.norm1(xt))
    sa_s, sa_t = _attend(a, qs, ks, vs), _attend(a, qt, kt, vt)
    ca = _attend(a, qs, kt, vt)  # queries from the source, keys/values from the target

    def mlp_res(x: torch.Tensor) -> torch.Tensor:
        return x + blk.drop_path2(blk.ls2(blk.mlp(blk.norm2(x))))

    xs = mlp_res(xs + blk.drop_path1(blk.ls1(sa_s)))
    xt = mlp_res(xt + blk.drop_path1(blk.ls1(sa_t)))
    xst = mlp_res(xst + blk.drop_path1(blk.ls1(ca)))
    return xs, xt, xst


# ---------------------------------------------------------------------- checkpoints
def official_key_map(key: str) -> str | None:
    """Official CDTrans key -> ours (identical but for the unused ``base.fc`` head, which is dropped)."""
    if key.startswith("base.fc.") or key.startswith("base.head"):
        return None
    return key


def load_official_checkpoint(model: CDTransModel, path: str | Path, strict: bool = True) -> LoadReport:
    """Load a released CDTrans checkpoint (pretrain or UDA, plain ``state_dict``, optional ``module.``
    prefix from DataParallel) or one of our engine checkpoints (``{'model': state_dict, ...}``)."""
    return load_weights(model, path, key_map=official_key_map, strict=strict, deit_distilled=False)


def load_imagenet_init(model: CDTransModel, path: str | Path) -> LoadReport:
    """ImageNet initialisation of ``model.base`` from a DeiT (distilled or not) or timm ViT checkpoint.

    As the official ``load_param``: keys with 'head' or 'dist' are skipped, a distilled checkpoint's
    pos-embed loses row 1 (the distillation token), and the grid is resized when the image size differs.
    Non-strict about the head only: every backbone key must be present.
    """
    sd = strip_prefix(load_state_dict_file(path, key="model"))
    report = load_weights(model.base, path, sd=sd, strict=False,
                          skip=("head", "fc."), deit_distilled="dist_token" in sd)
    if report.missing:
        raise KeyError(f"{path}: backbone keys missing from the ImageNet checkpoint: {report.missing[:8]}")
    return report
