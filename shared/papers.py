"""The paper folders of the repository, in the README's order (its own module: ``shared.errors`` and
``shared.data.verify`` need it, and ``shared/__init__`` imports ``shared.errors``)."""

PAPERS = (
    "bp_triplet",
    "tcl_i2v",
    "elsa",
    "motion_rgbd",
    "transfgu",
    "mhformer",
    "transreid_ssl",
    "cdtrans",
    "scaled_relu_stem",
    "knn_attention",
)

__all__ = ["PAPERS"]
