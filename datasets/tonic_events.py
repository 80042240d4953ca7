"""tonic's events and frames as eventsim events.

tonic (Lenz et al., github.com/neuromorphs/tonic) hands out recordings as
NumPy structured arrays with fields among ``x``, ``y``, ``t`` (microseconds)
and ``p`` (polarity), and its ``ToFrame`` transform turns them into dense
frames ``(T, P, H, W)``, or ``(T, P, W)`` for a 1-D sensor (no ``y``, e.g.
the 700 channels of the Spiking Heidelberg Digits). Sensor sizes are
written in tonic's order ``(W, H, P)``.

:func:`from_tonic` turns either into :class:`~eventsim.events.Events` of
batch 1 and shape ``(P, H, W)``, the frame's (a 1-D sensor's H is 1, so its
frames ``(T, P, W)`` become ``(P, 1, W)``: a network takes ``(C, H, W)``
or flat inputs). Events are binned by :func:`eventsim.encoders.binning.bin_events`
(docs/semantics.md, "Events"): asked for T steps over the recording, the
count binning equals tonic's ``ToFrame(sensor_size, n_time_bins=T)`` bin for
bin. As tonic does, a single-polarity sensor (P = 1) takes every event into
channel 0 whatever its ``p`` (tonic's SHD reader sets p = 1).

:class:`TonicSamples` wraps a whole dataset, any sequence of
``(events or frames, target)`` (a tonic dataset, with or without a
transform), as the sequence of ``(Events, label)`` that
:meth:`eventsim.learning.Trainer.fit` trains on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

import numpy as np

from eventsim.datasets import folders
from eventsim.datasets.cache import EncodedSamples, cached_encoding
from eventsim.encoders.binning import VALUES, bin_events
from eventsim.encoders.inputs import check_dtype
from eventsim.errors import EventsError, OptionError, check_choice
from eventsim.events import Events
from eventsim.datasets.samples import sample_index

#: tonic's sensor size ``(W, H, P)``.
_SensorSize = tuple[int, int, int]


def check_sensor_size(sensor_size: Any) -> _SensorSize:
    """``sensor_size`` as three positive ints ``(W, H, P)``, tonic's order, or :class:`OptionError`."""
    try:
        size = tuple(int(v) for v in sensor_size) if len(sensor_size) == 3 else ()
    except (TypeError, ValueError):
        size = ()
    if len(size) != 3 or min(size) < 1:
        raise OptionError(f"sensor_size must be tonic's (W, H, P), three positive integers, got {sensor_size!r}")
    return size  # type: ignore[return-value]


def frame_shape(sensor_size: _SensorSize) -> tuple[int, int, int]:
    """The neuron shape ``(P, H, W)`` of a recording on ``sensor_size``."""
    width, height, polarities = sensor_size
    return polarities, height, width


def from_tonic(
    data: Any,
    *,
    sensor_size: Any,
    steps: int | None = None,
    step_us: int | None = None,
    start_us: int | None = None,
    end_us: int | None = None,
    values: str = "binary",
    dtype: Any = np.float32,
) -> Events:
    """One tonic recording (structured array) or frame stack as Events of batch 1.

    Parameters
    ----------
    data : structured array or array
        Events with fields ``t`` (microseconds, >= 0) and ``x``, and ``y``
        and ``p`` where the sensor has them; or frames ``(T, P, H, W)`` /
        ``(T, P, W)`` (H = 1) as tonic's ``ToFrame`` makes them (then the
        frame count is T and no window option applies).
    sensor_size : (W, H, P)
        tonic's sensor size (a tonic dataset's ``sensor_size``). Events
        without ``y`` need H = 1; events without ``p`` need P = 1.
    steps, step_us, start_us, end_us : int, optional
        The window of :func:`eventsim.encoders.binning.bin_events`: T steps
        over the recording (tonic's ``n_time_bins``), or steps of
        ``step_us``. Where ``start_us`` or ``end_us`` is left to the first
        or last event, timestamps must not decrease (tonic's slicers assume
        the same).
    values : {"binary", "count"}
        1 per bin that received any event, or the count. Frames: 1 where
        the frame is positive, or the frame's values as they are.
    dtype : float32 or float64

    Returns
    -------
    Events
        Batch 1, shape ``(P, H, W)``.

    Raises
    ------
    EventsError
        A missing field, a coordinate outside the sensor, a negative or
        non-integer time, decreasing times where the window needs them
        sorted, or frames of another shape than the sensor's.
    OptionError
        A bad sensor size or binning option.
    """
    check_choice("values", values, VALUES)
    dtype = check_dtype("from_tonic", dtype)
    size = check_sensor_size(sensor_size)
    array = data if isinstance(data, np.ndarray) else np.asarray(data)
    if array.dtype.names is None:
        window = {"steps": steps, "step_us": step_us, "start_us": start_us, "end_us": end_us}
        given = sorted(k for k, v in window.items() if v is not None)
        if given:
            raise OptionError(f"frames are binned already: {', '.join(given)} do not apply to them")
        return _frames(array, size, values, dtype)
    x, y, t, p = checked_fields(array, size, sorted_times=start_us is None or end_us is None)
    width, height, polarities = size
    # bin_events bins into (2, H', W) by (t, p, y, x). With the polarity folded into the row,
    # y' = p * H + y on a sensor of P * H rows and every event in channel 0, the flat index
    # y' * W + x of channel 0 is exactly the C-order index of (P, H, W).
    folded = SimpleNamespace(x=x, y=p * height + y, t=t, p=np.zeros_like(p))
    binned = bin_events(folded, sensor=(polarities * height, width), steps=steps, step_us=step_us,
                        start_us=start_us, end_us=end_us, values=values, dtype=dtype)
    return Events(binned.indptr, binned.index, binned.value, batch=1, steps=binned.steps, shape=frame_shape(size),
                  check=False)


