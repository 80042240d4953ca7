"""2-D convolution as an event scatter."""

import numpy as np
from llvmlite import ir
from numba import njit, types, uint64
from numba.core import cgutils
from numba.extending import intrinsic

from eventsim.kernels.currents import mark_blocks
from eventsim.kernels.geometry import position, reached


@njit(cache=True, nogil=True)
def conv_scatter(cur, indptr, index, value, weight, in_hw, out_hw, stride, padding, flags=None, shift=0):
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
    flags : (K, ceil(Ho*Wo*Co / 2^shift)) uint8 array, optional
        Set to 1 for every block of ``2^shift`` channel-last neurons of a step
        that this call adds a current to (:func:`eventsim.kernels.flagged_lif_window`
        skips the others); None: not kept.
    shift : int
        log2 of the block size of ``flags``.

    Returns
    -------
    int
        SynOps: the number of (event, synapse) pairs, i.e. the in-bounds taps
        reached times Co, borders and strides included.
    """
    # Flat views and unsigned offsets: Numba wraps negative indices, and that
    # check, on signed offsets it cannot prove non-negative, keeps LLVM from
    # vectorising the channel loop (about 2x slower).
    if not cur.flags.c_contiguous:
        # ravel() of a strided array is a copy: the sums would be lost.
        raise ValueError("conv_scatter: the current buffer must be C-contiguous")
    flat_cur = cur.ravel()
    geometry = conv_geometry(weight, in_hw, out_hw, stride, padding)
    flat_w = reversed_taps(weight)
    synops = 0
    for k in range(indptr.shape[0] - 1):
        synops += conv_step(flat_cur, k * cur.shape[1], indptr, index, value, k, flat_w, geometry)
    if flags is not None:
        # A pass of its own: in the loop above, the stores to the flags
        # would slow the adds down by a third (they might alias the buffer).
        for k in range(indptr.shape[0] - 1):
            conv_step_flags(flags, k, indptr, index, k, geometry, shift)
    return synops


@njit(cache=True, nogil=True, inline="always")
def conv_geometry(weight, in_hw, out_hw, stride, padding):
    """``(kh, kw, Co, H, W, Ho, Wo, sh, sw, ph, pw)`` of a convolution, for :func:`conv_step`."""
    return (weight.shape[1], weight.shape[2], weight.shape[3], in_hw[0], in_hw[1], out_hw[0], out_hw[1],
            stride[0], stride[1], padding[0], padding[1])


@njit(cache=True, nogil=True, inline="always")
def reversed_taps(weight):
    """The ``(Ci, kh, kw, Co)`` weights with the taps reversed along x, flat (see :func:`conv_step`)."""
    kw = weight.shape[2]
    flat_w = np.empty_like(weight)
    for kx in range(kw):
        flat_w[:, :, kw - 1 - kx, :] = weight[:, :, kx, :]
    return flat_w.ravel()


@njit(cache=True, nogil=True, inline="always")
def conv_step(flat_cur, at, indptr, index, value, k, flat_w, geometry):
    """Add the currents of step ``k``'s events to the channel-last row starting at ``flat_cur[at]``; return the SynOps.

    ``flat_w`` from :func:`reversed_taps`: along a row of outputs, ox
    ascending, an event meets the taps kx = tx - ox*sw descending; reversed,
    they ascend with the outputs, so with stride 1 the whole row is one
    contiguous run of (outputs x channels) in both arrays, one long vector
    loop instead of one short loop per output.
    """
    return event_runs(flat_cur, at, flat_w, indptr, index, value, k, geometry, False)


@njit(cache=True, nogil=True, inline="always")
def event_runs(outs, at, taps, indptr, index, value, k, geometry, into_taps):
    """Walk the (output, tap) pairs that step ``k``'s events reach; return the SynOps.

    Every pair meets an output ``outs[at + (oy*Wo + ox)*Co + o]`` and a tap of
    the x-reversed weights ``taps[((c*kh + ky)*kw + kw-1-kx)*Co + o]``, with
    ``ky = y + ph - oy*sh`` and ``kx = x + pw - ox*sw``. The forward
    (``into_taps`` False) adds ``v * tap`` to the output, the weight gradient
    (True) adds ``v * output`` (the delta) to the tap: the same walk read one
    way or the other, so the gradient costs what the scatter costs.
    """
    kh, kw, co, h, w, ho, wo, sh, sw, ph, pw = geometry
    plane = h * w
    n_out = uint64(co)
    tap_step = uint64(sw * co)
    synops = 0
    for e in range(indptr[k], indptr[k + 1]):
        c, y, x = position(index[e], plane, w)
        v = value[e]
        ty = y + ph  # position in the padded map
        tx = x + pw
        oy_lo, oy_hi = reached(ty, kh, sh, ho)
        ox_lo, ox_hi = reached(tx, kw, sw, wo)
        n_ox = max(0, ox_hi - ox_lo + 1)
        runs, run = (1, uint64(n_ox * co)) if sw == 1 else (n_ox, n_out)
        for oy in range(oy_lo, oy_hi + 1):
            ky = ty - oy * sh
            out_at = uint64(at + (oy * wo + ox_lo) * co)
            tap_at = uint64(((c * kh + ky) * kw + kw - 1 - (tx - ox_lo * sw)) * co)
            for r in range(runs):
                if into_taps:
                    for i in range(run):
                        taps[tap_at + i] += v * outs[out_at + i]
                else:
                    for i in range(run):
                        outs[out_at + i] += v * taps[tap_at + i]
                out_at += n_out
                tap_at += tap_step
        synops += max(0, oy_hi - oy_lo + 1) * n_ox * co
    return synops


@njit(cache=True, nogil=True, inline="always")
def conv_step_flags(flags, r, indptr, index, k, geometry, shift):
    """Flag, in row ``r`` of ``flags``, the blocks that step ``k``'s events reach (see :func:`conv_scatter`)."""
    kh, kw, co, h, w, ho, wo, sh, sw, ph, pw = geometry
    for e in range(indptr[k], indptr[k + 1]):
        _, y, x = position(index[e], h * w, w)
        oy_lo, oy_hi = reached(y + ph, kh, sh, ho)
        ox_lo, ox_hi = reached(x + pw, kw, sw, wo)
        if ox_hi >= ox_lo:  # the span of a row's runs, strided gaps included
            for oy in range(oy_lo, oy_hi + 1):
                mark_blocks(flags, r, (oy * wo + ox_lo) * co, (oy * wo + ox_hi + 1) * co, shift)


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
    if not grad_w.flags.c_contiguous:
        raise ValueError("conv_weight_grad: the gradient buffer must be C-contiguous")
    geometry = conv_geometry(grad_w, in_hw, out_hw, stride, padding)
    flat_d = delta.ravel()
    reversed_g = grad_w[:, :, ::-1, :].copy()
    flat_g = reversed_g.ravel()
    for k in range(indptr.shape[0] - 1):
        event_runs(flat_d, k * delta.shape[1], flat_g, indptr, index, value, k, geometry, True)
    grad_w[:] = reversed_g[:, :, ::-1, :]


