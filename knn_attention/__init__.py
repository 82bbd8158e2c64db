"""k-NN attention (KVT, ECCV 2022): see knn_attention/README.md.

Importing the package registers the ``knn_deit_*`` / ``knn_swin_*`` names with timm.
"""
from . import timm_models  # noqa: F401  (registers timm model names)
from .convert import dense_to_knn
from .model import (
    KNNAttention,
    KNNWindowAttention,
    knn_attention,
    knn_modules,
    resolve_topk,
    set_topk,
)

__all__ = ["KNNAttention", "KNNWindowAttention", "dense_to_knn", "knn_attention", "knn_modules",
           "resolve_topk", "set_topk"]
