"""Downloading the original releases of N-MNIST and MNIST into the layout the readers look for.

Where: ``<folder>/NMNIST/Train|Test/<digit>/*.bin`` and ``<folder>/mnist/*.gz``,
``folder`` being the one given (``--data``) or the user folder
(:func:`eventsim.datasets.folders.user_folder`).

What: N-MNIST's two zip archives from the addresses and MD5 checksums that
tonic's ``tonic.datasets.NMNIST`` class states (the release on Mendeley Data);
MNIST's four gzip files from the PyTorch project's mirror of the original
files, checked against their SHA-256 (the published checksums of the original
files of Y. LeCun's site).

How: every file is streamed into a temporary file and hashed on the way; only
a file whose checksum matches is renamed into place (:mod:`eventsim.atomic`),
so a failed or interrupted download leaves nothing under a reader's name. An
archive is untrusted: each member is checked before anything is extracted
(see docs/safety.md), extracted into a temporary folder beside the target,
which is renamed into place once complete.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import urllib.error
import urllib.request
import uuid
import zipfile
from pathlib import Path, PurePosixPath
from typing import TextIO

from eventsim.atomic import atomic_path
from eventsim.datasets.folders import user_folder
from eventsim.errors import DataError, check_choice
from eventsim.extras import install_command
from eventsim.limits import check_size
from eventsim.progress import progress_bar
from eventsim.reading import CHUNK

DATASETS = ("nmnist", "mnist")
#: How to get a dataset that is not found, ending every reader's error (needs internet; N-MNIST the tonic extra).
DOWNLOAD_HINT = "eventsim train {dataset} --download, or eventsim data download {dataset}"
#: Seconds a connection or a read may stall before the download is given up.
TIMEOUT_S = 60
MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
#: SHA-256 of the original MNIST files (identical on the mirror).
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
#: Zip compression methods a member may use: bzip2 and lzma are never used by the releases.
ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


def fetch(url: str, path: Path, *, algorithm: str, checksum: str,
          progress: TextIO | str | None = "stderr") -> None:
    """Download ``url`` to ``path`` if its ``algorithm`` digest (``"sha256"``, ``"md5"``) is ``checksum``.

    The size the server announces and the bytes actually received are both
    held to the allocation limit (:func:`eventsim.limits.check_size`). A
    network error or a wrong checksum raises :class:`DataError` naming the
    file, and leaves nothing at ``path``.
    """
    digest = hashlib.new(algorithm)
    name = path.name
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, atomic_path(path) as tmp, \
                open(tmp, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            check_size(total, f"{url}: the download", DataError)
            received = 0
            with progress_bar(max(1, total >> 20), name, progress, unit="MiB") as bar:
                while chunk := response.read(CHUNK):
                    received += len(chunk)
                    check_size(received, f"{url}: the download", DataError)
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update((received >> 20) - bar.n)
            out.flush()
            if digest.hexdigest() != checksum.lower():
                raise DataError(f"{name} from {url}: {algorithm.upper().replace('SHA256', 'SHA-256')} "
                                f"{digest.hexdigest()} is not the release's {checksum}; the download is "
                                "damaged or not the original, nothing was kept (try again)")
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DataError(f"downloading {name} from {url} failed ({reason}); check the connection and try again") \
            from None


def _checked_members(archive: zipfile.ZipFile, source: Path, top: str) -> list[zipfile.ZipInfo]:
    """The archive's members, refused (DataError) unless every one is a file or folder under ``top``."""
    members = archive.infolist()
    for info in members:
        where = f"{source}: member {info.filename!r}"
        parts = PurePosixPath(info.filename.replace("\\", "/")).parts
        if info.filename.startswith(("/", "\\")) or ".." in parts or not parts or parts[0] != top:
            raise DataError(f"{where} would be written outside {top}/; refusing the archive")
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise DataError(f"{where} is a link; refusing the archive")
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise DataError(f"{where} is a special file (not a file or folder); refusing the archive")
        if info.compress_type not in ZIP_METHODS:
            raise DataError(f"{where} uses compression method {info.compress_type}; only stored and deflate "
                            "are accepted")
    check_size(sum(info.file_size for info in members), f"{source}: the extracted archive", DataError)
    return members


def extract_zip(source: Path, target: Path, top: str) -> None:
    """Extract the untrusted zip ``source``, whose members all lie under ``top/``, to the folder ``target``.

    Every member is checked first (no absolute paths, no ``..``, nothing
    outside ``top/``, no links or special files, stored or deflate only, the
    total size under the allocation limit); the members are written into a
    temporary folder beside ``target`` that becomes ``target`` only once all
    are written. A member holding more bytes than it declares is an error.
    """
    staging = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        with zipfile.ZipFile(source) as archive:
            for info in _checked_members(archive, source, top):
                dest = staging.joinpath(*PurePosixPath(info.filename).parts[1:])
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                with archive.open(info) as member, open(dest, "wb") as out:
                    # zipfile stops at the declared size and checks the CRC, so a member cannot run on.
                    shutil.copyfileobj(member, out, CHUNK)
        if target.exists():
            _replace_folder(staging, target)
        else:
            staging.replace(target)
    except zipfile.BadZipFile as exc:
        raise DataError(f"{source}: not a zip archive or damaged ({exc})") from None
    finally:
        if staging.exists():
            shutil.rmtree(staging)


def _replace_folder(staging: Path, target: Path) -> None:
    """Put ``staging`` at ``target``, which holds an incomplete copy (the readers found no data there)."""
    old = target.parent / f".{target.name}.{uuid.uuid4().hex}.old"
    target.replace(old)
    staging.replace(target)
    shutil.rmtree(old)


def download_nmnist(folder: Path, split: str, progress: TextIO | str | None = "stderr") -> None:
    """Download one split of N-MNIST (the release tonic names) into ``folder/NMNIST/<Train|Test>``."""
    try:
        import tonic  # optional extra: its dataset class states the release's addresses and checksums
    except ImportError:
        raise DataError(f"downloading N-MNIST needs the tonic extra: {install_command('tonic')}; "
                        f"or put the original Train/ and Test/ folders under {folder / 'NMNIST'}") from None
    url, filename, md5, top = (getattr(tonic.datasets.NMNIST, f"{split}_{what}") for what in ("url", "filename", "md5", "folder"))
    archive = folder / "NMNIST" / filename
    fetch(url, archive, algorithm="md5", checksum=md5, progress=progress)
    try:
        extract_zip(archive, folder / "NMNIST" / top, top)
    finally:
        archive.unlink(missing_ok=True)  # 1 GB that the extracted folder makes useless


def download_mnist(folder: Path, progress: TextIO | str | None = "stderr") -> None:
    """Download the four MNIST files into ``folder/mnist``."""
    for name, sha256 in MNIST_SHA256.items():
        fetch(MNIST_MIRROR + name, folder / "mnist" / name, algorithm="sha256", checksum=sha256, progress=progress)


def download(dataset: str, root: str | os.PathLike | None = None,
             progress: TextIO | str | None = "stderr") -> Path:
    """Download ``dataset`` (``"nmnist"``, both splits, or ``"mnist"``) into ``root`` or the user folder; return it."""
    check_choice("dataset", dataset, DATASETS)
    folder = Path(root) if root is not None else user_folder()
    if dataset == "mnist":
        download_mnist(folder, progress)
    else:
        for split in ("train", "test"):
            download_nmnist(folder, split, progress)
    return folder
