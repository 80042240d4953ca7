"""N-MNIST: the original 5-byte event files and the Train/Test folder layout.

Orchard, Jayawant, Cohen and Thakor 2015, "Converting static image datasets to
spiking neuromorphic datasets using saccades" (Frontiers in Neuroscience
9:437): MNIST digits on a screen recorded by an ATIS camera (34 x 34 pixels)
that moves in three saccades of about 105 ms each.

File format, 5 bytes per event, big-endian: byte 0 = x (0..33), byte 1 = y
(0..33), bit 7 of byte 2 = polarity (1 = ON), the other 23 bits of bytes 2..4
= timestamp in microseconds. An event with y == 240 is not an event but a
timestamp-overflow marker of the original release: it adds 2^13 us to its own
and every later timestamp and is then dropped (the original MATLAB reader
and tonic do the same).

A recording is a NumPy structured array with fields ``x``, ``y``, ``t`` (us),
``p`` (0 = OFF, 1 = ON), the layout tonic uses, so it can be passed to
:func:`eventsim.encoders.binning.bin_events` or to tonic's transforms.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import TextIO

import numpy as np

from eventsim.errors import DataError, check_choice
from eventsim.datasets.cache import EncodedSamples, cached_encoding
from eventsim.datasets.download import DOWNLOAD_HINT, download_nmnist
from eventsim.datasets import folders
from eventsim.datasets.folders import find, user_folder
from eventsim.encoders.binning import bin_events
from eventsim.limits import check_size
from eventsim.reading import open_regular
from eventsim.datasets.samples import sample_index

SENSOR = (34, 34)  #: (H, W)
RECORDING_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
OVERFLOW_MARKER_Y = 240
OVERFLOW_US = 1 << 13
#: Length of one saccade in the recordings (Orchard et al. 2015; the release's stabilisation model).
SACCADE_US = 105_000
#: Displacement of the image on the sensor at the end of saccades 1, 2, 3, in pixels (x, y),
#: from the release's stabilisation model: a triangle, 3.5 px right and 7 px down,
#: then 3.5 px right and 7 px up, then 7 px back left.
SACCADE_PATH = ((0.0, 0.0), (3.5, 7.0), (7.0, 0.0), (0.0, 0.0))
SPLITS = {"train": "Train", "test": "Test"}


def parse_nmnist(raw: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decode N-MNIST bytes into a recording (structured array), validating as it goes.

    Raises
    ------
    DataError
        Naming ``source`` and the first problem: a size that is not a
        multiple of 5 (truncated file), a coordinate outside the 34 x 34
        sensor, or a timestamp that decreases.
    """
    if len(raw) % 5:
        raise DataError(
            f"{source}: {len(raw)} bytes is not a whole number of 5-byte events (truncated, or not an N-MNIST file)"
        )
    rec = np.frombuffer(raw, np.uint8).reshape(-1, 5).astype(np.int64)
    x, y = rec[:, 0], rec[:, 1]
    p = rec[:, 2] >> 7
    t = ((rec[:, 2] & 0x7F) << 16) | (rec[:, 3] << 8) | rec[:, 4]
    marker = y == OVERFLOW_MARKER_Y
    t = t + OVERFLOW_US * np.cumsum(marker)  # a marker shifts itself and everything after it
    keep = np.flatnonzero(~marker)
    x, y, t, p = x[keep], y[keep], t[keep], p[keep]
    for what, arr, size in (("x", x, SENSOR[1]), ("y", y, SENSOR[0])):
        bad = np.flatnonzero(arr >= size)
        if bad.size:
            i = keep[bad[0]]
            raise DataError(
                f"{source}: event {i} (byte {5 * i}) has {what} = {arr[bad[0]]}, outside the 34 x 34 sensor"
            )
    back = np.flatnonzero(np.diff(t) < 0)
    if back.size:
        i = keep[back[0] + 1]
        raise DataError(
            f"{source}: event {i} (byte {5 * i}) has timestamp {t[back[0] + 1]} us, "
            f"earlier than the previous event's {t[back[0]]} us (timestamps must not decrease)"
        )
    out = np.empty(keep.shape[0], RECORDING_DTYPE)
    out["x"], out["y"], out["t"], out["p"] = x, y, t, p
    return out


