"""The one way eventsim reads HDF5 files: every file is treated as untrusted.

HDF5 can make a small file read other files (external storage, external
links, virtual datasets), loop (a group hard-linked into itself), declare
arrays far larger than the file, or fail inside the library with errors
that are not eventsim's. NIR graphs, checkpoints and caches come from other
people and other machines, so every HDF5 read in eventsim goes through this
module, which refuses all of that *before* any data is read:

- :func:`open_hdf5` opens only a regular file (:func:`eventsim.reading.open_regular`:
  a FIFO or device never blocks), then walks every link without
  following it. External and soft links are refused (no eventsim or ``nir``
  writer makes them), every object must be reached by exactly one hard link
  (which rules out cycles and the exponential trees of shared groups), the
  depth and the number of objects are bounded, named datatypes are refused,
  and every dataset is checked for external storage and virtual layout. The
  declared sizes of all datasets together are checked against
  :func:`eventsim.limits.check_size`.
- :func:`read_dataset` checks the dtype kind and shape a caller expects and the
  declared size against the limit and (for uncompressed contiguous data)
  against the file's size, then reads.
- :func:`read_attr` and :func:`read_json_attr` read single-valued attributes.

Every failure, eventsim's own checks and h5py's errors alike, is raised as the
caller's eventsim error class with a message that names the file and the
object: ``checkpoint /runs/a/checkpoint.h5: dataset /params/0 is stored in
external file '/etc/passwd'; ...``.

A file replaced between that check and h5py's own open (by path) could
still be a FIFO; only someone who can already write the file can do that,
and the walk runs on what was opened.
"""

from __future__ import annotations

import json
import mmap
import os
from contextlib import contextmanager
from math import prod
from typing import BinaryIO, Iterator

import h5py
import numpy as np

from eventsim.errors import EventsimError
from eventsim.limits import check_size, max_bytes
from eventsim.reading import open_regular

#: Deepest group nesting accepted; NIR graphs nest a few levels, checkpoints and caches one.
MAX_DEPTH = 32
#: Most links accepted in one file; a NIR graph of a thousand layers holds about ten thousand.
MAX_OBJECTS = 100_000

#: What h5py and the HDF5 library raise on damaged files (turned into the caller's error).
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError, TypeError, IndexError, OverflowError)


@contextmanager
def open_hdf5(path: str | os.PathLike, *, error: type[EventsimError], what: str) -> Iterator[h5py.File]:
    """The HDF5 file at ``path``, opened read-only after the whole file passed the checks above.

    ``what`` names the kind of file (``"checkpoint"``, ``"NIR file"``) and
    starts every message, followed by the path. h5py errors raised inside the
    ``with`` block become ``error`` as well (eventsim errors pass unchanged).
    """
    path = os.fspath(path)
    label = f"{what} {path}"
    with open_regular(path, error=error, label=label, give="a regular HDF5 file") as fh:
        _check_global_heaps(fh, label, error)
    try:
        f = h5py.File(path, "r")
    except _H5_ERRORS as exc:
        raise error(f"{label}: not a readable HDF5 file (truncated, or another format): {exc}") from None
    with f:
        try:
            _walk(f, label, error)
            yield f
        except EventsimError:
            raise
        except _H5_ERRORS as exc:
            # A damaged file can open and still fail while its contents are
            # read; the same builtin types raised by the caller's code are bugs.
            if not raised_in_h5py(exc):
                raise
            raise error(f"{label}: unreadable contents ({type(exc).__name__}: {exc})") from None