def checked_fields(events: np.ndarray, size: _SensorSize,
                   sorted_times: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """x, y, t, p of tonic events as int64, every value checked against the sensor (:class:`EventsError`).

    ``y`` and ``p`` are zeros where the events have none; a single-polarity
    sensor's polarities all become 0. ``sorted_times`` also refuses
    decreasing times.
    """
    names = events.dtype.names
    width, height, polarities = size
    needed = ["t", "x"] + (["y"] if height > 1 else []) + (["p"] if polarities > 1 else [])
    missing = [k for k in needed if k not in names]
    if missing:
        raise EventsError(f"tonic events on a sensor of (W, H, P) = {size} need fields {needed}; "
                          f"{missing} missing from fields {list(names)}")
    if events.ndim != 1:
        raise EventsError(f"tonic events must be a 1-D structured array, got shape {events.shape}")
    t = whole_numbers("t", events["t"])
    x = whole_numbers("x", events["x"])
    y = whole_numbers("y", events["y"]) if "y" in names else np.zeros_like(x)
    p = whole_numbers("p", events["p"]) if "p" in names else np.zeros_like(x)
    if polarities == 1 and p.size:
        if np.any(p != p[0]):
            raise EventsError(f"a single-polarity sensor (P = 1), but the events hold polarities "
                              f"{np.unique(p)[:4].tolist()}; give sensor_size with P = 2")
        p = np.zeros_like(p)  # tonic's ToFrame does the same: one polarity is channel 0
    for what, arr, bound in (("x", x, width), ("y", y, height), ("p", p, polarities)):
        bad = np.flatnonzero((arr < 0) | (arr >= bound))
        if bad.size:
            raise EventsError(f"event {bad[0]}: {what} = {arr[bad[0]]} is outside the sensor's [0, {bound}) "
                              f"(sensor_size (W, H, P) = {size})")
    bad = np.flatnonzero(t < 0)
    if bad.size:
        raise EventsError(f"event {bad[0]}: t = {t[bad[0]]} us is negative; times are microseconds from "
                          "the recording's start")
    back = np.flatnonzero(np.diff(t) < 0)
    if sorted_times and back.size:
        raise EventsError(f"event {back[0] + 1}: t = {t[back[0] + 1]} us is earlier than the event before "
                          f"({t[back[0]]} us); sort the events by t, or give start_us and end_us")
    return x, y, t, p


def whole_numbers(what: str, column: np.ndarray) -> np.ndarray:
    """A field as int64: integers and bools as they are, floats only when whole, finite and below 2**62."""
    if column.dtype.kind in "biu":
        return column.astype(np.int64)
    if column.dtype.kind != "f":
        raise EventsError(f"field {what} holds {column.dtype}, expected integers")
    bad = np.flatnonzero(~np.isfinite(column) | (column != np.round(column)) | (np.abs(column) >= 2.0**62))
    if bad.size:
        raise EventsError(f"event {bad[0]}: {what} = {column[bad[0]]} is not a whole number below 2**62")
    return column.astype(np.int64)


def _frames(frames: np.ndarray, size: _SensorSize, values: str, dtype: np.dtype) -> Events:
    """tonic frames ``(T, P, [H,] W)`` as Events of T steps."""
    if frames.dtype.kind not in "biuf":
        raise EventsError(f"frames must be numbers, got dtype {frames.dtype}")
    shape = frame_shape(size)
    one_dimensional = size[1] == 1 and frames.ndim == 3  # tonic's frames of events without y: (T, P, W)
    if one_dimensional:
        frames = frames[:, :, None, :]
    if frames.ndim != 4 or frames.shape[0] < 1 or frames.shape[1:] != shape:
        expected = f"(T, {', '.join(map(str, shape))})" + (f" or (T, {shape[0]}, {shape[2]})" if size[1] == 1 else "")
        given = frames.shape[:2] + frames.shape[3:] if one_dimensional else frames.shape
        raise EventsError(f"frames must have shape {expected} for sensor_size (W, H, P) = {size}, got {given}")
    with np.errstate(over="ignore", invalid="ignore"):  # a non-finite value is reported below
        dense = frames.astype(dtype)
    bad = np.argwhere(~np.isfinite(dense))
    if bad.size:
        raise EventsError(f"frame value at (T, ...) = {tuple(int(i) for i in bad[0])} is not finite "
                          f"in {np.dtype(dtype).name}")
    if values == "binary":
        if np.any(dense < 0):
            raise EventsError("binary values need frames of counts >= 0; give values='count' to keep "
                              "signed values")
        dense = (dense > 0).astype(dtype)
    return Events.from_dense(dense[None])


class TonicSamples(Sequence):
    """A dataset of tonic recordings or frames as ``(Events, label)`` items, converted on access.

    Parameters
    ----------
    dataset : sequence of (events or frames, target)
        A tonic dataset (with or without a transform), or any sequence of
        such pairs; targets must be class indices.
    sensor_size : (W, H, P), optional
        Default: the dataset's ``sensor_size`` (every tonic dataset has one).
    **binning
        ``steps``, ``step_us``, ``start_us``, ``end_us``, ``values``,
        ``dtype`` of :func:`from_tonic`; every item gets the same.

    Every item must come out with the same steps and shape (the trainer
    stacks them): fix the number of steps (``steps=T``, or ``ToFrame(n_time_bins=T)``).
    """

    def __init__(self, dataset: Sequence, *, sensor_size: Any = None, **binning: Any) -> None:
        unknown = sorted(set(binning) - {"steps", "step_us", "start_us", "end_us", "values", "dtype"})
        if unknown:
            raise OptionError(f"unknown binning options {unknown}; from_tonic takes steps, step_us, start_us, "
                              "end_us, values, dtype")
        if sensor_size is None:
            sensor_size = getattr(dataset, "sensor_size", None)
            if sensor_size is None:
                raise OptionError(f"{type(dataset).__name__} has no sensor_size; give sensor_size=(W, H, P)")
        self.dataset = dataset
        self.sensor_size = check_sensor_size(sensor_size)
        self.binning = binning

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> tuple[Events, int]:  # type: ignore[override]
        data, target = self.dataset[sample_index(i, len(self))]
        label = np.asarray(target)
        if label.shape != () or label.dtype.kind not in "iu" or int(label) < 0:
            raise OptionError(f"item {i}: target {target!r} is not a class index (an integer >= 0)")
        try:
            events = from_tonic(data, sensor_size=self.sensor_size, **self.binning)
        except (EventsError, OptionError) as exc:  # e.g. a recording too short for its steps
            raise type(exc)(f"item {i}: {exc}") from None
        return events, int(label)

    def __repr__(self) -> str:
        return f"TonicSamples({type(self.dataset).__name__}, {len(self)} samples, sensor_size={self.sensor_size})"


def binned_recordings(
    dataset: str,
    split: str,
    source: Path,
    recordings: Sequence[tuple[np.ndarray, int]],
    *,
    sensor_size: Any,
    binning: dict,
    dtype: Any = np.float32,
    transform: Callable[[np.ndarray], np.ndarray] | None = None,
    options: dict | None = None,
    cache: bool = True,
    cache_folder: str | os.PathLike | None = None,
    progress: TextIO | str | None = "stderr",
) -> EncodedSamples:
    """Every recording of a dataset reader through :func:`from_tonic`, cached (:mod:`eventsim.datasets.cache`).

    ``binning`` holds the window options of :func:`from_tonic` (JSON-ready);
    ``transform`` changes each recording first (``options`` names what it
    does). The cache key holds the dataset, the split, the ``source`` file
    or folder and its number of samples, the options and every binning
    parameter; the cache lives in ``cache_folder``, by default
    :func:`eventsim.datasets.folders.cache_folder`, and ``cache=False`` encodes without one.
    """
    dtype = check_dtype("from_tonic", dtype)
    encode = partial(from_tonic, sensor_size=sensor_size, dtype=dtype, **binning)
    if transform is not None:
        encode = partial(_transformed, transform, encode)
    key = {"dataset": dataset, "split": split, "source": str(Path(source).resolve()), "samples": len(recordings),
           **(options or {}), "binning": {**binning, "dtype": dtype.name}}
    folder = None if not cache else Path(cache_folder) if cache_folder is not None else folders.cache_folder()
    return cached_encoding(key, recordings, encode, folder=folder, progress=progress)


def _transformed(transform: Callable, encode: Callable, recording: np.ndarray) -> Events:
    return encode(transform(recording))
