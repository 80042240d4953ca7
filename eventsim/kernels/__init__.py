"""Numba kernels of the event-driven path, one concern per module.

Conventions shared by every kernel:

- Events of a window of K steps arrive as ``(indptr, index, value)``: the
  events of step k are ``index[indptr[k]:indptr[k+1]]`` (absolute offsets, so a
  slice of a larger container's row pointers can be passed without copying).
  ``index`` is the flat neuron index in C order of ``(C, H, W)``; a flat layer
  of N neurons is ``(N, 1, 1)``.
- Currents and potentials of a window live in a ``(K, P*C)`` buffer in
  channel-last order (position ``p = y*W + x`` major, channel minor), so that an
  event adds contiguous runs of output channels. Emitted events are converted
  back to C-order indices ``c*P + p``.
- Scatter kernels *add* into the buffer they are given and return the number
  of operations performed (exact SynOps or pooling ops).
- Backward kernels (``*_transpose``, ``*_weight_grad``, ``maxpool_route``)
  read gradients in the same channel-last ``(K, P*C)`` layout, one row per
  frame (a step, or a sample's totals), and add into the buffer they are given.
- Scatter kernels into a neuron layer's buffer can also set, in a ``(K, ceil(N / 2^shift))``
  uint8 array, the flag of every (step, block of ``2^shift`` channel-last
  neurons) they add to; :func:`flagged_lif_window` reads only the flagged blocks.
- A neuron layer fed by one such scatter can take both in one kernel
  (:mod:`eventsim.kernels.stepwise`): each step's currents are added to a
  single row and integrated at once, with the same bits.
- Kernels never change dtype: buffers, weights and values share one float
  dtype, chosen by the caller.

Each kernel has a dense NumPy twin in :mod:`eventsim.dense`, written
independently; the twin is the reference in tests.
"""

from eventsim.kernels.bptt import surrogate_recursion
from eventsim.kernels.conv import conv_scatter, conv_transpose, conv_weight_grad
from eventsim.kernels.currents import add_bias, count_flags, currents_to_events, event_totals, mark_blocks
from eventsim.kernels.dropout import dropout_events
from eventsim.kernels.linear import linear_scatter, linear_transpose, linear_weight_grad
from eventsim.kernels.neurons import flagged_lif_window, lif_window, plain_lif_window, reverse_recursion
from eventsim.kernels.pooling import maxpool_events, maxpool_route, pool_scatter, pool_transpose
from eventsim.kernels.recurrent import recurrent_window
from eventsim.kernels.stepwise import conv_lif_window, linear_lif_window, pool_lif_window

__all__ = [
    "add_bias",
    "conv_lif_window",
    "conv_scatter",
    "conv_transpose",
    "conv_weight_grad",
    "count_flags",
    "currents_to_events",
    "dropout_events",
    "event_totals",
    "flagged_lif_window",
    "lif_window",
    "linear_lif_window",
    "linear_scatter",
    "linear_transpose",
    "linear_weight_grad",
    "plain_lif_window",
    "mark_blocks",
    "maxpool_events",
    "maxpool_route",
    "pool_lif_window",
    "pool_scatter",
    "pool_transpose",
    "recurrent_window",
    "reverse_recursion",
    "surrogate_recursion",
]
