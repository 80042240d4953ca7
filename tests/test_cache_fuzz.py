"""Fuzz: a mutated cache file is rebuilt, or gives events that pass the full validation.

A cache is read through datasets.cache (the untrusted-file path of
:func:`cached_encoding`): whatever the mutation (tests/hdf5_mutations.py),
reading either raises an eventsim error (which :func:`cached_encoding` turns
into a rebuild) or returns the samples the items encode to. Run long with
HYPOTHESIS_PROFILE=campaign.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, strategies as st

from eventsim.datasets import cache
from eventsim.events import Events
from fuzzing import untrusted
from hdf5_mutations import byte_damage, mutated_file, secret_file, structural_edit

FOLDER = Path(tempfile.mkdtemp(prefix="cache-fuzz-"))
SECRET = secret_file(FOLDER)
KEY = {"dataset": "fuzz", "split": "test", "steps": 4}


class Items(list):
    """Samples that know their labels, as NMNIST does."""

    labels = np.array([3, 1, 4])


def _events(seed: int) -> Events:
    rng = np.random.default_rng(seed)
    dense = (rng.random((1, 4, 2, 5, 5)) < 0.2).astype(np.float32)
    return Events.from_dense(dense)


ITEMS = Items([(i, label) for i, label in enumerate(Items.labels)])
SAMPLES = cache.EncodedSamples(Events.concat([_events(i) for i, _ in ITEMS]), Items.labels.copy())


def _valid() -> bytes:
    path = FOLDER / "valid.h5"
    cache._write(path, KEY, SAMPLES)
    return path.read_bytes()


VALID = _valid()


def _is_the_encoding(samples: cache.EncodedSamples) -> None:
    """A cache that reads must hold exactly what the items encode to: anything else had to be refused."""
    ev, good = samples.events, SAMPLES.events
    assert (ev.batch, ev.steps, ev.shape) == (good.batch, good.steps, good.shape)
    for a, b in ((ev.indptr, good.indptr), (ev.index, good.index), (ev.value, good.value),
                 (samples.labels, SAMPLES.labels)):
        np.testing.assert_array_equal(a, b)


def test_the_unmutated_cache_reads():
    path = FOLDER / "plain.h5"
    path.write_bytes(VALID)
    assert untrusted("cache", lambda: cache._read(path, KEY, ITEMS), _is_the_encoding) == "ok"


@given(edits=st.lists(structural_edit(SECRET), max_size=2), damage=byte_damage())
def test_mutated_caches(edits, damage):
    path = FOLDER / "mutated.h5"
    mutated_file(VALID, path, edits, damage)
    # DataError names the damaged file; EventsError, the events it would have held
    assert untrusted("cache", lambda: cache._read(path, KEY, ITEMS), _is_the_encoding) in {"ok", "DataError",
                                                                                         "EventsError"}
