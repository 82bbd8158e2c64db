"""scaled_relu_stem: see scaled_relu_stem/README.md.

Importing the package registers the ``deit_*_srstem_patch16_224`` / ``deit_small_xiaostem_patch16_224`` names with timm.
"""
from . import model  # noqa: F401  (registers timm model names)
