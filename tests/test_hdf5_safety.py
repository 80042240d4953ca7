"""The safe HDF5 reader (eventsim/hdf5.py) on crafted files, and the checkpoints read through it.

Every crafted file here is something a colleague's checkpoint, a shared cache
or a NIR graph from the web could be: it must give one eventsim error naming
the file and the object, never a read of another file, a hang, a crash or an
h5py exception.
"""

from __future__ import annotations

import os
import subprocess
import sys

import h5py
import numpy as np
import pytest

from eventsim.errors import CheckpointError, DataError
from eventsim.hdf5 import open_hdf5, read_attr, read_dataset, read_json_attr
from eventsim.learning.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from fuzzing import time_limit

SECRET = b"root:x:0:0:the secret the file must not leak\n" * 4


def _open(path):
    with time_limit(10), open_hdf5(path, error=DataError, what="test file") as f:
        return sorted(f)


def _checkpoint():
    return Checkpoint(params={"conv1.weight": np.arange(12, dtype=np.float32).reshape(3, 4),
                              "conv1.bias": np.ones(3, np.float32)},
                      optimizer_state={"step": np.array(3, np.int64)}, rng_state={}, epoch=1, step=3,
                      config={"model": "x"}, history=[{"epoch": 1, "loss": 0.5}])


@pytest.fixture()
def secret(tmp_path):
    path = tmp_path / "secret.txt"
    path.write_bytes(SECRET)
    return path


# ------------------------------------------------------------ crafted files
@pytest.mark.parametrize("target", ["secret", "fifo"])
def test_external_storage_is_refused_before_any_read(tmp_path, secret, target):
    # reading data stored on a FIFO would block forever
    if target == "fifo":
        secret = tmp_path / "pipe"
        os.mkfifo(secret)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("g/weights", shape=(48,), dtype="u1", external=[(str(secret), 0, 48)])
    with pytest.raises(DataError, match=rf"test file .*f\.h5: dataset /g/weights is stored in external file "
                                        rf".*{secret.name}"):
        _open(path)


def test_external_link_is_refused_without_being_followed(tmp_path):
    # the link points at a FIFO: following it would block forever in open()
    fifo = tmp_path / "trap.h5"
    os.mkfifo(fifo)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["a/b"] = h5py.ExternalLink(str(fifo), "/x")
    with pytest.raises(DataError, match=r"f\.h5: /a/b is an external link to '/x' in file .*trap\.h5"):
        _open(path)


