"""An HDF5 cache of encoded samples, keyed by everything that produced them.

Encoding a dataset (reading thousands of recordings and binning them) is
done once: the result, a batch :class:`~eventsim.events.Events` of all samples
and their labels, is stored in one HDF5 file whose name carries a hash of the
key (dataset, split, every encoding parameter) and whose attributes carry the
key itself. A changed parameter is a different key, hence a different file.

A cache file is trusted only if it passes the safe HDF5 reader, holds the
same key, was marked complete, has one sample per item, and its arrays pass
the full validation of an event container; anything else (a truncated
file, a write that was interrupted, a foreign or crafted file under the same
name) is reported and rebuilt. Writes go to a temporary file in the same
folder, are flushed to disk, then renamed over the target, so a crash never
leaves a half-written cache behind the cache's name.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence, TextIO

import h5py
import numpy as np

from eventsim.atomic import atomic_path
from eventsim.errors import DataError, EventsimError
from eventsim.events import Events
from eventsim.hdf5 import open_hdf5, read_attr, read_dataset, read_json_attr
from eventsim.progress import progress_bar
from eventsim.datasets.samples import sample_index

FORMAT = "eventsim-encoded-samples"
VERSION = 1


class EncodedSamples(Sequence):
    """Encoded samples held as one batch container: item i is ``(Events of batch 1, label)``."""

    def __init__(self, events: Events, labels: np.ndarray, *, source: str = "") -> None:
        if labels.shape != (events.batch,):
            raise ValueError(f"{events.batch} samples but {labels.shape} labels")
        self.events, self.labels, self.source = events, labels, source

    def __len__(self) -> int:
        return self.events.batch

    def __getitem__(self, i: int) -> tuple[Events, int]:  # type: ignore[override]
        i = sample_index(i, len(self))
        return self.events.sample(i), int(self.labels[i])

    def __repr__(self) -> str:
        ev = self.events
        return f"EncodedSamples({len(self)} samples, steps={ev.steps}, shape={ev.shape}, from {self.source or 'memory'})"


def key_path(folder: Path, key: dict) -> Path:
    """The cache file of ``key``: ``<dataset>-<split>-<hash of the key>.h5``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"{key.get('dataset', 'data')}-{key.get('split', 'all')}-{digest}.h5"


def _read(path: Path, key: dict, items: Sequence) -> EncodedSamples:
    """The cached samples, or an eventsim error saying why the file cannot be trusted.

    The file is untrusted (a shared disk, a foreign file under the cache's
    name): it is read through :func:`eventsim.hdf5.open_hdf5` and its events
    get the full validation of :class:`Events` (int64 row pointers that never
    decrease, indices inside the shape, finite nonzero values, no duplicate),
    since the kernels index memory with them. There must be one sample per
    item, and the labels must be the items' own where the items know them.
    """
    def attr(name, read=read_attr):
        return read(f, name, error=DataError, what="cache")

    def array(name, kinds):
        dset = f.get(name)
        if not isinstance(dset, h5py.Dataset):
            raise DataError(f"cache {path}: dataset {name!r} is missing")
        return read_dataset(dset, error=DataError, what="cache", kinds=kinds, shape=(None,))

    with open_hdf5(path, error=DataError, what="cache") as f:
        if attr("format") != FORMAT or attr("version") != VERSION:
            raise DataError(f"cache {path}: not an eventsim cache of this version")
        if attr("key", read_json_attr) != json.loads(json.dumps(key)):
            raise DataError(f"cache {path}: written for another key")
        if attr("complete") is not True:
            raise DataError(f"cache {path}: its write was not completed")
        steps, shape, batch = attr("steps"), attr("shape", read_json_attr), attr("batch")
        if batch != len(items):
            raise DataError(f"cache {path}: holds {batch!r} samples for {len(items)} items")
        indptr, index, labels = array("indptr", "iu"), array("index", "iu"), array("labels", "iu")
        value = array("value", "f")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (steps, batch)):
        raise DataError(f"cache {path}: steps {steps!r} and batch {batch!r} must be integers")
    if not isinstance(shape, list):
        raise DataError(f"cache {path}: shape {shape!r} is not a list")
    events = Events(indptr, index, value, batch=batch, steps=steps, shape=shape)
    labels = labels.astype(np.int64)  # an unsigned label past int64 wraps negative and is refused here
    known = getattr(items, "labels", None)
    if labels.shape != (batch,) or np.any(labels < 0) or (known is not None and not np.array_equal(labels, known)):
        raise DataError(f"cache {path}: its labels are not those of the samples")
    return EncodedSamples(events, labels, source=str(path))


def _write(path: Path, key: dict, samples: EncodedSamples) -> None:
    ev = samples.events
    with atomic_path(path) as tmp, h5py.File(tmp, "x") as f:
        f.attrs.update(format=FORMAT, version=VERSION, key=json.dumps(key, sort_keys=True),
                       steps=ev.steps, shape=json.dumps(list(ev.shape)), batch=ev.batch, complete=False)
        for name, arr in (("indptr", ev.indptr), ("index", ev.index), ("value", ev.value),
                          ("labels", samples.labels)):
            f.create_dataset(name, data=arr, chunks=True if arr.size else None, fletcher32=bool(arr.size))
        f.attrs["complete"] = True  # last: a file without it was interrupted


def cached_encoding(
    key: dict,
    items: Sequence[tuple[Any, int]],
    encode: Callable[[Any], Events],
    *,
    folder: str | os.PathLike | None,
    progress: TextIO | str | None = "stderr",
) -> EncodedSamples:
    """Encode every item of ``items`` with ``encode``, or load the result from the cache.

    Parameters
    ----------
    key : dict
        JSON-ready; must name the dataset, the split and every parameter that
        changes the result.
    items : sequence of (raw sample, label)
    encode : callable
        Raw sample -> Events of batch 1.
    folder : path or None
        Where cache files live; None encodes without a cache.
    progress : text stream, "stderr" or None
        Where the progress of a (re)build goes (:func:`eventsim.progress.progress_bar`; None: silent).
    """
    path = None if folder is None else key_path(Path(folder), key)
    if path is not None and path.exists():
        try:
            return _read(path, key, items)
        except EventsimError as exc:
            warnings.warn(f"cache {path} cannot be trusted ({exc}); rebuilding it", stacklevel=2)
    # in a with block: an interrupted run ends the bar's line before its error message is printed
    with progress_bar(len(items), f"encoding {key.get('dataset', '')} {key.get('split', '')}".strip(), progress) as bar:
        parts, labels = [], []
        for i in range(len(items)):
            raw, label = items[i]
            parts.append(encode(raw))
            labels.append(int(label))
            bar.update(1)
    samples = EncodedSamples(Events.concat(parts), np.array(labels, np.int64), source=str(path or ""))
    if path is not None:
        _write(path, key, samples)
    return samples
