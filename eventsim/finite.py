"""Finiteness of the numbers a run computes with, in the dtype it computes in.

A parameter is validated where it is stored, but a run computes with it
rounded to the network's dtype (float32 by default): a finite ``1e300``
becomes inf in float32 and a positive ``1e-50`` becomes 0, and either turns
potentials into inf or NaN without an error. So every parameter is checked
again *after* that rounding (:func:`in_dtype`), and the first entry that is
not finite is named (:func:`check_finite`). The run-time counterpart, the
overflow of a potential at some step, is found by the kernels and reported by
the network (:mod:`eventsim.network`, :mod:`eventsim.dense.network`).
"""

from __future__ import annotations

import numpy as np

from eventsim.errors import LayerError


def _at(where: tuple[int, ...]) -> str:
    return f" at index {where}" if where else ""


def check_finite(owner: object, what: str, w: np.ndarray) -> None:
    """Raise :class:`LayerError` naming the first NaN or infinite entry of ``w``."""
    bad = np.argwhere(~np.isfinite(w))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise LayerError(owner, f"{what} is not finite{_at(where)} (value {w[where]})")


def in_dtype(owner: object, what: str, value: object, dtype: np.dtype, *, positive: bool = False) -> np.ndarray:
    """``value`` rounded to ``dtype``; :class:`LayerError` where the rounding broke it.

    An entry that is finite before the rounding must stay finite, and with
    ``positive`` an entry > 0 must stay > 0 (a threshold or gain of 0 is not
    the neuron that was asked for). An entry that was already infinite is left
    to the caller: a threshold of ``np.inf`` is a neuron that never fires
    (docs/semantics.md, "Neurons"), and NaN is refused where a parameter is
    set. The message names both values, e.g. ``input_gain is inf in float32
    (1e+300 in float64)``.
    """
    dtype = np.dtype(dtype)
    original = np.asarray(value)
    with np.errstate(over="ignore"):  # the overflow is what is checked for below
        rounded = original.astype(dtype)
    broken = np.isfinite(original) & ~np.isfinite(rounded)
    if positive:
        broken |= (original > 0) & (rounded == 0)
    if broken.any():
        where = tuple(int(i) for i in np.argwhere(broken)[0])
        was = original[where].item()
        raise LayerError(owner, f"{what} is {rounded[where].item()} in {dtype}{_at(where)} "
                                f"({was!r} in {original.dtype}); the network computes in {dtype}, "
                                f"so give a value that {dtype} can hold")
    return rounded
