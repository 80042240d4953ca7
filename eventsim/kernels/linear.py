"""Fully connected layer as an event scatter."""

import numpy as np
from numba import njit, uint64

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
        linear_step(cur, k, indptr, index, value, k, weight_t, flags, shift)
    return (indptr[-1] - indptr[0]) * no


@njit(cache=True, nogil=True, inline="always")
def linear_step(cur, r, indptr, index, value, k, weight_t, flags, shift):
    """Add the currents of step ``k``'s events to row ``r`` of ``cur`` (and flag its blocks, every one where an event came)."""
    no = weight_t.shape[1]
    if flags is not None and indptr[k + 1] > indptr[k] and no > 0:
        mark_blocks(flags, r, 0, no, shift)
    for e in range(indptr[k], indptr[k + 1]):
        i = index[e]
        v = value[e]
        for o in range(no):
            cur[r, o] += v * weight_t[i, o]


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


#: Bytes of W one block of columns of :func:`linear_transpose` spans: about a
#: core's L2 (1-2 MiB), so that the block stays there while every frame reads
#: it (all of fc1's 200 x 3200 float32 weights, 2.5 MB, would be read from
#: memory once per frame).
BLOCK_BYTES = 1 << 20
#: Fewest columns of a block: with many outputs a block of BLOCK_BYTES would
#: hold only a few vectors of each row, and the loop would cost more than it saves.
MIN_BLOCK_COLUMNS = 256
#: Outputs one sweep over a block's columns adds (the rows :func:`_add_group`
#: takes): each gradient value is then loaded and stored once per 8
#: multiply-adds instead of once per multiply-add.
GROUP = 8


@njit(cache=True, nogil=True)
def linear_transpose(grad_in, delta, weight, delay=None):
    """Add the input gradient of a linear layer (its adjoint) for K frames.

    ``dL/ds[k, i] = sum_o D[k, o] * W[o, i]``, added to ``grad_in[k, i]`` one
    output at a time, o ascending; outputs whose delta is 0 (or -0) are
    skipped, so sparse deltas cost less (and a skipped ``0 * W`` neither
    turns a -0 gradient into +0 nor adds the NaN of an infinite weight). A
    loop rather than a BLAS product: its order of summation is fixed,
    whatever threads BLAS would use. With delays, ``D[k, o]`` goes to
    ``dL/ds[k - d[o, i], i]`` (none before frame 0).

    Without delays the columns are taken in blocks of :data:`BLOCK_BYTES` of
    W (at least :data:`MIN_BLOCK_COLUMNS`), and all frames sweep one block
    before the next, so W is read from memory once per call rather than once
    per frame; each sweep adds :data:`GROUP` outputs, ``(((g + d0*w0) + d1*w1)
    + ...)``: the additions of every element and their order are those of
    the loop over o, only regrouped over the elements (multiplications and
    additions rounded one by one, no fused multiply-add). Only where two
    NaNs of different sign meet is the result's sign left to the operand
    order the compiler picks (IEEE 754 does not fix it). The delayed case
    keeps the plain loop: its frame depends on the element, so a block of
    columns does not add into one row.

    Parameters
    ----------
    grad_in : (K, Ni) float array, accumulated into.
    delta : (K, No) float array.
    weight : (No, Ni) float array, the layer's weights.
    delay : (No, Ni) int64 array, optional: the delays (frames are steps).
    """
    frames, n_out = delta.shape
    n_in = weight.shape[1]
    if delay is not None:
        for k in range(frames):
            for o in range(n_out):
                d = delta[k, o]
                if d == 0:
                    continue
                for i in range(n_in):
                    row = k - delay[o, i]
                    if row >= 0:
                        grad_in[row, i] += d * weight[o, i]
        return
    # The nonzero deltas of each frame and their outputs, ascending.
    live = np.empty((frames, n_out), np.int64)
    live_delta = np.empty((frames, n_out), delta.dtype)
    n_live = np.zeros(frames, np.int64)
    for k in range(frames):
        n = 0
        for o in range(n_out):
            if delta[k, o] != 0:
                live[k, n] = o
                live_delta[k, n] = delta[k, o]
                n += 1
        n_live[k] = n
    columns = max(MIN_BLOCK_COLUMNS, BLOCK_BYTES // max(1, n_out * weight.itemsize))
    for first in range(0, n_in, columns):
        # Unsigned bounds: the loops over the columns then need no check for
        # negative indices, which would keep LLVM from vectorising them.
        lo, hi = uint64(first), uint64(min(first + columns, n_in))
        for k in range(frames):
            g, outs, ds = grad_in[k], live[k], live_delta[k]
            j = 0
            while j + GROUP <= n_live[k]:
                _add_group(g, weight, outs[j:j + GROUP], ds[j:j + GROUP], lo, hi)
                j += GROUP
            for j in range(j, n_live[k]):
                w = weight[outs[j]]
                d = ds[j]
                for i in range(lo, hi):
                    g[i] += d * w[i]


@njit(cache=True, nogil=True, inline="always")
def _add_group(g, weight, outs, ds, lo, hi):
    """``g[i] += d_j * W[o_j, i]`` for the :data:`GROUP` outputs in order, i in ``[lo, hi)``, one pass."""
    w0, w1, w2, w3 = weight[outs[0]], weight[outs[1]], weight[outs[2]], weight[outs[3]]
    w4, w5, w6, w7 = weight[outs[4]], weight[outs[5]], weight[outs[6]], weight[outs[7]]
    d0, d1, d2, d3, d4, d5, d6, d7 = ds[0], ds[1], ds[2], ds[3], ds[4], ds[5], ds[6], ds[7]
    for i in range(lo, hi):
        first = ((g[i] + d0 * w0[i]) + d1 * w1[i]) + d2 * w2[i]
        g[i] = ((((first + d3 * w3[i]) + d4 * w4[i]) + d5 * w5[i]) + d6 * w6[i]) + d7 * w7[i]
