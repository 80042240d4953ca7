"""2-D convolution as an event scatter."""

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
    flat_w = weight.ravel()
    n_out = uint64(co)
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
            for oy in range(oy_lo, oy_hi + 1):
                ky = ty - oy * sh
                for ox in range(ox_lo, ox_hi + 1):
                    kx = tx - ox * sw
                    out_at = uint64(k * row_size + (oy * wo + ox) * co)
                    w_at = uint64(((c * kh + ky) * kw + kx) * co)
                    for o in range(n_out):
                        flat_cur[out_at + o] += v * flat_w[w_at + o]
            synops += max(0, oy_hi - oy_lo + 1) * max(0, ox_hi - ox_lo + 1) * co
    return synops
