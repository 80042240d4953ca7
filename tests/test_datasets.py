"""N-MNIST and MNIST readers, data folders, binning and the encoded-sample cache.

The reader is checked against tonic's on every file of the subset, and
fuzzed: any byte string either parses into valid events or raises the
reader's own error. Binning in count mode equals tonic's ToFrame.
"""

from __future__ import annotations

import gzip
import os
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.datasets import NMNIST, cached_encoding, load_mnist, parse_nmnist, read_idx, stabilize
from eventsim.datasets.folders import find
from eventsim.datasets.nmnist import SACCADE_US
from eventsim.encoders.binning import bin_events
from shared_data import data_root


def record(x, y, t, p=0) -> bytes:
    """One event in the 5-byte format."""
    return bytes([x, y, (p << 7) | ((t >> 16) & 0x7F), (t >> 8) & 0xFF, t & 0xFF])


@pytest.fixture(scope="module")
def root():
    return data_root()


@pytest.fixture(scope="module")
def all_files(root):
    return sorted((root / "NMNIST").glob("*/*/*.bin"))


# ------------------------------------------------------------------ reader
def test_reader_equals_tonic_on_every_file(all_files):
    tonic_io = pytest.importorskip("tonic.io")
    assert len(all_files) == 1100
    layout = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    for path in all_files:
        ours = es.datasets.read_nmnist(path)
        theirs = tonic_io.read_mnist_file(str(path), dtype=layout)
        for field in "xytp":
            np.testing.assert_array_equal(ours[field], theirs[field], err_msg=f"{path} {field}")


def test_count_binning_equals_tonic_to_frame_on_every_file(all_files):
    transforms = pytest.importorskip("tonic.transforms")
    to_frame = transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=25)
    for path in all_files:
        recording = es.datasets.read_nmnist(path)
        ours = bin_events(recording, sensor=(34, 34), steps=25, values="count").to_dense()[0]
        np.testing.assert_array_equal(ours, to_frame(recording), err_msg=str(path))


@settings(max_examples=200)
@given(raw=st.one_of(
    st.binary(max_size=200),
    st.lists(st.binary(min_size=5, max_size=5), max_size=30).map(b"".join),  # whole records, any bytes
))
def test_arbitrary_bytes_parse_or_raise_the_readers_error(raw):
    try:
        rec = parse_nmnist(raw, "fuzz.bin")
    except es.DataError as exc:
        assert "fuzz.bin" in str(exc)
        return
    assert len(raw) % 5 == 0
    assert np.all((rec["x"] >= 0) & (rec["x"] < 34) & (rec["y"] >= 0) & (rec["y"] < 34))
    assert np.all((rec["p"] == 0) | (rec["p"] == 1))
    assert np.all(np.diff(rec["t"]) >= 0)


def test_truncated_file_is_refused(tmp_path, all_files):
    path = tmp_path / "cut.bin"
    path.write_bytes(all_files[0].read_bytes()[:-2])
    with pytest.raises(es.DataError, match="cut.bin.*not a whole number of 5-byte events"):
        es.datasets.read_nmnist(path)


@pytest.mark.parametrize("bad,match", [
    (record(34, 0, 10), "x = 34"),
    (record(0, 60, 10), "y = 60"),
])
def test_out_of_range_coordinates_are_refused(bad, match):
    with pytest.raises(es.DataError, match=f"event 1 \\(byte 5\\) has {match}"):
        parse_nmnist(record(1, 1, 5) + bad, "f.bin")


def test_decreasing_timestamps_are_refused():
    with pytest.raises(es.DataError, match="event 2 .* earlier than the previous"):
        parse_nmnist(record(1, 1, 5) + record(2, 2, 9) + record(3, 3, 7), "f.bin")


def test_empty_file_is_an_empty_recording():
    assert parse_nmnist(b"", "empty.bin").shape == (0,)


def test_overflow_marker_shifts_later_timestamps():
    raw = record(1, 1, 8000) + record(0, 240, 0) + record(2, 2, 100, p=1)
    rec = parse_nmnist(raw)
    assert rec.shape == (2,)  # the marker is not an event
    assert rec["t"].tolist() == [8000, 100 + 8192] and rec["p"].tolist() == [0, 1]


