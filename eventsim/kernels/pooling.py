"""Pooling kernels: fixed-weight window sums and max pooling."""

import numpy as np
from numba import njit, uint64

from eventsim.kernels.buffers import grown
from eventsim.kernels.geometry import position, reached


@njit(cache=True, nogil=True)
def pool_scatter(cur, indptr, index, value, weight, channels, in_hw, out_hw, kernel, stride, flags=None, shift=0):
    """Add the currents of a window of events through a fixed-weight pool.

    Sum pooling (``weight`` = 1) and linear average pooling (``weight`` =
    1/(kh*kw), rounded to the dtype once) over kh x kw windows with stride
    (sh, sw), no padding::

        I[c, oy, ox] = sum_{i<kh, j<kw} weight * s[c, oy*sh + i, ox*sw + j]

    An event at ``(c, y, x)`` reaches every window that contains it (more than
    one when the stride is smaller than the window). With a 1x1 window and
    weight 1 this is the strided identity ``I[c, oy, ox] = s[c, oy*sh, ox*sw]``
    (residual skips, and the currents of a neuron layer after no synapse).

    Parameters
    ----------
    cur : (K, Ho*Wo*C) float array, channel-last, accumulated into.
    weight : float scalar of the buffer's dtype.
    flags, shift : optional
        The blocks of neurons reached, set as :func:`eventsim.kernels.conv_scatter` sets them.

    Returns
    -------
    int
        Pooling ops: the number of (event, window) pairs.
    """
    tables = pool_tables(channels, in_hw, out_hw, kernel, stride)
    ops = 0
    for k in range(indptr.shape[0] - 1):
        ops += pool_step(cur, k, indptr, index, value, k, weight, tables, flags, shift)
    return ops


@njit(cache=True, nogil=True, inline="always")
def pool_tables(channels, in_hw, out_hw, kernel, stride):
    """The lookup tables of :func:`pool_step`, with the map's sizes.

    The reached windows of every input position, looked up per event: an
    integer division costs more than the add it serves, and these tables
    leave one division (the channel) per event.
    """
    h, w = in_hw
    row_lo, row_hi = _reach_table(h, kernel[0], stride[0], out_hw[0])
    col_lo, col_hi = _reach_table(w, kernel[1], stride[1], out_hw[1])
    row_of = np.empty(h * w, np.int64)
    for y in range(h):
        for x in range(w):
            row_of[y * w + x] = y
    return row_lo, row_hi, col_lo, col_hi, row_of, channels, w, out_hw[1]


@njit(cache=True, nogil=True, inline="always")
def pool_step(cur, r, indptr, index, value, k, weight, tables, flags, shift):
    """Add the currents of step ``k``'s events to row ``r`` of ``cur`` (and flag its blocks); return the pooling ops."""
    row_lo, row_hi, col_lo, col_hi, row_of, channels, w, wo = tables
    plane = row_of.shape[0]
    ops = 0
    for e in range(indptr[k], indptr[k + 1]):
        j = index[e]
        c = j // plane
        rest = j - c * plane
        y = row_of[rest]
        x = rest - y * w
        contrib = value[e] * weight
        oy_lo, oy_hi = row_lo[y], row_hi[y]
        ox_lo, ox_hi = col_lo[x], col_hi[x]
        for oy in range(oy_lo, oy_hi + 1):
            for ox in range(ox_lo, ox_hi + 1):
                at = (oy * wo + ox) * channels + c
                cur[r, at] += contrib
                if flags is not None:
                    flags[r, at >> shift] = 1
        ops += max(0, oy_hi - oy_lo + 1) * max(0, ox_hi - ox_lo + 1)
    return ops


@njit(cache=True, nogil=True)
def _reach_table(n_in, kernel, stride, n_out):
    """:func:`~eventsim.kernels.geometry.reached` of every position ``0 .. n_in - 1`` along one axis."""
    lo = np.empty(n_in, np.int64)
    hi = np.empty(n_in, np.int64)
    for pos in range(n_in):
        lo[pos], hi[pos] = reached(pos, kernel, stride, n_out)
    return lo, hi


