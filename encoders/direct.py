"""Direct-current encoding.

Direct (analog) coding feeds the input itself to the first layer as its
current at every step, ``s[t] = x`` for t = 1..T (docs/semantics.md, "Events":
an event may carry any nonzero float for analog input). The first synapse then
sees the same analog current at every step, as a conventional network's first
layer would; spikes start at the first neuron layer.
"""

from __future__ import annotations

import numpy as np

from eventsim.encoders.inputs import check_dtype, check_input, check_steps
from eventsim.errors import EventsError
from eventsim.events import Events


def direct(x: np.ndarray, steps: int, *, dtype: object = np.float32) -> Events:
    """Direct-current encoding: the input is the current at every step.

    ``s[b, t] = x[b]`` for every step t, so the events are the nonzero entries
    of ``x`` repeated at each of the ``steps`` steps with their values (cast to
    ``dtype``; entries that round to 0 in ``dtype`` give no event).

    Parameters
    ----------
    x : array, shape ``(B, *shape)``
        Finite real values, one sample per row.
    steps : int
        Number of steps T >= 1.
    dtype : float32 or float64
        Dtype of the event values.

    Returns
    -------
    Events
        Batch B, T steps, neuron shape ``x.shape[1:]``.
    """
    dt = check_dtype("direct", dtype)
    steps = check_steps("direct", steps)
    x = check_input("direct", "x", x, ndim=2, layout="(B, *shape)")
    with np.errstate(over="ignore"):  # an overflow is reported just below, as an error
        values = x.astype(dt)
    if not np.all(np.isfinite(values)):
        raise EventsError(f"direct: x overflows {dt} (largest magnitude {np.abs(x).max()!r})")
    # Every step of a sample holds the same events: its nonzero entries, found once and repeated.
    batch, samples = x.shape[0], values.reshape(x.shape[0], -1)
    nonzero = [np.flatnonzero(sample) for sample in samples]
    indptr = np.zeros(batch * steps + 1, np.int64)
    np.cumsum(np.repeat([entries.size for entries in nonzero], steps), out=indptr[1:])
    index = np.concatenate([np.tile(entries, steps) for entries in nonzero]).astype(np.int64, copy=False)
    value = np.concatenate([np.tile(sample[entries], steps) for sample, entries in zip(samples, nonzero)])
    return Events(indptr, index, value, batch=batch, steps=steps, shape=x.shape[1:], check=False)