def test_soft_link_is_refused(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("d", data=np.arange(3))
        f["alias"] = h5py.SoftLink("/d")
    with pytest.raises(DataError, match=r"f\.h5: /alias is a soft link to '/d'"):
        _open(path)


def test_virtual_dataset_is_refused(tmp_path, secret):
    source = tmp_path / "source.h5"
    with h5py.File(source, "w") as f:
        f.create_dataset("data", data=np.frombuffer(SECRET, np.uint8))
    layout = h5py.VirtualLayout(shape=(len(SECRET),), dtype=np.uint8)
    layout[:] = h5py.VirtualSource(str(source), "data", shape=(len(SECRET),))
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("v", layout)
    with pytest.raises(DataError, match=r"f\.h5: dataset /v is virtual"):
        _open(path)


def test_fifo_named_like_the_file_is_refused_without_blocking(tmp_path):
    path = tmp_path / "checkpoint.h5"
    os.mkfifo(path)
    with pytest.raises(DataError, match=r"checkpoint\.h5: is a FIFO"):
        _open(path)


def test_folder_and_missing_file(tmp_path):
    with pytest.raises(DataError, match=r"is a folder"):
        _open(tmp_path)
    with pytest.raises(DataError, match=r"nope\.h5: no such file"):
        _open(tmp_path / "nope.h5")


@pytest.mark.parametrize("target", ["group", "root"])
def test_hard_link_cycle_is_detected(tmp_path, target):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("node/nodes")
        g["loop"] = g if target == "group" else f
    with pytest.raises(DataError, match=r"f\.h5: /node/nodes/loop links again to (/node/nodes|/) \(a hard-link cycle"):
        _open(path)


def test_nesting_depth_is_bounded(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_group("/".join(["g"] * 40))
    with pytest.raises(DataError, match=r"nested deeper than 32 groups"):
        _open(path)


def test_huge_declared_shape_that_takes_no_space(tmp_path, monkeypatch):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("bomb", shape=(2**40,), dtype="f8", chunks=(1024,))  # 8 TiB declared, nothing written
    assert path.stat().st_size < 10_000
    with pytest.raises(DataError, match=r"f\.h5: its datasets together would need 8\.0 TiB.*EVENTSIM_MAX_BYTES"):
        _open(path)
    # the same check on one dataset read on its own, with the limit lowered below it
    with h5py.File(path, "w") as f:
        f.create_dataset("big", shape=(2**20,), dtype="f8", chunks=(1024,))
    monkeypatch.setenv("EVENTSIM_MAX_BYTES", "1M")
    with pytest.raises(DataError, match=r"its datasets together would need 8\.0 MiB"):
        _open(path)


def test_contiguous_data_past_the_end_of_the_file(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("w", data=np.arange(10_000, dtype=np.float64))
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(size - 4000)
    with pytest.raises(DataError, match=r"f\.h5: (dataset /w declares 80000 bytes at offset \d+, past the end|"
                                        r"not a readable HDF5 file)"):
        with open_hdf5(path, error=DataError, what="test file") as f:
            read_dataset(f["w"], error=DataError, what="test file")


def test_zeroed_free_space_in_a_global_heap_does_not_hang(tmp_path):
    """A few zeroed bytes inside the heap of JSON attributes make HDF5 loop forever inside C.

    SIGALRM cannot interrupt that loop, so the load runs in a child process.
    """
    path = tmp_path / "checkpoint.h5"
    save_checkpoint(path, _checkpoint())
    data = bytearray(path.read_bytes())
    heap = data.find(b"GCOL")
    assert heap > 0
    data[heap + 32:heap + 96] = bytes(64)  # the header of the heap's second object
    path.write_bytes(bytes(data))
    code = ("import sys\nfrom eventsim.learning.checkpoint import load_checkpoint\n"
            "from eventsim.errors import CheckpointError\n"
            "try:\n    load_checkpoint(sys.argv[1])\nexcept CheckpointError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "checkpoint.h5: the global heap at byte" in done.stdout


def test_zeroed_metadata_gives_checkpoint_errors_only(tmp_path):
    path = tmp_path / "checkpoint.h5"
    save_checkpoint(path, _checkpoint())
    data = path.read_bytes()
    damaged = tmp_path / "damaged.h5"
    outcomes = set()
    for start in range(0, min(len(data), data.find(b"GCOL")), 8):  # the superblock and the object headers
        damaged.write_bytes(data[:start] + bytes(8) + data[start + 8:])
        try:
            loaded = load_checkpoint(damaged)
        except CheckpointError as exc:
            assert "damaged.h5" in str(exc)
            outcomes.add("error")
        else:
            assert all(np.all(np.isfinite(a)) for a in loaded.params.values())
            outcomes.add("ok")
    assert "error" in outcomes


# ------------------------------------------------------------ read_dataset
def _file(tmp_path, **datasets):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        for name, data in datasets.items():
            f.create_dataset(name, data=data)
    return path


def test_read_dataset_checks_kind_and_shape(tmp_path):
    path = _file(tmp_path, w=np.ones((2, 3), np.float32), s=b"abc", v=np.array([b"a", b"bc"], dtype=object),
                 c=np.zeros(2, [("a", "i4"), ("b", "f4")]), z=np.ones(2, np.complex64))
    with open_hdf5(path, error=DataError, what="test file") as f:
        assert read_dataset(f["w"], error=DataError, what="test file", shape=(None, 3)).shape == (2, 3)
        with pytest.raises(DataError, match=r"d\.h5: dataset /w has shape \(2, 3\), expected \(any, 4\)"):
            read_dataset(f["w"], error=DataError, what="test file", shape=(None, 4))
        with pytest.raises(DataError, match=r"dataset /s holds strings, expected bools, integers"):
            read_dataset(f["s"], error=DataError, what="test file")
        assert read_dataset(f["s"], error=DataError, what="test file", kinds="S")[()] == b"abc"
        assert list(read_dataset(f["v"], error=DataError, what="test file", kinds="S")) == [b"a", b"bc"]
        with pytest.raises(DataError, match=r"dataset /c holds a compound type"):
            read_dataset(f["c"], error=DataError, what="test file")
        with pytest.raises(DataError, match=r"dataset /z holds"):
            read_dataset(f["z"], error=DataError, what="test file")


def test_read_dataset_refuses_sequences_and_references(tmp_path):
    path = tmp_path / "d.h5"
    with h5py.File(path, "w") as f:
        seq = f.create_dataset("seq", shape=(2,), dtype=h5py.vlen_dtype(np.int32))
        seq[0], seq[1] = [1, 2], [3]
        f.create_dataset("ref", data=np.array([f["seq"].ref], dtype=h5py.ref_dtype))
    with open_hdf5(path, error=DataError, what="test file") as f:
        with pytest.raises(DataError, match=r"dataset /seq holds variable-length sequences"):
            read_dataset(f["seq"], error=DataError, what="test file", kinds="biufS")
        with pytest.raises(DataError, match=r"dataset /ref holds object references"):
            read_dataset(f["ref"], error=DataError, what="test file", kinds="biufS")


def test_read_dataset_returns_native_byte_order(tmp_path):
    path = _file(tmp_path, w=np.arange(4, dtype=">f4"))
    with open_hdf5(path, error=DataError, what="test file") as f:
        a = read_dataset(f["w"], error=DataError, what="test file")
    assert a.dtype == np.float32 and a.dtype.isnative and a.tolist() == [0, 1, 2, 3]


def test_read_dataset_checks_the_limit(tmp_path, monkeypatch):
    path = _file(tmp_path, w=np.zeros(300_000, np.float32))
    with open_hdf5(path, error=DataError, what="test file") as f:
        monkeypatch.setenv("EVENTSIM_MAX_BYTES", "1M")
        with pytest.raises(DataError, match=r"dataset /w would need 1\.1 MiB, above the limit of 1\.0 MiB"):
            read_dataset(f["w"], error=DataError, what="test file")


# ------------------------------------------------------------ attributes
def test_attributes(tmp_path):
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.attrs.update(n=3, x=0.5, s="text", b=b"bytes", bad=b"\xff\xfe", arr=np.arange(3), js='{"a": [1]}',
                       deep="[" * 100_000, junk="{no")
        f.create_group("g").attrs["flag"] = True
    with open_hdf5(path, error=DataError, what="test file") as f:
        def attr(name, obj=f, read=read_attr):
            return read(obj, name, error=DataError, what="test file")

        assert (attr("n"), attr("x"), attr("s"), attr("b"), attr("flag", f["g"])) == (3, 0.5, "text", "bytes", True)
        assert attr("js", read=read_json_attr) == {"a": [1]}
        with pytest.raises(DataError, match=r"a\.h5: attribute 'gone' is missing"):
            attr("gone")
        with pytest.raises(DataError, match=r"attribute 'missing' of /g is missing"):
            attr("missing", f["g"])
        with pytest.raises(DataError, match=r"attribute 'bad' is not UTF-8 text"):
            attr("bad")
        with pytest.raises(DataError, match=r"attribute 'arr' is not a single number or string"):
            attr("arr")
        for name in ("deep", "junk"):
            with pytest.raises(DataError, match=rf"attribute '{name}' has unreadable contents \(not JSON"):
                attr(name, read=read_json_attr)
        with pytest.raises(DataError, match=r"attribute 'n' is not JSON text"):
            attr("n", read=read_json_attr)


# ------------------------------------------------------------ checkpoints
def test_checkpoint_with_external_storage_does_not_leak_the_secret(tmp_path, secret):
    path = tmp_path / "checkpoint.h5"
    save_checkpoint(path, _checkpoint())
    with h5py.File(path, "r+") as f:
        del f["params/0"]
        f["params"].create_dataset("0", shape=(3, 4), dtype="f4", external=[(str(secret), 0, 48)])
    with pytest.raises(CheckpointError, match=r"checkpoint .*checkpoint\.h5: dataset /params/0 is stored in "
                                              r"external file .*secret\.txt"):
        load_checkpoint(path)


@pytest.mark.parametrize("edit, match", [
    (lambda f: f.attrs.__setitem__("epoch", "-1"), "attribute 'epoch' is -1, expected an integer >= 0"),
    (lambda f: f.attrs.__setitem__("history", "[1, 2]"), "attribute 'history' is .*, expected a list of objects"),
    (lambda f: f.attrs.__setitem__("config", "[]"), "attribute 'config' is .*, expected an object"),
    (lambda f: f["params"].attrs.__setitem__("keys", '["a", "a"]'), "'keys' is not a list of distinct names"),
    (lambda f: f["params"].attrs.__setitem__("keys", b"\x80"), "attribute 'keys' of /params is not UTF-8"),
    (lambda f: f.attrs.__setitem__("format", np.arange(3)), "attribute 'format' is not a single number or string"),
    (lambda f: (f["params"].__delitem__("1"), f["params"].create_group("1")),
     "group 'params' has no dataset '1' for 'conv1.bias'"),
    (lambda f: (f["params"].__delitem__("1"), f["params"].create_dataset("1", data=np.array([b"x"]))),
     "dataset /params/1 holds strings"),
])
def test_checkpoint_fields_of_the_wrong_type(tmp_path, edit, match):
    path = tmp_path / "run.h5"
    save_checkpoint(path, _checkpoint())
    with h5py.File(path, "r+") as f:
        edit(f)
    with pytest.raises(CheckpointError, match=rf"run\.h5.*{match}"):
        load_checkpoint(path)


def test_a_defect_of_the_caller_inside_the_block_is_not_called_a_damaged_file(tmp_path):
    # Only what h5py raises while the contents are read means "damaged file";
    # a ValueError of the caller's own code must stay a traceback (a bug).
    path = tmp_path / "ok.h5"
    with h5py.File(path, "w") as f:
        f["x"] = np.arange(3.0)
    with pytest.raises(ValueError, match="the caller's own") as raised:
        with open_hdf5(path, error=DataError, what="file"):
            raise ValueError("the caller's own mistake")
    assert type(raised.value) is ValueError  # DataError is a ValueError too
    with pytest.raises(DataError, match="unreadable contents"):
        with open_hdf5(path, error=DataError, what="file") as f:
            f["no such dataset"]
