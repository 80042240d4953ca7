"""MNIST: the idx file format (raw or gzip) and the four files of the dataset.

LeCun, Cortes and Burges, "The MNIST database of handwritten digits". An idx
file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data in C order.
MNIST uses type 0x08 (unsigned byte): magic 2051 for images (N, 28, 28) and
2049 for labels (N,).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator, Sequence

import numpy as np

from eventsim.errors import DataError, check_choice
from eventsim.events import Events
from eventsim.limits import check_size
from eventsim.reading import fill, open_regular
from eventsim.datasets.download import DOWNLOAD_HINT
from eventsim.datasets.folders import find
from eventsim.encoders.direct import direct
from eventsim.encoders.rate import rate

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
GZIP_SIGNATURE = b"\x1f\x8b"
ENCODINGS = ("rate", "direct")  #: how :class:`CodedImages` turns an image into events
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


@dataclass(frozen=True)
class IdxHeader:
    """What an idx file's header declares: its magic number, element type and shape."""

    magic: int
    dtype: np.dtype
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of data the header declares (a Python int: dimensions of 2^32 each cannot overflow it)."""
        return math.prod(self.shape) * self.dtype.itemsize


@contextmanager
def _open_idx(path: Path) -> Iterator[tuple[BinaryIO, IdxHeader]]:
    """The file's stream (inflating if it starts with the gzip signature), positioned after the header.

    Every way the bytes can be wrong while reading inside the block
    (unreadable, corrupt or truncated gzip) becomes a :class:`DataError`
    naming the file; gzip inflates only what is read, so a bomb costs no
    more memory than the caller asks for.
    """
    try:
        with open_regular(path) as raw:
            compressed = raw.read(2) == GZIP_SIGNATURE
            raw.seek(0)
            with gzip.GzipFile(fileobj=raw) if compressed else raw as stream:
                yield stream, _header(stream, path)
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot read, corrupt or truncated ({exc})") from None


def _header(stream: BinaryIO, path: Path) -> IdxHeader:
    head = stream.read(4)
    if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an idx file (magic number {head.hex() or 'missing'})")
    ndim = head[3]
    dims = stream.read(4 * ndim)
    if len(dims) < 4 * ndim:
        raise DataError(f"{path}: header of {ndim} dimensions is cut short ({4 + len(dims)} bytes)")
    shape = tuple(int.from_bytes(dims[4 * i : 4 * i + 4], "big") for i in range(ndim))
    return IdxHeader(int.from_bytes(head, "big"), np.dtype(IDX_TYPES[head[2]]), shape)


def read_idx_header(path: str | os.PathLike, *, magic: int | None = None) -> IdxHeader:
    """The header of an idx file, read without reading (or inflating) its data.

    Raises :class:`DataError` as :func:`read_idx` does for the header.
    """
    path = Path(path)
    with _open_idx(path) as (_, header):
        _check_magic(path, header, magic)
    return header


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
    """Read an idx file (gzip-compressed if it starts with the gzip signature).

    The size the header declares is checked against the allocation limit
    (:func:`eventsim.limits.check_size`) and, for a raw file, against the
    file's size before anything is allocated; the data is then read into one
    array of that size, never more (a gzip bomb is refused or costs only its
    declared size).

    Raises
    ------
    DataError
        Naming the file: unreadable or corrupt gzip, a bad magic number (or
        not the ``magic`` expected), a declared size above the limit, data
        that ends before or runs on after the size the header declares.
    """
    path = Path(path)
    with _open_idx(path) as (stream, header):
        _check_magic(path, header, magic)
        if not isinstance(stream, gzip.GzipFile):  # a raw file's size is known: the exact message first
            expected = 4 + 4 * len(header.shape) + header.nbytes
            found = os.fstat(stream.fileno()).st_size
            if found != expected:
                raise DataError(f"{path}: header says shape {header.shape} ({expected} bytes in all) "
                                f"but the file has {found} bytes")
        check_size(header.nbytes, f"{path}: the idx data of shape {header.shape}", DataError)
        # With a zero dimension there is no data, but numpy still refuses a shape whose other dimensions
        # multiply past its index range.
        if math.prod(n for n in header.shape if n) * header.dtype.itemsize > np.iinfo(np.intp).max:
            raise DataError(f"{path}: header says shape {header.shape}, too large for an array even without data")
        data = np.empty(header.shape, header.dtype)
        fill(stream, data, f"{path} (idx, shape {header.shape})")
    # Swapped in place, so that a big-endian file costs one array, not two.
    return data if data.dtype.isnative else data.byteswap(inplace=True).view(data.dtype.newbyteorder("="))


def _check_magic(path: Path, header: IdxHeader, magic: int | None) -> None:
    if magic is not None and header.magic != magic:
        raise DataError(f"{path}: magic number {header.magic}, expected {magic}")


def _file(folder: Path, name: str) -> Path:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: neither {name}.gz nor {name} found")


def load_mnist(root: str | os.PathLike | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of one split, from ``<root>/mnist/``.

    Checks the magic numbers, that images are 28 x 28, that there is one
    label per image and that labels are digits. The shapes are checked on
    the two headers before either file's data is read, so a file declaring
    more images than labels (or the reverse) costs nothing to refuse.
    """
    check_choice("split", split, tuple(FILES))
    folder = find("mnist", root, hint="Put the four MNIST idx files (gzip or raw) in a folder named mnist/ there, "
                  f"or download them: {DOWNLOAD_HINT.format(dataset='mnist')}.")
    image_file, label_file = (_file(folder, name) for name in FILES[split])
    images = read_idx_header(image_file, magic=IMAGES_MAGIC).shape
    labels = read_idx_header(label_file, magic=LABELS_MAGIC).shape
    if len(images) != 3 or images[1:] != (28, 28):
        raise DataError(f"{image_file}: images must be (N, 28, 28), got {images}")
    if len(labels) != 1:
        raise DataError(f"{label_file}: labels must be (N,), got {labels}")
    if labels != images[:1]:
        raise DataError(f"{label_file}: {labels[0]} labels for {images[0]} images in {image_file}")
    # The files may change between the two reads; the full reads check the headers again.
    label_data = read_idx(label_file, magic=LABELS_MAGIC)
    image_data = read_idx(image_file, magic=IMAGES_MAGIC)
    if label_data.shape != labels or image_data.shape != images:
        raise DataError(f"{folder}: {image_file.name} or {label_file.name} changed while being read")
    if label_data.size and label_data.max() > 9:
        raise DataError(f"{label_file}: label {int(label_data.max())} is not a digit")
    return image_data, label_data.astype(np.int64)


