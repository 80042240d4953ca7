"""Where the data lives: an explicit argument, then ``EVENTSIM_DATA``, then a per-user folder.

The per-user folder is ``$XDG_CACHE_HOME/eventsim`` (``~/.cache/eventsim`` by
default); it is also where downloads and encoded-sample caches go when no
other folder is given. eventsim never bundles data.
"""

from __future__ import annotations

import os
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
