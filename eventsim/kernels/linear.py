"""Fully connected layer as an event scatter."""

from numba import njit

from eventsim.kernels.currents import mark_blocks


@njit(cache=True, nogil=True)
def linear_scatter(cur, indptr, index, value, weight_t, delay_t=None, limit=0, flags=None, shift=0):
    """Add the currents of a window of input events through a linear layer.

    ``I[o] = sum_i W[o, i] * s[i]``: an event of value v at input i adds
    ``v * W[:, i]``, stored as the contiguous row ``weight_t[i]``. With
    synaptic delays (docs/semantics.md, "Delays"),
    ``I[t, o] = sum_i W[o, i] * s[t - d[o, i], i]``: the event of step k
    adds ``v * W[o, i]`` to row ``k + d[o, i]``, where that row is below
    ``limit`` (the rows past T are dropped and not counted).

    Parameters
    ----------
    cur : (K', No) float array, accumulated into (K' >= K + max d with delays).
    indptr, index, value : the window's events.
    weight_t : (Ni, No) float array, the transposed ``(No, Ni)`` weights.
    delay_t : (Ni, No) int64 array, optional
        The transposed delays in steps; None: none.
    limit : int
        With delays, the first row of ``cur`` that is at or past T.
    flags, shift : optional, without delays only
        The blocks of neurons reached (every block of a step with an event),
        set as :func:`eventsim.kernels.conv_scatter` sets them.

    Returns
    -------
    int
        SynOps: events times No (without delays); with delays, the
        synapses whose current lands before T.
    """
    no = weight_t.shape[1]
    if delay_t is not None:
        ops = 0
        for k in range(indptr.shape[0] - 1):
            for e in range(indptr[k], indptr[k + 1]):
                i = index[e]
                v = value[e]
                for o in range(no):
                    row = k + delay_t[i, o]
                    if row < limit:
                        cur[row, o] += v * weight_t[i, o]
                        ops += 1
        return ops
    for k in range(indptr.shape[0] - 1):
        if flags is not None and indptr[k + 1] > indptr[k] and no > 0:
            mark_blocks(flags, k, 0, no, shift)
        for e in range(indptr[k], indptr[k + 1]):
            i = index[e]
            v = value[e]
            for o in range(no):
                cur[k, o] += v * weight_t[i, o]
    return (indptr[-1] - indptr[0]) * no


@njit(cache=True, nogil=True)
def linear_weight_grad(grad_wt, indptr, index, value, delta, delay_t=None):
    """Add the weight gradient of a linear layer, read from the input events.

    The transpose of :func:`linear_scatter`: an input event of value v at i in
    frame k adds ``v * D[k, :]`` to row i of the transposed gradient, i.e.
    ``dW[o, i] += D[k, o] * s[k, i]`` (Lee et al. 2020, eq. 26); with delays
    ``D[k + d[o, i], o]``, 0 past the last frame.

    Parameters
    ----------
    grad_wt : (Ni, No) float array, accumulated into (the transposed gradient).
    indptr, index, value : the input events of K frames.
    delta : (K, No) float array: dL/dI of each frame.
    delay_t : (Ni, No) int64 array, optional: the transposed delays (frames are steps).
    """
    no = grad_wt.shape[1]
    if delay_t is not None:
        frames = delta.shape[0]
        for k in range(indptr.shape[0] - 1):
            for e in range(indptr[k], indptr[k + 1]):
                i = index[e]
                v = value[e]
                for o in range(no):
                    row = k + delay_t[i, o]
                    if row < frames:
                        grad_wt[i, o] += v * delta[row, o]
        return
    for k in range(indptr.shape[0] - 1):
        for e in range(indptr[k], indptr[k + 1]):
            i = index[e]
            v = value[e]
            for o in range(no):
                grad_wt[i, o] += v * delta[k, o]


@njit(cache=True, nogil=True)
def linear_transpose(grad_in, delta, weight, delay=None):
    """Add the input gradient of a linear layer (its adjoint) for K frames.

    ``dL/ds[k, i] = sum_o D[k, o] * W[o, i]``, summed over o in ascending
    order, one contiguous row of W per output; outputs whose delta is 0 are
    skipped, so sparse deltas cost less. A loop rather than a BLAS product:
    its order of summation is fixed, whatever threads BLAS would use. With
    delays, ``D[k, o]`` goes to ``dL/ds[k - d[o, i], i]`` (none before frame 0).

    Parameters
    ----------
    grad_in : (K, Ni) float array, accumulated into.
    delta : (K, No) float array.
    weight : (No, Ni) float array, the layer's weights.
    delay : (No, Ni) int64 array, optional: the delays (frames are steps).
    """
    n_in = weight.shape[1]
    for k in range(delta.shape[0]):
        for o in range(delta.shape[1]):
            d = delta[k, o]
            if d == 0:
                continue
            if delay is None:
                for i in range(n_in):
                    grad_in[k, i] += d * weight[o, i]
            else:
                for i in range(n_in):
                    row = k - delay[o, i]
                    if row >= 0:
                        grad_in[row, i] += d * weight[o, i]
