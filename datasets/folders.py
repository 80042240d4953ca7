"""Where the data lives: an explicit argument, then ``EVENTSIM_DATA``, then a per-user folder.

The per-user folder is ``$XDG_CACHE_HOME/eventsim`` (``~/.cache/eventsim`` by
default); it is also where downloads go when no other folder is given, and
its ``cache`` folder holds the encoded-sample caches (``eventsim data cache``
shows its size, ``--clear`` removes it). eventsim never bundles data.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from eventsim.errors import DataError

ENV = "EVENTSIM_DATA"


def user_folder() -> Path:
    """The per-user data and cache folder."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "eventsim"


def candidates(root: str | os.PathLike | None = None) -> list[tuple[str, Path]]:
    """The folders searched, in order, each with where it came from."""
    if root is not None:
        return [("argument", Path(root))]
    found = []
    if os.environ.get(ENV):
        found.append((ENV, Path(os.environ[ENV])))
    found.append(("user folder", user_folder()))
    return found


def find(relative: str, root: str | os.PathLike | None = None, *, hint: str = "") -> Path:
    """The first candidate folder holding ``relative`` (a file or folder), else a :class:`DataError`.

    The error lists every folder searched and ends with ``hint`` (how to get
    the data).
    """
    searched = candidates(root)
    for _, folder in searched:
        if (folder / relative).exists():
            return folder / relative
    where = "; ".join(f"{folder / relative} ({origin})" for origin, folder in searched)
    raise DataError(f"{relative} not found; looked in: {where}. {hint}".rstrip())


def cache_folder() -> Path:
    """The encoded-sample cache (:mod:`eventsim.datasets.cache`): ``<user folder>/cache``.

    Everything in it can be rebuilt from the data, so it may be removed at any time.
    """
    return user_folder() / "cache"


def folder_size(folder: Path) -> tuple[int, int]:
    """The number of files under ``folder`` and their total size in bytes; (0, 0) when it does not exist."""
    files = [path for path in folder.rglob("*") if path.is_file()] if folder.is_dir() else []
    return len(files), sum(path.stat().st_size for path in files)


def clear_cache() -> tuple[int, int]:
    """Remove :func:`cache_folder` with everything in it; return the files and bytes it held."""
    folder = cache_folder()
    held = folder_size(folder)
    if folder.is_dir():
        shutil.rmtree(folder)
    return held
