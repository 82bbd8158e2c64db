"""timm names for k-NN models: ``import knn_attention`` and ``timm.create_model`` builds them.

``knn_deit_{tiny,small,base}_patch16_224`` are timm's DeiT models (same modules, same state-dict
keys, so DeiT checkpoints load unchanged) with :class:`KNNAttention` in every block. ``topk``
defaults to 100 keys out of N = 197, the official setting (``kNNAttention(topk=100)`` in every
block of ``damo-cv/KVT``). ``knn_swin_{tiny,small,base}_patch4_window7_224`` swap every window
attention; their k is not in the released code, so the default is a ratio of 0.5 (24 of 49 keys),
a reconstruction. ``knn_pvt_v2_b{0..5}``, ``knn_pvt_v2_b2_li``, ``knn_twins_pcpvt_{small,base,large}`` and
``knn_twins_svt_{small,base,large}`` swap every spatial-reduction attention (PVT-v2 ``Attention``, Twins
GSA and LSA, :mod:`knn_attention.spatial_reduction`): the top-k is over the reduced keys (49 per stage
at 224 px), default ratio 0.5, also a reconstruction. ``pretrained=True`` is refused: no k-NN weights
were ever released (KVT issue #1) and nothing is downloaded here; load a local dense file (DeiT, Swin,
PVT-v2, Twins: same keys) with ``shared.backbones.load_weights``.
"""
from __future__ import annotations

from collections.abc import Sequence

import timm
from timm.models import register_model
from torch import nn

from .model import KNNAttention, TopK, knnify_swin, set_topk
from .spatial_reduction import knnify_spatial_reduction

DEIT_TOPK = 100  # official: Block never passes topk, so kNNAttention's default 100 is used in all layers


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"{name}: no k-NN weights exist and nothing is downloaded; build with "
                         "pretrained=False and load a local dense checkpoint (keys are identical)")


def create_knn_vit(base: str, topk: TopK | Sequence[TopK] = DEIT_TOPK, impl: str = "fast",
                   **kwargs) -> nn.Module:
    """Any timm ``VisionTransformer`` name (``deit_small_patch16_224``, ...) built with k-NN attention."""
    kwargs.pop("pretrained", None)
    model = timm.create_model(base, pretrained=False, attn_layer=KNNAttention, **kwargs)
    return set_topk(model, topk, impl)


def create_knn_swin(base: str, topk: TopK | Sequence[TopK] = 0.5, impl: str = "fast",
                    **kwargs) -> nn.Module:
    """A timm Swin name built, then every ``WindowAttention`` swapped for the k-NN one."""
    kwargs.pop("pretrained", None)
    model = knnify_swin(timm.create_model(base, pretrained=False, **kwargs))
    return set_topk(model, topk, impl)


def create_knn_spatial_reduction(base: str, topk: TopK | Sequence[TopK] = 0.5, impl: str = "fast",
                                 **kwargs) -> nn.Module:
    """A timm PVT-v2 or Twins name built, then every spatial-reduction attention swapped for the k-NN one."""
    kwargs.pop("pretrained", None)
    model = knnify_spatial_reduction(timm.create_model(base, pretrained=False, **kwargs))
    return set_topk(model, topk, impl)


@register_model
def knn_deit_tiny_patch16_224(pretrained: bool = False, **kwargs) -> nn.Module:
    _no_pretrained("knn_deit_tiny_patch16_224", pretrained)
    return create_knn_vit("deit_tiny_patch16_224", **kwargs)


@register_model
def knn_deit_small_patch16_224(pretrained: bool = False, **kwargs) -> nn.Module:
    _no_pretrained("knn_deit_small_patch16_224", pretrained)
    return create_knn_vit("deit_small_patch16_224", **kwargs)


@register_model
def knn_deit_base_patch16_224(pretrained: bool = False, **kwargs) -> nn.Module:
    _no_pretrained("knn_deit_base_patch16_224", pretrained)
    return create_knn_vit("deit_base_patch16_224", **kwargs)


@register_model
def knn_swin_tiny_patch4_window7_224(pretrained: bool = False, **kwargs) -> nn.Module:
    _no_pretrained("knn_swin_tiny_patch4_window7_224", pretrained)
    return create_knn_swin("swin_tiny_patch4_window7_224", **kwargs)


@register_model
def knn_swin_small_patch4_window7_224(pretrained: bool = False, **kwargs) -> nn.Module:
    _no_pretrained("knn_swin_small_patch4_window7_224", pretrained)
    return create_knn_swin("swin_small_patch4_window7_224", **kwargs)


@register_model
def knn_swin_base_patch4_window7_224(pretrained: bool = False, **kwargs) -> nn.Module:
    _no_pretrained("knn_swin_base_patch4_window7_224", pretrained)
    return create_knn_swin("swin_base_patch4_window7_224", **kwargs)


# PVT-v2 and Twins: one entry point per timm name, made by a factory (same behaviour as the ones above).
KNN_SPATIAL_REDUCTION_NAMES = (
    "pvt_v2_b0", "pvt_v2_b1", "pvt_v2_b2", "pvt_v2_b3", "pvt_v2_b4", "pvt_v2_b5", "pvt_v2_b2_li",
    "twins_pcpvt_small", "twins_pcpvt_base", "twins_pcpvt_large",
    "twins_svt_small", "twins_svt_base", "twins_svt_large",
)


def _register_spatial_reduction(base: str) -> None:
    name = f"knn_{base}"

    def entry(pretrained: bool = False, **kwargs) -> nn.Module:
        _no_pretrained(name, pretrained)
        return create_knn_spatial_reduction(base, **kwargs)

    entry.__name__ = entry.__qualname__ = name  # timm registers an entry point under its __name__
    entry.__doc__ = f"timm ``{base}`` with k-NN attention over the reduced keys in every block."
    register_model(entry)


for _base in KNN_SPATIAL_REDUCTION_NAMES:
    _register_spatial_reduction(_base)
