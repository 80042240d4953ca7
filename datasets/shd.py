"""SHD: the Spiking Heidelberg Digits, in the HDF5 files of the release and the folder tonic keeps them in.

Cramer, Stradmann, Schemmel and Zenke 2022, "The Heidelberg Spiking Data Sets
for the Systematic Evaluation of Spiking Neural Networks" (IEEE TNNLS 33:2744):
spoken digits 0-9 in English and German (20 classes) turned into spikes of
700 channels by a model of the inner ear.

Files: ``<root>/SHD/shd_train.h5`` and ``shd_test.h5``, where tonic's
``tonic.datasets.SHD(save_to=root)`` puts them. Each holds ``labels`` (one
integer class per sample), and ``spikes/times`` (seconds, float) and
``spikes/units`` (channel, integer), variable-length sequences of equal
length per sample; ``extra/`` (speakers, class names) is not needed here.

A recording is tonic's: a structured array with fields ``t`` (microseconds,
``int(seconds * 1e6)``, tonic's truncation), ``x`` (channel) and ``p`` (1,
tonic's artificial polarity) on the sensor ``(W, H, P) = (700, 1, 1)``.

The file is untrusted (:mod:`eventsim.hdf5`). A variable-length sequence is
stored as a descriptor (its length and where it lies); HDF5 allocates what
the length says before it checks it, so the lengths are read from the
stored descriptors and held to the file's size before any sequence is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TextIO

import h5py
import numpy as np

from eventsim.datasets.cache import EncodedSamples
from eventsim.datasets.folders import find
from eventsim.datasets.tonic_events import binned_recordings
from eventsim.errors import DataError, check_choice
from eventsim.hdf5 import open_hdf5, read_dataset
from eventsim.limits import check_size
from eventsim.reading import open_regular
from eventsim.datasets.samples import sample_index

FOLDER = "SHD"
FILES = {"train": "shd_train.h5", "test": "shd_test.h5"}
SENSOR_SIZE = (700, 1, 1)  #: tonic's (W, H, P)
CLASSES = 20
#: tonic's SHD events: t (us), x (channel), p.
RECORDING_DTYPE = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])
#: The window binned by default: the recordings last up to about 1.4 s, the time span the
#: dataset's authors bin in their tutorial code (github.com/fzenke/spytorch, max_time = 1.4).
WINDOW_US = 1_400_000
WHAT = "SHD file"
#: Bytes of a stored variable-length descriptor besides the heap address: 4 (length) + 4 (heap index).
_DESCRIPTOR_FIXED = 8


class SHD:
    """The SHD samples of one split, in the file's order, with their labels.

    Parameters
    ----------
    root : path, optional
        The data folder (holding ``SHD/``), resolved as in :mod:`eventsim.datasets.folders`.
    split : {"train", "test"}

    Items are ``(recording, label)``. The whole file is read once, at
    construction (the training split is about 8,000 samples).
    """

    sensor_size = SENSOR_SIZE

    def __init__(self, root: str | os.PathLike | None = None, split: str = "train") -> None:
        check_choice("split", split, tuple(FILES))
        self.split = split
        hint = (f"Put the release's {FILES['train']} and {FILES['test']} there (tonic.datasets.SHD(save_to=DIR) "
                "downloads them into DIR/SHD), or give the data folder with --data.")
        self.path = find(f"{FOLDER}/{FILES[split]}", root, hint=hint)
        self.times, self.units, self.labels, self._starts = read_shd(self.path)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        i = sample_index(i, len(self))
        part = slice(self._starts[i], self._starts[i + 1])
        recording = np.empty(part.stop - part.start, RECORDING_DTYPE)
        # tonic's conversion: seconds in float64 times 1e6, truncated to whole microseconds.
        recording["t"] = self.times[part].astype(np.float64) * 1e6
        recording["x"] = self.units[part]
        recording["p"] = 1
        return recording, int(self.labels[i])

    def binned(
        self,
        *,
        steps: int = 100,
        window_us: int = WINDOW_US,
        values: str = "binary",
        dtype: object = np.float32,
        cache: bool = True,
        cache_folder: str | os.PathLike | None = None,
        progress: TextIO | str | None = "stderr",
    ) -> EncodedSamples:
        """Every recording binned into ``steps`` steps over ``[0, window_us)``, shape ``(1, 1, 700)``, cached.

        A fixed window for every sample (``start_us = 0``, ``end_us =
        window_us``): a step is the same time in every recording, as the
        sounds are aligned at their start. Events at or after ``window_us`` are dropped.
        """
        return binned_recordings("shd", self.split, self.path, self, sensor_size=SENSOR_SIZE,
                                 binning={"steps": steps, "start_us": 0, "end_us": window_us, "values": values},
                                 dtype=dtype, cache=cache, cache_folder=cache_folder, progress=progress)

    def __repr__(self) -> str:
        return f"SHD(split={self.split!r}, samples={len(self)}, file={str(self.path)!r})"


def read_shd(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The spike times (s), units and labels of an SHD file, and where each sample starts.

    Returns ``times`` and ``units``, all samples' sequences one after the
    other, ``labels`` ``(N,)`` int64 and ``starts`` ``(N + 1,)``: sample i
    is ``starts[i]:starts[i + 1]``.

    Raises
    ------
    DataError
        Naming the file and the first problem: not an HDF5 file or an
        unsafe one (:func:`eventsim.hdf5.open_hdf5`), a missing dataset,
        another dtype or shape than the release's, sequences longer than
        the file could hold, times and units of different lengths, a time
        that is negative or not finite, a unit outside the 700 channels, a
        label outside the 20 classes.
    """
    path = Path(path)
    label = f"{WHAT} {path}"
    with open_hdf5(path, error=DataError, what=WHAT) as f:
        labels_set, times_set, units_set = (_dataset(f, name, label) for name in ("labels", "spikes/times",
                                                                                   "spikes/units"))
        labels = read_dataset(labels_set, error=DataError, what=WHAT, kinds="iu", shape=(None,)).astype(np.int64)
        n = labels.shape[0]
        lengths = {}
        for dset, kinds in ((times_set, "f"), (units_set, "iu")):
            lengths[dset.name] = _vlen_lengths(dset, f, path, label, kinds, n)
        times_n, units_n = lengths[times_set.name], lengths[units_set.name]
        differ = np.flatnonzero(times_n != units_n)
        if differ.size:
            i = int(differ[0])
            raise DataError(f"{label}: sample {i} has {times_n[i]} spike times but {units_n[i]} units")
        times, units = _concatenated(times_set, label), _concatenated(units_set, label)
    starts = np.concatenate([[0], np.cumsum(times_n)]).astype(np.int64)
    _check_values(times, units, labels, starts, label)
    return times, units.astype(np.int64), labels, starts


