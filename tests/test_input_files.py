"""Untrusted data files: idx (raw and gzip), N-MNIST recordings and the ``eventsim run`` input .npz.

Each case is a file someone could hand eventsim: a gzip bomb, a corrupt
stream, a header whose dimensions overflow int64, a FIFO in a downloaded
folder, a zip entry with a foreign compression method. Every one must end in
a DataError naming the file (the CLI turns it into one line and exit 2),
never a traceback, a hang, gigabytes of memory or silently wrong numbers.
Memory is measured with tracemalloc, which sees numpy's arrays and Python's
bytes; the limit is lowered (EVENTSIM_MAX_BYTES) so the bombs stay small.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from eventsim.datasets import load_mnist, read_idx, read_nmnist
from eventsim.errors import DataError
from fuzzing import time_limit

MiB = 1 << 20


def idx(code: int, shape: tuple, payload: bytes) -> bytes:
    """An idx file: two zero bytes, the type code, the rank, big-endian uint32 dimensions, the data."""
    return bytes([0, 0, code, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape) + payload


def peak_bytes(call) -> int:
    """The peak of memory traced while ``call()`` runs (it is expected to raise DataError)."""
    tracemalloc.start()
    try:
        with pytest.raises(DataError):
            call()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# --------------------------------------------------------------------- idx
def test_corrupt_gzip_stream_is_a_data_error(tmp_path):
    stream = bytearray(gzip.compress(idx(0x08, (2, 3, 4), bytes(range(24)) * 40)))
    stream[14] ^= 0xFF  # inside the deflate data: zlib.error "invalid ..." on the old reader
    path = tmp_path / "images.gz"
    path.write_bytes(bytes(stream))
    with pytest.raises(DataError, match="images.gz: cannot read, corrupt"):
        read_idx(path)


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
def test_dimensions_whose_product_overflows_int64(tmp_path, compress):
    """2^31 cubed uint8 is 2^93 bytes: in int64 it wraps to 0 and a header-only file passed the size check."""
    content = idx(0x08, (2**31, 2**31, 2**31), b"")
    path = tmp_path / "huge"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError, match="huge: .*2147483648"):
        read_idx(path)


def test_empty_shape_that_numpy_cannot_index(tmp_path):
    """2^31 x 0 x 2^30 int32 holds no data, yet numpy refuses the shape (ValueError: array is too big)."""
    path = tmp_path / "empty"
    path.write_bytes(idx(0x0C, (2**31, 0, 2**30), b""))
    with pytest.raises(DataError, match="empty: header says shape .* too large for an array"):
        read_idx(path)


def test_gzip_bomb_above_the_limit_is_refused_before_inflating(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTSIM_MAX_BYTES", "1M")
    path = tmp_path / "bomb.gz"
    path.write_bytes(gzip.compress(idx(0x08, (16 * MiB,), bytes(16 * MiB))))
    assert path.stat().st_size < MiB // 10
    with pytest.raises(DataError, match="bomb.gz: .*limit of 1.0 MiB.*EVENTSIM_MAX_BYTES"):
        read_idx(path)
    assert peak_bytes(lambda: read_idx(path)) < MiB


def test_gzip_stream_longer_than_its_header_is_not_inflated(tmp_path):
    """The header declares 784 bytes; the stream goes on for 16 MiB: at most 785 bytes are inflated."""
    path = tmp_path / "long.gz"
    path.write_bytes(gzip.compress(idx(0x08, (1, 28, 28), bytes(16 * MiB))))
    with pytest.raises(DataError, match="long.gz.*more bytes than the 784 bytes"):
        read_idx(path)
    assert peak_bytes(lambda: read_idx(path)) < 2 * MiB


@pytest.mark.parametrize("compress", [False, True], ids=["raw", "gzip"])
@pytest.mark.parametrize("payload, problem", [(bytes(23), "file has 39 bytes|ends after 23 of the 24"),
                                              (bytes(25), "file has 41 bytes|more bytes than the 24")],
                         ids=["missing", "trailing"])
def test_missing_and_trailing_bytes(tmp_path, compress, payload, problem):
    content = idx(0x08, (2, 3, 4), payload)
    path = tmp_path / "short"
    path.write_bytes(gzip.compress(content) if compress else content)
    with pytest.raises(DataError, match=f"short.*({problem})"):
        read_idx(path)


def test_idx_keeps_type_and_byte_order(tmp_path):
    data = (np.arange(-6, 6).reshape(3, 4) * 1000).astype(">i2")
    path = tmp_path / "shorts.gz"
    path.write_bytes(gzip.compress(idx(0x0B, data.shape, data.tobytes())))
    out = read_idx(path)
    assert out.dtype == np.int16 and out.dtype.isnative
    np.testing.assert_array_equal(out, np.arange(-6, 6).reshape(3, 4) * 1000)


def test_image_and_label_counts_are_checked_before_reading(tmp_path):
    """20,000 images (15 MiB inflated) for 10 labels: refused from the headers, nothing inflated."""
    folder = tmp_path / "mnist"
    folder.mkdir()
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(idx(0x08, (20_000, 28, 28), bytes(20_000 * 784)), compresslevel=1))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx(0x08, (10,), bytes(10))))
    with pytest.raises(DataError, match="10 labels for 20000 images"):
        load_mnist(tmp_path, "test")
    assert peak_bytes(lambda: load_mnist(tmp_path, "test")) < MiB


# ------------------------------------------------- files that are not files
@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


def test_fifo_is_refused_not_waited_on(fifo):
    """A FIFO (which a tar archive can hold) blocked open() forever: a data folder must not hang a run."""
    from eventsim.nir.run_file import read_spikes

    for read in (read_idx, read_nmnist, lambda path: read_spikes(path, (3,), 4, np.float32)):
        with time_limit(5), pytest.raises(DataError, match="fifo: is a FIFO, not a regular file"):
            read(fifo)


def test_nmnist_recording_above_the_limit_is_not_read(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTSIM_MAX_BYTES", "1K")
    path = tmp_path / "00001.bin"
    path.write_bytes(bytes([1, 1, 0, 0, 5]) * 400)
    with pytest.raises(DataError, match="00001.bin: the N-MNIST recording .*limit of 1.0 KiB"):
        read_nmnist(path)


# ------------------------------------------------------ eventsim run input
@pytest.fixture
def read():
    from eventsim.nir.run_file import read_spikes

    return lambda path, steps=4: read_spikes(path, (3,), steps, np.float32)


def npz(path, compressed: bool = False, **arrays) -> bytes:
    (np.savez_compressed if compressed else np.savez)(path, **arrays)
    return path.read_bytes()


def patch_zip(content: bytes, *, method: int | None = None, flags: int | None = None) -> bytes:
    """Set the compression method or the flag bits of the first entry, in its local and central headers."""
    out = bytearray(content)
    for signature, at in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        start = out.index(signature)
        if flags is not None:
            out[start + at : start + at + 2] = struct.pack("<H", flags)
        if method is not None:
            out[start + at + 2 : start + at + 4] = struct.pack("<H", method)
    return bytes(out)


def test_plain_npy_names_the_mistake(tmp_path, read):
    path = tmp_path / "in.npy"
    np.save(path, np.zeros((4, 1, 3)))
    with pytest.raises(DataError, match="in.npy: is a plain .npy file; save the input with np.savez"):
        read(path)


@pytest.mark.parametrize("method", [12, 14, 98], ids=["bzip2", "lzma", "unknown"])
def test_compression_methods_other_than_savez_are_refused(tmp_path, read, method):
    """bzip2 and lzma entries are inflated by zipfile without a bound (a bomb); 98 is no method at all."""
    path = tmp_path / "in.npz"
    path.write_bytes(patch_zip(npz(path, spikes=np.zeros((4, 1, 3))), method=method))
    with pytest.raises(DataError, match=f"in.npz: 'spikes' uses zip compression method {method}"):
        read(path)


def test_encrypted_entry_is_refused(tmp_path, read):
    path = tmp_path / "in.npz"
    path.write_bytes(patch_zip(npz(path, spikes=np.zeros((4, 1, 3))), flags=1))
    with pytest.raises(DataError, match="in.npz: 'spikes' is encrypted"):
        read(path)


def test_zip_bomb_is_refused_before_inflating(tmp_path, read, monkeypatch):
    monkeypatch.setenv("EVENTSIM_MAX_BYTES", "1M")
    path = tmp_path / "in.npz"
    npz(path, compressed=True, spikes=np.zeros((4, 4 * MiB // 12, 3), np.float32))
    assert path.stat().st_size < MiB // 10
    with pytest.raises(DataError, match="in.npz: 'spikes' .*limit of 1.0 MiB.*EVENTSIM_MAX_BYTES"):
        read(path)
    assert peak_bytes(lambda: read(path)) < MiB


def test_header_declaring_more_than_the_entry_holds(tmp_path, read):
    """An .npy header may claim any shape; the zip entry's size must hold it, or nothing is allocated."""
    entry = io.BytesIO()
    np.lib.format.write_array(entry, np.zeros((4, 1, 3), np.float32))
    path = tmp_path / "in.npz"
    with zipfile.ZipFile(path, "w") as archive:  # a valid zip (CRC and sizes right) of a lying .npy
        archive.writestr("spikes.npy", entry.getvalue().replace(b"(4, 1, 3)", b"(4,99, 3)"))
    with pytest.raises(DataError, match=r"in.npz: 'spikes': its header declares 4752 bytes .* holds 48"):
        read(path)


