"""Checkpoints: round trips, atomic writes, unreadable files."""

import json
import os

import h5py
import numpy as np
import pytest

from eventsim.errors import CheckpointError, OptionError
from eventsim.learning import checkpoint as ckpt
from eventsim.learning.checkpoint import Checkpoint, generator_from_state, load_checkpoint, rng_state, save_checkpoint
from eventsim.learning.optimizers import Adam

ODD_KEYS = ["res1.conv2.weight", "a/b/c", "/leading", "trailing/", "..", "", "with space", "ünï/cødé", "0", "keys"]


def _checkpoint(seed=0, epoch=3):
    rng = np.random.default_rng(seed)
    dtypes = (np.float64, np.float32)
    params = {k: rng.standard_normal((i + 1, 2)).astype(dtypes[i % 2]) for i, k in enumerate(ODD_KEYS)}
    params["empty"] = np.zeros((0, 4), np.float32)
    params["specials"] = np.array([-0.0, 5e-324, np.finfo(np.float64).max], np.float64)
    optimizer_state = {"step": np.array(12, np.int64), "exp_avg/a/b/c": params["a/b/c"] * 2}
    return Checkpoint(
        params=params,
        optimizer_state=optimizer_state,
        rng_state={"shuffle": rng_state(rng), "dropout": rng_state(np.random.Generator(np.random.MT19937(5)))},
        epoch=epoch,
        step=12,
        config={"optimizer": {"name": "adam", "lr": 1e-3}, "milestones": [70, 100], "note": "µ/é"},
        history=[{"epoch": 1, "loss": 2.5, "acc": 0.1}, {"epoch": 2, "loss": float("nan")}],
    )


def _assert_same_arrays(a, b):
    assert list(a) == list(b)  # keys and their order
    for k in a:
        assert a[k].dtype == b[k].dtype and a[k].shape == b[k].shape, k
        assert a[k].tobytes() == b[k].tobytes(), k


def test_round_trip(tmp_path):
    path = tmp_path / "run.h5"
    c = _checkpoint()
    save_checkpoint(path, c)
    back = load_checkpoint(path)
    _assert_same_arrays(back.params, c.params)
    _assert_same_arrays(back.optimizer_state, c.optimizer_state)
    assert back.optimizer_state["step"].shape == () and back.optimizer_state["step"].dtype == np.int64
    assert back.rng_state == c.rng_state
    assert (back.epoch, back.step, back.config) == (c.epoch, c.step, c.config)
    assert back.history[0] == c.history[0] and np.isnan(back.history[1]["loss"])
    assert os.listdir(tmp_path) == ["run.h5"]
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "eventsim-checkpoint" and f.attrs["version"] == 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_arrays_are_refused_on_load(tmp_path, bad):
    # a diverged run still saves (the write must not crash the run), but nothing resumes or evaluates from it
    path = tmp_path / "run.h5"
    c = _checkpoint()
    c.params["a/b/c"][0, 1] = bad
    save_checkpoint(path, c)
    with pytest.raises(CheckpointError, match=r"run\.h5.*params\['a/b/c'\].*non-finite"):
        load_checkpoint(path)


def test_overwrite_replaces(tmp_path):
    path = str(tmp_path / "run.h5")
    save_checkpoint(path, _checkpoint(0, epoch=1))
    save_checkpoint(path, _checkpoint(1, epoch=2))
    back = load_checkpoint(path)
    assert back.epoch == 2
    _assert_same_arrays(back.params, _checkpoint(1).params)
    assert os.listdir(tmp_path) == ["run.h5"]


@pytest.mark.parametrize("name", ["PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64"])
def test_rng_state_continues_the_stream(tmp_path, name):
    gen = np.random.Generator(getattr(np.random, name)(42))
    gen.random(7)
    gen.integers(0, 10, 3)  # PCG64 then holds a buffered 32-bit half
    c = _checkpoint()
    c.rng_state = {"shuffle": rng_state(gen)}
    save_checkpoint(tmp_path / "c.h5", c)
    expected = (gen.random(5), gen.permutation(20), gen.integers(0, 2**31, 9, dtype=np.int32))
    restored = generator_from_state(load_checkpoint(tmp_path / "c.h5").rng_state["shuffle"])
    got = (restored.random(5), restored.permutation(20), restored.integers(0, 2**31, 9, dtype=np.int32))
    assert all(np.array_equal(a, b) for a, b in zip(got, expected))


def test_rng_state_is_json_ready():
    state = rng_state(np.random.default_rng(1))
    assert json.loads(json.dumps(state)) == state
    assert state["state"]["state"] >= 2**64 or state["state"]["inc"] >= 2**64  # 128-bit integers survive


def test_optimizer_resumes_through_a_checkpoint(tmp_path):
    rng = np.random.default_rng(3)
    start = {"w": rng.standard_normal((3, 4)), "b": rng.standard_normal(3).astype(np.float32)}
    grads = [{k: rng.standard_normal(v.shape).astype(v.dtype) for k, v in start.items()} for _ in range(6)]
    straight, opt = {k: v.copy() for k, v in start.items()}, Adam(0.01)
    for g in grads:
        opt.step(straight, g)
    params, opt = {k: v.copy() for k, v in start.items()}, Adam(0.01)
    for g in grads[:3]:
        opt.step(params, g)
    save_checkpoint(tmp_path / "c.h5", Checkpoint(params, opt.state_dict(), {}, 1, 3, opt.config(), []))
    back = load_checkpoint(tmp_path / "c.h5")
    params, opt = back.params, Adam(**{k: v for k, v in back.config.items() if k != "name"})
    opt.load_state_dict(back.optimizer_state)
    for g in grads[3:]:
        opt.step(params, g)
    _assert_same_arrays(params, straight)


