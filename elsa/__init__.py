"""elsa: see elsa/README.md.

Importing the package registers the ``elsa_*`` names with timm.
"""
from . import model  # noqa: F401  (registers timm model names)
