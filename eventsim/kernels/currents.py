"""Currents that are passed on as events, constant (bias) currents, the summed values of events, and
the flags of the neuron blocks a window's currents reach."""

import numpy as np
from numba import njit, uint64


@njit(cache=True, nogil=True)
def currents_to_events(cur, channels, totals=None):
    """Emit the nonzero entries of a window of currents as events.

    What a synapse not followed by a neuron layer passes on (linear average
    pooling, sum pooling): the event value is the current itself. With
    ``channels = 1`` the layout is C order already: any ``(K, N)`` array of
    values becomes K frames of events (``lee2020``'s one frame of totals per
    sample).

    Parameters
    ----------
    cur : (K, P*C) float array, channel-last.
    totals : (P*C,) float array, channel-last, optional; summed emitted
        values, updated in place (None: not kept).

    Returns
    -------
    (indptr, index, value)
        Row pointers from 0, C-order indices, values.
    """
    steps, size = cur.shape
    plane = size // channels
    # Counted first, so that the outputs are allocated once: growing them
    # inside the loop kept it from compiling to a tight scan (20x slower).
    n = 0
    for k in range(steps):
        for j in range(size):
            n += cur[k, j] != 0
    out_ptr = np.zeros(steps + 1, np.int64)
    # One slot more: every entry is written and the count moves on only past
    # a nonzero one, which spares a branch that mispredicts on scattered values.
    out_idx = np.empty(n + 1, np.int64)
    out_val = np.empty(n + 1, cur.dtype)
    n = 0
    for k in range(steps):
        for p in range(plane):  # j = p * channels + c in ascending order, without a division per event
            for c in range(channels):
                j = p * channels + c
                val = cur[k, j]
                out_idx[n] = c * plane + p
                out_val[n] = val
                if totals is not None:  # adding a zero changes no sum: one starts at +0 and is never -0
                    totals[j] += val
                n += val != 0
        out_ptr[k + 1] = n
    return out_ptr, out_idx[:n], out_val[:n]


@njit(cache=True, nogil=True)
def add_bias(cur, bias):
    """Add a constant current per channel to every position and step.

    ``cur`` is ``(K, P*C)`` channel-last and ``bias`` is ``(C,)``.
    """
    channels = bias.shape[0]
    for k in range(cur.shape[0]):
        for j in range(cur.shape[1]):
            cur[k, j] += bias[j % channels]


@njit(cache=True, nogil=True)
def event_totals(out, indptr, index, value, steps):
    """Add the summed event values of rows of events into ``out``, one row of ``out`` per sample.

    ``out[r // steps, index[e]] += value[e]`` for every event e of every row
    r, in the order the events are stored (:meth:`eventsim.Events.totals`:
    the ``x`` of Lee et al. 2020, eq. 4, for the input spikes).

    Parameters
    ----------
    out : (B, N) float array, accumulated into.
    indptr : (B * steps + 1,) int64
        Row pointers of B samples of ``steps`` rows each (absolute offsets:
        one sample's ``Events.sample_rows`` with B = 1).
    index, value : the events.
    steps : int
        Rows per sample.
    """
    for r in range(indptr.shape[0] - 1):
        b = r // steps
        for e in range(indptr[r], indptr[r + 1]):
            out[b, index[e]] += value[e]


@njit(cache=True, nogil=True)
def mark_blocks(flags, k, lo, hi, shift):
    """Flag the blocks of ``2^shift`` neurons holding the channel-last offsets ``lo`` to ``hi - 1`` at step ``k``.

    What a scatter kernel records besides the currents it adds, so that the
    neuron kernel reads only the blocks that received any
    (:func:`eventsim.kernels.flagged_lif_window`). A flag set where the
    current summed to zero only costs that block the ordinary update.
    """
    # Unsigned: no test for an index wrapping around from the end (the
    # scatter kernels call this for every row of outputs an event reaches).
    for b in range(uint64(lo >> shift), uint64(((hi - 1) >> shift) + 1)):
        flags[k, b] = 1


@njit(cache=True, nogil=True)
def count_flags(flags):
    """The number of nonzero entries of ``flags``: the (step, block) pairs a window's currents reached.

    What decides whether a neuron layer skips its silent blocks
    (``eventsim.stages.SILENT_SHARE``); counted without the GIL, which
    NumPy's ``count_nonzero`` holds while the other threads wait for it.
    """
    n = 0
    for f in flags.ravel():
        n += f != 0
    return n
