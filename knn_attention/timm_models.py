"""timm names for k-NN models: ``import knn_attention`` and ``timm.create_model`` builds them.

``knn_deit_{tiny,small,base}_patch16_224`` are timm's DeiT models (same modules, same state-dict
keys, so DeiT checkpoints load unchanged) with :class:`KNNAttention` in every block. ``topk``
defaults to 100 keys out of N = 197, the official setting (``kNNAttention(topk=100)`` in every
block of ``damo-cv/KVT``). ``knn_swin_{tiny,small,base}_patch4_window7_224`` swap every window
attention; their k is not in the released code, so the default is a ratio of 0.5 (24 of 49 keys),
a reconstruction. ``pretrained=True`` is refused: no k-NN weights were ever released (KVT issue #1)
and nothing is downloaded here; load a local DeiT/Swin file with ``shared.backbones.load_weights``.
"""
from __future__ import annotations

from collections.abc import Sequence

import timm
from timm.models import register_model
from torch import nn

from .model import KNNAttention, TopK, knnify_swin, set_topk

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
