"""elsa: see elsa/README.md.

Importing the package registers the ``elsa_swin_*`` and ``elsa_volo_*`` names with timm.
"""
from . import model, volo  # noqa: F401  (register timm model names)
