"""An HDF5 cache of encoded samples, keyed by everything that produced them.

Encoding a dataset (reading thousands of recordings and binning them) is
done once: the result, a batch :class:`~eventsim.events.Events` of all samples
and their labels, is stored in one HDF5 file whose name carries a hash of the
key (dataset, split, every encoding parameter) and whose attributes carry the
key itself. A changed parameter is a different key, hence a different file.

A cache file is trusted only if it opens, holds the same key, was marked
complete, and its arrays form a valid event container; anything else (a
truncated file, a write that was interrupted, a foreign file under the same
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
from eventsim.errors import EventsimError
from eventsim.events import Events
from eventsim.progress import ProgressBar

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
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample {i} is outside the {len(self)} samples")
        i %= len(self)
        return self.events.sample(i), int(self.labels[i])

    def __repr__(self) -> str:
        ev = self.events
        return f"EncodedSamples({len(self)} samples, steps={ev.steps}, shape={ev.shape}, from {self.source or 'memory'})"


def key_path(folder: Path, key: dict) -> Path:
    """The cache file of ``key``: ``<dataset>-<split>-<hash of the key>.h5``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return folder / f"{key.get('dataset', 'data')}-{key.get('split', 'all')}-{digest}.h5"


def _read(path: Path, key: dict) -> EncodedSamples:
    """The cached samples, or ValueError/OSError/KeyError saying why the file cannot be trusted."""
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT or int(f.attrs.get("version", -1)) != VERSION:
            raise ValueError("not an eventsim cache of this version")
        if json.loads(f.attrs["key"]) != json.loads(json.dumps(key)):
            raise ValueError("written for another key")
        if not bool(f.attrs.get("complete", False)):
            raise ValueError("its write was not completed")
        steps, shape, batch = int(f.attrs["steps"]), tuple(json.loads(f.attrs["shape"])), int(f.attrs["batch"])
        indptr, index, value, labels = (f[k][()] for k in ("indptr", "index", "value", "labels"))
    # Bit rot is caught by the datasets' Fletcher-32 checksums; these checks catch a
    # file that is whole but inconsistent, at a fraction of the full validation's cost.
    if indptr.shape != (batch * steps + 1,) or indptr[0] != 0 or indptr[-1] != index.shape[0] \
            or np.any(np.diff(indptr) < 0) or value.shape != index.shape:
        raise ValueError("its row pointers do not match its events")
    if index.size and (index.min() < 0 or index.max() >= np.prod(shape)):
        raise ValueError("it holds neuron indices outside the sample shape")
    events = Events(indptr, index, value, batch=batch, steps=steps, shape=shape, check=False)
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
    progress : text stream or None
        Progress of a (re)build.
    """
    path = None if folder is None else key_path(Path(folder), key)
    if path is not None and path.exists():
        try:
            return _read(path, key)
        except (OSError, ValueError, KeyError, EventsimError) as exc:
            warnings.warn(f"cache {path} cannot be trusted ({exc}); rebuilding it", stacklevel=2)
    bar = ProgressBar(len(items), f"encoding {key.get('dataset', '')} {key.get('split', '')}".strip(), progress)
    parts, labels = [], []
    for i in range(len(items)):
        raw, label = items[i]
        parts.append(encode(raw))
        labels.append(int(label))
        bar.update(1)
    bar.close()
    samples = EncodedSamples(Events.concat(parts), np.array(labels, np.int64), source=str(path or ""))
    if path is not None:
        _write(path, key, samples)
    return samples
