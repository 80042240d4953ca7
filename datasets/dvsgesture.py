"""DVS Gesture: the IBM gesture recordings, one ``.npy`` file per gesture, in tonic's layout.

Amir et al. 2017, "A Low Power, Fully Event-Based Gesture Recognition
System" (CVPR): 11 hand and arm gestures of 29 people under three lighting
conditions, recorded by a 128 x 128 DVS128 camera.

Files: tonic's preprocessed release (``tonic.datasets.DVSGesture(save_to=root)``
downloads and unpacks it), where each recording of the original files is
already cut into one file per gesture::

    <root>/DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<class>.npy
    <root>/DVSGesture/ibmGestureTest/...

each an array ``(events, 4)`` of x, y, p, t with t in milliseconds. A
recording is tonic's: a structured array with fields ``x``, ``y`` (int16),
``p`` (bool) and ``t`` (int64 microseconds, ``ms * 1000``) on the sensor
``(W, H, P) = (128, 128, 2)``. Recordings are taken user folder by user
folder, sorted by name, and by class within a folder (tonic lists them in
the order the file system does).

Every file is untrusted: its ``.npy`` header is checked (a plain numeric
array of 4 columns, its declared size against the file and the allocation
limit) before anything is allocated, and every event against the sensor.
"""

from __future__ import annotations

import os
import re
from math import prod
from pathlib import Path
from typing import TextIO

import numpy as np

from eventsim.datasets.cache import EncodedSamples
from eventsim.datasets.folders import find
from eventsim.datasets.tonic_events import binned_recordings, checked_fields, whole_numbers
from eventsim.errors import DataError, EventsError, OptionError, check_choice
from eventsim.limits import check_size
from eventsim.reading import read_npy_header
from eventsim.reading import fill, open_regular
from eventsim.datasets.samples import sample_index

FOLDER = "DVSGesture"
SPLITS = {"train": "ibmGestureTrain", "test": "ibmGestureTest"}
SENSOR_SIZE = (128, 128, 2)  #: tonic's (W, H, P)
CLASSES = 11
#: tonic's DVS Gesture events.
RECORDING_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])
#: A recording's folder: the user's number and the lighting.
USER_FOLDER = re.compile(r"user(\d+)_(.+)")
#: The spatial pooling of :meth:`DVSGesture.binned`: 128 x 128 -> 32 x 32.
DOWNSAMPLE = 4


