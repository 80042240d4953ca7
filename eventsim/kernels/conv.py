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
    flat_d = delta.ravel()
    flat_g = grad_w.ravel()
    n_out = uint64(co)
    for k in range(indptr.shape[0] - 1):
        for e in range(indptr[k], indptr[k + 1]):
            v = value[e]
            c, y, x = position(index[e], plane, w)
            ty = y + ph
            tx = x + pw
            oy_lo, oy_hi = reached(ty, kh, sh, ho)
            ox_lo, ox_hi = reached(tx, kw, sw, wo)
            for oy in range(oy_lo, oy_hi + 1):
                ky = ty - oy * sh
                for ox in range(ox_lo, ox_hi + 1):
                    kx = tx - ox * sw
                    d_at = uint64(k * row_size + (oy * wo + ox) * co)
                    w_at = uint64(((c * kh + ky) * kw + kx) * co)
                    for o in range(n_out):
                        flat_g[w_at + o] += v * flat_d[d_at + o]


@njit(cache=True, nogil=True)
def conv_transpose(grad_in, delta, weight_b, in_hw, out_hw, stride, padding):
    """Add the input gradient of a 2-D convolution (its adjoint) for K frames.

    ``dL/ds[c, y, x] = sum_{o, oy, ox} W[o, c, ky, kx] * D[o, oy, ox]`` over the
    outputs whose window holds ``(y, x)`` at tap ``(ky, kx)``; inputs no output
    reaches (stride larger than the kernel) get nothing. Output channels whose
    delta is 0 are skipped, so sparse deltas cost less.

    Parameters
    ----------
    grad_in : (K, H*W*Ci) float array, channel-last, accumulated into.
    delta : (K, Ho*Wo*Co) float array, channel-last.
    weight_b : (kh, kw, Co, Ci) float array, C-contiguous: the ``(Co, Ci, kh, kw)``
        weights laid out so that one output channel's taps are a contiguous
        vector over input channels.
    """
    kh, kw, co, ci = weight_b.shape
    h, w = in_hw
    ho, wo = out_hw
    sh, sw = stride
    ph, pw = padding
    if not grad_in.flags.c_contiguous:
        raise ValueError("conv_transpose: the gradient buffer must be C-contiguous")
    flat_in = grad_in.ravel()
    flat_w = weight_b.ravel()
    n_in = uint64(ci)
    in_row = grad_in.shape[1]
    for k in range(delta.shape[0]):
        for oy in range(ho):
            for ox in range(wo):
                d_at = (oy * wo + ox) * co
                for ky in range(kh):
                    y = oy * sh + ky - ph
                    if y < 0 or y >= h:
                        continue
                    for kx in range(kw):
                        x = ox * sw + kx - pw
                        if x < 0 or x >= w:
                            continue
                        in_at = uint64(k * in_row + (y * w + x) * ci)
                        for o in range(co):
                            d = delta[k, d_at + o]
                            if d == 0:
                                continue
                            w_at = uint64(((ky * kw + kx) * co + o) * ci)
                            for c in range(n_in):
                                flat_in[in_at + c] += d * flat_w[w_at + c]
