"""MNIST: the idx file format (raw or gzip) and the four files of the dataset.

LeCun, Cortes and Burges, "The MNIST database of handwritten digits". An idx
file is a 4-byte magic number (two zero bytes, a type code, the number of
dimensions), one big-endian uint32 per dimension, then the data in C order.
MNIST uses type 0x08 (unsigned byte): magic 2051 for images (N, 28, 28) and
2049 for labels (N,).
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

from eventsim.errors import DataError, check_choice
from eventsim.datasets.folders import find
from eventsim.encoders.direct import direct
from eventsim.encoders.rate import rate

IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
             0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
IMAGES_MAGIC, LABELS_MAGIC = 2051, 2049
ENCODINGS = ("rate", "direct")  #: how :class:`CodedImages` turns an image into events
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def read_idx(path: str | os.PathLike, *, magic: int | None = None) -> np.ndarray:
    """Read an idx file (gzip-compressed if it starts with the gzip signature).

    Raises
    ------
    DataError
        Naming the file: unreadable or corrupt gzip, a bad magic number (or
        not the ``magic`` expected), a size that does not match the header.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_TYPES:
        raise DataError(f"{path}: not an idx file (magic number {raw[:4].hex() or 'missing'})")
    found = int.from_bytes(raw[:4], "big")
    if magic is not None and found != magic:
        raise DataError(f"{path}: magic number {found}, expected {magic}")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: header of {ndim} dimensions is cut short ({len(raw)} bytes)")
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_TYPES[raw[2]])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise DataError(f"{path}: header says shape {shape} ({expected} bytes in all) but the file has {len(raw)} bytes")
    return np.frombuffer(raw, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _file(folder: Path, name: str) -> Path:
    for candidate in (folder / f"{name}.gz", folder / name):
        if candidate.exists():
            return candidate
    raise DataError(f"{folder}: neither {name}.gz nor {name} found")


def load_mnist(root: str | os.PathLike | None = None, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of one split, from ``<root>/mnist/``.

    Checks the magic numbers, that images are 28 x 28, that there is one
    label per image and that labels are digits.
    """
    check_choice("split", split, tuple(FILES))
    folder = find("mnist", root, hint="Put the four MNIST idx files (gzip or raw) in a folder named mnist/ there.")
    image_file, label_file = (_file(folder, name) for name in FILES[split])
    images = read_idx(image_file, magic=IMAGES_MAGIC)
    labels = read_idx(label_file, magic=LABELS_MAGIC)
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{image_file}: images must be (N, 28, 28), got {images.shape}")
    if labels.shape != (images.shape[0],):
        raise DataError(f"{label_file}: {labels.shape[0]} labels for {images.shape[0]} images in {image_file}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{label_file}: label {int(labels.max())} is not a digit")
    return images, labels.astype(np.int64)


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
        i = int(i) % len(self)
        x = self.images[i][None, None].astype(np.float64) / 255.0
        if self.encoding == "direct":
            return direct(x * self.scale, self.steps, dtype=self.dtype), int(self.labels[i])
        events = rate(x, self.steps, rng=np.random.default_rng((self.seed, i)), scale=self.scale, dtype=self.dtype)
        return events, int(self.labels[i])