#: Width of the vectors of :func:`conv_transpose`'s micro-kernel, in bytes: one
#: AVX-512 register (16 float32 or 8 float64 lanes). LLVM's loop vectoriser
#: keeps to 256-bit vectors on most AVX-512 cores; the micro-kernel names its
#: vector type itself, so it gets full registers there, and LLVM splits the
#: vectors where the core has only narrower registers (same results).
VECTOR_BYTES = 64
#: Chunks of ``lanes`` positions one call of the micro-kernel sums at once:
#: each broadcast weight then serves two vectors (one load per 16 arithmetic
#: operations instead of 8). Three or more would spill registers at 8 input
#: channels per tile.
CHUNKS = 2
#: Input channels of one tile: the micro-kernel keeps ``TILE x CHUNKS`` sums in
#: registers (16 of AVX-512's 32) next to the ``4 x CHUNKS`` delta vectors.
TILE = 8
#: Fields of a tap record: delta offset, weight offset, then one lane mask per chunk.
TAP_FIELDS = 2 + CHUNKS


@njit(cache=True, nogil=True)
def conv_transpose(grad_in, delta, weight, in_hw, out_hw, stride, padding):
    """Add the input gradient of a 2-D convolution (its adjoint) for K frames.

    ``dL/ds[c, y, x] = sum_{o, oy, ox} W[o, c, ky, kx] * D[o, oy, ox]`` over the
    outputs whose window holds ``(y, x)`` at tap ``(ky, kx) = (y + ph - oy*sh,
    x + pw - ox*sw)``; inputs no output reaches (stride larger than the
    kernel) get nothing.

    Computed as a gather over the input positions, ``lanes`` of them per
    vector (16 in float32, 8 in float64). Per frame the delta is copied
    channel-first into a *dilated* map (``D[o, oy, ox]`` at ``(oy*sh,
    ox*sw)``, zeros between and around) with rows of ``r = max(w, (wo - 1)*sw
    + 1)`` floats, and the input positions are numbered ``p = y*r + x`` the
    same way, so tap ``(ky, kx)`` of position p reads the map at ``p + (ph -
    ky)*r + pw - kx``: one vector load per tap for a whole run of positions,
    across row ends. Lanes whose column ``x + pw - kx`` lies outside the row
    would read the neighbouring row; their loads are masked to 0. No lane is
    spent on padding (r = w unless the padding exceeds half the kernel), only
    the last vector of a frame is partly empty, and every stride and padding
    takes the same path (a stride above 1 multiplies the taps that meet the
    zeros of the dilated map).

    Order of summation, fixed by the layer's shape whatever the thread
    count: for every input value, blocks of 4 output channels ascending,
    then ky, then kx, each adding ``(w0*d0 + w1*d1) + (w2*d2 + w3*d3)`` to a
    sum that starts at 0, the sum then added to ``grad_in``. Taps that meet
    no delta row for any position of a vector are skipped, the others add
    ``w * 0`` where they meet padding (which changes at most the sign of a
    zero sum). The order takes a multiplication and an addition per
    multiply-add (a fused multiply-add would round differently), so the
    arithmetic bounds the kernel: the micro-kernel (:func:`_tap_tile`)
    holds the sums of ``TILE`` input channels of ``CHUNKS`` vectors in
    registers across all taps of all output channels, with full AVX-512
    vectors where LLVM's own vectoriser would use half as wide. Frames
    whose delta is all 0, and blocks of output channels whose delta is all
    0 in a frame, are skipped.

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
    lanes = VECTOR_BYTES // grad_in.itemsize
    n_blocks = -(-co // 4)
    blocked = _blocked_weights(weight, n_blocks, grad_in.dtype)
    # The dilated map, one plane per output channel (padded to whole blocks):
    # `top` zero rows above the first delta row, so that the rows above the
    # input (y + ph - ky < 0) exist, and a margin of kw - 1 floats before the
    # first plane for the masked lanes of the first taps.
    hd, wd = (ho - 1) * sh + 1, (wo - 1) * sw + 1
    row = max(w, wd)
    top = max(0, kh - 1 - ph)
    margin = kw - 1
    plane = (top + max(hd, h + ph)) * row
    n_chunks = -(-(h * row) // lanes)
    # Past the last plane's first float: the plane itself, or the furthest
    # read, the last lane of the last chunk at tap (0, 0).
    last = max(plane, n_chunks * lanes + (ph + top) * row + pw)
    dmap = np.zeros(margin + (4 * n_blocks - 1) * plane + last, grad_in.dtype)
    taps, n_taps, n_groups = _tap_records(h, row, hd, kh, kw, sh, ph, pw, top, margin, ci, lanes, n_chunks)
    sums = np.empty(ci * n_chunks * lanes, grad_in.dtype)
    live = np.empty(n_blocks, np.int64)
    for k in range(delta.shape[0]):
        n_live = _live_blocks(live, delta[k], co)
        if n_live == 0:
            continue
        _into_dilated_map(dmap, delta[k], co, ho, wo, sh, sw, margin + top * row, row, plane)
        for g in range(n_groups):
            n_v = min(CHUNKS, n_chunks - g * CHUNKS)
            offsets = (g * CHUNKS * lanes, n_chunks * lanes, plane, kh * kw * ci * 4)
            _group_sums(sums, dmap, blocked, live, taps[g], (n_live, n_taps[g]), offsets, ci, n_v)
        _add_channel_last(grad_in[k], sums, h, w, ci, row, n_chunks * lanes)


@njit(cache=True, nogil=True)
def _blocked_weights(weight, n_blocks, dtype):
    """The weights as ``(block, ky, kx, c, 4)``, zeros past the last output channel.

    The 4 weights one tap of one input channel multiplies with the 4 delta
    vectors of a block of output channels lie together, and the taps follow
    in the micro-kernel's order.
    """
    co, ci, kh, kw = weight.shape
    blocked = np.zeros(n_blocks * kh * kw * ci * 4, dtype)
    for o in range(co):
        for c in range(ci):
            for ky in range(kh):
                for kx in range(kw):
                    blocked[(((o // 4 * kh + ky) * kw + kx) * ci + c) * 4 + o % 4] = weight[o, c, ky, kx]
    return blocked


@njit(cache=True, nogil=True)
def _tap_records(h, row, hd, kh, kw, sh, ph, pw, top, margin, ci, lanes, n_chunks):
    """The taps of each group of ``CHUNKS`` chunks of positions, in the order of summation.

    A record holds the tap's offset in the dilated map relative to the
    group's first position (the first block's plane), its offset in the
    blocked weights (first block, first channel) and, per chunk, the mask of
    the lanes whose column ``x + pw - kx`` lies in the row. A tap ``ky`` is
    left out when none of the group's input rows meets a delta row through it.
    """
    n_groups = -(-n_chunks // CHUNKS)
    taps = np.zeros((n_groups, kh * kw, TAP_FIELDS), np.int64)
    n_taps = np.zeros(n_groups, np.int64)
    masks = np.empty((CHUNKS, kw), np.int64)
    for g in range(n_groups):
        p0 = g * CHUNKS * lanes
        n_v = min(CHUNKS, n_chunks - g * CHUNKS)
        masks[:] = (1 << lanes) - 1
        for v in range(n_v):
            for lane in range(lanes):
                x = (p0 + v * lanes + lane) % row
                for kx in range(kw):
                    if not 0 <= x + pw - kx < row:
                        masks[v, kx] &= ~(1 << lane)
        y_last = min(h - 1, (p0 + n_v * lanes - 1) // row)
        t = 0
        for ky in range(kh):
            meets = False
            for y in range(p0 // row, y_last + 1):
                yy = y + ph - ky
                meets |= 0 <= yy < hd and yy % sh == 0
            if not meets:
                continue
            for kx in range(kw):
                taps[g, t, 0] = margin + p0 + (top + ph - ky) * row + pw - kx
                taps[g, t, 1] = (ky * kw + kx) * ci * 4
                taps[g, t, 2:] = masks[:, kx]
                t += 1
        n_taps[g] = t
    return taps, n_taps, n_groups


@njit(cache=True, nogil=True)
def _live_blocks(live, delta_row, co):
    """Write the blocks of 4 output channels with a nonzero delta into ``live``; return how many."""
    n_live = 0
    n_pos = delta_row.shape[0] // max(co, 1)
    for b in range(live.shape[0]):
        found = False
        for p in range(n_pos):
            at = uint64(p * co)
            for o in range(4 * b, min(co, 4 * b + 4)):
                found |= delta_row[at + o] != 0
            if found:
                break
        if found:
            live[n_live] = b
            n_live += 1
    return n_live


@njit(cache=True, nogil=True)
def _into_dilated_map(dmap, delta_row, co, ho, wo, sh, sw, first, row, plane):
    """Copy one frame's channel-last delta into the channel planes of the dilated map."""
    for oy in range(ho):
        for ox in range(wo):
            src = uint64((oy * wo + ox) * co)
            dst = uint64(first + oy * sh * row + ox * sw)
            for o in range(co):
                dmap[dst + uint64(o * plane)] = delta_row[src + o]


