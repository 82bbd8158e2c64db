"""visionrepro's thin common package: configs, the training engine, backbones, metrics, data, results.

Nothing paper-specific lives here; a paper's own logic stays in its folder.
"""
from .errors import install_excepthook as _install_excepthook
from .papers import PAPERS

__all__ = ["PAPERS"]

# An exception escaping one of this repository's ``python -m`` entry points prints one line (see errors.py).
_install_excepthook()
