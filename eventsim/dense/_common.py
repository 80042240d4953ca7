"""Argument checks and the sliding-window view shared by the dense twins."""

from __future__ import annotations

from typing import Sequence

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def as_pair(value: int | Sequence[int], what: str, minimum: int) -> tuple[int, int]:
    """``value`` as ``(rows, cols)``; an int means the same for both."""
    pair = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if len(pair) != 2 or not all(isinstance(p, (int, np.integer)) for p in pair):
        raise ValueError(f"{what} must be an int or a pair of ints, got {value!r}")
    if any(p < minimum for p in pair):
        raise ValueError(f"{what} must be >= {minimum}, got {value!r}")
    return int(pair[0]), int(pair[1])


def float_dtype(x: np.ndarray, what: str) -> np.dtype:
    """The dtype of ``x``, which must be float32 or float64.

    The twins compute in the dtype of their input and never pick another one,
    so an integer or boolean input is refused rather than promoted.
    """
    if x.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{what} must be float32 or float64, got {x.dtype}")
    return x.dtype


def windows(x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], what: str) -> np.ndarray:
    """Read-only view of the ``kh x kw`` windows of ``x`` at the given stride.

    ``x`` has shape ``(..., H, W)``; the view has shape
    ``(..., Ho, Wo, kh, kw)`` with ``Ho = (H - kh) // sh + 1``, and
    ``view[..., oy, ox, i, j] = x[..., oy*sh + i, ox*sw + j]``. Rows and
    columns that do not fill a window are left out. No data is copied.
    """
    (kh, kw), (sh, sw) = kernel, stride
    if x.ndim < 2 or x.shape[-2] < kh or x.shape[-1] < kw:
        raise ValueError(f"{what}: window {kernel} does not fit an input of shape {x.shape}")
    every = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(-2, -1))
    return every[..., ::sh, ::sw, :, :]
