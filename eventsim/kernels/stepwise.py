"""A synapse and the neuron layer it feeds, step by step: the currents of a step are integrated as soon as they are added.

:func:`~eventsim.kernels.flagged_lif_window` reads a window of K rows of currents that a
scatter kernel wrote before, up to ``2^23`` values (32 MB of float32): by the
time the neurons read a row, it has left the core's caches, and so has the
row the scatter is writing. Here the scatter adds one step's currents to a
single row, the neurons that received them are updated from it at once
(:func:`~eventsim.kernels.neurons.skipping_step`, which zeroes the row's
blocks it reads and the flags), and the next step reuses the row, which stays
in the cache.

The arithmetic is that of the scatter kernel followed by
:func:`~eventsim.kernels.flagged_lif_window`, term for term and in the same order, so the
events, potentials, counts and traces are the same bits (tests compare the
two). The conditions are :func:`~eventsim.kernels.flagged_lif_window`'s (the immediate reset,
``0 <= lam <= 1``, a finite gain) and the synapse's: no bias, no delays.

Each kernel returns ``(indptr, index, value, overflow, skipped, ops)``: the
output of :func:`~eventsim.kernels.flagged_lif_window` and the scatter's count of operations
(SynOps, or pooling ops). ``row`` is a zeroed ``(1, N)`` buffer of the
currents' dtype, ``flags`` a zeroed ``(1, ceil(N / 2^shift))`` uint8 array;
both are zero again on return.
"""

import numpy as np
from numba import njit

from eventsim.kernels.conv import conv_geometry, conv_step, conv_step_flags, reversed_taps
from eventsim.kernels.linear import linear_step
from eventsim.kernels.neurons import skipped_nothing, skipping_end, skipping_start, skipping_step, with_step
from eventsim.kernels.pooling import pool_step, pool_tables


#: The row of the one-row buffers, typed as :func:`~eventsim.kernels.flagged_lif_window` passes its step, not as a
#: literal: Numba compiles the shared skipping step once for both.
ROW = np.int64(0)


@njit(cache=True, nogil=True)
def conv_lif_window(v, indptr, index, value, weight, in_hw, out_hw, stride, padding, row, flags, shift, theta, leak,
                    soft, v_reset, strict, counts, traces, gain):
    """:func:`~eventsim.kernels.conv_scatter` then :func:`~eventsim.kernels.flagged_lif_window`, a step at a time."""
    geometry = conv_geometry(weight, in_hw, out_hw, stride, padding)
    taps = reversed_taps(weight)
    flat_row = row.ravel()
    steps = indptr.shape[0] - 1
    work = skipping_start(v, theta, row.shape[1], shift, soft, v_reset, strict, gain, steps)
    out = skipped_nothing(v.dtype)
    ops = 0
    for k in range(steps):
        ops += conv_step(flat_row, 0, indptr, index, value, k, taps, geometry)
        conv_step_flags(flags, 0, indptr, index, k, geometry, shift)
        out = with_step(out, work, k, skipping_step(v, row, ROW, flags, k, work, shift, leak, soft, v_reset, strict,
                                                    counts, traces))
    return skipping_end(v, traces, work, out, shift, leak) + (ops,)


@njit(cache=True, nogil=True)
def pool_lif_window(v, indptr, index, value, weight, channels, in_hw, out_hw, kernel, stride, row, flags, shift,
                    theta, leak, soft, v_reset, strict, counts, traces, gain):
    """:func:`~eventsim.kernels.pool_scatter` then :func:`~eventsim.kernels.flagged_lif_window`, a step at a time."""
    tables = pool_tables(channels, in_hw, out_hw, kernel, stride)
    steps = indptr.shape[0] - 1
    work = skipping_start(v, theta, row.shape[1], shift, soft, v_reset, strict, gain, steps)
    out = skipped_nothing(v.dtype)
    ops = 0
    for k in range(steps):
        ops += pool_step(row, 0, indptr, index, value, k, weight, tables, flags, shift)
        out = with_step(out, work, k, skipping_step(v, row, ROW, flags, k, work, shift, leak, soft, v_reset, strict,
                                                    counts, traces))
    return skipping_end(v, traces, work, out, shift, leak) + (ops,)


@njit(cache=True, nogil=True)
def linear_lif_window(v, indptr, index, value, weight_t, row, flags, shift, theta, leak, soft, v_reset, strict,
                      counts, traces, gain):
    """:func:`~eventsim.kernels.linear_scatter` (no delays) then :func:`~eventsim.kernels.flagged_lif_window`, a step at a time."""
    steps = indptr.shape[0] - 1
    work = skipping_start(v, theta, row.shape[1], shift, soft, v_reset, strict, gain, steps)
    out = skipped_nothing(v.dtype)
    for k in range(steps):
        linear_step(row, 0, indptr, index, value, k, weight_t, flags, shift)
        out = with_step(out, work, k, skipping_step(v, row, ROW, flags, k, work, shift, leak, soft, v_reset, strict,
                                                    counts, traces))
    return skipping_end(v, traces, work, out, shift, leak) + ((indptr[-1] - indptr[0]) * weight_t.shape[1],)
