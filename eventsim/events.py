"""The event container: spikes of a batch of samples, stored step-major.

A spike is an event ``(step, neuron, value)`` (docs/semantics.md, "Events"). For each
sample the events are kept in CSR form over steps: the events of sample ``b`` at
step ``t`` (0-based) are ``index[indptr[r]:indptr[r + 1]]`` and the matching
``value`` slice, with row ``r = b * steps + t``. ``index`` is the flat neuron
index in C order of ``shape`` (``(C, H, W)`` for maps, ``(N,)`` for vectors).

Invariants checked on construction (:class:`~eventsim.errors.EventsError`
otherwise): rows are well formed, every index is inside ``shape``, values are
finite and nonzero, no neuron appears twice in one row, values are float32 or
float64. A container is the sparse form of a dense ``(batch, steps, *shape)``
array whose nonzero entries are the events; :meth:`Events.from_dense` and
:meth:`Events.to_dense` convert exactly.

The arrays are read-only after construction: a validated container cannot be
changed into an invalid one behind the validator's back.
"""

from __future__ import annotations

from math import prod
from typing import Iterable, Sequence

import numpy as np

from eventsim import kernels
from eventsim.errors import EventsError

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _as_shape(shape: Sequence[int]) -> tuple[int, ...]:
    try:
        out = tuple(int(s) for s in shape)
        exact = all(o == s for o, s in zip(out, shape))  # 2.5 is not a size
    except (TypeError, ValueError, OverflowError) as exc:
        raise EventsError(f"shape must be a sequence of ints, got {shape!r}") from exc
    if not exact:
        raise EventsError(f"shape must be a sequence of ints, got {shape!r}")
    if not out or any(s <= 0 for s in out):
        raise EventsError(f"shape must be non-empty with positive sizes, got {shape!r}")
    return out


def _float_dtype(dtype: object, field: str) -> np.dtype:
    dt = np.dtype(dtype)
    if dt not in FLOAT_DTYPES:
        raise EventsError(f"{field} must be float32 or float64, got {dt}")
    return dt


def _int64(arr: np.ndarray, field: str) -> np.ndarray:
    """``arr`` as a 1-D int64 array, refusing any value the cast would change.

    Comparisons are done after this cast: on an unsigned array ``np.diff`` wraps
    around instead of going negative, so a decreasing ``indptr`` would pass
    (and send the kernels outside their arrays).
    """
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise EventsError(f"Events.{field} must be a 1-D integer array, got {arr.dtype} of shape {arr.shape}")
    if arr.dtype.kind == "u" and arr.dtype.itemsize >= 8 and arr.size:
        top = int(arr.max())
        if top > np.iinfo(np.int64).max:
            raise EventsError(f"Events.{field} holds {top}, past the largest int64")
    return arr.astype(np.int64, copy=False)


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