def _dataset(f: h5py.File, name: str, label: str) -> h5py.Dataset:
    dset = f.get(name)
    if not isinstance(dset, h5py.Dataset):
        raise DataError(f"{label}: dataset {name!r} is missing; an SHD file holds labels, spikes/times and "
                        "spikes/units")
    return dset


def _vlen_lengths(dset: h5py.Dataset, f: h5py.File, path: Path, label: str, kinds: str, n: int) -> np.ndarray:
    """The length of every sequence of the 1-D variable-length dataset ``dset``, read from its stored descriptors.

    HDF5 stores an element as its length (4 bytes, little-endian), the
    address of its global heap collection and its index there (HDF5 file
    format specification, "Global Heap ID" and variable-length data).
    Contiguous data and chunks without filters are read where the file
    says they are; filtered (compressed) sequences are refused, as HDF5 2
    cannot write them either. The sequences together must fit into the file.
    """
    where = f"{label}: dataset {dset.name}"
    base = h5py.check_vlen_dtype(dset.dtype)
    if base is None or base.kind not in kinds or base.itemsize > 8 or base.fields is not None:
        expected = "floats" if kinds == "f" else "integers"
        raise DataError(f"{where} holds {dset.dtype}, expected variable-length sequences of {expected}")
    if dset.shape != (n,):
        raise DataError(f"{where} has shape {dset.shape}, expected ({n},), one sequence per label")
    width = f.id.get_create_plist().get_sizes()[0] + _DESCRIPTOR_FIXED
    plist = dset.id.get_create_plist()
    layout = plist.get_layout()
    if layout == h5py.h5d.CONTIGUOUS:
        offset = dset.id.get_offset()
        stored = dset.id.get_storage_size()
        segments = [] if offset is None or stored == 0 else [(0, offset, stored)]  # never written: all empty
        if segments and stored != n * width:
            raise DataError(f"{where} stores {stored} bytes for {n} sequences of {width}-byte descriptors")
    elif layout == h5py.h5d.CHUNKED and plist.get_nfilters() == 0:
        chunk = plist.get_chunk()[0]
        segments = []
        for c in range(dset.id.get_num_chunks()):
            info = dset.id.get_chunk_info(c)
            if info.size != chunk * width:
                raise DataError(f"{where}: chunk {c} stores {info.size} bytes, not {chunk} descriptors of {width}")
            segments.append((info.chunk_offset[0], info.byte_offset, info.size))
    else:
        kind = "filtered (compressed) chunks" if layout == h5py.h5d.CHUNKED else "compact storage"
        raise DataError(f"{where} uses {kind}; eventsim reads variable-length sequences stored contiguously or "
                        "in unfiltered chunks, as the release's files are")
    lengths = np.zeros(n, np.int64)
    with open_regular(path, label=label) as fh:
        size = os.fstat(fh.fileno()).st_size
        for first, offset, stored in segments:
            if offset + stored > size:
                raise DataError(f"{where}: its descriptors at byte {offset} run past the end of the "
                                f"{size}-byte file; the file is truncated or damaged")
            fh.seek(offset)
            raw = np.frombuffer(fh.read(stored), np.uint8).reshape(-1, width)
            found = raw[:, :4].copy().view("<u4").ravel().astype(np.int64)
            count = min(found.shape[0], n - first)
            lengths[first:first + count] = found[:count]
    total = int(lengths.sum()) * base.itemsize
    if total > size:
        raise DataError(f"{where}: its sequences claim {total} bytes, more than the whole {size}-byte file; "
                        "the file is damaged")
    check_size(total, f"{where}: its sequences", DataError)
    return lengths