def test_entry_that_is_not_an_array(tmp_path, read):
    """np.load returns the raw bytes of an entry without the .npy magic (then .dtype was an AttributeError)."""
    path = tmp_path / "in.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("spikes.npy", b"just some bytes, no array")
    with pytest.raises(DataError, match="in.npz: 'spikes': not a .npy array"):
        read(path)


@pytest.mark.parametrize("header", [
    "{'descr': (), 'fortran_order': False, 'shape': (4, 1, 3), }",  # numpy's dtype parser: IndexError
    "{'descr': '<f4', 'fortran_order': False, 'shape': ((((, }",  # numpy's Python 2 filter: TokenError
    "{'descr': '<f4', 'fortran_order': False, 'shape': (4, 1, 3), [1]: 2}",  # literal_eval: TypeError
    "{'descr': '<f4', 'fortran_order': False, 'shape': (4, True, 3), }",
], ids=["descr-tuple", "brackets", "unhashable", "bool-dimension"])
def test_damaged_npy_headers(tmp_path, read, header):
    text = header.ljust(117) + "\n"
    path = tmp_path / "in.npz"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("spikes.npy", b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode()
                         + bytes(48))
    with pytest.raises(DataError, match="in.npz: 'spikes': damaged .npy header|in.npz: 'spikes' must be a numeric array"):
        read(path)