@njit(cache=True, nogil=True)
def _add_channel_last(grad_row, sums, h, w, ci, row, sums_plane):
    """``grad_row[(y*w + x)*ci + c] += sums[c*sums_plane + y*row + x]``: the frame's sums, channel-last."""
    for y in range(h):
        for x in range(w):
            at = uint64((y * w + x) * ci)
            src = uint64(y * row + x)
            for c in range(ci):
                grad_row[at + c] += sums[src + uint64(c * sums_plane)]


@njit(cache=True, nogil=True)
def _group_sums(sums, dmap, blocked, live, taps, counts, offsets, ci, n_v):
    """The sums of one group of positions, tile by tile of input channels (``TILE``, then 4, 2, 1).

    ``counts`` is ``(live blocks, taps)``, ``offsets`` is ``(first position,
    sums plane, map plane, weights per block)``; ``n_v`` the group's chunks.
    """
    c0 = 0
    while ci - c0 >= TILE:
        _group_tile(sums, dmap, blocked, live, taps, counts, offsets, c0, TILE, n_v)
        c0 += TILE
    if ci - c0 >= 4:
        _group_tile(sums, dmap, blocked, live, taps, counts, offsets, c0, 4, n_v)
        c0 += 4
    if ci - c0 >= 2:
        _group_tile(sums, dmap, blocked, live, taps, counts, offsets, c0, 2, n_v)
        c0 += 2
    if ci - c0 >= 1:
        _group_tile(sums, dmap, blocked, live, taps, counts, offsets, c0, 1, n_v)


