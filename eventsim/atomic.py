"""Atomic file writes: a file appears whole under its name, or not at all.

Every writer (checkpoints, caches, run reports, metrics logs, figures) writes
into a temporary file beside the target, which is synced to disk and then
renamed onto the target (``os.replace``, atomic on POSIX and Windows); the
folder is synced too, so the rename survives a crash. On any error, a
KeyboardInterrupt included, the temporary file is removed and whatever was
at the target before is untouched (docs/semantics.md, "Bad input").
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; on success it replaces ``path``.

    The caller creates and fills the temporary file inside the ``with``
    block (any library that writes to a path will do); the parent folder is
    created if needed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX; Windows cannot open folders)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