@pytest.mark.parametrize("array", [np.zeros((4, 1, 3), complex), np.zeros((4, 1, 3), "U2"),
                                   np.zeros((4, 1, 3), [("a", "f4"), ("b", "f4")]),
                                   np.zeros((4, 1, 3), "datetime64[s]")],
                         ids=["complex", "str", "structured", "datetime"])
def test_non_numeric_dtypes(tmp_path, read, array):
    path = tmp_path / "in.npz"
    npz(path, spikes=array)
    with pytest.raises(DataError, match="in.npz: 'spikes' must be a numeric array"):
        read(path)


def test_object_arrays_are_not_unpickled(tmp_path, read):
    path = tmp_path / "in.npz"
    npz(path, spikes=np.array([[[None, 1, 2]]] * 4, dtype=object))
    with pytest.raises(DataError, match="in.npz: 'spikes' must be a numeric array"):
        read(path)


def test_finite_in_float64_but_not_in_the_network_dtype(tmp_path, read):
    """1e300 passes a float64 finiteness check and is inf in float32, the dtype the network computes in."""
    path = tmp_path / "in.npz"
    spikes = np.zeros((4, 1, 3))
    spikes[2, 0, 1] = 1e300
    npz(path, spikes=spikes)
    with pytest.raises(DataError, match=r"in.npz: 'spikes' is not finite at .* = \(2, 0, 1\) .*float32"):
        read(path)


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("order", ["C", "F"])
def test_valid_inputs_read_exactly(tmp_path, read, compressed, order):
    spikes = np.asarray(np.random.default_rng(0).integers(-3, 4, (4, 2, 3)), np.float64, order=order)
    path = tmp_path / "in.npz"
    npz(path, compressed=compressed, spikes=spikes, other=np.ones(2))
    out = read(path)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, spikes)


def test_cli_gives_one_line_and_exit_2(tmp_path, capsys):
    pytest.importorskip("nir")
    import eventsim as es
    from eventsim.cli import main
    from eventsim.nir import save

    weight = np.full((2, 3), 0.5, np.float32)
    save(es.Network([es.Linear(3, 2, weight=weight), es.LIF(1.0, leak=0.5)], (3,)), tmp_path / "net.nir")
    path = tmp_path / "in.npz"
    path.write_bytes(patch_zip(npz(path, spikes=np.zeros((4, 1, 3))), method=98))
    code = main(["run", "--graph", str(tmp_path / "net.nir"), "--input", str(path), "--steps", "4",
                 "--out", str(tmp_path / "out.npz")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "in.npz" in err and "method 98" in err
    assert not (tmp_path / "out.npz").exists()