def read_gesture(path: str | os.PathLike) -> np.ndarray:
    """One recording file (``.npy``, ``(events, 4)``: x, y, p, t in ms) as tonic's structured array.

    Raises
    ------
    DataError
        Naming the file and the first problem: not a ``.npy`` array of
        numbers, another shape than ``(events, 4)``, a declared size the file
        does not hold or above the allocation limit, a coordinate outside
        128 x 128, a polarity other than 0 or 1, a time that is negative, not
        whole or decreasing.
    """
    path = Path(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        shape, fortran, stored = read_npy_header(f, str(path))
        if len(shape) != 2 or shape[1] != 4:
            raise DataError(f"{path}: holds an array of shape {shape}, expected (events, 4): x, y, p, t (ms)")
        nbytes = prod(shape) * stored.itemsize
        check_size(nbytes, f"{path}: the recording", DataError)
        if f.tell() + nbytes != size:
            raise DataError(f"{path}: its header declares {nbytes} bytes of data ({stored}, shape {shape}) but "
                            f"the file holds {size - f.tell()}")
        data = np.empty(shape[::-1] if fortran else shape, stored)
        fill(f, data, str(path))
    columns = data if fortran else data.T  # (4, events) either way
    try:
        t_ms = columns[3]
        # tonic multiplies the milliseconds by 1000 in the file's dtype and truncates to int64.
        t_us = np.trunc(t_ms.astype(np.float64) * 1000) if t_ms.dtype.kind == "f" else _times_1000(t_ms)
        recording = np.empty(shape[0], [("x", np.int64), ("y", np.int64), ("p", np.int64), ("t", np.int64)])
        for name, column in zip(("x", "y", "p"), columns[:3]):
            recording[name] = whole_numbers(name, column)
        recording["t"] = whole_numbers("t", t_us)
        checked_fields(recording, SENSOR_SIZE, sorted_times=True)
    except EventsError as exc:
        raise DataError(f"{path}: {exc}") from None
    return recording.astype(RECORDING_DTYPE)


def _times_1000(t_ms: np.ndarray) -> np.ndarray:
    """Integer milliseconds as microseconds, refusing what int64 cannot hold."""
    t = t_ms.astype(np.int64)
    bad = np.flatnonzero(np.abs(t) >= 2**62 // 1000)
    if bad.size:
        raise EventsError(f"event {bad[0]}: t = {t[bad[0]]} ms is beyond the int64 microseconds")
    return t * 1000


class DVSGesture:
    """The DVS Gesture recordings of one split, with their labels, users and lighting.

    Parameters
    ----------
    root : path, optional
        The data folder (holding ``DVSGesture/``), resolved as in :mod:`eventsim.datasets.folders`.
    split : {"train", "test"}

    Items are ``(recording, label)``, read on access (:func:`read_gesture`).
    """

    sensor_size = SENSOR_SIZE

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train") -> None:
        check_choice("split", split, tuple(SPLITS))
        self.split = split
        hint = ("Put tonic's DVS Gesture folders there (DVSGesture/ibmGestureTrain/user<NN>_<lighting>/<class>.npy "
                "and ibmGestureTest; tonic.datasets.DVSGesture(save_to=DIR) downloads them into DIR/DVSGesture), "
                "or give the data folder with --data.")
        self.folder = find(f"{FOLDER}/{SPLITS[split]}", root, hint=hint)
        self.files: list[Path] = []
        labels, self.users, self.lighting = [], [], []
        for user_folder in sorted(p for p in self.folder.iterdir() if p.is_dir()):
            match = USER_FOLDER.fullmatch(user_folder.name)
            if match is None:
                raise DataError(f"{user_folder}: not a recording folder (expected user<NN>_<lighting>)")
            for path in sorted(user_folder.glob("*.npy"), key=lambda p: (len(p.stem), p.stem)):
                if not (path.stem.isdigit() and int(path.stem) < CLASSES):
                    raise DataError(f"{path}: not a gesture file (expected <class>.npy, class 0 to {CLASSES - 1})")
                self.files.append(path)
                labels.append(int(path.stem))
                self.users.append(int(match.group(1)))
                self.lighting.append(match.group(2))
        if not self.files:
            raise DataError(f"{self.folder}: no user<NN>_<lighting>/<class>.npy recordings")
        self.labels = np.array(labels, np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        i = sample_index(i, len(self))
        return read_gesture(self.files[i]), int(self.labels[i])

    def binned(
        self,
        *,
        steps: int = 20,
        downsample: int = DOWNSAMPLE,
        values: str = "binary",
        dtype: object = np.float32,
        cache: bool = True,
        cache_folder: str | os.PathLike | None = None,
        progress: TextIO | str | None = "stderr",
    ) -> EncodedSamples:
        """Every recording pooled in space by ``downsample`` and binned into ``steps`` steps, cached.

        Pixel (x, y) goes to (x // d, y // d), tonic's ``Downsample(spatial_factor=1/d)``
        for d a power of two, on a sensor of ``ceil(128 / d)`` pixels a side;
        then the whole recording is binned into ``steps`` steps
        (:func:`~eventsim.datasets.tonic_events.from_tonic`). Shape ``(2, 32, 32)`` by default.
        """
        if not isinstance(downsample, (int, np.integer)) or isinstance(downsample, bool) or downsample < 1:
            raise OptionError(f"downsample must be a positive integer, got {downsample!r}")
        side = -(-SENSOR_SIZE[0] // int(downsample))
        return binned_recordings("dvsgesture", self.split, self.folder, self, sensor_size=(side, side, 2),
                                 binning={"steps": steps, "values": values}, dtype=dtype,
                                 transform=lambda recording: pooled(recording, int(downsample)),
                                 options={"downsample": int(downsample)}, cache=cache, cache_folder=cache_folder,
                                 progress=progress)

    def __repr__(self) -> str:
        return f"DVSGesture(split={self.split!r}, samples={len(self)}, folder={str(self.folder)!r})"


def pooled(recording: np.ndarray, factor: int) -> np.ndarray:
    """The recording with pixel (x, y) moved to (x // factor, y // factor)."""
    out = recording.copy()
    out["x"] //= factor
    out["y"] //= factor
    return out
