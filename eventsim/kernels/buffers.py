"""Growable output buffers for kernels that emit an unknown number of events."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def grown(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` with twice the capacity (at least 64 entries)."""
    b = np.empty(max(2 * a.shape[0], 64), a.dtype)
    b[: a.shape[0]] = a
    return b
