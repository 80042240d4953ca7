"""2-D convolution as an event scatter."""

import numpy as np
from numba import njit, uint64

from eventsim.kernels.geometry import position, reached


@njit(cache=True, nogil=True)
def conv_scatter(cur, indptr, index, value, weight, in_hw, out_hw, stride, padding):
    """Add the currents of a window of input events through a 2-D convolution.

    Convolution (cross-correlation) read from the input side: an event of value
    v at input ``(c, y, x)`` reaches output ``(o, oy, ox)`` through tap
    ``(ky, kx) = (y + ph - oy*sh, x + pw - ox*sw)`` whenever that tap lies in the
    kernel, and adds ``v * W[o, c, ky, kx]`` for all output channels o::

        I[o, oy, ox] = sum_{c, ky, kx} W[o, c, ky, kx] * s[c, oy*sh + ky - ph, ox*sw + kx - pw]

    Parameters
    ----------
    cur : (K, Ho*Wo*Co) float array, channel-last, accumulated into.
    indptr, index, value : the window's events (see :mod:`eventsim.kernels`).
    weight : (Ci, kh, kw, Co) float array, C-contiguous: the layer's
        ``(Co, Ci, kh, kw)`` weights with the output channel moved last, so each
        reached output position takes one contiguous vector add.
    in_hw, out_hw, stride, padding : (int, int) pairs.

    Returns
    -------
    int
        SynOps: the number of (event, synapse) pairs, i.e. the in-bounds taps
        reached times Co, borders and strides included.
    """
    kh, kw, co = weight.shape[1], weight.shape[2], weight.shape[3]
    h, w = in_hw
    ho, wo = out_hw
    sh, sw = stride
    ph, pw = padding
    plane = h * w
    row_size = cur.shape[1]
    # Flat views and unsigned offsets: Numba wraps negative indices, and that
    # check, on signed offsets it cannot prove non-negative, keeps LLVM from
    # vectorising the channel loop (about 2x slower).
    if not cur.flags.c_contiguous:
        # ravel() of a strided array is a copy: the sums would be lost.
        raise ValueError("conv_scatter: the current buffer must be C-contiguous")
    flat_cur = cur.ravel()
    # The taps reversed along x: along a row of outputs, ox ascending, an
    # event meets the taps kx = tx - ox*sw descending; reversed, they ascend
    # with the outputs, so with stride 1 the whole row is one contiguous run
    # of (outputs x channels) in both arrays, one long vector loop instead of
    # one short loop per output.
    flat_w = np.empty_like(weight)
    for kx in range(kw):
        flat_w[:, :, kw - 1 - kx, :] = weight[:, :, kx, :]
    flat_w = flat_w.ravel()
    n_out = uint64(co)
    w_step = uint64(sw * co)
    synops = 0
    for k in range(indptr.shape[0] - 1):
        for e in range(indptr[k], indptr[k + 1]):
            j = index[e]
            v = value[e]
            c, y, x = position(j, plane, w)
            ty = y + ph  # position in the padded map
            tx = x + pw
            oy_lo, oy_hi = reached(ty, kh, sh, ho)
            ox_lo, ox_hi = reached(tx, kw, sw, wo)
            n_ox = max(0, ox_hi - ox_lo + 1)
            runs, run = (1, uint64(n_ox * co)) if sw == 1 else (n_ox, n_out)
            for oy in range(oy_lo, oy_hi + 1):
                ky = ty - oy * sh
                out_at = uint64(k * row_size + (oy * wo + ox_lo) * co)
                w_at = uint64(((c * kh + ky) * kw + kw - 1 - (tx - ox_lo * sw)) * co)
                for r in range(runs):
                    for i in range(run):
                        flat_cur[out_at + i] += v * flat_w[w_at + i]
                    out_at += n_out
                    w_at += w_step
            synops += max(0, oy_hi - oy_lo + 1) * n_ox * co
    return synops