@njit(cache=True, nogil=True)
def maxpool_events(indptr, index, value, channels, in_hw, out_hw, kernel, stride):
    """Max pooling on events: per step, the maximum value over each window.

    ``out[c, oy, ox] = max_{i<kh, j<kw} s[c, oy*sh + i, ox*sw + j]`` where
    positions without an event hold 0 (docs/semantics.md, "Synapses and pooling": on unit spikes this is the
    OR of the window). Outputs equal to 0 emit no event.

    Returns
    -------
    (indptr, index, value, ops)
        The output events (C-order indices over ``(C, Ho, Wo)``, row pointers
        from 0) and the number of (event, window) pairs visited.
    """
    h, w = in_hw
    ho, wo = out_hw
    kh, kw = kernel
    sh, sw = stride
    plane = h * w
    oplane = ho * wo
    n_out = channels * oplane
    window_size = kh * kw
    best = np.zeros(n_out, value.dtype)
    seen = np.zeros(n_out, np.int64)
    touched = np.empty(n_out, np.int64)
    steps = indptr.shape[0] - 1
    out_ptr = np.zeros(steps + 1, np.int64)
    out_idx = np.empty(64, np.int64)
    out_val = np.empty(64, value.dtype)
    n = 0
    ops = 0
    for k in range(steps):
        n_touched = 0
        for e in range(indptr[k], indptr[k + 1]):
            c, y, x = position(index[e], plane, w)
            v = value[e]
            oy_lo, oy_hi = reached(y, kh, sh, ho)
            ox_lo, ox_hi = reached(x, kw, sw, wo)
            for oy in range(oy_lo, oy_hi + 1):
                for ox in range(ox_lo, ox_hi + 1):
                    o = c * oplane + oy * wo + ox
                    if seen[o] == 0:
                        touched[n_touched] = o
                        n_touched += 1
                        best[o] = v
                    elif v > best[o]:
                        best[o] = v
                    seen[o] += 1
                    ops += 1
        for i in range(n_touched):
            o = touched[i]
            m = best[o]
            # A window not fully covered by events also holds zeros.
            if seen[o] < window_size and m < 0:
                m = 0
            if m != 0:
                if n == out_idx.shape[0]:
                    out_idx = grown(out_idx)
                    out_val = grown(out_val)
                out_idx[n] = o
                out_val[n] = m
                n += 1
            seen[o] = 0
        out_ptr[k + 1] = n
    return out_ptr, out_idx[:n], out_val[:n], ops


@njit(cache=True, nogil=True)
def pool_transpose(grad_in, delta, weight, channels, in_hw, out_hw, kernel, stride):
    """Add the input gradient of a fixed-weight pool (its adjoint) for K frames.

    ``dL/ds[c, y, x] = sum weight * D[c, oy, ox]`` over the windows holding
    ``(y, x)``, added to ``grad_in`` one window at a time in row-major window
    order (oy, then ox, ascending); positions in no window get nothing.

    Loops over the rows of windows, then the window's input rows, then the
    windows along the row, so that one frame's gradient row is written in
    runs of ``kw * C`` consecutive floats (all of an input row's windows when
    kernel == stride); the channel loop is vectorised. Each input value still
    takes its windows' terms in the order above, so overlapping windows sum
    as a loop over windows would.

    Parameters
    ----------
    grad_in : (K, H*W*C) float array, channel-last, accumulated into.
    delta : (K, Ho*Wo*C) float array, channel-last.
    weight : float scalar of the buffers' dtype (1, or 1/(kh*kw)).
    """
    w = in_hw[1]
    ho, wo = out_hw
    kh, kw = kernel
    sh, sw = stride
    # Unsigned offsets: the channel loop then needs no check for negative
    # indices, which would keep LLVM from vectorising it.
    n_channels = uint64(channels)
    for k in range(delta.shape[0]):
        g, d = grad_in[k], delta[k]
        for oy in range(ho):
            for i in range(kh):
                row = (oy * sh + i) * w
                for ox in range(wo):
                    d_at = uint64((oy * wo + ox) * channels)
                    for j in range(kw):
                        in_at = uint64((row + ox * sw + j) * channels)
                        for c in range(n_channels):
                            g[in_at + c] += weight * d[d_at + c]


@njit(cache=True, nogil=True)
def maxpool_route(grad_in, delta, indptr, index, value, channels, in_hw, out_hw, kernel, stride):
    """Add the input gradient of max pooling: each window's gradient to its first maximum.

    Per frame k, the window of output ``(c, oy, ox)`` holds the frame's input
    values (0 where there is no event); its gradient goes whole to the first
    position, in row-major window order, whose value equals the window maximum
    (docs/semantics.md, "Gradient rules"; PyTorch's ``max_pool2d`` picks the same).

    Parameters
    ----------
    grad_in : (K, H*W*C) float array, channel-last, accumulated into.
    delta : (K, Ho*Wo*C) float array, channel-last.
    indptr, index, value : the input events of the K frames (C-order indices).
    """
    h, w = in_hw
    ho, wo = out_hw
    kh, kw = kernel
    sh, sw = stride
    plane = h * w
    frame = np.zeros(plane * channels, value.dtype)  # channel-last input values of one frame
    for k in range(delta.shape[0]):
        for e in range(indptr[k], indptr[k + 1]):
            c, y, x = position(index[e], plane, w)
            frame[(y * w + x) * channels + c] = value[e]
        for oy in range(ho):
            for ox in range(wo):
                d_at = (oy * wo + ox) * channels
                for c in range(channels):
                    d = delta[k, d_at + c]
                    if d == 0:
                        continue
                    best_at = ((oy * sh) * w + ox * sw) * channels + c
                    for i in range(kh):
                        for j in range(kw):
                            at = ((oy * sh + i) * w + ox * sw + j) * channels + c
                            if frame[at] > frame[best_at]:
                                best_at = at
                    grad_in[k, best_at] += d
        for e in range(indptr[k], indptr[k + 1]):
            c, y, x = position(index[e], plane, w)
            frame[(y * w + x) * channels + c] = 0
