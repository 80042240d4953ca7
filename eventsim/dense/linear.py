"""Dense fully connected layer."""

from __future__ import annotations

import numpy as np

from eventsim.dense._common import float_dtype


def linear(x: np.ndarray, weight: np.ndarray, bias: np.ndarray | None = None) -> np.ndarray:
    """Input currents of a fully connected layer for one step of dense input.

    The equation of :class:`eventsim.layers.Linear` (Lee et al. 2020, eq. 2)::

        out[..., o] = sum_i W[o, i] * x[..., i]  (+ b[o])

    Parameters
    ----------
    x : float32 or float64 array, shape ``(..., N_in)``
    weight : array, shape ``(N_out, N_in)``
        Rounded to ``x.dtype`` if it has another float dtype.
    bias : array, shape ``(N_out,)``, optional
        Constant current per output, added after the sum.

    Returns
    -------
    array, shape ``(..., N_out)``, dtype of ``x``
    """
    x = np.asarray(x)
    dtype = float_dtype(x, "linear input")
    w = np.asarray(weight).astype(dtype, copy=False)
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not fit a weight of shape {w.shape}")
    out = x @ w.T
    if bias is not None:
        b = np.asarray(bias).astype(dtype, copy=False)
        if b.shape != (w.shape[0],):
            raise ValueError(f"linear bias must have shape ({w.shape[0]},), got {b.shape}")
        out = out + b
    return out
