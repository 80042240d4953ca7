"""Dense fully connected layer, plain and with synaptic delays.

docs/semantics.md, "Synapses and pooling" and "Delays".
"""

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
    return _plus_bias(x @ w.T, bias)


def delayed_linear(
    history: np.ndarray, weight: np.ndarray, delay: np.ndarray, bias: np.ndarray | None = None
) -> np.ndarray:
    """Input currents at step t of a fully connected layer with synaptic delays.

    docs/semantics.md, "Delays"::

        I[t, o] = sum_i W[o, i] * s[t - d[o, i], i]  (+ b[o])      s[t'] = 0 for t' < 0

    Synapse ``(o, i)`` delivers now what input ``i`` carried ``d[o, i]``
    steps ago; the bias is not delayed. A current that would land at or
    after T is simply never asked for: the run stops at T - 1.

    Parameters
    ----------
    history : float32 or float64 array, shape ``(..., h, N_in)``
        The inputs of the latest ``h`` steps, oldest first, the last row
        being step t. It reaches back ``max(d)`` steps or to step 0: a
        synapse whose ``t - d`` lies before the first row reads nothing,
        which is right only when that row is step 0.
    weight : array, shape ``(N_out, N_in)``
        Rounded to ``history.dtype`` if it has another float dtype.
    delay : int array, shape ``(N_out, N_in)``
        Whole steps ``d[o, i] >= 0`` per synapse.
    bias : array, shape ``(N_out,)``, optional

    Returns
    -------
    array, shape ``(..., N_out)``, dtype of ``history``
    """
    history = np.asarray(history)
    dtype = float_dtype(history, "delayed linear input")
    w = np.asarray(weight).astype(dtype, copy=False)
    d = np.asarray(delay)
    if w.ndim != 2 or history.ndim < 2 or history.shape[-1] != w.shape[1] or history.shape[-2] < 1:
        raise ValueError(f"delayed linear: input history of shape {history.shape} does not fit a weight "
                         f"of shape {w.shape}")
    if d.shape != w.shape or not np.issubdtype(d.dtype, np.integer) or (d < 0).any():
        raise ValueError(f"delayed linear: delay must be whole steps >= 0 of the weight's shape {w.shape}, "
                         f"got {d.dtype} {d.shape}")
    now = history.shape[-2] - 1  # the row of step t
    source = now - d  # the row of step t - d[o, i], for every synapse
    arrived = source >= 0
    # s[t - d[o, i], i] for every synapse (o, i): shape (..., N_out, N_in)
    inputs = np.arange(w.shape[1])
    delayed = history[..., np.where(arrived, source, 0), inputs]
    delayed = np.where(arrived, delayed, dtype.type(0))
    return _plus_bias((w * delayed).sum(axis=-1), bias)


def _plus_bias(out: np.ndarray, bias: np.ndarray | None) -> np.ndarray:
    """``out + b`` per output (the last axis), ``b`` rounded to the dtype of ``out``; ``out`` without a bias."""
    if bias is None:
        return out
    b = np.asarray(bias).astype(out.dtype, copy=False)
    if b.shape != out.shape[-1:]:
        raise ValueError(f"linear bias must have shape ({out.shape[-1]},), got {b.shape}")
    return out + b
