"""SHD and DVS Gesture readers on small files written here in the releases' formats.

The SHD files are HDF5 as the release has them (``labels``, and
``spikes/times`` / ``spikes/units`` as variable-length float16 / uint16
sequences), the DVS Gesture files tonic's ``.npy`` arrays (x, y, p, t in ms)
in its ``user<NN>_<lighting>/<class>.npy`` folders. The reference is tonic's
own readers and transforms on the same files (skipped without tonic). Hostile
files raise DataError naming the file; ``eventsim train shd`` and
``dvsgesture`` run end to end on the folders.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from eventsim.cli import main
from eventsim.datasets import SHD, DVSGesture, TonicSamples, read_gesture, read_shd
from eventsim.datasets.shd import WINDOW_US
from eventsim.errors import DataError

USERS = [(1, "fluorescent"), (2, "fluorescent_led"), (3, "lab"), (4, "led"), (5, "natural"), (6, "led"),
         (7, "natural"), (8, "lab"), (9, "fluorescent"), (10, "led")]


def shd_samples(rng: np.random.Generator, count: int) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """``count`` (times in s, units, label) with classes in turn, times sorted and some past the 1.4 s window."""
    out = []
    for i in range(count):
        n = int(rng.integers(30, 400))
        out.append((np.sort(rng.uniform(0.0, 1.5, n)).astype(np.float16), rng.integers(0, 700, n).astype(np.uint16),
                    i % 20))
    return out


def write_shd(path: Path, samples, **dataset_options) -> Path:
    """An SHD file as the release's: labels, spikes/times, spikes/units, extra/keys, extra/speaker."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(samples),), dtype=h5py.vlen_dtype(np.float16), **dataset_options)
        units = f.create_dataset("spikes/units", (len(samples),), dtype=h5py.vlen_dtype(np.uint16), **dataset_options)
        for i, (t, u, _) in enumerate(samples):
            times[i], units[i] = t, u
        f["labels"] = np.array([s[2] for s in samples], np.uint16)
        f["extra/keys"] = np.array([f"digit-{k}".encode() for k in range(20)])
        f["extra/speaker"] = np.arange(len(samples), dtype=np.uint16) % 10
    return path


@pytest.fixture(scope="module")
def shd_root(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("shd-data")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 12)):
        write_shd(root / "SHD" / f"shd_{split}.h5", shd_samples(rng, count))
        (root / "SHD" / f"shd_{split}.h5.zip").write_bytes(b"")  # tonic looks for the archive beside the file
    return root


def gesture(rng: np.random.Generator, dtype=np.int64) -> np.ndarray:
    """One recording as tonic's files hold it: (events, 4) of x, y, p, t (ms, sorted)."""
    n = int(rng.integers(40, 150))
    return np.stack([rng.integers(0, 128, n), rng.integers(0, 128, n), rng.integers(0, 2, n),
                     np.sort(rng.integers(0, 6000, n))], axis=1).astype(dtype)


@pytest.fixture(scope="module")
def dvs_root(tmp_path_factory) -> Path:
    """Ten users x 11 gestures per split: tonic reads a split only from 100 files on."""
    root = tmp_path_factory.mktemp("dvs-data")
    rng = np.random.default_rng(1)
    for split in ("ibmGestureTrain", "ibmGestureTest"):
        for user, lighting in USERS:
            folder = root / "DVSGesture" / split / f"user{user:02d}_{lighting}"
            folder.mkdir(parents=True)
            for label in range(11):
                np.save(folder / f"{label}.npy", gesture(rng))
        (root / "DVSGesture" / f"{split}.tar.gz").write_bytes(b"")  # tonic looks for the archive
    return root


# ------------------------------------------------------------------ SHD
def test_shd_equals_tonics_reader(shd_root):
    tonic = pytest.importorskip("tonic")
    for split in ("train", "test"):
        ours, theirs = SHD(shd_root, split), tonic.datasets.SHD(str(shd_root), train=split == "train")
        assert len(ours) == len(theirs) == (40 if split == "train" else 12)
        events = 0
        for i in range(len(ours)):
            (a, label), (b, target) = ours[i], theirs[i]
            assert label == target and len(a) == len(b) > 0
            for field in ("t", "x", "p"):
                np.testing.assert_array_equal(a[field], b[field], err_msg=f"{split} {i} {field}")
            events += len(a)
        assert events > 1000


