"""Hypothesis strategies that damage a valid HDF5 file the ways an untrusted file can be damaged.

Structural edits made with h5py (a dataset replaced by another shape, dtype,
external storage or a huge unwritten one; junk attributes; deleted objects;
soft, external and cyclic links), then byte-level damage on top (bit flips,
truncation, zeroed or random ranges). Used by the checkpoint and cache fuzz
tests (tests/test_checkpoint_fuzz.py, tests/test_cache_fuzz.py).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
from hypothesis import strategies as st

DTYPES = ["f4", "f8", ">f4", "f2", "i8", "u8", "i4", "u1", "bool", "c8", "S3"]
SPECIALS = [0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 3e38, 1e300, 2.0**63, 2.0**64 - 1, 5e-324]


def _objects(f: h5py.File) -> list[str]:
    names = ["/"]
    f.visit(names.append)
    return names


@st.composite
def _array(draw) -> np.ndarray:
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    n = int(np.prod(shape))
    if dtype.kind == "S":
        return np.array(draw(st.lists(st.binary(max_size=3), min_size=n, max_size=n)), dtype).reshape(shape)
    values = draw(st.lists(st.sampled_from(SPECIALS) | st.floats(-1e3, 1e3), min_size=n, max_size=n))
    with np.errstate(all="ignore"):
        return np.array(values, np.float64).astype(dtype).reshape(shape)


_JUNK_TEXT = st.sampled_from(['{', '[1, 2]', '{}', '"x"', '-1', '1e999', 'NaN', '[' * 5000, 'null', '{"a": 1}',
                              '"eventsim-checkpoint"', '[{}]', '{"bit_generator": "PCG64"}']) \
    | st.text(st.characters(blacklist_characters="\0"), max_size=20)  # h5py cannot store a NUL in a string
_JUNK_ATTR = (_JUNK_TEXT | st.binary(max_size=8).filter(lambda b: b"\0" not in b)
              | st.integers(-2**63, 2**63 - 1) | st.floats()
              | st.booleans() | st.just(np.arange(3)))


@st.composite
def structural_edit(draw, secret: Path) -> Callable[[h5py.File], None]:
    """One edit of an open (r+) file: draws what to change among the file's own objects."""
    kind = draw(st.sampled_from(["replace", "external", "huge", "attr", "delete", "soft", "extlink", "cycle",
                                 "group"]))
    pick = draw(st.integers(0, 10**6))
    value = draw(_array()) if kind == "replace" else draw(_JUNK_ATTR) if kind == "attr" else None
    attr_pick = draw(st.integers(0, 10**6))

    def edit(f: h5py.File) -> None:
        names = _objects(f)
        datasets = [n for n in names if isinstance(f[n], h5py.Dataset)] or ["/new"]
        groups = [n for n in names if isinstance(f[n], h5py.Group)]
        target = datasets[pick % len(datasets)]
        parent, _, leaf = target.rpartition("/")
        parent = parent or "/"
        if kind in ("replace", "external", "huge", "group") and target in f:
            del f[target]
        if kind == "replace":
            f[parent].create_dataset(leaf, data=value)
        elif kind == "external":
            f[parent].create_dataset(leaf, shape=(16,), dtype="f4", external=[(str(secret), 0, 64)])
        elif kind == "huge":
            f[parent].create_dataset(leaf, shape=(2**33,), dtype="f8", chunks=(4096,))
        elif kind == "group":
            f[parent].create_group(leaf)
        elif kind == "attr":
            owner = f[groups[pick % len(groups)]]
            keys = list(owner.attrs) or ["x"]
            owner.attrs[keys[attr_pick % len(keys)]] = value
        elif kind == "delete":
            victim = names[1:][pick % len(names[1:])] if len(names) > 1 else None
            if victim is not None and victim in f:
                del f[victim]
        else:
            g = f[groups[pick % len(groups)]]
            name = f"{kind}{len(g)}"  # a fresh name: two edits may link into the same group
            g[name] = h5py.SoftLink(datasets[0]) if kind == "soft" else \
                h5py.ExternalLink(str(secret), "/data") if kind == "extlink" else g

    return edit


@st.composite
def byte_damage(draw) -> Callable[[bytes], bytes]:
    """Bit flips, a truncation, a zeroed or a random range, or nothing."""
    kind = draw(st.sampled_from(["none", "flip", "truncate", "zero", "random"]))
    at = draw(st.floats(0, 1, exclude_max=True))
    flips = draw(st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(0, 7)), min_size=1, max_size=8))
    length = draw(st.integers(1, 256))
    noise = draw(st.binary(min_size=length, max_size=length))

    def damage(data: bytes) -> bytes:
        b = bytearray(data)
        start = int(at * len(b))
        if kind == "flip":
            for where, bit in flips:
                b[int(where * len(b))] ^= 1 << bit
        elif kind == "truncate":
            del b[start:]
        elif kind == "zero":
            b[start:start + length] = bytes(len(b[start:start + length]))
        elif kind == "random":
            b[start:start + length] = noise[:len(b[start:start + length])]
        return bytes(b)

    return damage


def mutated_file(data: bytes, path: Path, edits: list, damage: Callable[[bytes], bytes]) -> None:
    """Write ``data`` to ``path``, apply the structural ``edits`` with h5py, then the byte ``damage``."""
    path.write_bytes(data)
    if edits:
        with h5py.File(path, "r+") as f:
            for edit in edits:
                edit(f)
    path.write_bytes(damage(path.read_bytes()))


def secret_file(folder: Path) -> Path:
    """A file no reader may ever show: an HDF5 file (the target of external links) holding a known pattern."""
    path = folder / "secret.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=np.full(64, 7.0))
        f.attrs["note"] = json.dumps({"secret": True})
    return path