class CodedImages:
    """Images coded into events on access: item i is ``(Events of batch 1, label)``.

    Each image is scaled to [0, 1] (``pixels / 255``) and coded over
    ``steps`` steps by ``encoding``:

    - ``"rate"``: :func:`eventsim.encoders.rate.rate` with ``scale`` (Lee et
      al.'s MNIST code: 0.5). Sample i always draws from
      ``numpy.random.default_rng((seed, i))``, so its spikes are the same in
      every epoch and after a resume, whatever the order of access.
    - ``"direct"``: :func:`eventsim.encoders.direct.direct`, ``scale`` times
      the pixel as the input current at every step (Ledinauskas et al. 2020,
      Sec. 2.1: the first spiking layer does the encoding).

    :meth:`read_batch` codes several images in one call, with the events of
    coding them one by one; it may be called from several threads at once
    (the images are only read), which is how
    :func:`eventsim.learning.steps.batch_of` codes a batch on the thread pool.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, *, steps: int, encoding: str = "rate",
                 scale: float = 1.0, seed: int = 0, dtype: object = np.float32) -> None:
        if images.shape[0] != labels.shape[0]:
            raise DataError(f"{images.shape[0]} images but {labels.shape[0]} labels")
        check_choice("encoding", encoding, ENCODINGS)
        self.images, self.labels = images, labels
        self.steps, self.encoding, self.scale, self.seed, self.dtype = int(steps), encoding, float(scale), int(seed), dtype

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def __getitem__(self, i: int):
        events, labels = self.read_batch([i])
        return events, int(labels[0])

    def read_batch(self, indices: Sequence[int]) -> tuple[Events, np.ndarray]:
        """The items ``indices`` as one batch: their events stacked in that order, and their labels (int64).

        The events are those of ``Events.concat([self[i][0] for i in
        indices])``, coded in one encoder call (image i still draws from its
        own generator ``(seed, i)``), so the per-call work is paid once.
        """
        picked = [int(i) % len(self) for i in indices]
        x = self.images[picked][:, None].astype(np.float64) / 255.0
        if self.encoding == "direct":
            events = direct(x * self.scale, self.steps, dtype=self.dtype)
        else:
            generators = [np.random.default_rng((self.seed, i)) for i in picked]
            events = rate(x, self.steps, rng=generators, scale=self.scale, dtype=self.dtype)
        return events, self.labels[picked].astype(np.int64)
