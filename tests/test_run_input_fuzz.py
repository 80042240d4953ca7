"""Fuzzing the input file of ``eventsim run`` (SPIKES.npz) with mutated valid files (docs/safety.md).

A valid input of random steps, batch, dtype and values (non-finite ones
included) is mutated at three levels: the ``.npy`` entry (its header's
descr, shape and fortran_order replaced by junk, other dtypes, huge or
negative sizes; its data cut or extended), the zip around it (stored or
deflated, other entries, another entry name; the compression method, flags,
sizes and offsets of the local and central headers set to any value) and the
bytes of the file (bits flipped, cut, extended). The property
(tests/fuzzing.py): :func:`read_spikes` returns float32 spikes of shape
``(T, batch, 3)``, finite and equal to what ``numpy.load`` reads from the
same file, or raises an eventsim error; never another exception or a hang.

    HYPOTHESIS_PROFILE=campaign nice python -m pytest -q tests/test_run_input_fuzz.py
"""

from __future__ import annotations

import io
import struct
import zipfile

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsim.nir.run_file import read_spikes
from fuzzing import untrusted

FEATURES = 3
LIMIT = 64 << 20


def npy(descr: str, fortran: str, shape: str, data: bytes, version: int) -> bytes:
    """A .npy entry from the format's description: magic, version, header length, padded dict literal, data."""
    text = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
    length = "<H" if version == 1 else "<I"
    prefix = 6 + 2 + struct.calcsize(length)
    text += " " * (-(prefix + len(text) + 1) % 64) + "\n"
    return b"\x93NUMPY" + bytes([version, 0]) + struct.pack(length, len(text)) + text.encode("latin1") + data


@st.composite
def entries(draw) -> tuple[bytes, tuple[int, ...]]:
    """A .npy entry, valid or with a mutated header or data, and the shape (T, batch, 3) it was made for."""
    steps, batch = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    dtype = np.dtype(draw(st.sampled_from(["<f4", ">f4", "<f8", "<f2", "|i1", "<i4", ">i8", "|u1", "|b1"])))
    values = np.random.default_rng(draw(st.integers(0, 2**32))).integers(-2, 3, (steps, batch, FEATURES))
    values = values.astype(dtype)
    if dtype.kind == "f" and draw(st.booleans()):
        with np.errstate(over="ignore"):  # 1e300 is inf in float16 and float32: another non-finite case
            values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf, 1e300]))
    fortran = draw(st.booleans())
    descr, order, shape = repr(dtype.str), repr(fortran), repr(values.shape)
    junk = st.sampled_from(["None", "'x'", "[1]", "{}", "()", "(-1,)", "1.5", "{[]: 1}", "(1, (2,))", "b'<f4'",
                            "'<f4' 'x'", "(" * 300, "2**70"])
    rarely = st.integers(0, 3).map(lambda n: n == 3)  # each part is mutated in one case out of four
    if draw(rarely):
        descr = draw(st.one_of(junk, st.sampled_from([
            "'<c8'", "'|O'", "'<U2'", "'|S4'", "'<M8[s]'", "'|V4'", "[('a', '<f4')]", "('<f4', (2,))", "'<f16'",
            "'>f8'", "'junk'", "'<f0'"])))
    if draw(rarely):
        order = draw(st.one_of(junk, st.sampled_from(["True", "False", "1"])))
    if draw(rarely):
        shape = draw(st.one_of(junk, st.tuples(
            st.one_of(st.just(steps), st.integers(-2, 2**40)), st.one_of(st.just(batch), st.integers(-2, 2**40)),
            st.one_of(st.just(FEATURES), st.integers(-2, 8))).map(repr)))
    data = (values.T if fortran else values).tobytes()
    if draw(rarely):
        data = draw(st.one_of(st.builds(lambda n: data[:n], st.integers(0, len(data))),
                              st.builds(lambda extra: data + extra, st.binary(min_size=1, max_size=9))))
    return npy(descr, order, shape, data, draw(st.sampled_from([1, 2]))), (steps, batch, FEATURES)


# Fields of a zip's three headers that can be set to any value: (signature, offset, struct format).
ZIP_FIELDS = [(b"PK\x03\x04", at, fmt) for at, fmt in ((4, "<H"), (6, "<H"), (8, "<H"), (14, "<I"), (18, "<I"),
                                                       (22, "<I"), (26, "<H"), (28, "<H"))] + \
             [(b"PK\x01\x02", at, fmt) for at, fmt in ((8, "<H"), (10, "<H"), (16, "<I"), (20, "<I"), (24, "<I"),
                                                       (28, "<H"), (30, "<H"), (42, "<I"))] + \
             [(b"PK\x05\x06", at, fmt) for at, fmt in ((8, "<H"), (10, "<H"), (12, "<I"), (16, "<I"))]


def _set_field(field, value: int):
    signature, at, fmt = field

    def mutate(content: bytes) -> bytes:
        start = content.find(signature)
        if start < 0 or start + at + struct.calcsize(fmt) > len(content):
            return content
        width = struct.calcsize(fmt)
        return content[:start + at] + struct.pack(fmt, value % 256**width) + content[start + at + width:]
    return mutate


def _flip(at: int, bit: int):
    return lambda b: b[:at % len(b)] + bytes([b[at % len(b)] ^ (1 << bit)]) + b[at % len(b) + 1:] if b else b


file_mutations = st.one_of(
    st.builds(_set_field, st.sampled_from(ZIP_FIELDS),
              st.one_of(st.integers(0, 2**32 - 1), st.sampled_from([0, 1, 8, 9, 12, 14, 98, 2**31, 2**32 - 1]))),
    st.builds(_flip, st.integers(0, 2**16), st.integers(0, 7)),
    st.builds(lambda n: lambda b: b[:n % (len(b) + 1)], st.integers(0, 2**16)),
    st.builds(lambda extra: lambda b: b + extra, st.binary(min_size=1, max_size=32)),
)


@st.composite
def npz_files(draw) -> tuple[bytes, tuple[int, ...]]:
    entry, shape = draw(entries())
    buffer = io.BytesIO()
    method = draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
    with zipfile.ZipFile(buffer, "w", compression=method) as archive:
        if draw(st.booleans()):
            archive.writestr("other.npy", npy("'<f8'", "False", "(1,)", bytes(8), 1))
        archive.writestr(draw(st.sampled_from(["spikes.npy"] * 6 + ["spikes", "Spikes.npy", "x/spikes.npy"])), entry)
    content = buffer.getvalue()
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2, 3]))):
        mutation = draw(file_mutations)
        content = mutation(content)
    return content, shape


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    """The file every case is written to, under a 64 MiB limit: a mutated size above it is refused like a bomb."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVENTSIM_MAX_BYTES", str(LIMIT))
        yield tmp_path_factory.mktemp("run-input") / "in.npz"


def numpy_reads(path) -> np.ndarray:
    """What numpy itself reads from the file as 'spikes' (it must read what read_spikes returned)."""
    with np.load(path, allow_pickle=False) as data:
        return data["spikes"]


@given(case=npz_files())
def test_run_input_gives_finite_spikes_or_a_named_error(path, case):
    content, (steps, batch, features) = case
    path.write_bytes(content)

    def check(spikes: np.ndarray) -> None:
        assert spikes.dtype == np.float32
        assert spikes.shape[0] == steps and spikes.shape[1] >= 1 and spikes.shape[2:] == (features,)
        assert np.isfinite(spikes).all()
        np.testing.assert_array_equal(spikes, numpy_reads(path).astype(np.float32))

    untrusted("run input .npz", lambda: read_spikes(path, (features,), steps, np.float32), check)