@njit(cache=True, nogil=True)
def conv_weight_grad(grad_w, indptr, index, value, delta, in_hw, out_hw, stride, padding):
    """Add the weight gradient of a 2-D convolution, read from the input events.

    The transpose of :func:`conv_scatter` with respect to the weights: every
    pair (input event, reached output) that added ``v * W[o, c, ky, kx]`` to the
    current now adds ``v * D[o, oy, ox]`` to the gradient of that tap::

        dW[o, c, ky, kx] += sum_{oy, ox} D[o, oy, ox] * s[c, oy*sh + ky - ph, ox*sw + kx - pw]

    so the cost is that of the forward scatter (SynOps), not of a dense
    correlation (Lee et al. 2020, eq. 26: the delta correlated with the input).
    As in :func:`conv_scatter`, the gradient is accumulated with its taps
    reversed along x, so that with stride 1 an event's row of reached outputs
    is one contiguous run in both the delta and the gradient; each tap still
    sums its terms in event order.

    Parameters
    ----------
    grad_w : (Ci, kh, kw, Co) float array, C-contiguous, accumulated into.
    indptr, index, value : the input events of K frames.
    delta : (K, Ho*Wo*Co) float array, channel-last: dL/dI of each frame.
    """
    kh, kw, co = grad_w.shape[1], grad_w.shape[2], grad_w.shape[3]
    h, w = in_hw
    ho, wo = out_hw
    sh, sw = stride
    ph, pw = padding
    plane = h * w
    row_size = delta.shape[1]
    if not grad_w.flags.c_contiguous:
        raise ValueError("conv_weight_grad: the gradient buffer must be C-contiguous")
    flat_d = delta.ravel()
    reversed_g = grad_w[:, :, ::-1, :].copy()
    flat_g = reversed_g.ravel()
    n_out = uint64(co)
    g_step = uint64(sw * co)
    for k in range(indptr.shape[0] - 1):
        for e in range(indptr[k], indptr[k + 1]):
            v = value[e]
            c, y, x = position(index[e], plane, w)
            ty = y + ph
            tx = x + pw
            oy_lo, oy_hi = reached(ty, kh, sh, ho)
            ox_lo, ox_hi = reached(tx, kw, sw, wo)
            n_ox = max(0, ox_hi - ox_lo + 1)
            runs, run = (1, uint64(n_ox * co)) if sw == 1 else (n_ox, n_out)
            for oy in range(oy_lo, oy_hi + 1):
                ky = ty - oy * sh
                d_at = uint64(k * row_size + (oy * wo + ox_lo) * co)
                g_at = uint64(((c * kh + ky) * kw + kw - 1 - (tx - ox_lo * sw)) * co)
                for r in range(runs):
                    for i in range(run):
                        flat_g[g_at + i] += v * flat_d[d_at + i]
                    d_at += n_out
                    g_at += g_step
    grad_w[:] = reversed_g[:, :, ::-1, :]


