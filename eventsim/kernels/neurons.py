"""LIF / IF neuron update over a window of steps."""

import sys

import numpy as np
from numba import njit, uint64
from numba.cpython.unsafe.numbers import trailing_zeros

from eventsim.kernels.buffers import grown_to
from eventsim.kernels.prefetch import prefetch_for_write

#: Whether byte i of a 64-bit word holds its bits 8i..8i+7 (the spike scan reads bytes as words).
LITTLE_ENDIAN = sys.byteorder == "little"

#: The codes of the arithmetic forms in :func:`lif_window`, in the order of
#: :data:`eventsim.layers.ARITHMETIC` (docs/semantics.md, "Arithmetic forms").
PRODUCT, EULER, EULER_DIVIDE, SUBTRACT_DIVIDE = range(4)


@njit(cache=True, nogil=True)
def spike_count(uu, th, strict, max_spikes):
    """The spikes n of a neuron whose potential ``uu`` reached ``th`` (docs/semantics.md, step 3).

    With ``q = uu / th`` in the dtype: ``min(M, floor(q))`` (``>=``) or
    ``min(M, max(1, ceil(q) - 1))`` (strict); ``max_spikes`` M may be inf.
    """
    q = uu / th
    one = th / th  # 1 in the dtype: th is finite and positive where a neuron fires
    n = np.ceil(q) - one if strict else np.floor(q)
    n = one if n < one else n
    return max_spikes if max_spikes < n else n


@njit(cache=True, nogil=True, inline="always")
def _per_neuron(theta, size, dtype):
    """The threshold and the C-order index ``c * P + p`` of each of the ``size`` channel-last neurons.

    ``theta`` has one threshold per channel; ``P = size / C`` positions. The
    index is looked up as a spike is emitted, which spares a division per spike.
    """
    channels = theta.shape[0]
    th_of = np.empty(size, dtype)
    c_order = np.empty(size, np.int64)
    plane = size // channels
    for p in range(plane):
        for c in range(channels):
            th_of[p * channels + c] = theta[c]
            c_order[p * channels + c] = c * plane + p
    return th_of, c_order