def _concatenated(dset: h5py.Dataset, label: str) -> np.ndarray:
    """All sequences of ``dset`` one after the other (their lengths were checked by :func:`_vlen_lengths`)."""
    try:
        rows = dset[()]
    except (OSError, ValueError, TypeError) as exc:
        raise DataError(f"{label}: dataset {dset.name} cannot be read ({exc})") from None
    base = h5py.check_vlen_dtype(dset.dtype)
    return np.concatenate([np.asarray(r, base) for r in rows]) if len(rows) else np.zeros(0, base)


def _check_values(times: np.ndarray, units: np.ndarray, labels: np.ndarray, starts: np.ndarray,
                  label: str) -> None:
    """Refuse times that are negative or not finite, units past 700, labels outside the 20 classes."""
    def sample_of(event: int) -> str:
        i = int(np.searchsorted(starts, event, side="right")) - 1
        return f"sample {i}, spike {event - starts[i]}"

    as_float = times.astype(np.float64)
    bad = np.flatnonzero(~np.isfinite(as_float) | (as_float < 0) | (as_float * 1e6 >= 2.0**62))
    if bad.size:
        raise DataError(f"{label}: {sample_of(int(bad[0]))} has time {as_float[bad[0]]} s; times are seconds "
                        "from the start, >= 0")
    bad = np.flatnonzero((units < 0) | (units >= SENSOR_SIZE[0]))
    if bad.size:
        raise DataError(f"{label}: {sample_of(int(bad[0]))} has unit {units[bad[0]]}, outside the "
                        f"{SENSOR_SIZE[0]} channels")
    bad = np.flatnonzero((labels < 0) | (labels >= CLASSES))
    if bad.size:
        raise DataError(f"{label}: sample {bad[0]} has label {labels[bad[0]]}, outside the {CLASSES} classes")
