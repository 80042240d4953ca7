"""Dropout applied to events with a mask held for all steps."""

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def dropout_events(indptr, index, value, keep, scale):
    """Keep the events of neurons with ``keep[n]``, multiplying their values by ``scale``.

    docs/semantics.md, "Dropout" (Lee et al. 2020, Algorithm 1): the mask is drawn
    once per forward pass and the same ``keep`` applies at every step, so a
    dropped neuron is silent for the whole sample; kept events carry
    ``value * 1/(1-p)``.

    Parameters
    ----------
    keep : (N,) bool array over C-order neuron indices.
    scale : float scalar of the values' dtype.

    Returns
    -------
    (indptr, index, value)
        The kept events, row pointers from 0.
    """
    steps = indptr.shape[0] - 1
    total = indptr[-1] - indptr[0]
    out_ptr = np.zeros(steps + 1, np.int64)
    out_idx = np.empty(total, np.int64)
    out_val = np.empty(total, value.dtype)
    n = 0
    for k in range(steps):
        for e in range(indptr[k], indptr[k + 1]):
            j = index[e]
            if keep[j]:
                out_idx[n] = j
                out_val[n] = value[e] * scale
                n += 1
        out_ptr[k + 1] = n
    return out_ptr, out_idx[:n], out_val[:n]
