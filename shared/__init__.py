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

from .errors import install_excepthook as _install_excepthook  # noqa: E402

# An exception escaping one of this repository's ``python -m`` entry points prints one line (see errors.py).
_install_excepthook()
