"""Untrusted caches and run folders: validation of event containers built from files, end to end with eventsim eval.

A cache on a shared disk or a checkpoint from a colleague is untrusted: the
row pointers of a cache reach the Numba kernels, which index memory with
them, and a checkpoint's datasets become weights.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

import h5py
import numpy as np
import pytest

from eventsim.errors import EventsError
from eventsim.events import Events
from eventsim.datasets import cached_encoding
from eventsim.encoders.binning import bin_events
from eventsim.learning.checkpoint import Checkpoint, save_checkpoint
from eventsim.learning.parameters import parameters
from eventsim.learning.runs import Job
from shared_data import data_root

INT64_MAX = np.iinfo(np.int64).max


# ---------------------------------------------------------------- Events
def _rows():
    """Two samples of 3 steps over 5 neurons, indices ascending in each row."""
    return np.array([0, 2, 2, 3, 5, 5, 6]), np.array([0, 3, 4, 1, 2, 0]), np.ones(6, np.float32)


def test_unsigned_row_pointers_that_decrease_are_refused():
    indptr, index, value = _rows()
    bad = indptr.astype(np.uint64)
    bad[2] = 4  # 2, 4, 3: np.diff of uint64 wraps to 2**64 - 1 instead of going negative
    with pytest.raises(EventsError, match="Events.indptr decreases at sample 0, step 2"):
        Events(bad, index, value, batch=2, steps=3, shape=(5,))


def test_unsigned_values_past_int64_are_refused():
    indptr, index, value = _rows()
    bad = indptr.astype(np.uint64)
    bad[3] = np.uint64(2**63 + 5)
    with pytest.raises(EventsError, match=f"Events.indptr holds {2**63 + 5}, past the largest int64"):
        Events(bad, index, value, batch=2, steps=3, shape=(5,))
    with pytest.raises(EventsError, match="Events.index holds"):
        Events(indptr, np.where(index == 4, np.uint64(2**64 - 1), index.astype(np.uint64)), value,
               batch=2, steps=3, shape=(5,))


def test_valid_unsigned_and_big_endian_arrays_become_native_int64():
    indptr, index, value = _rows()
    ev = Events(indptr.astype(">u8"), index.astype(np.uint16), value, batch=2, steps=3, shape=(5,))
    assert ev.indptr.dtype == np.int64 and ev.index.dtype == np.int64
    np.testing.assert_array_equal(ev.indptr, indptr)
    np.testing.assert_array_equal(ev.index, index)


@pytest.mark.parametrize("indptr", [np.array([0.0, 2, 2, 3, 5, 5, 6]), np.array([True] * 7)])
def test_non_integer_row_pointers_are_refused(indptr):
    _, index, value = _rows()
    with pytest.raises(EventsError, match="Events.indptr must be a 1-D integer array"):
        Events(indptr, index, value, batch=2, steps=3, shape=(5,))


@pytest.mark.parametrize("shape", [["a"], [2.5], [float("inf")], [None]])
def test_junk_shapes_are_refused(shape):
    with pytest.raises(EventsError, match="shape must be a sequence of ints"):
        Events.empty(batch=1, steps=1, shape=shape)


def test_duplicates_are_still_found_in_unsorted_rows():
    indptr, index, value = _rows()
    index[3:5] = [2, 1]  # descending row: the fast path does not apply
    Events(indptr, index.copy(), value, batch=2, steps=3, shape=(5,))
    index[3:5] = [2, 2]
    with pytest.raises(EventsError, match="neuron 2 appears twice at sample 1, step 0"):
        Events(indptr, index, value, batch=2, steps=3, shape=(5,))


# ---------------------------------------------------------------- caches
class Items(list):
    """(recording, label) pairs that know their labels, as NMNIST does."""

    @property
    def labels(self):
        return np.array([label for _, label in self])


@pytest.fixture(scope="module")
def items():
    from eventsim.datasets import NMNIST

    data = NMNIST(data_root(), "test")
    return Items(data[i] for i in range(0, 100, 10))


def _encode(recording):
    return bin_events(recording, sensor=(34, 34), steps=6)


def _replace(path, name, data):
    with h5py.File(path, "r+") as f:
        del f[name]
        f.create_dataset(name, data=data)


@pytest.mark.parametrize("craft", ["huge", "decreasing", "labels", "one sample short"])
def test_a_crafted_cache_is_rebuilt(tmp_path, items, craft):
    key = {"dataset": "nmnist", "split": "test", "steps": 6}
    good = cached_encoding(key, items, _encode, folder=tmp_path, progress=None)
    (path,) = tmp_path.glob("*.h5")
    indptr = good.events.indptr.astype(np.uint64)
    if craft == "huge":  # the kernels read far outside the events: signal 11 before
        indptr[7] = np.uint64(2**63 + 12345)
        _replace(path, "indptr", indptr)
    elif craft == "decreasing":  # events moved to another step: silently wrong numbers before
        indptr[7] = indptr[8] + 5
        _replace(path, "indptr", indptr)
    elif craft == "labels":
        _replace(path, "labels", (good.labels + 1) % 10)
    else:
        with h5py.File(path, "r+") as f:
            f.attrs["batch"] = 9
            f.attrs["shape"] = "[2, 34, 34]"
    with pytest.warns(UserWarning, match="cannot be trusted"):
        again = cached_encoding(key, items, _encode, folder=tmp_path, progress=None)
    for a, b in ((again.events.indptr, good.events.indptr), (again.events.index, good.events.index),
                 (again.events.value, good.events.value), (again.labels, good.labels)):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- eventsim eval
@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """An untrained N-MNIST run folder (job.json, checkpoint.h5) and the environment eval needs."""
    folder = tmp_path_factory.mktemp("run")
    job = Job(dataset="nmnist", steps=6, test_limit=20, batch_size=10)
    network = job.network(rng=np.random.default_rng(0))
    save_checkpoint(folder / "checkpoint.h5", Checkpoint(
        params={k: v.copy() for k, v in parameters(network).items()}, optimizer_state={}, rng_state={},
        epoch=0, step=0, config={}, history=[]))
    (folder / "job.json").write_text(json.dumps(asdict(job)))
    env = {**os.environ, "EVENTSIM_DATA": str(data_root()), "XDG_CACHE_HOME": str(folder / "cache")}
    return folder, env


def _eval(run):
    folder, env = run
    return subprocess.run([sys.executable, "-m", "eventsim.cli", "eval", str(folder)], env=env,
                          capture_output=True, text=True, timeout=300)


def test_eval_survives_a_cache_with_huge_row_pointers(run):
    first = _eval(run)
    assert first.returncode == 0, first.stderr
    (path,) = (run[0] / "cache").rglob("nmnist-test-*.h5")
    with h5py.File(path, "r") as f:
        indptr = f["indptr"][()].astype(np.uint64)
    indptr[7] = np.uint64(2**63 + 12345)
    _replace(path, "indptr", indptr)
    again = _eval(run)
    assert again.returncode == 0, f"eval ended with {again.returncode}: {again.stderr[-2000:]}"
    assert "cannot be trusted" in again.stderr and "past the largest int64" in again.stderr
    assert json.loads(again.stdout)["synops_total_per_sample"] == json.loads(first.stdout)["synops_total_per_sample"]


def test_eval_refuses_a_checkpoint_with_external_storage(run, tmp_path):
    folder, env = run
    secret = tmp_path / "secret.bin"
    with h5py.File(folder / "checkpoint.h5", "r") as f:
        keys = json.loads(f["params"].attrs["keys"])
        shape, dtype = f["params/0"].shape, f["params/0"].dtype
    secret.write_bytes(np.full(shape, 0.25, dtype).tobytes())
    crafted = tmp_path / "crafted"
    crafted.mkdir()
    (crafted / "job.json").write_text((folder / "job.json").read_text())
    (crafted / "checkpoint.h5").write_bytes((folder / "checkpoint.h5").read_bytes())
    with h5py.File(crafted / "checkpoint.h5", "r+") as f:
        del f["params/0"]
        f["params"].create_dataset("0", shape=shape, dtype=dtype, external=[(str(secret), 0, secret.stat().st_size)])
    done = _eval((crafted, env))
    assert done.returncode == 2, done.stdout[-500:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "checkpoint.h5" in lines[0] and "/params/0" in lines[0] and "secret.bin" in lines[0], lines[0]
    assert keys[0] not in done.stdout
