"""visionrepro's thin common package: configs, the training engine, backbones, metrics, data, results.

Nothing paper-specific lives here; a paper's own logic stays in its folder.
"""

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
