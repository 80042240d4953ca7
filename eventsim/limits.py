"""Size limits on what a file may make eventsim allocate.

A small file can declare a huge array (an HDF5 dataset's shape, an idx
header, a ``.npy`` header inside an ``.npz``) or inflate to gigabytes (gzip,
zip deflate). Every reader checks the bytes it is about to allocate or
inflate against one limit *before* doing so, and refuses with an error that
names the file, the size and how to raise the limit.

The limit is ``EVENTSIM_MAX_BYTES`` (an integer number of bytes, or with a
suffix K, M, G, T for powers of 1024) when set, else 8 GiB: larger than any
dataset eventsim ships readers for (full MNIST is 55 MB, the encoded N-MNIST
training set about 2 GB at T = 300), smaller than what a bomb asks for.
"""

from __future__ import annotations

import os

from eventsim.errors import EventsimError, OptionError

ENV = "EVENTSIM_MAX_BYTES"
DEFAULT_MAX_BYTES = 8 * 1024**3
_SUFFIXES = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def max_bytes() -> int:
    """The allocation limit in bytes: ``EVENTSIM_MAX_BYTES`` if set, else 8 GiB."""
    raw = os.environ.get(ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    text = raw.upper().removesuffix("B").removesuffix("I")
    suffix = text[-1] if text and text[-1] in _SUFFIXES else ""
    number = text[: len(text) - len(suffix)]
    try:
        value = int(float(number) * _SUFFIXES[suffix])
    except ValueError:
        raise OptionError(f"{ENV}={raw!r} is not a size; give bytes, e.g. 8G or 500M") from None
    if value <= 0:
        raise OptionError(f"{ENV}={raw!r} must be positive")
    return value


def describe(nbytes: int) -> str:
    """``nbytes`` in the largest unit that keeps it >= 1 (``2.5 GiB``)."""
    for unit, size in (("TiB", 1024**4), ("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if nbytes >= size:
            return f"{nbytes / size:.1f} {unit}"
    return f"{nbytes} bytes"


def check_size(nbytes: int, what: str, error: type[EventsimError]) -> None:
    """Raise ``error`` if allocating or inflating ``nbytes`` for ``what`` would pass the limit.

    ``what`` names the file and the part of it (``"/data/t10k.gz: the
    decompressed idx file"``); the message says how to raise the limit.
    """
    limit = max_bytes()
    if nbytes > limit:
        raise error(
            f"{what} would need {describe(nbytes)}, above the limit of {describe(limit)}; "
            f"if the file is genuine, raise the limit with {ENV} (e.g. {ENV}=64G)"
        )
