"""Downloads (`eventsim data download`, `train --download`) against a stand-in of the remote files on 127.0.0.1."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import stat
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

from eventsim.cli import main
from eventsim.datasets import NMNIST, load_mnist
from eventsim.datasets import download
from eventsim.errors import DataError


@pytest.fixture
def server(tmp_path):
    """A folder served over HTTP on 127.0.0.1: (folder, base URL)."""
    root = tmp_path / "remote"
    root.mkdir()
    handler = lambda *a, **k: http.server.SimpleHTTPRequestHandler(*a, directory=str(root), **k)  # noqa: E731
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(autouse=True)
def no_data_anywhere(tmp_path, monkeypatch):
    """No data folder but the test's own, and a short network timeout so no test can hang."""
    monkeypatch.delenv("EVENTSIM_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    monkeypatch.setattr(download, "TIMEOUT_S", 10)


def _idx(array: np.ndarray, magic: int) -> bytes:
    header = magic.to_bytes(4, "big") + b"".join(n.to_bytes(4, "big") for n in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


def _mnist_remote(monkeypatch, root: Path, url: str) -> dict:
    rng = np.random.default_rng(0)
    arrays = {}
    checksums = {}
    for split, (images, labels) in {"train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                                    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")}.items():
        arrays[split] = (rng.integers(0, 256, (3, 28, 28)), rng.integers(0, 10, 3))
        for name, data in ((images, _idx(arrays[split][0], 2051)), (labels, _idx(arrays[split][1], 2049))):
            (root / f"{name}.gz").write_bytes(data)
            checksums[f"{name}.gz"] = hashlib.sha256(data).hexdigest()
    monkeypatch.setattr(download, "MNIST_MIRROR", url)
    monkeypatch.setattr(download, "MNIST_SHA256", checksums)
    return arrays


def test_mnist_download_is_read_by_the_reader(server, tmp_path, monkeypatch, capsys):
    root, url = server
    arrays = _mnist_remote(monkeypatch, root, url)
    assert main(["data", "download", "mnist", "--data", str(tmp_path / "d")]) == 0
    for split in ("train", "test"):
        images, labels = load_mnist(tmp_path / "d", split)
        np.testing.assert_array_equal(images, arrays[split][0])
        np.testing.assert_array_equal(labels, arrays[split][1])
    assert "t10k-images-idx3-ubyte.gz" in capsys.readouterr().err  # progress names the file


def test_default_folder_is_the_user_folder(server, tmp_path, monkeypatch):
    root, url = server
    _mnist_remote(monkeypatch, root, url)
    assert main(["data", "download", "mnist"]) == 0
    assert load_mnist(None, "test")[0].shape == (3, 28, 28)
    assert (tmp_path / "user" / "eventsim" / "mnist").is_dir()


def test_wrong_checksum_is_refused_and_leaves_nothing(server, tmp_path, monkeypatch, capsys):
    root, url = server
    _mnist_remote(monkeypatch, root, url)
    download.MNIST_SHA256["train-labels-idx1-ubyte.gz"] = "0" * 64
    assert main(["data", "download", "mnist", "--data", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "train-labels-idx1-ubyte.gz" in err and "SHA-256" in err
    assert not (tmp_path / "d" / "mnist" / "train-labels-idx1-ubyte.gz").exists()
    assert not [p for p in (tmp_path / "d").rglob("*") if p.name.endswith(".tmp")]


def _nmnist_zip(path: Path, top: str, samples: dict[int, list[bytes]]) -> str:
    with zipfile.ZipFile(path, "w") as z:
        for digit, recordings in samples.items():
            for i, raw in enumerate(recordings):
                z.writestr(f"{top}/{digit}/{i + 1:05d}.bin", raw)
    return hashlib.md5(path.read_bytes()).hexdigest()


def _event(x: int, y: int, p: int, t: int) -> bytes:
    return bytes([x, y, (p << 7) | (t >> 16), (t >> 8) & 0xFF, t & 0xFF])


def _nmnist_remote(monkeypatch, root: Path, url: str) -> None:
    import tonic

    samples = {d: [_event(d, 1, 1, 10) + _event(2, d, 0, 20)] for d in range(10)}
    for split, top in (("train", "Train"), ("test", "Test")):
        md5 = _nmnist_zip(root / f"{split}.zip", top, samples)
        monkeypatch.setattr(tonic.datasets.NMNIST, f"{split}_url", f"{url}{split}.zip")
        monkeypatch.setattr(tonic.datasets.NMNIST, f"{split}_md5", md5)


def test_nmnist_download_through_tonic_urls_is_read_by_the_reader(server, tmp_path, monkeypatch):
    pytest.importorskip("tonic", reason="the tonic extra")
    root, url = server
    _nmnist_remote(monkeypatch, root, url)
    assert main(["data", "download", "nmnist", "--data", str(tmp_path / "d")]) == 0
    for split in ("train", "test"):
        data = NMNIST(tmp_path / "d", split)
        assert len(data) == 10
        recording, label = data[3]
        assert label == 3 and recording["x"].tolist() == [3, 2] and recording["t"].tolist() == [10, 20]
    assert not list((tmp_path / "d").rglob("*.zip"))  # archives removed once laid out


def test_nmnist_wrong_checksum_is_refused(server, tmp_path, monkeypatch, capsys):
    tonic = pytest.importorskip("tonic", reason="the tonic extra")
    root, url = server
    _nmnist_remote(monkeypatch, root, url)
    monkeypatch.setattr(tonic.datasets.NMNIST, "test_md5", "0" * 32)
    assert main(["data", "download", "nmnist", "--data", str(tmp_path / "d")]) == 2
    assert "MD5" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "d" / "NMNIST" / "Test").exists()


@pytest.mark.parametrize("member, kind", [
    ("Train/../../evil.bin", "outside"),
    ("/abs/evil.bin", "outside"),
    ("Train/0/link.bin", "link"),
    ("Train/0/fifo.bin", "special"),
])
def test_unsafe_archives_are_refused(tmp_path, member, kind):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("Train/0/00001.bin", _event(1, 1, 1, 1))
        info = zipfile.ZipInfo(member)
        mode = {"link": stat.S_IFLNK | 0o777, "special": stat.S_IFIFO | 0o644}.get(kind, stat.S_IFREG | 0o644)
        info.external_attr = mode << 16
        z.writestr(info, "/etc/passwd" if kind == "link" else "x")
    with pytest.raises(DataError, match=kind):
        download.extract_zip(archive, tmp_path / "out", "Train")
    assert not (tmp_path / "out").exists() and not (tmp_path / "evil.bin").exists()
    assert not list(tmp_path.glob(".*"))  # no half-extracted folder


def test_archive_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("Train/0/00001.bin", bytes(5 * 4000))
    monkeypatch.setenv("EVENTSIM_MAX_BYTES", "1K")
    with pytest.raises(DataError, match="EVENTSIM_MAX_BYTES"):
        download.extract_zip(archive, tmp_path / "out", "Train")


def test_train_without_data_names_download(capsys):
    assert main(["train", "nmnist", "--epochs", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--download" in err[0]


def test_train_download_fetches_what_is_missing_then_trains(server, tmp_path, monkeypatch):
    """Training itself is tested elsewhere: here it only records the data it would read."""
    import eventsim.learning.runs as runs

    root, url = server
    arrays = _mnist_remote(monkeypatch, root, url)
    seen = {}

    def train(job, out, *, data, resume, cluster=None):
        seen["images"] = load_mnist(data, "train")[0]
        raise DataError("stop after reading the data")

    monkeypatch.setattr(runs, "train", train)
    assert main(["train", "mnist", "--download", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run")]) == 2
    np.testing.assert_array_equal(seen["images"], arrays["train"][0])


def test_nmnist_download_argument_fetches_a_missing_split(server, tmp_path, monkeypatch):
    pytest.importorskip("tonic", reason="the tonic extra")
    root, url = server
    _nmnist_remote(monkeypatch, root, url)
    data = NMNIST(tmp_path / "d", "test", download=True)
    assert len(data) == 10 and data[3][1] == 3
    assert not (tmp_path / "d" / "NMNIST" / "Train").exists()  # only the split asked for
