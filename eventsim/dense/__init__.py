"""Dense NumPy twins of the event-driven kernels.

Each event kernel of :mod:`eventsim.kernels` has a twin here that computes the
same quantity on dense arrays, written directly from the equations of
docs/semantics.md and the layer docstrings of :mod:`eventsim.layers`, without
looking at the event path. The twins serve two purposes:

- the independent reference the event path is tested against (with dyadic
  weights the two must agree bit for bit, docs/semantics.md "Numerics");
- the readable version of each computation, for students.

They are never called on the hot path. Every function keeps the float dtype
of its input (float32 or float64).

Modules: :mod:`~eventsim.dense.conv`, :mod:`~eventsim.dense.linear`,
:mod:`~eventsim.dense.pooling`, :mod:`~eventsim.dense.neurons` (the neuron
step in each arithmetic form of docs/semantics.md, on the state record of
"State beyond the potential"),
:mod:`~eventsim.dense.dropout`, :mod:`~eventsim.dense.network` (a whole
network, step by step) and :mod:`~eventsim.dense.counting` (brute-force
operation counts).
"""

from __future__ import annotations

from eventsim.dense.conv import conv2d
from eventsim.dense.counting import ann_macs_conv2d, conv2d_synops, delayed_linear_synops, linear_synops, pool_ops
from eventsim.dense.dropout import apply_dropout, draw_dropout_mask
from eventsim.dense.linear import delayed_linear, linear
from eventsim.dense.network import DenseRun, run_dense
from eventsim.dense.neurons import NeuronState, initial_state, lif_step, neuron_step
from eventsim.dense.pooling import avg_pool, max_pool, subsample, sum_pool

__all__ = [
    "DenseRun",
    "NeuronState",
    "ann_macs_conv2d",
    "apply_dropout",
    "avg_pool",
    "conv2d",
    "conv2d_synops",
    "delayed_linear",
    "delayed_linear_synops",
    "draw_dropout_mask",
    "initial_state",
    "linear",
    "linear_synops",
    "lif_step",
    "max_pool",
    "neuron_step",
    "pool_ops",
    "run_dense",
    "subsample",
    "sum_pool",
]