def test_shd_binned_equals_tonic_to_frame(shd_root):
    tonic = pytest.importorskip("tonic")
    theirs = tonic.datasets.SHD(str(shd_root), train=True)
    to_frame = tonic.transforms.ToFrame(sensor_size=(700, 1, 1), time_window=WINDOW_US // 100, start_time=0,
                                        end_time=WINDOW_US)
    binned = SHD(shd_root).binned(values="count", cache=False, progress=None)
    assert binned.events.shape == (1, 1, 700) and binned.events.steps == 100
    for i in range(len(binned)):
        frames = to_frame(theirs[i][0])
        np.testing.assert_array_equal(binned[i][0].to_dense()[0][:, :, 0], frames, err_msg=str(i))
    # tonic's dataset itself, wrapped, gives the same samples as eventsim's reader binned
    wrapped = TonicSamples(theirs, steps=100, start_us=0, end_us=WINDOW_US)
    ours = SHD(shd_root).binned(cache=False, progress=None)
    for i in (0, 17, 39):
        np.testing.assert_array_equal(wrapped[i][0].to_dense(), ours[i][0].to_dense())
        assert wrapped[i][1] == ours[i][1]


def test_shd_reads_without_tonic_what_it_wrote(tmp_path):
    samples = shd_samples(np.random.default_rng(2), 5)
    times, units, labels, starts = read_shd(write_shd(tmp_path / "a.h5", samples))
    assert labels.tolist() == [0, 1, 2, 3, 4]
    for i, (t, u, _) in enumerate(samples):
        np.testing.assert_array_equal(times[starts[i]:starts[i + 1]], t)
        np.testing.assert_array_equal(units[starts[i]:starts[i + 1]], u)
    # the same sequences stored in chunks (as HDF5 writers that extend datasets store them) read the same
    chunked = read_shd(write_shd(tmp_path / "b.h5", samples, chunks=(2,)))
    for a, b in zip((times, units, labels, starts), chunked):
        np.testing.assert_array_equal(a, b)


def shd_file(tmp_path: Path, change) -> Path:
    """A valid SHD file, then ``change(f)`` applied to it open for writing."""
    path = write_shd(tmp_path / "shd.h5", shd_samples(np.random.default_rng(3), 4))
    with h5py.File(path, "r+") as f:
        change(f)
    return path


def replace(name: str, data) -> callable:
    def change(f):
        del f[name]
        f[name] = data
    return change


def set_sample(i: int, times: list, units: list) -> callable:
    def change(f):
        f["spikes/times"][i] = np.array(times, np.float16)
        f["spikes/units"][i] = np.array(units, np.uint16)
    return change


@pytest.mark.parametrize("change, match", [
    (lambda f: f.__delitem__("spikes/units"), "dataset 'spikes/units' is missing"),
    (replace("labels", np.zeros(4, np.float32)), "holds dtype float32, expected integers"),
    (replace("labels", np.zeros((4, 2), np.uint16)), r"has shape \(4, 2\), expected \(any\)"),
    (replace("labels", np.zeros(5, np.uint16)), r"has shape \(4,\), expected \(5,\), one sequence per label"),
    (replace("spikes/times", np.zeros(4, np.float32)), "expected variable-length sequences of floats"),
    (replace("labels", np.array([0, 1, 20, 3], np.uint16)), "sample 2 has label 20, outside the 20 classes"),
    (set_sample(1, [0.5, 0.1], [1, 2, 3]), "sample 1 has 2 spike times but 3 units"),
    (set_sample(2, [0.1, np.nan, 0.3], [1, 2, 3]), "sample 2, spike 1 has time nan"),
    (set_sample(0, [0.1, -0.25], [1, 2]), "sample 0, spike 1 has time -0.25 s"),
    (set_sample(3, [0.1, 0.2], [699, 700]), "sample 3, spike 1 has unit 700, outside the 700 channels"),
])
def test_hostile_shd_files_are_refused_by_name(tmp_path, change, match):
    path = shd_file(tmp_path, change)
    with pytest.raises(DataError, match=match) as err:
        read_shd(path)
    assert str(path) in str(err.value)


def test_a_sequence_length_past_the_file_is_refused_before_reading(tmp_path):
    path = write_shd(tmp_path / "shd.h5", shd_samples(np.random.default_rng(4), 4))
    with h5py.File(path, "r") as f:
        offset = f["spikes/times"].id.get_offset()
    raw = bytearray(path.read_bytes())
    raw[offset + 16:offset + 20] = (2**32 - 1).to_bytes(4, "little")  # sample 1 claims 4 G float16 times (8 GB)
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match="claim .* bytes, more than the whole"):
        read_shd(path)


