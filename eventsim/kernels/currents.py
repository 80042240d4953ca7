"""Currents that are passed on as events, and constant (bias) currents."""

import numpy as np
from numba import njit

from eventsim.kernels.buffers import grown


@njit(cache=True, nogil=True)
def currents_to_events(cur, channels, totals):
    """Emit the nonzero entries of a window of currents as events.

    What a synapse not followed by a neuron layer passes on (linear average
    pooling, sum pooling): the event value is the current itself.

    Parameters
    ----------
    cur : (K, P*C) float array, channel-last.
    totals : (P*C,) float array, channel-last; summed emitted values, updated
        in place.

    Returns
    -------
    (indptr, index, value)
        Row pointers from 0, C-order indices, values.
    """
    steps, size = cur.shape
    plane = size // channels
    out_ptr = np.zeros(steps + 1, np.int64)
    out_idx = np.empty(64, np.int64)
    out_val = np.empty(64, cur.dtype)
    n = 0
    for k in range(steps):
        for j in range(size):
            val = cur[k, j]
            if val != 0:
                if n == out_idx.shape[0]:
                    out_idx = grown(out_idx)
                    out_val = grown(out_val)
                p = j // channels
                out_idx[n] = (j - p * channels) * plane + p
                out_val[n] = val
                totals[j] += val
                n += 1
        out_ptr[k + 1] = n
    return out_ptr, out_idx[:n], out_val[:n]


@njit(cache=True, nogil=True)
def add_bias(cur, bias):
    """Add a constant current per channel to every position and step.

    ``cur`` is ``(K, P*C)`` channel-last and ``bias`` is ``(C,)``.
    """
    channels = bias.shape[0]
    for k in range(cur.shape[0]):
        for j in range(cur.shape[1]):
            cur[k, j] += bias[j % channels]
