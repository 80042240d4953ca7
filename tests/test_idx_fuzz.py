"""Fuzzing the idx reader (raw and gzip) with mutated valid files (docs/safety.md).

A valid idx file of random type, rank and shape is mutated in its header
(magic bytes, type code, rank, dimensions up to 2^32 - 1), in its body
(truncated, extended, bytes flipped) and, for gzip files, in the compressed
stream itself. The property (tests/fuzzing.py): :func:`read_idx` returns the
array the file holds, or raises an eventsim error; never another exception
or a hang. What the file holds is decided by a reference parser written
here from the format's description (LeCun et al.), independently of the
reader: whenever the reference finds a valid file, the reader must return
exactly its array, and it must never return an array for a file the
reference rejects.

    HYPOTHESIS_PROFILE=campaign nice python -m pytest -q tests/test_idx_fuzz.py
"""

from __future__ import annotations

import gzip
import math
import zlib

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsim.datasets import read_idx
from fuzzing import untrusted

#: The idx type codes and their big-endian element types, from the format's description.
TYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def reference(content: bytes) -> np.ndarray | None:
    """The array an idx file (raw or gzip) holds, or None if it is not a valid idx file."""
    if content[:2] == b"\x1f\x8b":
        try:
            content = gzip.decompress(content)
        except (OSError, EOFError, zlib.error):
            return None
    if len(content) < 4 or content[:2] != b"\0\0" or content[2] not in TYPES:
        return None
    dtype, rank = np.dtype(TYPES[content[2]]), content[3]
    if len(content) < 4 + 4 * rank:
        return None
    shape = tuple(int.from_bytes(content[4 + 4 * i : 8 + 4 * i], "big") for i in range(rank))
    start = 4 + 4 * rank
    if len(content) != start + math.prod(shape) * dtype.itemsize:
        return None
    try:
        return np.frombuffer(content, dtype, offset=start).reshape(shape)
    except ValueError:  # a zero dimension among others that multiply past what numpy can index
        return None


# A mutation is a function of the file's bytes; the strategies below draw one each.
def _flip(at: int, bit: int):
    return lambda b: b[:at % len(b)] + bytes([b[at % len(b)] ^ (1 << bit)]) + b[at % len(b) + 1:] if b else b


def _put(at: int, value: bytes):
    return lambda b: b[:at] + value + b[at + len(value):]


def _truncate(keep: int):
    return lambda b: b[:keep % (len(b) + 1)]


def _append(extra: bytes):
    return lambda b: b + extra


dimension = st.one_of(st.integers(0, 6), st.sampled_from([2**31, 2**32 - 1, 2**21, 2**16 + 1]),
                      st.integers(0, 2**32 - 1))
content_mutations = st.one_of(
    st.builds(_flip, st.integers(0, 2**16), st.integers(0, 7)),
    st.builds(_truncate, st.integers(0, 2**16)),
    st.builds(_append, st.binary(min_size=1, max_size=16)),
    st.builds(_put, st.integers(0, 1), st.binary(min_size=1, max_size=2)),  # the two zero bytes of the magic
    st.builds(_put, st.just(2), st.sampled_from([bytes([c]) for c in (*TYPES, 0x00, 0x0A, 0x0F, 0xFF)])),
    st.builds(_put, st.just(3), st.integers(0, 255).map(lambda r: bytes([r]))),  # the rank
    st.builds(lambda i, n: _put(4 + 4 * i, n.to_bytes(4, "big")), st.integers(0, 3), dimension),
)
stream_mutations = st.one_of(
    st.builds(_flip, st.integers(0, 2**16), st.integers(0, 7)),
    st.builds(_truncate, st.integers(0, 2**16)),
    st.builds(_append, st.one_of(st.binary(min_size=1, max_size=16), st.just(bytes(8)))),
)


@st.composite
def idx_files(draw) -> bytes:
    code = draw(st.sampled_from(sorted(TYPES)))
    shape = draw(st.lists(st.integers(0, 5), max_size=3))
    size = math.prod(shape) * np.dtype(TYPES[code]).itemsize
    content = (bytes([0, 0, code, len(shape)]) + b"".join(n.to_bytes(4, "big") for n in shape)
               + draw(st.binary(min_size=size, max_size=size)))
    for mutation in draw(st.lists(content_mutations, max_size=3)):
        content = mutation(content)
    if draw(st.booleans()):
        content = gzip.compress(content, compresslevel=draw(st.integers(0, 9)))
        for mutation in draw(st.lists(stream_mutations, max_size=2)):
            content = mutation(content)
    return content


LIMIT = 64 << 20


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    """The file every case is written to, under a 64 MiB limit: a mutated size above it is refused like a bomb."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVENTSIM_MAX_BYTES", str(LIMIT))
        yield tmp_path_factory.mktemp("idx") / "fuzz-idx"


@given(content=idx_files())
def test_idx_reader_returns_the_file_or_a_named_error(path, content):
    path.write_bytes(content)
    expected = reference(content)

    def check(result: np.ndarray) -> None:
        assert expected is not None, "read_idx returned an array for a file that is not a valid idx file"
        assert result.dtype == expected.dtype.newbyteorder("=") and result.dtype.isnative
        assert result.shape == expected.shape
        np.testing.assert_array_equal(result, expected)

    outcome = untrusted("idx reader", lambda: read_idx(path), check)
    if expected is not None and expected.nbytes <= LIMIT:
        assert outcome == "ok", "read_idx refused a valid idx file"
