"""Delta modulation: events where a signal has changed by more than a threshold.

Each element keeps a reference level. When the signal rises more than
``threshold`` above it the element emits +1, when it falls more than
``threshold`` below it -1, and the reference jumps to the current value.

Why the reference moves to the current value rather than by one threshold:
an element then fires once per change, however large, and stops firing as
soon as the signal stops changing. Moving the reference by the threshold (a
sigma-delta quantiser) makes a jump of several thresholds fire on several
consecutive steps, one event per step, so the events lag the change; that
suits reconstructing the signal rather than detecting its changes. Resetting
to the current value is also what an event-camera pixel does (Lichtsteiner et
al. 2008), so :func:`delta_step` serves the saccade model of
:mod:`eventsim.encoders.saccade` as well, on log intensity.
"""

from __future__ import annotations

import numpy as np

from eventsim.encoders.inputs import check_dtype, check_input, check_number
from eventsim.errors import OptionError
from eventsim.events import Events


def delta_step(signal: np.ndarray, reference: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """One step of delta modulation; moves ``reference`` in place.

    Returns the masks ``on = signal - reference > threshold`` and
    ``off = signal - reference < -threshold`` (float64 arithmetic when both
    arrays are float64) and sets ``reference = signal`` where either is true.
    """
    change = signal - reference
    on = change > threshold
    off = change < -threshold
    fired = on | off
    reference[fired] = signal[fired]
    return on, off


def delta(x: np.ndarray, threshold: float, *, off_spikes: bool = True, dtype: object = np.float32) -> Events:
    """Delta modulation of a sequence (reference reset to the current value).

    For every sample and element, with the reference ``r`` and 0-based steps::

        r = x[0]                      no event at step 0
        for t = 1 .. T-1:
            d = x[t] - r
            s[t] = +1 if d > threshold, -1 if d < -threshold, else 0
            r = x[t]  where s[t] != 0

    in float64 (``x`` converted exactly). The first step only sets the
    reference, so a constant sequence gives no events at all, whatever its
    level. With ``off_spikes=False`` the -1 events are left out of the output
    but the reference still follows falls, so the +1 events are the same
    either way. A ramp of slope ``a`` per step fires every
    ``k = floor(threshold / a) + 1`` steps (the change must exceed the
    threshold strictly), ``floor((T - 1) / k)`` times over T steps.

    Parameters
    ----------
    x : array, shape ``(B, T, *shape)``
        Finite real signal, batch first, then steps.
    threshold : float
        Change that triggers an event, > 0.
    off_spikes : bool
        Emit -1 events for falls (default), or only +1 events for rises.
    dtype : float32 or float64
        Dtype of the event values.

    Returns
    -------
    Events
        Batch B, T steps, neuron shape ``x.shape[2:]``.
    """
    if not isinstance(off_spikes, (bool, np.bool_)):
        raise OptionError(f"delta: off_spikes must be True or False, got {off_spikes!r}")
    dt = check_dtype("delta", dtype)
    threshold = check_number("delta", "threshold", threshold, low=0.0, low_open=True)
    x = check_input("delta", "x", x, ndim=3, layout="(B, T, *shape)")
    out = np.zeros(x.shape, dtype=dt)
    reference = x[:, 0].copy()
    for t in range(1, x.shape[1]):
        on, off = delta_step(x[:, t], reference, threshold)
        out[:, t][on] = 1
        if off_spikes:
            out[:, t][off] = -1
    return Events.from_dense(out)