def raised_in_h5py(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside h5py, which raises builtin types, not its own.

    Judged by the innermost frame of its traceback (h5py's Cython modules
    add theirs), so the caller's own ValueError is not taken for a damaged file.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and str(tb.tb_frame.f_globals.get("__name__", "")).split(".")[0] == "h5py"


_SUPERBLOCK = b"\x89HDF\r\n\x1a\n"
_GLOBAL_HEAP = b"GCOL\x01"


def _check_global_heaps(fh: BinaryIO, label: str, error: type[EventsimError]) -> None:
    """Refuse global heap collections that would make the HDF5 library loop forever.

    Variable-length strings (JSON attributes, NIR node types) live in global
    heap collections. When HDF5 parses one, a free-space object (index 0)
    advances its cursor by the object's own size, so a size of 0 (a few
    zeroed bytes) loops forever inside C, where no signal can stop it.
    HDF5 writes the free-space object last, reaching the end of the
    collection (or past it after a removal); one that stops short is
    refused. Collections are found by their signature in the raw bytes.
    """
    if os.fstat(fh.fileno()).st_size == 0:
        return
    with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
        width = _length_size(m)
        at = m.find(_GLOBAL_HEAP)
        while at >= 0 and width:
            _check_collection(m, at, width, label, error)
            at = m.find(_GLOBAL_HEAP, at + 1)


def _length_size(m: mmap.mmap) -> int:
    """The superblock's "size of lengths" in bytes (0 without a superblock: h5py then refuses the file).

    The superblock sits at 0, 512, 1024, 2048... (after a user block).
    """
    at = 0
    while at + 16 <= len(m):
        if m[at:at + 8] == _SUPERBLOCK:
            return m[at + 14] if m[at + 8] < 2 else m[at + 10]
        at = 512 if at == 0 else 2 * at
    return 0


def _check_collection(m: mmap.mmap, at: int, width: int, label: str, error: type[EventsimError]) -> None:
    size = int.from_bytes(m[at + 8:at + 8 + width], "little")
    end = min(at + size, len(m))
    header = 8 + width  # index (2), reference count (2), reserved (4), size (width)
    p = at + 8 + width
    while p + header <= end:
        index = int.from_bytes(m[p:p + 2], "little")
        length = int.from_bytes(m[p + 8:p + 8 + width], "little")
        if index == 0:
            if p + length < end:
                raise error(f"{label}: the global heap at byte {at} is damaged (its free space at byte {p} "
                            "stops short of its end); the file is corrupt")
            return
        p += header + (length + 7) // 8 * 8


def _walk(f: h5py.File, label: str, error: type[EventsimError]) -> None:
    """Check every link and object of ``f`` without following any link (iteratively: no recursion limit)."""
    seen = {_address(f): "/"}
    total = 0  # declared bytes of all datasets
    count = 0
    stack = [(f, "", 0)]
    while stack:
        group, prefix, depth = stack.pop()
        for name in group:
            where = f"{prefix}/{name}"
            count += 1
            if count > MAX_OBJECTS:
                raise error(f"{label}: holds more than {MAX_OBJECTS} objects; eventsim files hold far fewer")
            link = group.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise error(f"{label}: {where} is an external link to {link.path!r} in file {link.filename!r}; "
                            "eventsim reads only what is stored inside the file")
            if not isinstance(link, h5py.HardLink):
                target = getattr(link, "path", "?")
                raise error(f"{label}: {where} is a soft link to {target!r}; eventsim files hold no soft links")
            obj = group[name]
            address = _address(obj)
            if address in seen:
                raise error(f"{label}: {where} links again to {seen[address]} (a hard-link cycle or a shared "
                            "object); eventsim files hold each object once")
            seen[address] = where
            if isinstance(obj, h5py.Dataset):
                _check_storage(obj, where, label, error)
                total += _declared_bytes(obj)
            elif isinstance(obj, h5py.Group):
                if depth + 1 > MAX_DEPTH:
                    raise error(f"{label}: {where} is nested deeper than {MAX_DEPTH} groups")
                stack.append((obj, where, depth + 1))
            else:
                raise error(f"{label}: {where} is a named datatype; eventsim files hold only groups and datasets")
    check_size(total, f"{label}: its datasets together", error)


def _address(obj: h5py.HLObject) -> int:
    return h5py.h5o.get_info(obj.id).addr


def _check_storage(dset: h5py.Dataset, where: str, label: str, error: type[EventsimError]) -> None:
    if dset.is_virtual:
        raise error(f"{label}: dataset {where} is virtual (its data lives in other files); "
                    "eventsim reads only data stored inside the file")
    external = dset.external
    if external:
        name = external[0][0]
        raise error(f"{label}: dataset {where} is stored in external file {os.fsdecode(name)!r}; "
                    "eventsim reads only data stored inside the file")


def _declared_bytes(dset: h5py.Dataset) -> int:
    # Python ints: a crafted shape cannot overflow the product
    shape = dset.id.shape
    return prod(int(s) for s in shape) * dset.id.get_type().get_size() if shape is not None else 0


def _where(obj: h5py.HLObject, what: str) -> str:
    return f"{what} {obj.file.filename}"


def read_dataset(dset: h5py.Dataset, *, error: type[EventsimError], what: str, kinds: str = "biuf",
                 shape: tuple[int | None, ...] | None = None) -> np.ndarray:
    """The contents of ``dset`` as an array in native byte order (0-d for a scalar), after checking them.

    ``kinds`` lists the numpy dtype kinds accepted (``"biuf"``: bools, ints,
    floats); ``"S"`` accepts fixed- and variable-length strings (read as
    bytes; a variable-length string array comes back as an object array of
    bytes); ``"V"`` accepts compound types. Variable-length sequences and
    references are never accepted. ``shape`` (None entries match any size)
    is the expected shape. The declared size is checked against the limit
    and, for uncompressed contiguous data, against the file's size, so
    nothing is allocated for a file that cannot hold it.
    """
    try:
        return _read_dataset(dset, error, f"{_where(dset, what)}: dataset {dset.name}", kinds, shape)
    except EventsimError:
        raise
    except _H5_ERRORS as exc:
        raise error(f"{_where(dset, what)}: dataset {dset.name} cannot be read "
                    f"({type(exc).__name__}: {exc})") from None


def _read_dataset(dset: h5py.Dataset, error: type[EventsimError], label: str, kinds: str,
                  shape: tuple[int | None, ...] | None) -> np.ndarray:
    dtype = dset.dtype
    string = h5py.check_string_dtype(dtype) is not None
    kind = "S" if string else dtype.kind
    if kind not in kinds or (kind == "O" and not string) or dtype.subdtype is not None:
        raise error(f"{label} holds {_describe_dtype(dtype)}, expected {_describe_kinds(kinds)}")
    declared = dset.id.shape
    if declared is None:
        raise error(f"{label} is empty (a null dataspace), expected {_describe_kinds(kinds)}")
    if shape is not None and (len(declared) != len(shape)
                              or any(w is not None and w != s for w, s in zip(shape, declared))):
        expected = "(" + ", ".join("any" if w is None else str(w) for w in shape) + ")"
        raise error(f"{label} has shape {declared}, expected {expected}")
    nbytes = _declared_bytes(dset)
    check_size(nbytes, label, error)
    if dtype.kind == "O":
        return _read_strings(dset, error, label)
    plist = dset.id.get_create_plist()
    offset = dset.id.get_offset()
    if plist.get_layout() == h5py.h5d.CONTIGUOUS and plist.get_nfilters() == 0 and offset is not None:
        size = os.fstat(dset.file.id.get_vfd_handle()).st_size
        if offset + nbytes > size:
            raise error(f"{label} declares {nbytes} bytes at offset {offset}, past the end of the "
                        f"{size}-byte file; the file is truncated or damaged")
    data = np.asarray(dset[()])
    if not data.dtype.isnative:  # the kernels and the checks below expect native order
        data = data.astype(data.dtype.newbyteorder("="))
    return data


def _read_strings(dset: h5py.Dataset, error: type[EventsimError], label: str) -> np.ndarray:
    """A variable-length string dataset, read so that its strings cannot total more than the limit.

    Each string is at most the file's size, but many elements may point to
    the same stored string: reading all at once could allocate elements x
    file size. Blocks are sized so that one block stays within the limit.
    """
    size = max(os.fstat(dset.file.id.get_vfd_handle()).st_size, 1)
    if dset.ndim == 0:
        return np.asarray(dset[()], dtype=object)
    per_row = prod(dset.shape[1:])
    rows = max(1, max_bytes() // size // max(per_row, 1))
    out = np.empty(dset.shape, dtype=object)
    total = 0
    for start in range(0, dset.shape[0], rows):
        block = dset[start:start + rows]
        total += sum(len(s) for s in block.ravel())
        check_size(total, f"{label}: its strings", error)
        out[start:start + rows] = block
    return out


def _describe_dtype(dtype: np.dtype) -> str:
    if h5py.check_string_dtype(dtype) is not None:
        return "strings"
    if h5py.check_vlen_dtype(dtype) is not None:
        return "variable-length sequences"
    if h5py.check_ref_dtype(dtype) is not None:
        return "object references"
    if dtype.fields:
        return "a compound type"
    return f"dtype {dtype}"


_KIND_NAMES = {"b": "bools", "i": "integers", "u": "unsigned integers", "f": "floats", "S": "strings",
               "V": "compound values"}


def _describe_kinds(kinds: str) -> str:
    return ", ".join(_KIND_NAMES.get(k, k) for k in kinds)


def _attr_label(obj: h5py.HLObject, name: str, what: str) -> str:
    owner = "" if obj.name == "/" else f" of {obj.name}"
    return f"{_where(obj, what)}: attribute {name!r}{owner}"


def read_attr(obj: h5py.HLObject, name: str, *, error: type[EventsimError], what: str) -> object:
    """The single-valued attribute ``name`` of ``obj`` as a Python bool, int, float or str.

    A missing attribute, an array, a compound or reference value, or bytes
    that are not UTF-8 raise ``error`` naming the file, the object and the
    attribute.
    """
    label = _attr_label(obj, name, what)
    try:
        if name not in obj.attrs:
            raise error(f"{label} is missing")
        attr = obj.attrs.get_id(name)
        if attr.shape != () or (attr.dtype.kind not in "biufS" and h5py.check_string_dtype(attr.dtype) is None):
            raise error(f"{label} is not a single number or string ({_describe_dtype(attr.dtype)}, "
                        f"shape {attr.shape})")
        value = obj.attrs[name]
    except EventsimError:
        raise
    except _H5_ERRORS as exc:
        raise error(f"{label} cannot be read ({type(exc).__name__}: {exc})") from None
    try:
        if isinstance(value, (bytes, np.bytes_)):
            return bytes(value).decode("utf-8")
        if isinstance(value, str):
            value.encode("utf-8")  # h5py decodes invalid bytes to lone surrogates
            return value
    except UnicodeError:
        raise error(f"{label} is not UTF-8 text") from None
    return value.item() if isinstance(value, np.generic) else value


def read_json_attr(obj: h5py.HLObject, name: str, *, error: type[EventsimError], what: str) -> object:
    """The attribute ``name`` of ``obj`` parsed as JSON (eventsim stores structured metadata as JSON text)."""
    text = read_attr(obj, name, error=error, what=what)
    label = _attr_label(obj, name, what)
    if not isinstance(text, str):
        raise error(f"{label} is not JSON text (got {type(text).__name__})")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise error(f"{label} has unreadable contents (not JSON: {exc})") from None
