"""Event-camera recordings binned into T steps.

docs/semantics.md, "Events": a timestamp maps to a step by

    step = floor((t_us - start_us) / step_us)

and the polarity is the channel, so a recording on an H x W sensor becomes
events of shape ``(2, H, W)``. A bin holds 1 if any event of that pixel and
polarity fell into it (``values="binary"``, the default) or their number
(``values="count"``).

The window. ``start_us`` defaults to the first timestamp. Given ``steps``,
the step length is ``(end_us - start_us) // steps`` whole microseconds, with
``end_us`` defaulting to the last timestamp, and events at or after
``start_us + steps * step_us`` are dropped: the rounding down and the dropped
tail are those of tonic's ``ToFrame(n_time_bins=T)``, so count binning equals
it exactly. Given ``step_us`` instead, ``steps = (end_us - start_us) // step_us + 1``
so that the last event is inside. Given both, both are used as they are.
Events before ``start_us`` are dropped.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventsim.errors import EventsError, OptionError, check_choice
from eventsim.encoders.inputs import check_dtype
from eventsim.events import Events

VALUES = ("binary", "count")


def _fields(recording: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y, t, p of a structured array (tonic's layout) or of an object with those attributes."""
    try:
        if isinstance(recording, np.ndarray) and recording.dtype.names:
            return tuple(np.asarray(recording[k]) for k in ("x", "y", "t", "p"))  # type: ignore[return-value]
        return tuple(np.asarray(getattr(recording, k)) for k in ("x", "y", "t", "p"))  # type: ignore[return-value]
    except (KeyError, ValueError, AttributeError):
        raise EventsError("a recording needs fields x, y, t (microseconds) and p (polarity)") from None


def bin_events(
    recording: Any,
    *,
    sensor: tuple[int, int],
    steps: int | None = None,
    step_us: int | None = None,
    start_us: int | None = None,
    end_us: int | None = None,
    values: str = "binary",
    dtype: Any = np.float32,
) -> Events:
    """Bin one recording into a sample of T steps, shape ``(2, H, W)``.

    Parameters
    ----------
    recording : structured array or object
        Fields ``x`` (column), ``y`` (row), ``t`` (microseconds, integer) and
        ``p`` (polarity 0 or 1, the channel), one entry per event.
    sensor : (H, W)
        Sensor size; every coordinate must lie inside it.
    steps, step_us : int, optional
        Number of steps and/or step length in microseconds (at least one).
    start_us, end_us : int, optional
        The window (see the module docstring).
    values : {"binary", "count"}
    dtype : float32 or float64

    Returns
    -------
    Events
        Batch 1, ``steps`` steps, shape ``(2, H, W)``.
    """
    check_choice("values", values, VALUES)
    dtype = check_dtype("bin_events", dtype)
    height, width = (int(v) for v in sensor)
    if height < 1 or width < 1:
        raise OptionError(f"sensor must be (H, W) with positive sizes, got {sensor!r}")
    if steps is None and step_us is None:
        raise OptionError("give steps= (number of steps) or step_us= (step length in microseconds)")
    for what, v in (("steps", steps), ("step_us", step_us)):
        if v is not None and (not isinstance(v, (int, np.integer)) or v < 1):
            raise OptionError(f"{what} must be a positive integer, got {v!r}")
    x, y, t, p = (a.astype(np.int64, copy=False) for a in _fields(recording))
    n = t.shape[0]
    if not (x.shape == y.shape == p.shape == (n,)):
        raise EventsError(f"x, y, t, p must be 1-D of one length, got {x.shape}, {y.shape}, {t.shape}, {p.shape}")
    for what, arr, size in (("x", x, width), ("y", y, height), ("p", p, 2)):
        bad = np.flatnonzero((arr < 0) | (arr >= size))
        if bad.size:
            raise EventsError(f"event {bad[0]}: {what} = {arr[bad[0]]} is outside [0, {size})")

    if n == 0 and (start_us is None or (steps is None and end_us is None)):
        if steps is None:
            raise OptionError("an empty recording needs steps= (or a full window) to know its length")
        return Events.empty(batch=1, steps=steps, shape=(2, height, width), dtype=dtype)
    start = int(t[0]) if start_us is None else int(start_us)
    end = int(t[-1]) if end_us is None else int(end_us)
    if end < start and (steps is None or step_us is None):
        raise OptionError(f"the window ends ({end} us) before it starts ({start} us)")
    if step_us is None:
        step_us = (end - start) // steps
        if step_us < 1:
            raise OptionError(f"a window of {end - start} us is too short for {steps} steps of at least 1 us")
    elif steps is None:
        steps = (end - start) // step_us + 1

    step = np.floor_divide(t - start, step_us)
    inside = (t >= start) & (step < steps)
    neuron = (p[inside] * height + y[inside]) * width + x[inside]
    key, count = np.unique(step[inside] * (2 * height * width) + neuron, return_counts=True)
    value = np.ones(key.shape[0], dtype) if values == "binary" else count.astype(dtype)
    return Events.from_coo(
        np.zeros(key.shape[0], np.int64), key // (2 * height * width), key % (2 * height * width), value,
        batch=1, steps=int(steps), shape=(2, height, width),
    )
