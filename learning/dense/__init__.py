"""Dense NumPy references of the gradient rules.

Each rule of docs/semantics.md, "Gradient rules", written plainly on dense
``(batch, T, *shape)`` arrays from the specification alone: a forward pass
with :func:`eventsim.dense.run_dense` in the network's dtype (so the spikes
are exactly the simulator's), then a backward pass in float64 that follows
the equations line by line. They are the oracle the event-driven rules of
:mod:`eventsim.learning` are tested against, and the readable version of
those rules; they are slow and meant for small networks.

- :func:`bptt_gradients` (:mod:`~eventsim.learning.dense.bptt`):
  backpropagation through time with a surrogate ``ds/dU``, reset detached or
  not.
- :func:`lee2020_gradients` (:mod:`~eventsim.learning.dense.lee2020`):
  Lee et al. 2020, eqs. 22-27, one backward pass on totals over the window.

Both share the layer-by-layer adjoints (convolution, linear, pools, max-pool
routing, dropout, flatten, residual blocks) of
:mod:`~eventsim.learning.dense.layerwise`, and return float64 gradients
under the keys of :func:`eventsim.learning.parameters.parameters`.
"""

from __future__ import annotations

from eventsim.learning.dense.bptt import bptt_gradients
from eventsim.learning.dense.lee2020 import lee2020_gradients

__all__ = ["bptt_gradients", "lee2020_gradients"]