def read_nmnist(path: str | os.PathLike) -> np.ndarray:
    """Read one N-MNIST ``.bin`` file (see :func:`parse_nmnist`).

    Only a regular file is read, and only if its size is within the
    allocation limit (:func:`eventsim.limits.check_size`): a link to a
    device or a FIFO in a downloaded folder must not hang or eat memory.
    """
    path = Path(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        check_size(size, f"{path}: the N-MNIST recording", DataError)
        try:
            raw = f.read()
        except OSError as exc:
            raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return parse_nmnist(raw, str(path))


def stabilize(recording: np.ndarray) -> np.ndarray:
    """Remove the saccade motion: each event's position minus the image displacement at its time.

    The displacement moves linearly along :data:`SACCADE_PATH`, one segment
    per :data:`SACCADE_US` (the motion model of the N-MNIST release's
    stabilisation); positions are rounded to the nearest pixel (halves up) and
    events that leave the sensor are dropped. The event centroids of the
    recordings drift along this path; stabilised, they do not (tested).
    """
    t = recording["t"].astype(np.float64)
    segment = np.minimum(t // SACCADE_US, len(SACCADE_PATH) - 2).astype(np.int64)
    frac = np.clip(t / SACCADE_US - segment, 0.0, 1.0)
    path = np.asarray(SACCADE_PATH)
    shift = path[segment] + (path[segment + 1] - path[segment]) * frac[:, None]
    x = np.floor(recording["x"] - shift[:, 0] + 0.5).astype(np.int64)
    y = np.floor(recording["y"] - shift[:, 1] + 0.5).astype(np.int64)
    inside = (x >= 0) & (x < SENSOR[1]) & (y >= 0) & (y < SENSOR[0])
    out = recording[inside].copy()
    out["x"], out["y"] = x[inside], y[inside]
    return out


class NMNIST:
    """The N-MNIST recordings of one split, in a fixed order, with their labels.

    Files are ``<root>/NMNIST/Train/<digit>/*.bin`` (or ``Test``), taken digit
    by digit (0..9) and by file name within a digit. ``root`` is resolved as
    in :mod:`eventsim.datasets.folders`.

    Parameters
    ----------
    root : path, optional
        The data folder (holding ``NMNIST/``).
    split : {"train", "test"}
    first_saccade_only : bool
        Keep the events of the first saccade only (``t < SACCADE_US``).
    stabilize : bool
        Remove the saccade motion (:func:`stabilize`).
    download : bool
        If the data is not found, download it through tonic (the ``tonic``
        extra and internet access) into ``root`` or the user folder.

    Items are ``(recording, label)``: a structured array (x, y, t, p) and an int.
    """

    sensor = SENSOR

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        split: str = "train",
        *,
        first_saccade_only: bool = False,
        stabilize: bool = False,
        download: bool = False,
    ) -> None:
        check_choice("split", split, tuple(SPLITS))
        self.split = split
        self.first_saccade_only = bool(first_saccade_only)
        self.stabilize = bool(stabilize)
        relative = f"NMNIST/{SPLITS[split]}"
        hint = ('Put the original N-MNIST folders there (NMNIST/Train/<digit>/*.bin, NMNIST/Test/...), '
                f'or download them: {DOWNLOAD_HINT.format(dataset="nmnist")} (Python: download=True).')
        try:
            self.folder = find(relative, root, hint=hint)
        except DataError:
            if not download:
                raise
            target = Path(root) if root is not None else user_folder()
            download_nmnist(target, split)
            self.folder = find(relative, target, hint=hint)
        self.files: list[Path] = []
        labels = []
        for digit in range(10):
            files = sorted((self.folder / str(digit)).glob("*.bin"))
            self.files += files
            labels += [digit] * len(files)
        if not self.files:
            raise DataError(f"{self.folder}: no <digit>/*.bin files (expected folders 0..9 of N-MNIST recordings)")
        self.labels = np.array(labels, np.int64)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        i = sample_index(i, len(self))
        recording = read_nmnist(self.files[i])
        if self.first_saccade_only:
            recording = recording[recording["t"] < SACCADE_US]
        if self.stabilize:
            recording = stabilize(recording)
        return recording, int(self.labels[i])

    def options(self) -> dict:
        """What, besides the split, determines the recordings (part of a cache key)."""
        return {"first_saccade_only": self.first_saccade_only, "stabilize": self.stabilize}

    def binned(
        self,
        *,
        steps: int | None = None,
        step_us: int | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        values: str = "binary",
        dtype: object = np.float32,
        cache: bool = True,
        cache_folder: str | os.PathLike | None = None,
        progress: TextIO | str | None = "stderr",
    ) -> EncodedSamples:
        """Every recording binned with :func:`eventsim.encoders.binning.bin_events`, cached.

        The cache (``cache_folder``, by default :func:`eventsim.datasets.folders.cache_folder`) is
        keyed by the split, the data folder and its number of files, the
        options of this dataset and every binning parameter.
        """
        binning = dict(steps=steps, step_us=step_us, start_us=start_us, end_us=end_us, values=values,
                       dtype=np.dtype(dtype).name)
        encode = partial(bin_events, sensor=SENSOR, **{**binning, "dtype": np.dtype(dtype)})
        key = {"dataset": "nmnist", "split": self.split, "folder": str(self.folder.resolve()),
               "files": len(self), **self.options(), "binning": binning}
        folder = None if not cache else Path(cache_folder) if cache_folder is not None else folders.cache_folder()
        return cached_encoding(key, self, encode, folder=folder, progress=progress)

    def __repr__(self) -> str:
        return (f"NMNIST(split={self.split!r}, samples={len(self)}, first_saccade_only={self.first_saccade_only}, "
                f"stabilize={self.stabilize}, folder={str(self.folder)!r})")