@njit(cache=True, nogil=True)
def conv_transpose(grad_in, delta, weight, in_hw, out_hw, stride, padding):
    """Add the input gradient of a 2-D convolution (its adjoint) for K frames.

    ``dL/ds[c, y, x] = sum_{o, oy, ox} W[o, c, ky, kx] * D[o, oy, ox]`` over the
    outputs whose window holds ``(y, x)`` at tap ``(ky, kx)``; inputs no output
    reaches (stride larger than the kernel) get nothing.

    Computed as the scatter of the delta into the *padded* input map: output
    ``(oy, ox)`` adds ``W[o, c, ky, kx] * D[o, oy, ox]`` at padded position
    ``(oy*sh + ky, ox*sw + kx)``, always inside the padded map, so no tap needs
    a bounds check; the border is cut off at the end. Per frame the delta is
    laid out channel-first with rows of ``sh * m`` floats and the padded map
    with rows of ``sw * m`` (m large enough for both widths), so delta element
    i of a channel lands at ``i * sw`` plus the tap's offset: one tap is one
    vector loop over a whole output plane (contiguous for stride 1), and the
    zero columns past the delta's width add 0 into the cut-off border. The
    loop body takes 4 output channels into 2 input channels at once (8
    multiply-adds per 4 delta loads and 2 map updates: the dense delta of a
    surrogate gradient makes this a compute-bound kernel); the channel counts
    are padded with zero weights and zero deltas to whole blocks.

    Order of summation, fixed whatever the thread count: blocks of 4 output
    channels ascending, then ky, then kx, each adding
    ``(w0*d0 + w1*d1) + (w2*d2 + w3*d3)``. Frames whose delta is all 0, and
    blocks of output channels whose delta is all 0 in a frame, are skipped.

    Parameters
    ----------
    grad_in : (K, H*W*Ci) float array, channel-last, accumulated into.
    delta : (K, Ho*Wo*Co) float array, channel-last.
    weight : (Co, Ci, kh, kw) float array: the layer's weights.
    """
    co, ci, kh, kw = weight.shape
    h, w = in_hw
    ho, wo = out_hw
    sh, sw = stride
    ph, pw = padding
    if not grad_in.flags.c_contiguous:
        raise ValueError("conv_transpose: the gradient buffer must be C-contiguous")
    co_b, ci_b = -(-co // 4) * 4, -(-ci // 2) * 2
    blocked = np.zeros((co_b, ci_b, kh, kw), grad_in.dtype)
    blocked[:co, :ci] = weight
    m = max(-(-wo // sh), -(-(w + 2 * pw) // sw))
    d_row, p_row = sh * m, sw * m  # row strides: delta, padded map
    run = uint64((ho - 1) * d_row + wo)  # delta floats from the first output to the last
    d_plane = ho * d_row
    # Rows of the padded map: all that an input reads, and all that the last
    # output's run reaches at the largest tap.
    p_plane = max(h + 2 * ph, (ho - 1) * sh + kh) * p_row + kw
    dpad = np.zeros(co_b * d_plane, grad_in.dtype)
    pad = np.empty(ci_b * p_plane, grad_in.dtype)
    live = np.empty(co_b // 4, np.bool_)
    flat_in = grad_in.ravel()
    step = uint64(sw)
    for k in range(delta.shape[0]):
        live[:] = False
        for oy in range(ho):
            for ox in range(wo):
                d_at = (oy * wo + ox) * co
                to = oy * d_row + ox
                for o in range(co):
                    d = delta[k, d_at + o]
                    dpad[o * d_plane + to] = d
                    if d != 0:
                        live[o // 4] = True
        if not live.any():
            continue
        pad[:] = 0
        for ob in range(co_b // 4):
            if live[ob]:
                _block_into_map(pad, dpad, blocked, 4 * ob, d_plane, p_plane, p_row, run, step)
        for y in range(h):
            for x in range(w):
                in_at = uint64(k * grad_in.shape[1] + (y * w + x) * ci)
                p_at = (y + ph) * p_row + x + pw
                for c in range(ci):
                    flat_in[in_at + c] += pad[c * p_plane + p_at]


@njit(cache=True, nogil=True)
def _block_into_map(pad, dpad, blocked, o, d_plane, p_plane, p_row, run, step):
    """One block of 4 output channels (o..o+3) of :func:`conv_transpose` into the padded map."""
    ci_b, kh, kw = blocked.shape[1], blocked.shape[2], blocked.shape[3]
    d0 = uint64(o * d_plane)
    d1, d2, d3 = d0 + uint64(d_plane), d0 + uint64(2 * d_plane), d0 + uint64(3 * d_plane)
    for c in range(0, ci_b, 2):
        for ky in range(kh):
            for kx in range(kw):
                w0, w1 = blocked[o, c, ky, kx], blocked[o + 1, c, ky, kx]
                w2, w3 = blocked[o + 2, c, ky, kx], blocked[o + 3, c, ky, kx]
                v0, v1 = blocked[o, c + 1, ky, kx], blocked[o + 1, c + 1, ky, kx]
                v2, v3 = blocked[o + 2, c + 1, ky, kx], blocked[o + 3, c + 1, ky, kx]
                at = uint64(c * p_plane + ky * p_row + kx)
                bt = at + uint64(p_plane)
                for i in range(run):
                    a, b, e, f = dpad[d0 + i], dpad[d1 + i], dpad[d2 + i], dpad[d3 + i]
                    pad[at + i * step] += (w0 * a + w1 * b) + (w2 * e + w3 * f)
                    pad[bt + i * step] += (v0 * a + v1 * b) + (v2 * e + v3 * f)