@njit(cache=True, nogil=True)
def lif_window(v, u, theta, leak, soft, v_reset, strict, counts, traces, gain=1.0, fired=None, clear=False,
               form=PRODUCT, divisor=1.0, syn=None, syn_leak=0.0, syn_gain=1.0, syn_out=None,
               v_rest=None, v_min=None, max_spikes=None):
    """Integrate, fire, reset and leak for K steps; emit the spikes.

    docs/semantics.md, "Neurons" (Lee et al. 2020, Algorithm 1 and published
    code) and "State beyond the potential". Per neuron and step, from the
    state R (the potential after the reset, R[0] = v_init) and J (the
    synaptic current, J[0] = 0), in this order::

        J    = alpha * J + h * I[t]                 (syn given; else X = I[t])
        U[t] = lam * R + g * X                      PRODUCT
             = R + k * (X - R)                      EULER (k = gain)
             = R + (X - R) / d                      EULER_DIVIDE
             = (R - R / d) + X                      SUBTRACT_DIVIDE
        n[t] = 1[U[t] > theta] (>= unless strict), or the count of
               thresholds crossed, at most M (max_spikes given)
        R    = U - n * theta (soft) / v_reset (hard) where n > 0, else U
        R    = max(R, v_min)                        (v_min given)

    with the rest potential (v_rest given) in each form as the table of
    "State beyond the potential" writes it. With the delayed reset
    (``fired`` given; PRODUCT, no rest, clamp or several spikes) the state is
    ``V[t] = lam * U[t]`` and the spikes ``s[t]`` in ``fired``, and the reset
    acts at the next step::

        U[t] = V[t-1] + g * X[t] - theta * s[t-1]                  soft reset
             = V[t-1] + g * X[t]          if not s[t-1]            hard reset
               v_reset + g * X[t]         if s[t-1]

    evaluated left to right. Also accumulates the spike count gamma and the
    leak-weighted trace ``f[t] = lam * f[t-1] + n[t]``, so that at the end
    ``f = sum_k n_k lam^(T - t_k)`` (Lee et al. 2020, eq. 17-22).

    Parameters
    ----------
    v : (N,) float array, channel-last; the state R (V with ``fired``), updated in place.
    u : (K, N) float array, channel-last; the input currents I on entry, the
        potentials U on exit (zeros with ``clear``).
    theta : (C,) float array, one threshold per channel (inf: never fires).
    leak, v_reset : float scalars of the buffer's dtype.
    soft, strict : bool.
    counts, traces : (N,) float arrays, channel-last, updated in place; or
        None, each, where the caller does not keep it (the loop then neither
        reads nor writes it).
    gain : float
        The input gain g (k of EULER), rounded once to the buffer's dtype.
    fired : (N,) bool array, optional
        Delayed reset: the spikes of the step before the window on entry,
        those of its last step on exit. None: reset at once.
    clear : bool
        Leave ``u`` all zero instead of holding the potentials, so that the
        caller can scatter the next window into it without zeroing it first.
    form : int
        PRODUCT (default), EULER, EULER_DIVIDE or SUBTRACT_DIVIDE.
    divisor : float
        d of the divide forms, rounded once to the buffer's dtype.
    syn : (N,) float array, optional
        The synaptic current J, updated in place; None: no synaptic current.
    syn_leak, syn_gain : float
        alpha and h of the synaptic current.
    syn_out : (K, N) float array, optional
        Receives J at every step (the "synaptic" record).
    v_rest, v_min, max_spikes : float, optional
        The rest potential, the lower clamp and the most spikes per step
        (inf: no bound); None or NaN leaves each out (0, none, one spike).
        With all three None the loop compiles without them, as it was
        before them; a caller that gives one gives the others as NaN, so
        that the loop tests them (the same test for every neuron and step)
        instead of being compiled again for each of the seven ways of
        giving some.

    Returns
    -------
    (indptr, index, value, overflow)
        The events of the window: row pointers from 0, C-order indices and
        the spike counts n (1 with one spike per step); and whether some
        potential U of the window was inf or NaN (an input current or a sum
        that overflowed the dtype). The caller then refuses the run and
        finds the step by running the window again with ``clear=False``.

    Overflow is found without a test per neuron and step, which would cost
    about a tenth of the kernel: a U that is inf or NaN either fires (only
    +inf can) and is tested as its spike is emitted, or it does not fire and
    leaves a state that is inf or NaN for the rest of the window (the leak
    and every later step keep it so, in every form: ``inf - inf`` is NaN),
    tested once at the window's end. A clamp can turn -inf into v_min, so
    with a clamp every U is tested.
    """
    steps, size = u.shape
    g = u.dtype.type(gain)
    d = u.dtype.type(divisor)
    alpha, h = u.dtype.type(syn_leak), u.dtype.type(syn_gain)
    one, zero = u.dtype.type(1), u.dtype.type(0)
    rest = False if v_rest is None else not np.isnan(v_rest)
    clamp = False if v_min is None else not np.isnan(v_min)
    multi = False if max_spikes is None else not np.isnan(max_spikes)
    # Spike flags, padded to whole blocks of 64 neurons (8 words) for the emitting scan.
    spiked = np.zeros((size + 63) // 64 * 64, np.uint8)
    spiked_words = spiked.view(np.uint64)
    every_block = np.arange(spiked.shape[0] // 64)
    lit_blocks = np.empty_like(every_block)
    step_idx = np.empty(size, np.int64)  # the events of one step, before they join the window's
    step_val = np.empty(size, u.dtype)
    # Thresholds per neuron, so that the step's loop runs flat over all
    # neurons: a loop over a layer's few channels per position is too short
    # to vectorise well.
    th_of, c_order = _per_neuron(theta, size, u.dtype)
    out_ptr = np.zeros(steps + 1, np.int64)
    out_idx = np.empty(64, np.int64)
    out_val = np.empty(64, u.dtype)
    reaching, keeping = not strict, not clear  # flags the neuron loop combines without a jump
    n = 0
    overflow = False
    for k in range(steps):
        # One branch-free pass over the neurons (selects, not jumps, so that
        # it vectorises), then a scan for the few that fired to emit them.
        for j in range(size):
            th = th_of[j]
            x = u[k, j]
            if syn is not None:
                x = alpha * syn[j] + h * x
                syn[j] = x
                if syn_out is not None:
                    syn_out[k, j] = x
            # The form is the same for every neuron and step: LLVM hoists the
            # test out of the loop, and the product form's loop is unchanged.
            gi = g * x
            r = v[j]
            if fired is not None:  # V = lam * U[t-1]; the previous step's spike resets after the leak
                uu = r + gi
                reset = uu - th if soft else v_reset + gi
                uu = reset if fired[j] else uu
            elif form == PRODUCT:
                if v_rest is None or not rest:  # None: pruned as Numba compiles, the loop as it was
                    uu = leak * r + gi
                else:
                    uu = (v_rest + leak * (r - v_rest)) + gi
            elif form == EULER:
                uu = r + g * ((x - r) if v_rest is None or not rest else ((v_rest - r) + x))
            elif form == EULER_DIVIDE:
                uu = r + ((x - r) if v_rest is None or not rest else (x - (r - v_rest))) / d
            else:
                uu = (r - (r if v_rest is None or not rest else (r - v_rest)) / d) + x
            fire = (uu > th) | ((uu == th) & reaching)  # uu >= th unless strict, as one select
            # With clear, U stays only where the neuron fired, for the emitting scan to test.
            u[k, j] = uu if fire | keeping else zero
            spiked[j] = fire
            if max_spikes is None or not multi:
                spikes = one if fire else zero
            else:
                spikes = spike_count(uu, th, strict, max_spikes) if fire else zero
            if counts is not None:  # None: not kept, and the loop compiles without them
                counts[j] += spikes
            if traces is not None:
                traces[j] = leak * traces[j] + spikes
            if fired is not None:
                fired[j] = fire
                v[j] = leak * uu
            else:
                if max_spikes is None or not multi:
                    reset = uu - th if soft else v_reset
                else:
                    reset = uu - spikes * th if soft else v_reset
                kept = reset if fire else uu
                if v_min is not None and clamp:
                    overflow |= not abs(uu) < np.inf  # the clamp would hide a -inf
                    kept = v_min if kept < v_min else kept  # NaN stays NaN
                v[j] = kept
        m, emitted_overflow = _emit_step(u, k, spiked_words, every_block, lit_blocks, th_of, c_order, strict,
                                         multi, max_spikes, clear, step_idx, step_val)
        out_idx, out_val = _appended(out_idx, out_val, n, step_idx, step_val, m)
        overflow |= emitted_overflow
        n += m
        out_ptr[k + 1] = n
    for j in range(size):  # inf and NaN alike
        overflow |= not abs(v[j]) < np.inf
        if syn is not None:
            overflow |= not abs(syn[j]) < np.inf
    return out_ptr, out_idx[:n], out_val[:n], overflow


@njit(cache=True, nogil=True)
def plain_lif_window(v, u, theta, leak, soft, v_reset, strict, counts, traces, gain, fired, clear):
    """:func:`lif_window` of a layer that leaves every later option at its default.

    The product form without synaptic current, rest potential, clamp or
    several spikes per step, as most networks have it. Left out of this
    call, the defaults are compiled as constants and their code is dropped,
    so the loop over the neurons vectorises: 0.9 against 2.7 ns per neuron
    and step with the defaults passed as values (a 23,120-neuron layer,
    float32). Called from Python with every argument given, it also keeps
    Numba's quick dispatch, which a call leaving arguments out does not
    take (about 0.15 ms a call).
    """
    return lif_window(v, u, theta, leak, soft, v_reset, strict, counts, traces, gain, fired, clear)


@njit(cache=True, nogil=True, inline="always")
def _emit_step(u, k, spiked_words, blocks, lit_blocks, th_of, c_order, strict, multi, max_spikes, clear, step_idx,
               step_val):
    """Emit the spikes of step ``k`` flagged in ``spiked_words`` into ``step_idx``, ``step_val``, in ascending neuron order.

    The scan of :func:`lif_window`: ``blocks`` lists, ascending, the blocks
    of 64 neurons that may hold a flag (every block, or those a step
    updated). Each block's 64 flag bytes are packed into one 64-bit word,
    bit i for neuron i of the block (:func:`_packed`), and its spikes taken
    one set bit at a time, so that a silent block costs no branch per
    neuron; a block with a flag is zeroed (a caller may set only some flags
    of the next step). The value of an event is 1, or with ``multi`` (and
    ``max_spikes`` not None) the spike count of U, at most ``max_spikes``;
    U is tested finite (+inf is the one non-finite
    U that fires) and, with ``clear``, zeroed.

    Returns
    -------
    (count, overflow)
        The events emitted and whether an emitted U was inf.
    """
    one, zero = u.dtype.type(1), u.dtype.type(0)
    # The blocks with a flag, listed without a jump per block: whether a
    # block has one is as good as random, and a mispredicted jump per block
    # would cost more than the test.
    lit = 0
    for block in blocks:
        first = 8 * block
        any_flag = spiked_words[first]
        for w in range(first + 1, first + 8):
            any_flag |= spiked_words[w]
        lit_blocks[lit] = block
        lit += any_flag != 0
    overflow = False
    m = 0
    for i in range(lit):
        block = lit_blocks[i]
        first = 8 * block
        bits = _packed(spiked_words, first)
        for w in range(first, first + 8):
            spiked_words[w] = 0
        while True:  # at least one bit is set
            j = 64 * block + trailing_zeros(bits)
            step_idx[m] = c_order[j]
            step_val[m] = one if max_spikes is None or not multi else spike_count(u[k, j], th_of[j], strict,
                                                                                   max_spikes)
            overflow |= not abs(u[k, j]) < np.inf
            if clear:
                u[k, j] = zero
            m += 1
            bits &= bits - uint64(1)
            if bits == 0:
                break
    return m, overflow


@njit(cache=True, nogil=True, inline="always")
def _appended(out_idx, out_val, n, step_idx, step_val, m):
    """``out_idx[n:n + m], out_val[n:n + m] = step_idx[:m], step_val[:m]``, the arrays grown if they had no room."""
    if n + m > out_idx.shape[0]:
        out_idx = grown_to(out_idx, n + m)
        out_val = grown_to(out_val, n + m)
    out_idx[n : n + m] = step_idx[:m]
    out_val[n : n + m] = step_val[:m]
    return out_idx, out_val


#: Multiplied by a word of 8 flag bytes (each 0 or 1), gathers them in its top byte, the flag of
#: neuron i of the word as bit 56 + i: byte b of the word (bit 8b) times bit 7b + 7 (7 - b + 8b)
#: of this constant on a little-endian machine, where byte b is neuron b; on a big-endian one,
#: byte b is neuron 7 - b, times bit 9b (63 - b). The other products fall below bit 56 at
#: distinct bits (no carry) or above bit 63.
_GATHER = uint64(0x0102040810204080 if LITTLE_ENDIAN else 0x8040201008040201)


@njit(cache=True, nogil=True, inline="always")
def _packed(spiked_words, first):
    """The flag bytes of 64 neurons, the words ``first .. first + 7`` of ``spiked_words``, as the bits of one word."""
    bits = uint64(0)
    for w in range(8):
        bits |= ((spiked_words[first + w] * _GATHER) >> uint64(56)) << uint64(8 * w)
    return bits


@njit(cache=True, nogil=True)
def flagged_lif_window(v, u, flags, shift, theta, leak, soft, v_reset, strict, counts, traces, gain):
    """:func:`plain_lif_window` with ``clear``, reading only the blocks of neurons that received a current.

    ``flags[k, b]`` is nonzero where a scatter kernel added a current to
    block b (the channel-last neurons ``b * 2^shift ..``, the last block
    possibly shorter) at step k; the kernel zeroes the flags. A block is
    updated at step k, as :func:`plain_lif_window` updates it, when it is
    flagged or *hot*: when one of its neurons could fire without a current
    (``R >= theta``, ``R > theta`` with the strict test, a threshold not
    above 0, or R NaN; a soft reset's remainder, an initial potential above
    theta). Any other block holds zeros in ``u`` and none of its neurons
    fires, so the step only leaks it, ``R = lam * R + g * 0`` and
    ``f = lam * f + 0`` (its count would add +0): these steps are owed, and
    applied as the same products, step after step, when the block is next
    updated and at the window's end, so that the potentials and traces have
    the bits of :func:`plain_lif_window`'s (see :func:`_leaked`).

    With the hard reset to ``v_reset < theta`` (``<=`` with the strict
    test) and every ``theta > 0``, no update leaves a block hot but for a NaN
    R, whose steps give the same NaN whether updated or leaked; the test
    after each update is then left out.

    Valid for ``0 <= lam <= 1`` and a finite g (the caller's to ensure):
    then ``R < theta`` with ``theta > 0`` gives ``lam * R + g * 0 < theta``
    (the rounded product is at most ``max(R, 0)``; ``<=`` alike), so a
    neuron that is neither flagged nor hot cannot fire at the steps it
    owes. The immediate reset only: with the delayed one a neuron without
    input resets.

    Parameters
    ----------
    flags : (K, ceil(N / 2^shift)) uint8 array, zeroed on exit.
    shift : int, log2 of the block size.
    (the others) : as in :func:`lif_window`.

    Returns
    -------
    (indptr, index, value, overflow, skipped)
        As :func:`lif_window`, and the number of (step, block) pairs that were only leaked.
    """
    steps, size = u.shape
    work = skipping_start(v, theta, size, shift, soft, v_reset, strict, gain, steps)
    out = skipped_nothing(v.dtype)
    for k in range(steps):
        out = with_step(out, work, k, skipping_step(v, u, k, flags, k, work, shift, leak, soft, v_reset, strict, counts,
                                                    traces))
    return skipping_end(v, traces, work, out, shift, leak)


@njit(cache=True, nogil=True, inline="always")
def skipping_start(v, theta, size, shift, soft, v_reset, strict, gain, steps):
    """The working arrays of :func:`flagged_lif_window` over ``steps`` steps, for :func:`skipping_step`.

    A tuple: the per-neuron threshold and C-order index, the blocks' hot
    flags and the step after their last update, the scratch of the listing
    and of the emission, the output's row pointers, and constants. Whether
    an update can leave a block hot (``heats``, see :func:`flagged_lif_window`)
    is decided here. The same arrays throughout (what changes from step to
    step is the tuple of :func:`skipped_nothing`), so that LLVM sees them
    as the loop's invariants.
    """
    dtype = v.dtype
    blocks = (size + (1 << shift) - 1) >> shift
    g = dtype.type(gain)
    spiked = np.zeros((size + 63) // 64 * 64, np.uint8)  # zeroed again by the emitting scan
    spiked_words = spiked.view(np.uint64)
    # The blocks of 64 neurons that a step updated, for the emitting scan:
    # the others hold no flag.
    updated_blocks = np.empty(spiked.shape[0] // 64, np.int64)
    th_of, c_order = _per_neuron(theta, size, dtype)
    hot = np.empty(blocks, np.bool_)
    th_min = theta.min()
    heats = soft or not (th_min > 0 and ((v_reset <= th_min) if strict else (v_reset < th_min)))
    for b in range(blocks):
        lo, hi = uint64(b << shift), uint64(min((b + 1) << shift, size))
        hot[b] = not _cold(v, th_of, lo, hi, strict)
    # The step after each block's last update: the steps of leak it owes
    # run from there, so that a block that is skipped costs no store.
    due = np.zeros(blocks, np.int64)
    scratch = (spiked, spiked_words, updated_blocks, np.empty_like(updated_blocks), np.empty(blocks, np.int64),
               np.empty(size, np.int64), np.empty(size, dtype))
    # g * I of a neuron without current: +0, or -0 for g < 0.
    return th_of, c_order, hot, due, scratch, np.zeros(steps + 1, np.int64), g, g * dtype.type(0), heats


@njit(cache=True, nogil=True, inline="always")
def skipped_nothing(dtype):
    """The output of :func:`flagged_lif_window` before its first step: the events so far (index, value, count), overflow, the blocks updated."""
    return np.empty(64, np.int64), np.empty(64, dtype), 0, False, 0


@njit(cache=True, nogil=True, inline="always")
def with_step(out, work, k, step):
    """``out`` (from :func:`skipped_nothing`) with step ``k``'s result from :func:`skipping_step` appended.

    Inlined in the caller's loop: a compiled function returning the grown
    arrays would count references to them at every step.
    """
    out_idx, out_val, n, overflow, updated = out
    m, step_overflow, step_updated = step
    out_ptr, step_idx, step_val = work[5], work[4][5], work[4][6]  # see skipping_start
    out_idx, out_val = _appended(out_idx, out_val, n, step_idx, step_val, m)
    out_ptr[k + 1] = n + m
    return out_idx, out_val, n + m, overflow | step_overflow, updated + step_updated


@njit(cache=True, nogil=True)
def skipping_step(v, u, r, flags, k, work, shift, leak, soft, v_reset, strict, counts, traces):
    """Step ``k`` of :func:`flagged_lif_window`, its currents in row ``r`` of ``u`` and its flags in row ``r`` of ``flags``.

    Updates the flagged and hot blocks (each first leaked by the steps it
    owes), zeroes their currents and the flags, and leaves the step's
    spikes in the scratch of ``work`` (from :func:`skipping_start`).
    Returns ``(spikes, overflow, blocks updated)``, for :func:`with_step`.
    """
    th_of, c_order, hot, due, scratch, out_ptr, g, g_zero, heats = work
    spiked, spiked_words, updated_blocks, lit_blocks, todo, step_idx, step_val = scratch
    size = u.shape[1]
    blocks = flags.shape[1]
    reaching = not strict
    zero = u.dtype.type(0)
    # The blocks to update, listed without a jump per block (whether a
    # block is flagged is as good as random: a mispredicted jump per
    # block cost more than the listing).
    todo_n = 0
    for b in range(blocks):
        todo[todo_n] = b
        todo_n += (flags[r, b] != 0) | hot[b]
    flags[r, :] = 0
    listed = 0
    for t in range(min(todo_n, PREFETCH_AHEAD)):
        _prefetched_block(u, r, todo[t], shift, size)
    for t in range(todo_n):
        b = todo[t]
        if t + PREFETCH_AHEAD < todo_n:
            _prefetched_block(u, r, todo[t + PREFETCH_AHEAD], shift, size)
        # Unsigned, so that no index is tested for wrapping around from
        # the end, which keeps LLVM from vectorising the loops (about 4x).
        lo, hi = uint64(b << shift), uint64(min((b + 1) << shift, size))
        _leaked(v, traces, lo, hi, k - due[b], leak, g_zero)
        due[b] = k + 1
        for j in range(lo, hi):
            uu, fire = _plain_update(v, counts, traces, j, u[r, j], th_of[j], leak, g, soft, v_reset, reaching)
            u[r, j] = uu if fire else zero
            spiked[j] = fire
        hot[b] = heats and not _cold(v, th_of, lo, hi, strict)
        # The blocks of 64 that this one spans, after those already listed (ascending, as the blocks are).
        first, last = (b << shift) >> 6, (min((b + 1) << shift, size) - 1) >> 6
        if listed > 0 and updated_blocks[listed - 1] == first:
            first += 1
        for block in range(first, last + 1):
            updated_blocks[listed] = block
            listed += 1
    m, overflow = _emit_step(u, r, spiked_words, updated_blocks[:listed], lit_blocks, th_of, c_order, strict, False,
                             None, True, step_idx, step_val)
    return m, overflow, todo_n


@njit(cache=True, nogil=True, inline="always")
def skipping_end(v, traces, work, out, shift, leak):
    """Leak every block by the steps it still owes; :func:`flagged_lif_window`'s result from ``work`` and ``out``."""
    th_of, c_order, hot, due, scratch, out_ptr, g, g_zero, heats = work
    out_idx, out_val, n, overflow, updated = out
    steps = out_ptr.shape[0] - 1
    size = v.shape[0]
    blocks = due.shape[0]
    for b in range(blocks):
        _leaked(v, traces, uint64(b << shift), uint64(min((b + 1) << shift, size)), steps - due[b], leak, g_zero)
    for j in range(size):
        overflow |= not abs(v[j]) < np.inf
    return out_ptr, out_idx[:n], out_val[:n], overflow, steps * blocks - updated


#: How many listed blocks ahead :func:`flagged_lif_window` asks for the currents of: a block's
#: currents were written by the scatter kernels long before and sit far from the last block's;
#: fetched while the blocks before are updated, they cost 4-6 % less time in the whole
#: inference run of Lee's N-MNIST LeNet at T = 300 and 600 (8 against 2 or 4: within 2 %).
PREFETCH_AHEAD = 8


@njit(cache=True, nogil=True, inline="always")
def _prefetched_block(u, k, b, shift, size):
    """Hint the cache lines of block ``b``'s currents at step ``k``: one hint per 16 entries (a 64-byte line of float32)."""
    lo = b << shift
    for q in range(0, min(1 << shift, size - lo), 16):
        prefetch_for_write(u, k, uint64(lo + q))


@njit(cache=True, nogil=True, inline="always")
def _cold(v, th_of, lo, hi, strict):
    """Whether no neuron ``lo .. hi - 1`` can fire at the next step without a current (see :func:`flagged_lif_window`).

    So if ``0 < theta`` and ``R < theta``, or ``R <= theta`` with the strict
    test (``U > theta``): a potential that reached theta exactly stays below
    it as it leaks.
    """
    cold = True
    for j in range(lo, hi):
        th = th_of[j]
        r = v[j]
        cold &= ((r <= th) if strict else (r < th)) & (th > 0)  # False for a NaN R
    return cold


@njit(cache=True, nogil=True, inline="always")
def _leaked(v, traces, lo, hi, owed, leak, g_zero):
    """``owed`` steps without current of the neurons ``lo .. hi - 1``: ``R = lam * R + g * 0``, ``f = lam * f + 0``.

    Computed as ``owed`` products ``R = lam * R``, then one ``R + g * 0``,
    which has the same bits: adding a zero changes no number but a -0 (to
    +0 when ``g * 0`` is +0), and a zero stays a zero of the same sign as it
    leaks (``lam >= 0``), so the steps' additions can all wait for the last.
    The products of a whole block of 64 run in a loop of known length,
    which LLVM keeps in registers across the steps. With ``lam = 1`` (IF
    neurons, the spiking pools) they are left out: a product by 1 is exact.
    """
    if owed <= 0:
        return
    zero = v.dtype.type(0)
    if leak != 1 and hi - lo == 64:
        _products(v, traces, lo, 64, owed, leak)
    elif leak != 1:
        _products(v, traces, lo, hi - lo, owed, leak)
    for j in range(lo, hi):
        v[j] = v[j] + g_zero
        if traces is not None:
            traces[j] = traces[j] + zero


@njit(cache=True, nogil=True, inline="always")
def _products(v, traces, lo, n, owed, leak):
    """``owed`` times ``R = lam * R`` (and ``f = lam * f``) of the neurons ``lo .. lo + n - 1``.

    Inlined, so that a literal ``n`` makes the loop's length known to LLVM.
    """
    for _ in range(owed):
        for i in range(n):
            v[lo + uint64(i)] = leak * v[lo + uint64(i)]
            if traces is not None:
                traces[lo + uint64(i)] = leak * traces[lo + uint64(i)]


@njit(cache=True, nogil=True, inline="always")
def _plain_update(v, counts, traces, j, x, th, leak, g, soft, v_reset, reaching):
    """One neuron and step of :func:`plain_lif_window` (immediate reset): updates R, the count and the trace.

    ``reaching``: whether U = theta fires (not strict). Returns ``(U, fired)``.
    """
    uu = leak * v[j] + g * x
    fire = (uu > th) | ((uu == th) & reaching)
    spikes = v.dtype.type(1) if fire else v.dtype.type(0)
    if counts is not None:
        counts[j] += spikes
    if traces is not None:
        traces[j] = leak * traces[j] + spikes
    v[j] = (uu - th if soft else v_reset) if fire else uu
    return uu, fire


@njit(cache=True, nogil=True)
def reverse_recursion(gate, grad, carry):
    """Solve ``E[t] = gate[t] * grad[t] + carry[t] * E[t+1]`` backward from ``E[K] = 0``.

    Every neuron backward pass of the per-step gradient rules is this
    first-order recurrence over steps (docs/semantics.md, "Gradient rules"):
    ``bptt`` has ``gate = sigma(U - theta)`` and ``carry = dV/dU`` (plus
    ``dV/ds * sigma`` when the reset is differentiated, V the potential
    carried to the next step, ``U[t+1] = V[t] + g * I[t+1]``); ``lee2020-code`` has ``gate = g * s * NG / theta`` and
    ``carry = 1 - s``.

    Parameters
    ----------
    gate, grad, carry : (K, N) float arrays of one dtype.

    Returns
    -------
    (K, N) array E.
    """
    steps, n = grad.shape
    out = np.empty_like(grad)
    nxt = np.zeros(n, grad.dtype)
    for t in range(steps - 1, -1, -1):
        for i in range(n):
            e = gate[t, i] * grad[t, i] + carry[t, i] * nxt[i]
            out[t, i] = e
            nxt[i] = e
    return out
