"""Direct-current encoding, and the input checks every encoder shares.

Direct (analog) coding feeds the input itself to the first layer as its
current at every step, ``s[t] = x`` for t = 1..T (docs/semantics.md, "Events":
an event may carry any nonzero float for analog input). The first synapse then
sees the same analog current at every step, as a conventional network's first
layer would; spikes start at the first neuron layer.

The checks below are the ones :func:`direct` needs (a finite numeric array of
a given layout, a step count, an output dtype); the other encoders validate
their inputs with them before transforming those inputs. Bad data raises
:class:`~eventsim.errors.EventsError`, bad options
:class:`~eventsim.errors.OptionError`; every message starts with the encoder's
name.
"""

from __future__ import annotations

import math

import numpy as np

from eventsim.errors import EventsError, OptionError
from eventsim.events import FLOAT_DTYPES, Events


def is_number(value: object) -> bool:
    """A real number given as a Python or NumPy scalar, bool excluded."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_dtype(encoder: str, dtype: object) -> np.dtype:
    """The output dtype, float32 or float64."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt not in FLOAT_DTYPES:
        raise OptionError(f"{encoder}: dtype must be float32 or float64, got {dtype!r}")
    return dt


def check_steps(encoder: str, steps: object) -> int:
    """The number of steps, an integer >= 1."""
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, (bool, np.bool_)) or steps < 1:
        raise OptionError(f"{encoder}: steps must be an integer >= 1, got {steps!r}")
    return int(steps)


def check_number(encoder: str, name: str, value: object, *, low: float, low_open: bool, high: float = math.inf) -> float:
    """A finite scalar option above ``low`` (strictly if ``low_open``) and at most ``high``."""
    ok = is_number(value) and math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low}" + ("" if math.isinf(high) else f" and <= {high}")
        raise OptionError(f"{encoder}: {name} must be a finite number {bound}, got {value!r}")
    return float(value)


def check_input(encoder: str, name: str, x: object, *, ndim: int, layout: str, exact: bool = False) -> np.ndarray:
    """``x`` as a finite float64 array with at least (or, if ``exact``, exactly) ``ndim`` axes.

    ``layout`` names the expected axes in messages, e.g. ``"(B, *shape)"``.
    Booleans, integers and floats are accepted and converted to float64 (exact
    for float32 and for integers below 2**53).
    """
    a = np.asarray(x)
    if a.dtype.kind not in "biuf":
        raise EventsError(f"{encoder}: {name} must be a real numeric array, got dtype {a.dtype}")
    if a.ndim < ndim or (exact and a.ndim != ndim):
        need = f"{ndim}" if exact else f"at least {ndim}"
        raise EventsError(f"{encoder}: {name} must have shape {layout} ({need} axes), got shape {a.shape}")
    if 0 in a.shape:
        raise EventsError(f"{encoder}: {name} has an empty axis, shape {a.shape}")
    a = a.astype(np.float64)
    bad = np.argwhere(~np.isfinite(a))
    if bad.size:
        raise EventsError(f"{encoder}: {name} is not finite at index {tuple(int(i) for i in bad[0])}")
    return a


def check_range(encoder: str, name: str, a: np.ndarray, low: float, high: float, hint: str = "") -> None:
    """Raise unless every entry of ``a`` lies in ``[low, high]``; the message names the first that does not."""
    bad = np.argwhere((a < low) | (a > high))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise EventsError(
            f"{encoder}: {name} must lie in [{low}, {high}], got {a[where]!r} at index {where}" + (f"; {hint}" if hint else "")
        )


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
    values = x.astype(dt)
    if not np.all(np.isfinite(values)):
        raise EventsError(f"direct: x overflows {dt} (largest magnitude {np.abs(x).max()!r})")
    dense = np.broadcast_to(values[:, None], (x.shape[0], steps) + x.shape[1:])
    return Events.from_dense(dense)
