"""Reading untrusted data files: regular files only, arrays filled by bounded reads, JSON checked.

A data folder from the web (a tar archive unpacked) can hold a FIFO, which
blocks ``open`` forever, or a link to ``/dev/zero``, which a whole-file read
turns into unbounded memory. And a compressed stream must never be inflated
into a buffer of whatever size it likes: the array of the size its header
declares (checked against :mod:`eventsim.limits` first) is allocated once and
filled chunk by chunk, so at most one chunk more than the declared size is
ever held, and a stream that ends early or runs on is an error.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import re
import stat
from typing import BinaryIO

import numpy as np

from eventsim.errors import DataError, EventsimError
from eventsim.limits import check_size

#: Bytes inflated or read per call while filling an array: large enough for speed, small against any limit.
CHUNK = 1 << 20
#: The signature a .npy file starts with.
NPY_MAGIC = b"\x93NUMPY"
#: The dtypes of numeric arrays in .npy headers: byte order, kind (bool, int, unsigned, float), size in bytes.
NUMERIC_DESCR = re.compile(r"[<>|=]?[biuf][0-9]{1,2}")
#: numpy's own bound on a header; a numeric array's header is under 200 bytes.
MAX_HEADER = 10_000


def open_regular(path: str | os.PathLike, *, error: type[EventsimError] = DataError, label: str | None = None,
                 give: str = "a data file") -> BinaryIO:
    """``path`` opened for binary reading, if it is a regular file (links followed), else ``error``.

    Opened non-blocking so that a FIFO is refused instead of waiting for a
    writer; the flag means nothing for regular files. The type is checked on
    the opened descriptor, so a file swapped after the check is never read.
    Messages start with ``label`` (the path by default) and end by asking
    for ``give``.
    """
    label = str(path) if label is None else label
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise error(f"{label}: no such file") from None
    except OSError as exc:
        raise error(f"{label}: cannot read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or socket"
            raise error(f"{label}: is {kind}, not a regular file; give {give}")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def fill(stream: BinaryIO, array: np.ndarray, what: str) -> None:
    """Fill the C-contiguous ``array``'s bytes from ``stream``; the stream must then be at its end.

    Raises :class:`DataError` naming ``what`` when the stream has fewer bytes
    than the array or more after it. Reading one byte past the end is also
    what makes gzip and zip streams check their CRC.
    """
    view = array.reshape(-1).view(np.uint8)  # any dtype, byte order included, as raw bytes
    done = 0
    while done < len(view):
        chunk = stream.read(min(CHUNK, len(view) - done))
        if not chunk:
            raise DataError(f"{what}: ends after {done} of the {len(view)} bytes of data its header declares")
        view[done : done + len(chunk)] = np.frombuffer(chunk, np.uint8)
        done += len(chunk)
    if stream.read(1):
        raise DataError(f"{what}: has more bytes than the {len(view)} bytes of data its header declares")


def read_text(path: str | os.PathLike, *, error: type[EventsimError] = DataError) -> str:
    """The UTF-8 text of the regular file ``path``, its size checked against the limit before it is read.

    For the JSON files of a run folder (job, preparation, report, metrics),
    which may come from anyone: a FIFO or a link to ``/dev/zero`` in their
    place is refused, and bytes that are not UTF-8 raise ``error`` naming the
    file. A missing file raises FileNotFoundError, as ``open`` does: callers
    decide whether a run folder without the file is an error.
    """
    if not os.path.lexists(path):
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
    with open_regular(path, error=error) as f:
        check_size(os.fstat(f.fileno()).st_size, str(path), error)
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not text, so not JSON (byte {exc.start} is not UTF-8); the file is damaged") from None


def parse_json(text: str, where: str, *, error: type[EventsimError] = DataError) -> object:
    """``text`` parsed as JSON, or ``error`` naming ``where``.

    Python's parser recurses into nested arrays and objects, so deep nesting
    raises RecursionError, not a ValueError; both are refused here.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise error(f"{where}: not JSON ({exc.msg}, at character {exc.pos})") from None
    except RecursionError:
        raise error(f"{where}: not JSON (nested too deeply)") from None


def read_json(path: str | os.PathLike, *, error: type[EventsimError] = DataError) -> object:
    """The JSON value in the regular file ``path`` (:func:`read_text`, then :func:`parse_json`)."""
    return parse_json(read_text(path, error=error), str(path), error=error)


def read_npy_header(member: BinaryIO, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype from a ``.npy`` header, parsed strictly.

    numpy's own header reader hands any literal to its dtype parser, which
    then fails with IndexError, TypeError or tokenize errors on a damaged
    file; here the header must be the dict np.save writes, and the dtype a
    plain number type (``<f4``, ``|u1``, ``|b1``, ...), before numpy sees it.
    """
    start = member.read(10)
    if len(start) < 10 or start[:6] != NPY_MAGIC or start[6] not in (1, 2, 3) or start[7] != 0:
        raise DataError(f"{what}: not a .npy array (no .npy signature and version at its start)")
    size_bytes = start[8:10] if start[6] == 1 else start[8:10] + member.read(2)
    size = int.from_bytes(size_bytes, "little")
    if size > MAX_HEADER:
        raise DataError(f"{what}: .npy header of {size} bytes, more than a numeric array's ever needs")
    text = member.read(size)
    try:
        header = ast.literal_eval(text.decode("utf8" if start[6] == 3 else "latin1"))
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):  # what literal_eval raises on junk
        header = None
    if (not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}
            or not isinstance(header["shape"], tuple) or not all(type(n) is int for n in header["shape"])
            or not isinstance(header["fortran_order"], bool) or len(text) < size):
        raise DataError(f"{what}: damaged .npy header (expected the dict of descr, fortran_order and shape "
                        f"that np.save writes)")
    descr = header["descr"]
    try:
        dtype = np.dtype(descr) if isinstance(descr, str) and NUMERIC_DESCR.fullmatch(descr) else None
    except TypeError:  # a well-formed but unknown size, e.g. '<f3'
        dtype = None
    if dtype is None:
        raise DataError(f"{what} must be a numeric array (float, int or bool), got dtype {descr!r}")
    return header["shape"], header["fortran_order"], dtype