# ---------------------------------------------------------- crashes mid-write
def _crash_on_second_dataset(monkeypatch):
    real = h5py.Group.create_dataset
    calls = []

    def failing(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("disk full (simulated)")
        return real(self, *args, **kwargs)

    monkeypatch.setattr(h5py.Group, "create_dataset", failing)


def _crash_on_replace(monkeypatch):
    def failing(src, dst):
        raise OSError("rename failed (simulated)")

    monkeypatch.setattr(ckpt.os, "replace", failing)


def _crash_on_fsync(monkeypatch):
    def failing(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(ckpt.os, "fsync", failing)


@pytest.mark.parametrize("crash", [_crash_on_second_dataset, _crash_on_replace, _crash_on_fsync],
                         ids=["dataset", "replace", "interrupt"])
def test_crash_during_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch, crash):
    path = tmp_path / "run.h5"
    old = _checkpoint(0, epoch=1)
    save_checkpoint(path, old)
    crash(monkeypatch)
    with pytest.raises((OSError, KeyboardInterrupt)):
        save_checkpoint(path, _checkpoint(1, epoch=2))
    monkeypatch.undo()
    assert os.listdir(tmp_path) == ["run.h5"]
    back = load_checkpoint(path)
    assert back.epoch == 1
    _assert_same_arrays(back.params, old.params)


def test_crash_on_a_first_write_leaves_nothing(tmp_path, monkeypatch):
    _crash_on_replace(monkeypatch)
    with pytest.raises(OSError, match="simulated"):
        save_checkpoint(tmp_path / "run.h5", _checkpoint())
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: setattr(c, "config", {"f": lambda: 0}), "config is not JSON-ready"),
        (lambda c: setattr(c, "history", [{"x": np.ones(2)}]), "history is not JSON-ready"),
        (lambda c: setattr(c, "epoch", -1), "epoch must be an integer >= 0"),
        (lambda c: setattr(c, "step", 2.0), "step must be an integer >= 0"),
        (lambda c: c.params.update(bad=[1.0, 2.0]), r"params\['bad'\] must be a numeric numpy array, got list"),
        (lambda c: c.optimizer_state.update({"s": np.array(["x"])}), r"optimizer\['s'\] must be a numeric"),
    ],
)
def test_bad_contents_are_refused_before_writing(tmp_path, edit, match):
    c = _checkpoint()
    edit(c)
    with pytest.raises(TypeError, match=match):
        save_checkpoint(tmp_path / "run.h5", c)
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------- unreadable files
def test_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    with pytest.raises(CheckpointError, match=r"nope\.h5.*no such file"):
        load_checkpoint(path)


def test_truncated_file(tmp_path):
    path = tmp_path / "run.h5"
    save_checkpoint(path, _checkpoint())
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(CheckpointError, match=r"run\.h5.*truncated"):
        load_checkpoint(path)


def test_text_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("epoch 3, loss 0.1\n")
    with pytest.raises(CheckpointError, match=r"notes\.txt.*not a readable HDF5 file"):
        load_checkpoint(path)


def test_foreign_hdf5_file(tmp_path):
    path = tmp_path / "data.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("images", data=np.zeros((2, 3)))
        f.attrs["format"] = "something-else"
    with pytest.raises(CheckpointError, match=r"data\.h5.*not an eventsim checkpoint"):
        load_checkpoint(path)


def _edit_file(path, edit):
    with h5py.File(path, "r+") as f:
        edit(f)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda f: f.attrs.__setitem__("version", 2), "format version 2 was written by a newer eventsim"),
        (lambda f: f.attrs.__setitem__("version", "1"), "invalid format version"),
        (lambda f: f.attrs.__delitem__("version"), "attribute 'version' is missing"),
        (lambda f: f.attrs.__delitem__("history"), "attribute 'history' is missing"),
        (lambda f: f.attrs.__setitem__("config", "{not json"), "unreadable contents"),
        (lambda f: f.__delitem__("optimizer"), "group 'optimizer' is missing"),
        (lambda f: f["params"].attrs.__delitem__("keys"), "group 'params' has no 'keys' attribute"),
        (lambda f: f["params"].__delitem__("3"), "group 'params' holds 11 arrays for 12 keys"),
    ],
)
def test_damaged_checkpoints(tmp_path, edit, match):
    path = tmp_path / "run.h5"
    save_checkpoint(path, _checkpoint())
    _edit_file(path, edit)
    with pytest.raises(CheckpointError, match=rf"run\.h5.*{match}"):
        load_checkpoint(path)


def test_bad_generator_states():
    with pytest.raises(OptionError, match="unknown bit generator 'Xorshift'"):
        generator_from_state({"bit_generator": "Xorshift", "state": {}})
    with pytest.raises(OptionError, match="invalid PCG64 generator state"):
        generator_from_state({"bit_generator": "PCG64", "state": {"state": 1}})
    with pytest.raises(OptionError, match="numpy.random.Generator"):
        rng_state(np.random.RandomState(0))