@pytest.mark.parametrize("content, match", [
    (b"not hdf5 at all", "not a readable HDF5 file"),
    (None, "truncated"),
])
def test_damaged_shd_files_are_refused(tmp_path, content, match):
    path = write_shd(tmp_path / "shd.h5", shd_samples(np.random.default_rng(5), 4))
    path.write_bytes(content if content is not None else path.read_bytes()[:3000])
    with pytest.raises(DataError, match=match):
        read_shd(path)


def test_a_missing_shd_names_the_folders_and_data(tmp_path):
    with pytest.raises(DataError, match=r"SHD/shd_test.h5 not found; looked in: .*--data"):
        SHD(tmp_path, "test")


# ------------------------------------------------------------ DVS Gesture
def test_dvsgesture_equals_tonics_reader(dvs_root):
    tonic = pytest.importorskip("tonic")
    for split in ("train", "test"):
        ours, theirs = DVSGesture(dvs_root, split), tonic.datasets.DVSGesture(str(dvs_root), train=split == "train")
        assert len(ours) == len(theirs) == 110
        where = {Path(path): i for i, path in enumerate(theirs.data)}  # tonic lists files in the file system's order
        events = 0
        for i, path in enumerate(ours.files):
            (a, label), (b, target) = ours[i], theirs[where[path]]
            assert label == target and a.dtype == b.dtype
            np.testing.assert_array_equal(a, b, err_msg=str(path))
            assert (ours.users[i], ours.lighting[i]) == (theirs.users[where[path]], theirs.lighting[where[path]])
            events += len(a)
        assert events > 5000
    assert DVSGesture(dvs_root).labels.tolist()[:12] == list(range(11)) + [0]


def test_dvsgesture_binned_equals_tonic_downsample_and_to_frame(dvs_root):
    tonic = pytest.importorskip("tonic")
    transforms = tonic.transforms
    theirs = tonic.datasets.DVSGesture(str(dvs_root), train=False)
    where = {Path(path): i for i, path in enumerate(theirs.data)}
    pipeline = transforms.Compose([transforms.Downsample(spatial_factor=0.25),
                                   transforms.ToFrame(sensor_size=(32, 32, 2), n_time_bins=20)])
    ours = DVSGesture(dvs_root, "test")
    binned = ours.binned(values="count", cache=False, progress=None)
    assert binned.events.shape == (2, 32, 32) and binned.events.steps == 20
    for i, path in enumerate(ours.files):
        np.testing.assert_array_equal(binned[i][0].to_dense()[0], pipeline(theirs[where[path]][0]), err_msg=str(path))


def test_dvsgesture_reads_float_and_fortran_files_as_tonic_does(tmp_path):
    rng = np.random.default_rng(6)
    ints = gesture(rng)
    np.save(tmp_path / "int.npy", ints)
    np.save(tmp_path / "float.npy", ints.astype(np.float64))
    np.save(tmp_path / "fortran.npy", np.asfortranarray(ints.astype(np.int32)))
    expected = read_gesture(tmp_path / "int.npy")
    np.testing.assert_array_equal(expected["t"], ints[:, 3] * 1000)
    np.testing.assert_array_equal(expected["x"], ints[:, 0])
    for name in ("float.npy", "fortran.npy"):
        np.testing.assert_array_equal(read_gesture(tmp_path / name), expected)


def npy(tmp_path: Path, array=None, raw: bytes | None = None) -> Path:
    path = tmp_path / "0.npy"
    if raw is not None:
        path.write_bytes(raw)
    else:
        np.save(path, array)
    return path


def npy_header(shape: tuple[int, int]) -> bytes:
    """A .npy header (numpy's own writer) declaring int64 data of ``shape``, with no data after it."""
    out = io.BytesIO()
    np.lib.format.write_array_header_1_0(out, {"descr": "<i8", "fortran_order": False, "shape": shape})
    return out.getvalue()


GOOD = np.array([[1, 2, 0, 10], [3, 4, 1, 11], [5, 6, 1, 12]], np.int64)


def changed(row: int, column: int, value) -> np.ndarray:
    out = GOOD.astype(np.float64)
    out[row, column] = value
    return out


