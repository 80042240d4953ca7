"""LIF / IF neuron update over a window of steps."""

import sys

import numpy as np
from numba import njit, uint64
from numba.cpython.unsafe.numbers import trailing_zeros

from eventsim.kernels.buffers import grown_to

#: Whether byte i of a 64-bit word holds its bits 8i..8i+7 (the spike scan reads bytes as words).
LITTLE_ENDIAN = sys.byteorder == "little"

#: The codes of the arithmetic forms in :func:`lif_window`, in the order of
#: :data:`eventsim.layers.ARITHMETIC` (docs/semantics.md, "Arithmetic forms").
PRODUCT, EULER, EULER_DIVIDE, SUBTRACT_DIVIDE = range(4)


@njit(cache=True, nogil=True)
def lif_window(v, u, theta, leak, soft, v_reset, strict, counts, traces, gain=1.0, fired=None, clear=False,
               form=PRODUCT, divisor=1.0):
    """Integrate, fire, reset and leak for K steps; emit the spikes.

    docs/semantics.md, "Neurons" (Lee et al. 2020, Algorithm 1 and published code)::

        U[t] = V[t-1] + g * I[t]               V[0] = 0
        s[t] = 1[U[t] > theta]                 (>= when strict is False)
        V[t] = lam * (U[t] - theta * s[t])     soft reset
             = lam * (U[t] * (1 - s[t]) + v_reset * s[t])   hard reset

    which is ``U[t] = lam * R(U[t-1], s[t-1]) + g * I[t]`` with the state ``V``
    (Lee's residual potential) carried between windows. With the delayed
    reset (``fired`` given) the state is ``V[t] = lam * U[t]`` and the spikes
    ``s[t]`` in ``fired``, and the reset acts at the next step::

        U[t] = V[t-1] + g * I[t] - theta * s[t-1]                  soft reset
             = V[t-1] + g * I[t]          if not s[t-1]            hard reset
               v_reset + g * I[t]         if s[t-1]

    evaluated left to right. The other arithmetic forms (``form``; reset
    at once) carry ``V[t] = R(U[t], s[t])`` itself and compute, in this
    order (docs/semantics.md, "Arithmetic forms")::

        EULER:            U[t] = V[t-1] + k * (I[t] - V[t-1])      k = gain
        EULER_DIVIDE:     U[t] = V[t-1] + (I[t] - V[t-1]) / d      d = divisor
        SUBTRACT_DIVIDE:  U[t] = (V[t-1] - V[t-1] / d) + I[t]

    Also accumulates the spike count gamma and the
    leak-weighted trace ``f[t] = lam * f[t-1] + s[t]``, so that at the end
    ``f = sum_k lam^(T - t_k)`` (Lee et al. 2020, eq. 17-22).

    Parameters
    ----------
    v : (N,) float array, channel-last; the state V, updated in place.
    u : (K, N) float array, channel-last; the input currents I on entry, the
        potentials U on exit (zeros with ``clear``).
    theta : (C,) float array, one threshold per channel (inf: never fires).
    leak, v_reset : float scalars of the buffer's dtype.
    soft, strict : bool.
    counts, traces : (N,) float arrays, channel-last, updated in place.
    gain : float
        The input gain g (k of EULER), rounded once to the buffer's dtype.
    fired : (N,) bool array, optional
        Delayed reset: the spikes of the step before the window on entry,
        those of its last step on exit. None: reset before the leak.
        PRODUCT only.
    clear : bool
        Leave ``u`` all zero instead of holding the potentials, so that the
        caller can scatter the next window into it without zeroing it first.
    form : int
        PRODUCT (default), EULER, EULER_DIVIDE or SUBTRACT_DIVIDE.
    divisor : float
        d of the divide forms, rounded once to the buffer's dtype.

    Returns
    -------
    (indptr, index, overflow)
        The spikes of the window: row pointers from 0 and C-order indices (all
        spikes carry value 1); and whether some potential U of the window was
        inf or NaN (an input current or a sum that overflowed the dtype). The
        caller then refuses the run and finds the step by running the window
        again with ``clear=False``.

    Overflow is found without a test per neuron and step, which would cost
    about a tenth of the kernel: a U that is inf or NaN either fires (only
    +inf can) and is tested as its spike is emitted, or it does not fire and
    leaves a state V that is inf or NaN for the rest of the window (the leak
    and every later step keep it so, in every form: ``inf - inf`` is NaN),
    tested once at the window's end.
    """
    steps, size = u.shape
    channels = theta.shape[0]
    plane = size // channels
    g = u.dtype.type(gain)
    d = u.dtype.type(divisor)
    one, zero = u.dtype.type(1), u.dtype.type(0)
    # Spike flags, padded to whole 8-byte words so that the emitting scan
    # can skip 8 silent neurons at a time.
    spiked = np.zeros((size + 7) // 8 * 8, np.uint8)
    spiked_words = spiked.view(np.uint64)
    # Thresholds per neuron, so that the step's loop runs flat over all
    # neurons: a loop over a layer's few channels per position is too short
    # to vectorise well.
    th_of = np.empty(size, u.dtype)
    for p in range(plane):
        th_of[p * channels : (p + 1) * channels] = theta
    out_ptr = np.zeros(steps + 1, np.int64)
    out_idx = np.empty(64, np.int64)
    n = 0
    overflow = False
    for k in range(steps):
        # One branch-free pass over the neurons (selects, not jumps, so that
        # it vectorises), then a scan for the few that fired to emit them.
        n_fired = 0
        for j in range(size):
            th = th_of[j]
            # The form is the same for every neuron and step: LLVM hoists the
            # test out of the loop, and the product form's loop is unchanged.
            gi = g * u[k, j]
            if form == PRODUCT:
                uu = v[j] + gi
            elif form == EULER:
                uu = v[j] + g * (u[k, j] - v[j])
            elif form == EULER_DIVIDE:
                uu = v[j] + (u[k, j] - v[j]) / d
            else:
                uu = (v[j] - v[j] / d) + u[k, j]
            if fired is not None:  # the previous step's spike, reset after the leak
                reset = uu - th if soft else v_reset + gi
                uu = reset if fired[j] else uu
            fire = uu > th if strict else uu >= th
            # With clear, U stays only where the neuron fired, for the emitting scan to test.
            u[k, j] = (uu if fire else zero) if clear else uu
            spiked[j] = fire
            n_fired += fire
            counts[j] += one if fire else zero
            traces[j] = leak * traces[j] + (one if fire else zero)
            if fired is not None:
                fired[j] = fire
                v[j] = leak * uu
            else:
                reset = uu - th if soft else v_reset
                kept = reset if fire else uu
                v[j] = leak * kept if form == PRODUCT else kept
        if n + n_fired > out_idx.shape[0]:
            out_idx = grown_to(out_idx, n + n_fired)
        end = n + n_fired
        word = 0
        while n < end:
            bits = spiked_words[word]
            while bits != 0:  # each flag byte is 0 or 1: one set bit per spike
                byte = trailing_zeros(bits) // 8
                j = 8 * word + (byte if LITTLE_ENDIAN else 7 - byte)
                p = j // channels
                out_idx[n] = (j - p * channels) * plane + p
                overflow |= not abs(u[k, j]) < np.inf  # +inf, the one non-finite U that fires
                if clear:
                    u[k, j] = zero
                n += 1
                bits &= bits - uint64(1)
            word += 1
        out_ptr[k + 1] = n
    for j in range(size):  # inf and NaN alike
        overflow |= not abs(v[j]) < np.inf
    return out_ptr, out_idx[:n], overflow


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
