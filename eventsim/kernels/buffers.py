"""Growable output buffers for kernels that emit an unknown number of events."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def grown_to(a: np.ndarray, needed: int) -> np.ndarray:
    """A copy of ``a`` with room for at least ``needed`` entries (doubling, at least 64)."""
    size = max(a.shape[0], 32)
    while size < needed:
        size *= 2
    b = np.empty(size, a.dtype)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, nogil=True)
def grown(a: np.ndarray) -> np.ndarray:
    """A copy of ``a`` with twice the capacity (at least 64 entries)."""
    return grown_to(a, max(2 * a.shape[0], 64))
