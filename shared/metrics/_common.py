"""Array conversion shared by the metric modules (torch tensors and numpy arrays are both accepted)."""

from __future__ import annotations

from typing import Any

import numpy as np


def to_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """Return ``x`` as a numpy array (torch tensors: detached, to CPU, bf16/fp16 -> fp32)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu()
        if x.dtype.is_floating_point and x.element_size() < 4:
            x = x.float()
        x = x.numpy()
    arr = np.asarray(x)
    return arr if dtype is None else arr.astype(dtype, copy=False)
