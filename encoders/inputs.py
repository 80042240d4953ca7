"""Checks of encoder inputs and options, shared by every encoder.

Each raises with the encoder's name first: :class:`~eventsim.errors.EventsError`
for bad data (non-finite values, shapes, ranges), :class:`~eventsim.errors.OptionError`
for bad options (steps, dtype, numeric parameters).
"""

from __future__ import annotations

import math

import numpy as np

from eventsim.errors import EventsError, OptionError
from eventsim.events import FLOAT_DTYPES


def is_number(value: object) -> bool:
    """A real number given as a Python or NumPy scalar, bool excluded."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def check_dtype(encoder: str, dtype: object) -> np.dtype:
    """The output dtype, float32 or float64."""
    try:
        # np.dtype(None) is float64; None is refused rather than read as a choice.
        dt = np.dtype(dtype) if dtype is not None else None
    except TypeError:
        dt = None
    if dt is None or dt not in FLOAT_DTYPES:
        raise OptionError(f"{encoder}: dtype must be float32 or float64, got {dtype!r}")
    return dt


def check_steps(encoder: str, steps: object) -> int:
    """The number of steps, an integer >= 1."""
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, (bool, np.bool_)) or steps < 1:
        raise OptionError(f"{encoder}: steps must be an integer >= 1, got {steps!r}")
    return int(steps)


def check_number(
    encoder: str, name: str, value: object, *, low: float, low_open: bool, high: float = math.inf
) -> float:
    """A finite scalar option above ``low`` (strictly if ``low_open``) and at most ``high``."""
    ok = is_number(value) and math.isfinite(value) and (value > low if low_open else value >= low) and value <= high
    if not ok:
        bound = f"{'>' if low_open else '>='} {low:g}" + ("" if math.isinf(high) else f" and <= {high:g}")
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
    finite = np.isfinite(a)
    if not finite.all():  # the index of the first only then: argwhere costs ten times the test
        raise EventsError(f"{encoder}: {name} is not finite at index {tuple(int(i) for i in np.argwhere(~finite)[0])}")
    return a


def check_range(encoder: str, name: str, a: np.ndarray, low: float, high: float, hint: str = "") -> None:
    """Raise unless every entry of ``a`` lies in ``[low, high]``; the message names the first that does not."""
    outside = (a < low) | (a > high)
    if outside.any():
        where = tuple(int(i) for i in np.argwhere(outside)[0])
        bound = f">= {low:g}" if math.isinf(high) else f"in [{low:g}, {high:g}]"
        message = f"{encoder}: {name} must be {bound}, got {float(a[where])!r} at index {where}"
        raise EventsError(message + (f"; {hint}" if hint else ""))
