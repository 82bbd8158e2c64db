"""Convert a built dense timm model into k-NN attention in place: ViT/DeiT (``timm.layers.Attention``),
Swin (``WindowAttention``), PVT-v2 and Twins (the spatial-reduction attentions).

Its own module because it needs both :mod:`knn_attention.model` and :mod:`knn_attention.spatial_reduction`,
and the latter builds on the former (no import cycle)::

    import timm
    from knn_attention.convert import dense_to_knn
    m = dense_to_knn(timm.create_model("twins_pcpvt_small"), 0.5)   # dense weights kept, k = M/2 per row
"""
from __future__ import annotations

from collections.abc import Sequence

from timm.layers import Attention
from torch import nn

from .model import KNNAttention, TopK, knnify_swin, set_topk
from .spatial_reduction import knnify_spatial_reduction


def dense_to_knn(model: nn.Module, topk: TopK | Sequence[TopK] = 0.5,
                 impl: str = "fast") -> nn.Module:
    """Turn a built timm ViT (``timm.layers.Attention``), Swin, PVT-v2 or Twins into k-NN attention in place."""
    for parent in list(model.modules()):
        for child_name, child in list(parent.named_children()):
            if type(child) is Attention:
                new = KNNAttention.__new__(KNNAttention)
                new.__dict__.update(child.__dict__)  # same submodules and attributes, new forward
                new.topk, new.impl = 0.5, impl
                setattr(parent, child_name, new)
    knnify_swin(model, 0.5, impl)
    knnify_spatial_reduction(model, 0.5, impl)
    return set_topk(model, topk, impl)


__all__ = ["dense_to_knn"]