class Events:
    """Spike events of ``batch`` samples over ``steps`` steps, step-major.

    Parameters
    ----------
    indptr : int array, shape ``(batch * steps + 1,)``
        Row pointers; row ``b * steps + t`` holds sample ``b``, step ``t``.
    index : int array, shape ``(n_events,)``
        Flat neuron index (C order of ``shape``) of each event.
    value : float32 or float64 array, shape ``(n_events,)``
        Value each event carries: 1 for a plain spike, -1 for a negative input
        spike, ``1/(1-p)`` after dropout, any nonzero float for analog input.
    batch, steps : int
        Number of samples and of time steps.
    shape : tuple of int
        Shape of the neuron array the indices refer to.
    check : bool
        Validate the invariants (default). Kernels that produce events by
        construction pass ``False``.
    """

    __slots__ = ("indptr", "index", "value", "batch", "steps", "shape")

    def __init__(
        self,
        indptr: np.ndarray,
        index: np.ndarray,
        value: np.ndarray,
        *,
        batch: int,
        steps: int,
        shape: Sequence[int],
        check: bool = True,
    ) -> None:
        self.batch = int(batch)
        self.steps = int(steps)
        self.shape = _as_shape(shape)
        if check:
            indptr, index, value = self._validated(indptr, index, value)
        self.indptr = _readonly(indptr)
        self.index = _readonly(index)
        self.value = _readonly(value)

    # ------------------------------------------------------------------ checks
    def _validated(self, indptr, index, value):
        if self.batch < 1 or self.steps < 1:
            raise EventsError(f"batch and steps must be >= 1, got batch={self.batch}, steps={self.steps}")
        indptr = _int64(np.asarray(indptr), "indptr")
        index = _int64(np.asarray(index), "index")
        value = np.asarray(value)
        if value.ndim != 1:
            raise EventsError(f"Events.value must be 1-D, got shape {value.shape}")
        _float_dtype(value.dtype, "Events.value")
        rows = self.batch * self.steps
        if indptr.shape[0] != rows + 1:
            raise EventsError(
                f"Events.indptr has {indptr.shape[0]} entries; batch={self.batch} x steps={self.steps} "
                f"needs {rows + 1}"
            )
        if index.shape[0] != value.shape[0]:
            raise EventsError(f"Events.index has {index.shape[0]} entries but Events.value has {value.shape[0]}")
        if indptr[0] != 0:
            raise EventsError(f"Events.indptr must start at 0, starts at {indptr[0]}")
        steps_back = np.flatnonzero(np.diff(indptr) < 0)
        if steps_back.size:
            b, t = divmod(int(steps_back[0]), self.steps)
            raise EventsError(f"Events.indptr decreases at sample {b}, step {t}")
        if indptr[-1] != index.shape[0]:
            raise EventsError(f"Events.indptr ends at {indptr[-1]} but there are {index.shape[0]} events")
        size = self.size
        bad = np.flatnonzero((index < 0) | (index >= size))
        if bad.size:
            e = int(bad[0])
            b, t = self._locate(indptr, e)
            raise EventsError(
                f"Events.index: neuron {int(index[e])} at sample {b}, step {t} is outside the {size} "
                f"neurons of shape {self.shape}"
            )
        bad = np.flatnonzero(~np.isfinite(value))
        if bad.size:
            e = int(bad[0])
            b, t = self._locate(indptr, e)
            raise EventsError(
                f"Events.value: {value[e]} at sample {b}, step {t}, neuron {int(index[e])} is not finite"
            )
        bad = np.flatnonzero(value == 0)
        if bad.size:
            e = int(bad[0])
            b, t = self._locate(indptr, e)
            raise EventsError(
                f"Events.value: zero at sample {b}, step {t}, neuron {int(index[e])}; an event must carry "
                "a nonzero value (leave it out instead)"
            )
        row_of = np.repeat(np.arange(rows, dtype=np.int64), np.diff(indptr))
        key = row_of * size + index
        if np.all(key[1:] > key[:-1]):
            return indptr, index, value  # indices ascending in every row (what the encoders write): no duplicate
        order = np.argsort(key, kind="stable")
        dup = np.flatnonzero(key[order][1:] == key[order][:-1])
        if dup.size:
            e = int(order[dup[0]])
            b, t = self._locate(indptr, e)
            raise EventsError(
                f"Events.index: neuron {int(index[e])} appears twice at sample {b}, step {t}; "
                "merge duplicate events by adding their values"
            )
        return indptr, index, value

    def _locate(self, indptr: np.ndarray, event: int) -> tuple[int, int]:
        row = int(np.searchsorted(indptr, event, side="right")) - 1
        return divmod(row, self.steps)

    # -------------------------------------------------------------- properties
    @property
    def size(self) -> int:
        """Number of neurons, ``prod(shape)``."""
        return prod(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.value.dtype

    @property
    def n_events(self) -> int:
        return int(self.index.shape[0])

    def row(self, sample: int, step: int) -> tuple[np.ndarray, np.ndarray]:
        """``(index, value)`` of one sample at one step (read-only views)."""
        r = sample * self.steps + step
        lo, hi = self.indptr[r], self.indptr[r + 1]
        return self.index[lo:hi], self.value[lo:hi]

    def sample_rows(self, sample: int) -> np.ndarray:
        """The ``steps + 1`` row pointers of one sample (absolute offsets)."""
        r = sample * self.steps
        return self.indptr[r : r + self.steps + 1]

    # ------------------------------------------------------------ conversions
    @classmethod
    def from_dense(cls, x: np.ndarray) -> "Events":
        """Events of a dense array of shape ``(batch, steps, *shape)``.

        Every nonzero entry becomes one event with that value. ``x`` must be
        float32 or float64 (its dtype is kept) and finite.
        """
        x = np.asarray(x)
        if x.ndim < 3:
            raise EventsError(f"from_dense needs an array of shape (batch, steps, *shape), got shape {x.shape}")
        _float_dtype(x.dtype, "from_dense input")
        if not np.all(np.isfinite(x)):
            b, t, *where = (int(i) for i in np.argwhere(~np.isfinite(x))[0])
            raise EventsError(f"from_dense input is not finite at sample {b}, step {t}, position {tuple(where)}")
        batch, steps, *shape = x.shape
        flat = x.reshape(batch * steps, -1)
        rows, index = np.nonzero(flat)
        indptr = np.zeros(batch * steps + 1, dtype=np.int64)
        np.cumsum(np.bincount(rows, minlength=batch * steps), out=indptr[1:])
        return cls(
            indptr, index.astype(np.int64), flat[rows, index].copy(),
            batch=batch, steps=steps, shape=shape, check=False,
        )

    def to_dense(self) -> np.ndarray:
        """The dense array of shape ``(batch, steps, *shape)``."""
        out = np.zeros((self.batch * self.steps, self.size), dtype=self.dtype)
        rows = np.repeat(np.arange(self.batch * self.steps), np.diff(self.indptr))
        out[rows, self.index] = self.value
        return out.reshape((self.batch, self.steps) + self.shape)

    @classmethod
    def from_coo(
        cls,
        sample: np.ndarray,
        step: np.ndarray,
        neuron: np.ndarray,
        value: np.ndarray,
        *,
        batch: int,
        steps: int,
        shape: Sequence[int],
    ) -> "Events":
        """Events from parallel arrays ``(sample, step, neuron, value)``.

        Events are grouped by (sample, step), keeping their given order inside a
        step. Steps outside ``[0, steps)`` and samples outside ``[0, batch)`` are
        errors, as is everything :class:`Events` checks.
        """
        sample, step, neuron = (np.asarray(a) for a in (sample, step, neuron))
        value = np.asarray(value)
        n = value.shape[0] if value.ndim == 1 else -1
        for field, arr in (("sample", sample), ("step", step), ("neuron", neuron)):
            if arr.ndim != 1 or arr.shape[0] != n or not np.issubdtype(arr.dtype, np.integer):
                raise EventsError(
                    f"from_coo: {field} must be a 1-D integer array as long as value ({n}), "
                    f"got {arr.dtype} of shape {arr.shape}"
                )
        for field, arr, limit in (("step", step, steps), ("sample", sample, batch)):
            bad = np.flatnonzero((arr < 0) | (arr >= limit))
            if bad.size:
                e = int(bad[0])
                raise EventsError(f"from_coo: {field} {int(arr[e])} of event {e} is outside [0, {limit})")
        row = sample.astype(np.int64) * steps + step
        order = np.argsort(row, kind="stable")
        indptr = np.zeros(batch * steps + 1, dtype=np.int64)
        np.cumsum(np.bincount(row, minlength=batch * steps), out=indptr[1:])
        return cls(indptr, neuron[order], value[order], batch=batch, steps=steps, shape=shape)

    @classmethod
    def empty(cls, *, batch: int, steps: int, shape: Sequence[int], dtype: object = np.float32) -> "Events":
        """A container with no events."""
        dt = _float_dtype(dtype, "dtype")
        return cls(
            np.zeros(batch * steps + 1, np.int64), np.zeros(0, np.int64), np.zeros(0, dt),
            batch=batch, steps=steps, shape=shape, check=False,
        )

    @classmethod
    def concat(cls, parts: Iterable["Events"]) -> "Events":
        """Stack containers along the batch axis (same steps, shape, dtype)."""
        parts = list(parts)
        if not parts:
            raise EventsError("concat needs at least one Events container")
        first = parts[0]
        for i, p in enumerate(parts[1:], 1):
            if (p.steps, p.shape, p.dtype) != (first.steps, first.shape, first.dtype):
                raise EventsError(
                    f"concat: part {i} has steps={p.steps}, shape={p.shape}, dtype={p.dtype}; part 0 has "
                    f"steps={first.steps}, shape={first.shape}, dtype={first.dtype}"
                )
        offsets = np.cumsum([0] + [p.n_events for p in parts[:-1]])
        indptr = np.concatenate([[0]] + [p.indptr[1:] + o for p, o in zip(parts, offsets)])
        return cls(
            indptr.astype(np.int64),
            np.concatenate([p.index for p in parts]),
            np.concatenate([p.value for p in parts]),
            batch=sum(p.batch for p in parts), steps=first.steps, shape=first.shape, check=False,
        )

    def sample(self, b: int) -> "Events":
        """Sample ``b`` as a container of batch 1."""
        if not 0 <= b < self.batch:
            raise EventsError(f"sample {b} is outside [0, {self.batch})")
        return self.samples(b, b + 1)

    def samples(self, start: int, stop: int) -> "Events":
        """Samples ``start`` to ``stop - 1`` as a container of batch ``stop - start``."""
        if not 0 <= start < stop <= self.batch:
            raise EventsError(f"samples [{start}, {stop}) are not a non-empty range inside [0, {self.batch})")
        return self._rows(start * self.steps, stop * self.steps, stop - start, self.steps, copy=True)

    def step_range(self, start: int, stop: int) -> "Events":
        """Steps ``start`` to ``stop - 1`` of a single sample (batch 1), as a run of ``stop - start`` steps.

        The events are views of this container's (a run continued from a
        checkpoint takes them as its input).
        """
        if self.batch != 1 or not 0 <= start < stop <= self.steps:
            raise EventsError(f"steps [{start}, {stop}) of a batch of {self.batch} with {self.steps} steps: "
                              "give one sample and a non-empty range of its steps")
        return self._rows(start, stop, 1, stop - start, copy=False)

    def _rows(self, first: int, last: int, batch: int, steps: int, *, copy: bool) -> "Events":
        """Rows ``first`` to ``last - 1`` (sample-major steps) as a container of ``batch`` x ``steps`` rows."""
        rows = self.indptr[first : last + 1]
        lo, hi = rows[0], rows[-1]
        index, value = self.index[lo:hi], self.value[lo:hi]
        if copy:  # a batch's arrays are not kept alive by one of its samples
            index, value = index.copy(), value.copy()
        return Events(rows - lo, index, value, batch=batch, steps=steps, shape=self.shape, check=False)

    def astype(self, dtype: object) -> "Events":
        """The same events with values cast to ``dtype`` (float32 or float64)."""
        dt = _float_dtype(dtype, "dtype")
        if dt == self.dtype:
            return self
        value = self.value.astype(dt)
        if not np.all(np.isfinite(value)) or np.any(value == 0):
            raise EventsError(f"casting values to {dt} makes some of them infinite or zero")
        return Events(self.indptr, self.index, value, batch=self.batch, steps=self.steps, shape=self.shape, check=False)

    # ---------------------------------------------------------------- summary
    def totals(self) -> np.ndarray:
        """Summed event values per sample and neuron, shape ``(batch, *shape)``.

        For unit spikes this is the spike count; for signed input it is the
        signed count (the ``x`` of Lee et al. 2020, eq. 4). Each sum is taken
        in the order the events are stored (:func:`eventsim.kernels.event_totals`).
        """
        out = np.zeros((self.batch, self.size), dtype=self.dtype)
        kernels.event_totals(out, self.indptr, self.index, self.value, self.steps)
        return out.reshape((self.batch,) + self.shape)

    def event_counts(self) -> np.ndarray:
        """Number of events per sample, shape ``(batch,)``."""
        return np.diff(self.indptr[:: self.steps])

    def busiest_first(self) -> np.ndarray:
        """The sample indices by descending number of events, ties in sample order.

        The order in which threads take a batch's samples
        (:func:`eventsim.threads.ordered_map`): a sample's work grows with
        its events, and taking the longest first leaves short ones for the
        end, so that the threads finish close together.
        """
        return np.argsort(-self.event_counts(), kind="stable")

    def __repr__(self) -> str:
        return (
            f"Events(batch={self.batch}, steps={self.steps}, shape={self.shape}, "
            f"n_events={self.n_events}, dtype={self.dtype})"
        )
