"""Fuzz: mutated checkpoint files give CheckpointError or a checkpoint that keeps the loader's promises.

The mutations (tests/hdf5_mutations.py) start from a valid checkpoint:
datasets replaced by other shapes, dtypes, external storage or huge unwritten
ones, junk attributes, deleted objects, links, then bit flips, truncation and
zeroed or random ranges. Run long with HYPOTHESIS_PROFILE=campaign.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from hypothesis import given, strategies as st

from eventsim.learning.checkpoint import Checkpoint, load_checkpoint, rng_state, save_checkpoint
from fuzzing import untrusted
from hdf5_mutations import byte_damage, mutated_file, secret_file, structural_edit

FOLDER = Path(tempfile.mkdtemp(prefix="checkpoint-fuzz-"))
SECRET = secret_file(FOLDER)


def _valid() -> bytes:
    rng = np.random.default_rng(0)
    path = FOLDER / "valid.h5"
    save_checkpoint(path, Checkpoint(
        params={"conv1.weight": rng.standard_normal((4, 2, 3, 3)).astype(np.float32),
                "conv1.bias": np.zeros(4, np.float32), "fc.weight": rng.standard_normal((10, 8))},
        optimizer_state={"step": np.array(7, np.int64), "exp_avg/conv1.weight": np.ones((4, 2, 3, 3), np.float32)},
        statistics={"norm1.mean": np.zeros(4)},
        rng_state={"current": rng_state(rng), "epoch_start": rng_state(rng)},
        epoch=2, step=7, config={"model": "m", "lr": 1e-3}, history=[{"epoch": 1, "loss": 0.5}]))
    return path.read_bytes()


VALID = _valid()


def _keeps_promises(c: Checkpoint) -> None:
    assert isinstance(c.epoch, int) and c.epoch >= 0 and isinstance(c.step, int) and c.step >= 0
    assert isinstance(c.config, dict) and isinstance(c.rng_state, dict)
    assert isinstance(c.history, list) and all(isinstance(h, dict) for h in c.history)
    for arrays in (c.params, c.optimizer_state, c.statistics):
        for key, a in arrays.items():
            assert isinstance(key, str) and isinstance(a, np.ndarray) and a.dtype.kind in "biuf", key
            assert a.dtype.isnative, key
            if a.dtype.kind == "f":
                assert np.all(np.isfinite(a)), key


def test_the_unmutated_checkpoint_loads():
    path = FOLDER / "plain.h5"
    path.write_bytes(VALID)
    assert untrusted("checkpoint", lambda: load_checkpoint(path), _keeps_promises) == "ok"


@given(edits=st.lists(structural_edit(SECRET), max_size=2), damage=byte_damage())
def test_mutated_checkpoints(edits, damage):
    path = FOLDER / "mutated.h5"
    mutated_file(VALID, path, edits, damage)
    untrusted("checkpoint", lambda: load_checkpoint(path), _keeps_promises)
