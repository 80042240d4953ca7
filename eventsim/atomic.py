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
import re
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Iterator


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


def remove_temp_files(folder: str | os.PathLike, targets: Iterable[str]) -> list[Path]:
    """Remove what atomic writes to the files ``targets`` (names in ``folder``) left behind; return it.

    A process killed during a write (SIGKILL, power loss) leaves its
    temporary file ``.<target>.<uuid4 hex>.tmp`` behind. Only the caller can
    know that no other process is writing those targets right now, so only a
    folder it holds exclusively (a locked run folder, :mod:`eventsim.lock`)
    may be cleaned; never a shared one such as the data cache.
    """
    names = re.compile("|".join(rf"\.{re.escape(t)}\.[0-9a-f]{{32}}\.tmp" for t in targets))
    removed = []
    for path in Path(folder).iterdir():
        if names.fullmatch(path.name) and not path.is_dir():
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


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
