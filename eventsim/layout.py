"""Array layouts shared by the forward and backward passes.

Events and user-facing arrays index neurons in C order of ``(C, H, W)``; the
kernels' current, potential and gradient buffers are channel-last ``P*C``
(position major, channel minor) so that one position's channels are a
contiguous vector. A flat layer of N neurons is seen as ``(N, 1, 1)``, where
both orders coincide.
"""

from __future__ import annotations

from math import prod

import numpy as np


def as3(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` as is; a flat ``(N,)`` as ``(N, 1, 1)``."""
    return tuple(shape) if len(shape) == 3 else (prod(shape), 1, 1)  # type: ignore[return-value]


def to_c_order(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(..., P*C)`` channel-last -> ``(..., *shape)`` in C order."""
    c, h, w = as3(shape)
    lead = a.shape[:-1]
    return np.moveaxis(a.reshape(lead + (h * w, c)), -1, -2).reshape(lead + tuple(shape))


def to_channel_last(a: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``(..., *shape)`` in C order -> ``(..., P*C)`` channel-last, C-contiguous."""
    c, h, w = as3(shape)
    lead = a.shape[: a.ndim - len(shape)]
    return np.ascontiguousarray(np.moveaxis(a.reshape(lead + (c, h * w)), -2, -1)).reshape(lead + (h * w * c,))
