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

Every name has a ``pretrained_cfg`` (the dense model's input size, crop, interpolation, mean/std; no url),
and ``features_only=True`` (with ``out_indices``) returns timm's feature wrapper of the k-NN model (DeiT:
block outputs as NCHW maps; Swin / PVT-v2 / Twins: one map per stage).
"""
from __future__ import annotations

from collections.abc import Sequence

import timm
from timm.models import generate_default_cfgs, get_pretrained_cfg, register_model
from timm.models._builder import resolve_pretrained_cfg
from torch import nn

from .model import KNNAttention, TopK, knnify_swin, set_topk
from .spatial_reduction import knnify_spatial_reduction

# PVT-v2 and Twins: one entry point per timm name, made by a factory below (same behaviour as the others).
KNN_SPATIAL_REDUCTION_NAMES = (
    "pvt_v2_b0", "pvt_v2_b1", "pvt_v2_b2", "pvt_v2_b3", "pvt_v2_b4", "pvt_v2_b5", "pvt_v2_b2_li",
    "twins_pcpvt_small", "twins_pcpvt_base", "twins_pcpvt_large",
    "twins_svt_small", "twins_svt_base", "twins_svt_large",
)
KNN_DENSE_NAMES = ("deit_tiny_patch16_224", "deit_small_patch16_224", "deit_base_patch16_224",
                   "swin_tiny_patch4_window7_224", "swin_small_patch4_window7_224", "swin_base_patch4_window7_224",
                   *KNN_SPATIAL_REDUCTION_NAMES)
DEIT_TOPK = 100  # official: Block never passes topk, so kNNAttention's default 100 is used in all layers


def _dense_cfg(base: str) -> dict:
    """The dense model's evaluation settings, without its weights' location (none exist for k-NN)."""
    dense = get_pretrained_cfg(base).to_dict()
    keep = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes", "pool_size",
            "first_conv", "classifier", "fixed_input_size", "min_input_size", "test_input_size")
    return {**{k: dense[k] for k in keep if dense.get(k) is not None}, "url": ""}


# read by timm's register_model: the pretrained_cfg of every knn_* name
default_cfgs = generate_default_cfgs({f"knn_{base}": _dense_cfg(base) for base in KNN_DENSE_NAMES})


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ValueError(f"{name}: no k-NN weights exist and nothing is downloaded; build with "
                         "pretrained=False and load a local dense checkpoint (keys are identical)")


def _entry(name: str, create, pretrained: bool, kwargs: dict) -> nn.Module:
    """``create`` applied to the dense timm name (``name`` without ``knn_``), carrying ``name``'s own
    ``pretrained_cfg`` (the dense model built inside would otherwise report the dense weights' cfg)."""
    _no_pretrained(name, pretrained)
    cfg = resolve_pretrained_cfg(name, kwargs.pop("pretrained_cfg", None), kwargs.pop("pretrained_cfg_overlay", None))
    kwargs.pop("cache_dir", None)
    model = create(name.removeprefix("knn_"), **kwargs)
    model.pretrained_cfg = model.default_cfg = cfg.to_dict()
    return model


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
    return _entry("knn_deit_tiny_patch16_224", create_knn_vit, pretrained, kwargs)


@register_model
def knn_deit_small_patch16_224(pretrained: bool = False, **kwargs) -> nn.Module:
    return _entry("knn_deit_small_patch16_224", create_knn_vit, pretrained, kwargs)


@register_model
def knn_deit_base_patch16_224(pretrained: bool = False, **kwargs) -> nn.Module:
    return _entry("knn_deit_base_patch16_224", create_knn_vit, pretrained, kwargs)


@register_model
def knn_swin_tiny_patch4_window7_224(pretrained: bool = False, **kwargs) -> nn.Module:
    return _entry("knn_swin_tiny_patch4_window7_224", create_knn_swin, pretrained, kwargs)


@register_model
def knn_swin_small_patch4_window7_224(pretrained: bool = False, **kwargs) -> nn.Module:
    return _entry("knn_swin_small_patch4_window7_224", create_knn_swin, pretrained, kwargs)


@register_model
def knn_swin_base_patch4_window7_224(pretrained: bool = False, **kwargs) -> nn.Module:
    return _entry("knn_swin_base_patch4_window7_224", create_knn_swin, pretrained, kwargs)




def _register_spatial_reduction(base: str) -> None:
    name = f"knn_{base}"

    def entry(pretrained: bool = False, **kwargs) -> nn.Module:
        return _entry(name, create_knn_spatial_reduction, pretrained, kwargs)

    entry.__name__ = entry.__qualname__ = name  # timm registers an entry point under its __name__
    entry.__doc__ = f"timm ``{base}`` with k-NN attention over the reduced keys in every block."
    register_model(entry)


for _base in KNN_SPATIAL_REDUCTION_NAMES:
    _register_spatial_reduction(_base)