def test_missing_read_names_the_file(tmp_path):
    with pytest.raises(es.DataError, match="nothing.bin"):
        es.datasets.read_nmnist(tmp_path / "nothing.bin")


# ----------------------------------------------------------------- dataset
def test_dataset_order_labels_and_options(root):
    test = NMNIST(root, "test")
    assert len(test) == 100 and np.all(np.diff(test.labels) >= 0)
    assert [int((test.labels == d).sum()) for d in range(10)] == [8, 14, 8, 11, 14, 7, 10, 15, 2, 11]
    assert test.files == sorted(test.files, key=lambda p: (int(p.parent.name), p.name))
    first = NMNIST(root, "test", first_saccade_only=True)[5][0]
    assert first["t"].max() < SACCADE_US < test[5][0]["t"].max()


def test_stabilisation_removes_the_saccade_drift(root):
    """Event centroids follow the saccade triangle; stabilised, they stay put."""
    data = NMNIST(root, "train")
    bins = np.arange(0, 290_001, SACCADE_US // 7)  # the shortest recording lasts 297 ms

    def drift(recordings):
        centroids = []
        for k in range(len(bins) - 1):
            inside = [(r["t"] >= bins[k]) & (r["t"] < bins[k + 1]) for r in recordings]
            x = [r["x"][m].mean() for r, m in zip(recordings, inside) if m.any()]
            y = [r["y"][m].mean() for r, m in zip(recordings, inside) if m.any()]
            centroids.append((np.mean(x), np.mean(y)))
        c = np.array(centroids)
        return np.ptp(c[:, 0]) + np.ptp(c[:, 1])

    raw = [data[i][0] for i in range(0, 1000, 10)]
    assert drift([stabilize(r) for r in raw]) < 0.5 * drift(raw)


def test_missing_data_says_where_to_put_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTSIM_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    with pytest.raises(es.DataError) as info:
        NMNIST(split="train")
    text = str(info.value)
    assert str(tmp_path / "env" / "NMNIST" / "Train") in text and "(EVENTSIM_DATA)" in text
    assert str(tmp_path / "xdg" / "eventsim" / "NMNIST" / "Train") in text and "download=True" in text


def test_folder_resolution_order(tmp_path, monkeypatch):
    for name in ("arg", "env", "xdg/eventsim"):
        (tmp_path / name / "thing").mkdir(parents=True)
    monkeypatch.setenv("EVENTSIM_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert find("thing", tmp_path / "arg") == tmp_path / "arg" / "thing"
    assert find("thing") == tmp_path / "env" / "thing"
    monkeypatch.delenv("EVENTSIM_DATA")
    assert find("thing") == tmp_path / "xdg" / "eventsim" / "thing"


# ------------------------------------------------------------------- MNIST
def test_mnist_loads(root):
    images, labels = load_mnist(root, "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels[:5].tolist() == [7, 2, 1, 0, 4]  # the first test digits of MNIST


def _idx(magic: int, shape: tuple, payload: bytes) -> bytes:
    return magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in shape) + payload


def test_idx_round_trip_raw_and_gzip(tmp_path):
    data = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = _idx(2051, data.shape, data.tobytes())
    (tmp_path / "a").write_bytes(raw)
    (tmp_path / "a.gz").write_bytes(gzip.compress(raw))
    for name in ("a", "a.gz"):
        np.testing.assert_array_equal(read_idx(tmp_path / name, magic=2051), data)


@pytest.mark.parametrize("content,match", [
    (_idx(2049, (2, 3), bytes(6)), "magic number 2049, expected 2051"),
    (b"\x01\x02\x08\x01" + bytes(8), "not an idx file"),
    (_idx(2051, (2, 3, 4), bytes(20)), "header says shape"),
    (b"\x1f\x8b\x08garbage", "cannot read"),
])
def test_bad_idx_files_are_refused(tmp_path, content, match):
    path = tmp_path / "bad-idx"
    path.write_bytes(content)
    with pytest.raises(es.DataError, match=match):
        read_idx(path, magic=2051)


# ------------------------------------------------------------------- cache
class CountingEncoder:
    def __init__(self, **binning):
        self.calls, self.binning = 0, binning

    def __call__(self, recording):
        self.calls += 1
        return bin_events(recording, sensor=(34, 34), **self.binning)


@pytest.fixture(scope="module")
def few(root):
    data = NMNIST(root, "test")
    return [data[i] for i in range(0, 100, 10)]


def test_encoding_progress_is_shown_while_encoding_and_not_on_a_cache_hit(tmp_path, few, capsys):
    key = {"dataset": "nmnist", "split": "test", "steps": 30}
    cached_encoding(key, few, CountingEncoder(steps=30), folder=tmp_path)  # the default: the stderr of the moment
    err = capsys.readouterr().err
    assert "encoding nmnist test" in err and "10/10" in err and "samples/s" in err
    cached_encoding(key, few, CountingEncoder(steps=30), folder=tmp_path)
    assert capsys.readouterr() == ("", "")  # nothing is encoded: no bar


def test_second_load_comes_from_the_cache_and_is_identical(tmp_path, few):
    key = {"dataset": "nmnist", "split": "test", "steps": 30}
    first_encoder, second_encoder = CountingEncoder(steps=30), CountingEncoder(steps=30)
    first = cached_encoding(key, few, first_encoder, folder=tmp_path, progress=None)
    second = cached_encoding(key, few, second_encoder, folder=tmp_path, progress=None)
    assert first_encoder.calls == 10 and second_encoder.calls == 0
    for a, b in zip((first.events.indptr, first.events.index, first.events.value, first.labels),
                    (second.events.indptr, second.events.index, second.events.value, second.labels)):
        np.testing.assert_array_equal(a, b)
        assert a.dtype == b.dtype
    assert second[3][1] == few[3][1]


def test_a_changed_parameter_misses_the_cache(tmp_path, few):
    cached_encoding({"dataset": "nmnist", "split": "test", "steps": 30}, few, CountingEncoder(steps=30),
                    folder=tmp_path, progress=None)
    encoder = CountingEncoder(steps=31)
    other = cached_encoding({"dataset": "nmnist", "split": "test", "steps": 31}, few, encoder, folder=tmp_path,
                            progress=None)
    assert encoder.calls == 10 and other.events.steps == 31
    assert len(list(tmp_path.glob("*.h5"))) == 2


@pytest.mark.parametrize("damage", ["truncate", "garbage", "incomplete"])
def test_a_damaged_cache_is_rebuilt_not_trusted(tmp_path, few, damage):
    import h5py

    key = {"dataset": "nmnist", "split": "test", "steps": 30}
    good = cached_encoding(key, few, CountingEncoder(steps=30), folder=tmp_path, progress=None)
    (path,) = tmp_path.glob("*.h5")
    if damage == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif damage == "garbage":
        path.write_bytes(os.urandom(4096))
    else:
        with h5py.File(path, "r+") as f:
            f.attrs["complete"] = False
    encoder = CountingEncoder(steps=30)
    with pytest.warns(UserWarning, match="cannot be trusted"):
        again = cached_encoding(key, few, encoder, folder=tmp_path, progress=None)
    assert encoder.calls == 10
    np.testing.assert_array_equal(again.events.index, good.events.index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # rebuilt: the next load is clean
        cached_encoding(key, few, CountingEncoder(steps=30), folder=tmp_path, progress=None)


def test_interrupted_cache_write_leaves_nothing(tmp_path, few):
    def failing(recording):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_encoding({"dataset": "x"}, few, failing, folder=tmp_path, progress=None)
    assert list(tmp_path.iterdir()) == []


def test_binned_dataset_uses_the_cache(root, tmp_path):
    data = NMNIST(root, "test")
    a = data.binned(steps=20, cache_folder=tmp_path, progress=None)
    b = data.binned(steps=20, cache_folder=tmp_path, progress=None)
    c = NMNIST(root, "test", first_saccade_only=True).binned(steps=20, cache_folder=tmp_path, progress=None)
    assert len(list(tmp_path.glob("*.h5"))) == 2  # the option is part of the key
    np.testing.assert_array_equal(a.events.index, b.events.index)
    assert c.events.n_events < a.events.n_events
    events, label = a[7]
    assert events.batch == 1 and events.shape == (2, 34, 34) and label == int(data.labels[7])


def test_download_without_tonic_says_how(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tonic", None)  # import tonic raises ImportError
    with pytest.raises(es.DataError, match="tonic extra"):
        NMNIST(tmp_path, "train", download=True)