@njit(cache=True, nogil=True)
def _group_tile(sums, dmap, blocked, live, taps, counts, offsets, c0, n_c, n_v):
    """:func:`_tap_tile` with the chunk count as a constant (1 only for the last group of an odd count)."""
    if n_v == CHUNKS:
        _tap_tile(sums, dmap, blocked, live, taps.ravel(), counts, offsets, c0, n_c, CHUNKS)
    else:
        _tap_tile(sums, dmap, blocked, live, taps.ravel(), counts, offsets, c0, n_c, 1)


@intrinsic(prefer_literal=True)
def _tap_tile(typingctx, sums, dmap, blocked, live, taps, counts, offsets, c0, n_c, n_v):
    """Micro-kernel: the sums of ``n_c`` input channels from ``c0``, ``n_v`` vectors of positions.

    With ``counts = (n_live, n_taps)`` and ``offsets = (p0, sums_plane,
    plane, block_weights)``: for each live block b of 4 output channels
    (``live[:n_live]``) and each of the ``n_taps`` tap records, in order,
    load the block's 4 delta vectors of each chunk at the record's offset
    ``+ 4*b*plane`` (``+ plane`` per channel, ``+ lanes`` per chunk),
    masked by the chunk's lane mask; then for each input channel c
    broadcast its 4 weights at ``b*block_weights`` + the record's weight
    offset ``+ 4*c`` and add ``(w0*d0 + w1*d1) + (w2*d2 + w3*d3)`` to the
    channel's sum of each chunk. The ``n_c x n_v`` sums stay in registers
    from 0 to the end, where they are stored to ``sums[(c0 + c)*sums_plane
    + p0 ...]``. ``n_c`` and ``n_v`` must be constants: the loops over
    channels and chunks are unrolled when the code is generated.

    An intrinsic because the vectors must be full AVX-512 registers (see
    ``VECTOR_BYTES``) held across the loop over taps, which Numba's loops do
    not express; plain IEEE multiplications and additions, no fast-math flags.
    """
    if not (isinstance(n_c, types.IntegerLiteral) and isinstance(n_v, types.IntegerLiteral)):
        return None
    arrays = (sums, dmap, blocked, live, taps)
    if any(not isinstance(a, types.Array) or a.ndim != 1 or a.layout != "C" for a in arrays):
        return None
    floats, indices = (sums, dmap, blocked), (live, taps)
    if any(a.dtype != sums.dtype for a in floats) or any(a.dtype != types.int64 for a in indices):
        return None
    if not (isinstance(counts, types.BaseTuple) and isinstance(offsets, types.BaseTuple)):
        return None
    scalars = (*counts, *offsets, c0)
    if len(scalars) != 7 or not all(isinstance(t, types.Integer) for t in scalars):
        return None
    n_c, n_v = n_c.literal_value, n_v.literal_value
    sig = types.void(sums, dmap, blocked, live, taps, counts, offsets, c0, types.literal(n_c), types.literal(n_v))

    def codegen(context, builder, signature, args):
        arrays = (context.make_array(t)(context, builder, a).data for t, a in zip(signature.args[:5], args[:5]))
        sums_p, dmap_p, blocked_p, live_p, taps_p = arrays
        counts_t, offsets_t, c0_t = signature.args[5:8]
        i64 = ir.IntType(64)

        def integer(value, ty):
            return context.cast(builder, value, ty, types.int64)

        n_live, n_taps = (integer(builder.extract_value(args[5], i), counts_t[i]) for i in range(2))
        p0, sums_plane, plane, block_weights = (
            integer(builder.extract_value(args[6], i), offsets_t[i]) for i in range(4))
        c0_v = integer(args[7], c0_t)
        element = context.get_value_type(signature.args[0].dtype)
        size = context.get_abi_sizeof(element)
        lanes = VECTOR_BYTES // size
        vector = ir.VectorType(element, lanes)

        def num(value):
            return ir.Constant(i64, value)

        def at(pointer, offset):
            return builder.load(builder.gep(pointer, [offset]))

        def vector_at(pointer, offset):
            return builder.bitcast(builder.gep(pointer, [offset]), vector.as_pointer())

        zero = ir.Constant(vector, [0.0] * lanes)
        undefined = ir.Constant(vector, ir.Undefined)
        first_lane = ir.Constant(ir.VectorType(ir.IntType(32), lanes), [0] * lanes)

        def broadcast(scalar):
            one = builder.insert_element(undefined, scalar, ir.Constant(ir.IntType(32), 0))
            return builder.shuffle_vector(one, undefined, first_lane)

        # Allocas of the entry block, which LLVM promotes to registers.
        acc = [[cgutils.alloca_once(builder, vector) for _ in range(n_v)] for _ in range(n_c)]
        for slots in acc:
            for slot in slots:
                builder.store(zero, slot)
        block_plane = builder.mul(plane, num(4))
        with cgutils.for_range(builder, n_live) as blocks:
            b = at(live_p, blocks.index)
            d_block = builder.mul(b, block_plane)
            w_block = builder.add(builder.mul(b, block_weights), builder.mul(c0_v, num(4)))
            with cgutils.for_range(builder, n_taps) as tap:
                record = builder.mul(tap.index, num(TAP_FIELDS))
                d_at = builder.add(d_block, at(taps_p, record))
                w_at = builder.add(w_block, at(taps_p, builder.add(record, num(1))))
                deltas = []
                for v in range(n_v):
                    bits = builder.trunc(at(taps_p, builder.add(record, num(2 + v))), ir.IntType(lanes))
                    mask = builder.bitcast(bits, ir.VectorType(ir.IntType(1), lanes))
                    offset = builder.add(d_at, num(v * lanes))
                    chunk = []
                    for _ in range(4):
                        chunk.append(builder.select(mask, builder.load(vector_at(dmap_p, offset), align=size), zero))
                        offset = builder.add(offset, plane)
                    deltas.append(chunk)
                for c in range(n_c):
                    wc = [broadcast(at(blocked_p, builder.add(w_at, num(4 * c + j)))) for j in range(4)]
                    for v in range(n_v):
                        d = deltas[v]
                        pair01 = builder.fadd(builder.fmul(wc[0], d[0]), builder.fmul(wc[1], d[1]))
                        pair23 = builder.fadd(builder.fmul(wc[2], d[2]), builder.fmul(wc[3], d[3]))
                        builder.store(builder.fadd(builder.load(acc[c][v]), builder.fadd(pair01, pair23)), acc[c][v])
        for c in range(n_c):
            channel = builder.add(p0, builder.mul(builder.add(c0_v, num(c)), sums_plane))
            for v in range(n_v):
                target = vector_at(sums_p, builder.add(channel, num(v * lanes)))
                builder.store(builder.load(acc[c][v]), target, align=size)
        return context.get_dummy_value()

    return sig, codegen
