"""Dense 2-D convolution (cross-correlation, as in PyTorch) by im2col."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from eventsim.dense._common import as_pair, float_dtype, windows


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray | None = None,
    *,
    stride: int | Sequence[int] = (1, 1),
    padding: int | Sequence[int] = (0, 0),
) -> np.ndarray:
    """Input currents of a convolution layer for one step of dense input.

    The equation of :class:`eventsim.layers.Conv2d` (docs/semantics.md, "Synapses and pooling";
    the current ``I[t]``; Lee et al. 2020, Sec. 2.2.1, Fig. 2a)::

        out[..., o, oy, ox] = sum_{c, i, j} W[o, c, i, j] * xpad[..., c, oy*sh + i, ox*sw + j]  (+ b[o])

    where ``xpad`` is ``x`` with ``ph`` rows and ``pw`` columns of zeros on
    each side. Output size ``Ho = (H + 2*ph - kh) // sh + 1`` (same for W).

    Parameters
    ----------
    x : float32 or float64 array, shape ``(..., C, H, W)``
        Input values of one step; any leading (batch) axes.
    weight : array, shape ``(O, C, kh, kw)``
        Kernel. Rounded to ``x.dtype`` if it has another float dtype.
    bias : array, shape ``(O,)``, optional
        Constant current per output channel, added after the sum.
    stride, padding : int or pair of int
        ``(sh, sw)`` and ``(ph, pw)``; zero padding.

    Returns
    -------
    array, shape ``(..., O, Ho, Wo)``, dtype of ``x``
    """
    x = np.asarray(x)
    dtype = float_dtype(x, "conv2d input")
    sh_sw = as_pair(stride, "conv2d stride", 1)
    ph, pw = as_pair(padding, "conv2d padding", 0)
    weight = np.asarray(weight)
    if weight.ndim != 4:
        raise ValueError(f"conv2d weight must have shape (O, C, kh, kw), got {weight.shape}")
    if x.ndim < 3 or x.shape[-3] != weight.shape[1]:
        raise ValueError(f"conv2d input of shape {x.shape} does not have the {weight.shape[1]} channels of the weight")
    w = weight.astype(dtype, copy=False)
    kh, kw = w.shape[2:]

    # np.pad keeps the dtype; only the two map axes are padded.
    xpad = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(ph, ph), (pw, pw)])
    # im2col as a strided view: cols[..., c, oy, ox, i, j] = xpad[..., c, oy*sh + i, ox*sw + j]
    cols = windows(xpad, (kh, kw), sh_sw, "conv2d")
    nd = cols.ndim
    # One BLAS product contracts channel and both kernel axes at once;
    # tensordot needs non-negative axis numbers.
    out = np.tensordot(cols, w, axes=([nd - 5, nd - 2, nd - 1], [1, 2, 3]))  # (..., Ho, Wo, O)
    out = np.moveaxis(out, -1, -3)
    if bias is not None:
        b = np.asarray(bias).astype(dtype, copy=False)
        if b.shape != (w.shape[0],):
            raise ValueError(f"conv2d bias must have shape ({w.shape[0]},), got {b.shape}")
        out = out + b[:, None, None]
    return np.ascontiguousarray(out)
