"""Dense pooling: sum, linear average, max, and strided subsampling.

All take ``x`` of shape ``(..., C, H, W)`` (any leading axes), use no padding,
and drop the trailing rows and columns that do not fill a window, so the
output size is ``Ho = (H - kh) // sh + 1`` (as in :class:`eventsim.layers.SumPool`,
PyTorch and NIR).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from eventsim.dense._common import as_pair, float_dtype, windows


def sum_pool(x: np.ndarray, kernel: int | Sequence[int], stride: int | Sequence[int]) -> np.ndarray:
    """Sum pooling (:class:`eventsim.layers.SumPool`, NIR SumPool2d)::

        out[..., c, oy, ox] = sum_{i, j} x[..., c, oy*sh + i, ox*sw + j]

    Returns an array of shape ``(..., C, Ho, Wo)`` in the dtype of ``x``.
    """
    x = np.asarray(x)
    float_dtype(x, "sum_pool input")
    win = windows(x, as_pair(kernel, "sum_pool kernel", 1), as_pair(stride, "sum_pool stride", 1), "sum_pool")
    return win.sum(axis=(-2, -1))


def avg_pool(x: np.ndarray, kernel: int | Sequence[int], stride: int | Sequence[int]) -> np.ndarray:
    """Linear average pooling (:class:`eventsim.layers.AvgPool`)::

        out[..., c, oy, ox] = sum_{i, j} w * x[..., c, oy*sh + i, ox*sw + j],   w = 1 / (kh*kw)

    ``w`` is rounded once to the dtype of ``x`` and every input is multiplied
    by it before the sum, the same products the event path forms for each
    event (dividing the sum instead would round differently when ``kh*kw`` is
    not a power of two).

    Returns an array of shape ``(..., C, Ho, Wo)`` in the dtype of ``x``.
    """
    x = np.asarray(x)
    dtype = float_dtype(x, "avg_pool input")
    kh, kw = as_pair(kernel, "avg_pool kernel", 1)
    w = dtype.type(1.0 / (kh * kw))
    win = windows(x * w, (kh, kw), as_pair(stride, "avg_pool stride", 1), "avg_pool")
    return win.sum(axis=(-2, -1))


def max_pool(x: np.ndarray, kernel: int | Sequence[int], stride: int | Sequence[int]) -> np.ndarray:
    """Max pooling of one step's values (:class:`eventsim.layers.MaxPool`)::

        out[..., c, oy, ox] = max_{i, j} x[..., c, oy*sh + i, ox*sw + j]

    Positions without an event hold 0 in the dense array and take part in the
    max, so on 0/1 spikes the output is the OR of the window (docs/semantics.md,
    "Synapses and pooling").

    Returns an array of shape ``(..., C, Ho, Wo)`` in the dtype of ``x``.
    """
    x = np.asarray(x)
    float_dtype(x, "max_pool input")
    win = windows(x, as_pair(kernel, "max_pool kernel", 1), as_pair(stride, "max_pool stride", 1), "max_pool")
    return win.max(axis=(-2, -1))


def subsample(x: np.ndarray, stride: int | Sequence[int]) -> np.ndarray:
    """Strided identity (:class:`eventsim.layers.Identity`)::

        out[..., c, oy, ox] = x[..., c, oy*sh, ox*sw]

    Output size ``(H - 1) // sh + 1``. With stride 1 it is the identity (and
    then ``x`` may have any shape, e.g. a flat ``(B, N)``). Returns a copy.
    """
    x = np.asarray(x)
    float_dtype(x, "subsample input")
    sh, sw = as_pair(stride, "subsample stride", 1)
    if (sh, sw) == (1, 1):
        return x.copy()
    if x.ndim < 2:
        raise ValueError(f"subsample with stride {(sh, sw)} needs a (..., H, W) input, got shape {x.shape}")
    return x[..., ::sh, ::sw].copy()
