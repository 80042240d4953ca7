"""The values of NIR node fields, checked before anything uses them.

A NIR file, or a graph another framework built in memory, may hold anything
in a field: bytes where a float belongs, inf or junk in a shape, complex
numbers, NaN, negative sizes, arrays of the wrong rank. Every field value the
file reader (:mod:`eventsim.nir.files`) hands to the ``nir`` package's node
constructors, and every one the importer turns into a layer, goes through
one of these functions. They return plain NumPy arrays and Python ints and
strings, or raise :class:`~eventsim.errors.NIRError` naming the node and the
field, so that no raw TypeError, OverflowError or ValueError escapes and no
value turns silently into a different number (a complex weight losing its
imaginary part, a float64 overflowing to inf in float32).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventsim.errors import NIRError

#: Largest size, stride, kernel or dimension index a field may hold. Far
#: beyond any real layer, small enough that a handful of them multiplied
#: together cannot wrap around in int64 before the memory limit sees them.
LARGEST_INT = 2**31 - 1


class Field:
    """One field of one node: where an error about its value points."""

    def __init__(self, node: str, kind: str | None, field: str) -> None:
        self.node, self.kind, self.field = node, kind, field

    def error(self, problem: str) -> NIRError:
        return NIRError(f"field {self.field!r} {problem}", node=self.node, kind=self.kind)


def numbers(value: Any, where: Field, dtype: object = None, *, allow_inf: bool = False) -> np.ndarray:
    """``value`` as an array of ``dtype``: real numbers, finite (``+-inf`` too with ``allow_inf``), none
    turned into inf by the conversion (1e300 does not fit float32).

    ``dtype`` None keeps a floating-point array's own dtype and gives integers
    and booleans as float64.
    """
    if hasattr(value, "detach"):  # a torch tensor, as snnTorch's exporter leaves some in memory
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
    except (TypeError, ValueError) as exc:
        raise where.error(f"is not an array of numbers ({exc})") from None
    if arr.dtype.kind not in "biuf":
        raise where.error(f"must hold real numbers, got {_show(value)} (dtype {arr.dtype})")
    if dtype is None:
        dtype = arr.dtype if arr.dtype.kind == "f" else np.float64
    with np.errstate(all="ignore"):  # overflow is checked below, where it can be named
        wide = arr.astype(np.float64)
        out = wide.astype(dtype)
    bad = np.isnan(wide) | (np.isinf(wide) & (not allow_inf))
    if bad.any():
        raise where.error(f"is not finite at index {_index(bad)}")
    lost = np.isinf(out) & np.isfinite(wide)
    if lost.any():
        at = _index(lost)
        raise where.error(f"holds {float(wide[at])!r} at index {at}, beyond the range of "
                          f"{np.dtype(dtype)} (largest {np.finfo(dtype).max:.4g})")
    return out


def integers(value: Any, where: Field, *, low: int, size: int | None = None) -> tuple[int, ...]:
    """``value`` as a flat tuple of whole numbers in ``[low, LARGEST_INT]`` (exactly ``size`` of them if given)."""
    flat = numbers(value, where, np.float64).reshape(-1)
    if size is not None and flat.size != size:
        raise where.error(f"must hold {size} whole number{'s' * (size != 1)}, got {_show(value)}")
    if np.any(flat != np.round(flat)) or np.any(flat < low) or np.any(flat > LARGEST_INT):
        raise where.error(f"must hold whole numbers from {low} to {LARGEST_INT}, got {_show(value)}")
    return tuple(int(n) for n in flat)


def integer(value: Any, where: Field, *, low: int = -LARGEST_INT) -> int:
    """``value`` as one whole number in ``[low, LARGEST_INT]`` (a scalar or a one-element array)."""
    return integers(value, where, low=low, size=1)[0]


def pair(value: Any, where: Field, *, low: int) -> tuple[int, int]:
    """``value`` as two whole numbers ``>= low``: one number meaning both, or a pair."""
    flat = integers(value, where, low=low)
    if len(flat) == 1:
        flat = flat * 2
    if len(flat) != 2:
        raise where.error(f"must be one whole number or a pair of them, got {_show(value)}")
    return flat[0], flat[1]


def shape(value: Any, where: Field) -> tuple[int, ...]:
    """``value`` as a shape: a flat sequence of positive whole numbers."""
    arr = numbers(value, where)
    if arr.ndim > 1:
        raise where.error(f"must be a flat list of sizes, got an array of shape {arr.shape}")
    return integers(arr, where, low=1)


def text(value: Any, where: Field) -> str:
    """``value`` as a string: a ``str``, or UTF-8 bytes (as h5py returns them), alone or in a 0-d array."""
    if isinstance(value, np.ndarray) and value.shape == ():
        value = value[()]
    if isinstance(value, (bytes, np.bytes_)):
        try:
            return bytes(value).decode("utf8")
        except UnicodeDecodeError:
            raise where.error(f"is not UTF-8 text: {_show(value)}") from None
    if isinstance(value, str):
        return str(value)
    raise where.error(f"must be a string, got {_show(value)}")


def edge(value: Any, where: Field) -> tuple[str, str]:
    """A graph edge ``value`` as its (source, target) node names."""
    try:
        if isinstance(value, (str, bytes)):
            raise ValueError
        a, b = value
    except (TypeError, ValueError):
        raise NIRError(f"edge {value!r} is not a (source, target) pair") from None
    return text(a, where), text(b, where)


def _index(mask: np.ndarray) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _show(value: Any) -> str:
    """A short description of ``value`` for a message: short values in full, arrays by dtype and shape."""
    if isinstance(value, np.ndarray) and value.size > 4:
        return f"an array of shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