@pytest.mark.parametrize("array, raw, match", [
    (GOOD[:, :3], None, r"shape \(3, 3\), expected \(events, 4\)"),
    (np.zeros(3, [("x", int), ("y", int)]), None, "must be a numeric array"),
    (None, npy_header((10**13, 4)), "above the limit"),
    (None, npy_header((1000, 4)) + bytes(64), "declares 32000 bytes of data"),
    (None, b"PK\x03\x04 not an npy", "not a .npy array"),
    (changed(1, 0, 128), None, r"event 1: x = 128 is outside the sensor's \[0, 128\)"),
    (changed(2, 1, -1), None, "event 2: y = -1 is outside"),
    (changed(0, 2, 2), None, r"event 0: p = 2 is outside the sensor's \[0, 2\)"),
    (changed(0, 3, -4), None, "event 0: t = -4000 us is negative"),
    (changed(2, 3, 5), None, "event 2: t = 5000 us is earlier than the event before"),
    (changed(1, 0, 2.5), None, "event 1: x = 2.5 is not a whole number"),
    (changed(1, 3, np.inf), None, "event 1: t = inf is not a whole number"),
])
def test_hostile_gesture_files_are_refused_by_name(tmp_path, array, raw, match):
    path = npy(tmp_path, array, raw)
    with pytest.raises(DataError, match=match) as err:
        read_gesture(path)
    assert str(path) in str(err.value)


@pytest.mark.parametrize("folder, file, match", [
    ("user01_led", "11.npy", "not a gesture file"),
    ("user01_led", "wave.npy", "not a gesture file"),
    ("extra", "0.npy", r"not a recording folder \(expected user<NN>_<lighting>\)"),
])
def test_foreign_files_in_the_dvsgesture_folders_are_refused(tmp_path, folder, file, match):
    (tmp_path / "DVSGesture" / "ibmGestureTrain" / folder).mkdir(parents=True)
    np.save(tmp_path / "DVSGesture" / "ibmGestureTrain" / folder / file, GOOD)
    with pytest.raises(DataError, match=match):
        DVSGesture(tmp_path)


# ------------------------------------------------------------ the command
@pytest.mark.parametrize("dataset, model", [("shd", "shd-cubalif-rnn"), ("dvsgesture", "dvsgesture-cnn")])
def test_train_runs_end_to_end(dataset, model, shd_root, dvs_root, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    root = shd_root if dataset == "shd" else dvs_root
    out = tmp_path / "run"
    status = main(["train", dataset, "--data", str(root), "--out", str(out), "--epochs", "1", "--train-limit", "8",
                   "--test-limit", "4"])
    assert status == 0
    report = json.loads((out / "report.json").read_text())
    assert report["samples"] == 4 and report["epochs"] == 1 and report["job"]["model"] == model
    assert report["input_events_per_sample"] > 0
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize("dataset", ["shd", "dvsgesture"])
def test_train_without_data_says_so_in_one_line(dataset, tmp_path, capsys):
    assert main(["train", dataset, "--data", str(tmp_path), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not found" in err and "--data" in err
    assert not (tmp_path / "run" / "job.json").exists()


# ------------------------------------------------------------ the zoo models
def test_the_zoo_models_have_the_layers_their_notes_give():
    import math

    import eventsim as es
    from eventsim.errors import OptionError
    from eventsim.learning.zoo import build_model, build_network

    shd = build_model("shd-cubalif-rnn")
    weights = {layer.name: layer.weight_shape for layer in shd.walk() if isinstance(layer, es.Linear)}
    assert weights == {"fc1": (256, 700), "rec1.fc1": (256, 256), "fc2": (20, 256)}
    block = shd.layers[2]
    assert isinstance(block, es.Recurrent)
    assert math.isclose(block.neuron.synapse_leak, math.exp(-1 / 5)) and math.isclose(block.neuron.leak, math.exp(-1 / 20))
    assert isinstance(shd.layers[-1], es.Readout) and shd.layers[-1].leak == 1.0
    assert sum(math.prod(s) for s in weights.values()) == 700 * 256 + 256 * 256 + 256 * 20
    dvs = build_model("dvsgesture-cnn")
    shapes = [layer.weight_shape for layer in dvs.walk() if isinstance(layer, (es.Conv2d, es.Linear))]
    assert shapes == [(16, 2, 3, 3), (32, 16, 3, 3), (64, 32, 3, 3), (128, 1024), (11, 128)]
    assert dvs.shapes[dvs.layers[-1].name][1] == (11,)
    config = {"source": "", "inputs": {"x": (2, 4, 4)}, "neuron": {"threshold": 1.0, "leak": 0.5, "reset": "hard",
              "strict": True}, "kappa": 2.0, "layers": [("conv", 3, 3), ("rec",)], "notes": []}
    with pytest.raises(OptionError, match="needs a flat input"):
        build_network(config)
