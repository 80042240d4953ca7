"""The run-folder lock: one process at a time writes a run folder.

Two trainings into the same ``--out`` would interleave their checkpoints and
logs, and one run would be silently lost. Every command that writes a run
folder (``train``, fresh or resumed, ``eval``'s report, ``convert``) first
takes an exclusive lock on ``<folder>/.lock`` and holds it until it ends; a
second process gets :class:`~eventsim.errors.RunLockError` naming the
holder (pid, host, command, since when), which the command line prints as
one line with exit status 2.

The lock is ``flock(2)`` on the lock file, not the file's existence: the
kernel drops it when the holder's last descriptor closes, on any exit,
SIGKILL included, so a dead holder never leaves a stale lock and nothing has
to guess whether a recorded pid is still alive. The file's contents (a JSON
object with the holder's pid, host, command and start time) are only what
the error message shows; the file itself stays in the folder (deleting it
would let a process lock a name that no longer exists while another creates
a new one). POSIX only (``fcntl``).

On NFS, Linux clients emulate ``flock`` with POSIX byte-range locks handled
by the server (the lock manager in NFSv3, the protocol itself in NFSv4), so
processes on different hosts exclude each other, unless the share is
mounted with ``nolock`` (then the lock is local to each host). A host that
dies holding the lock keeps it until the server expires its lease (about 90
s in NFSv4).

Under the lock no other process can be writing the folder, so the holder
may remove what atomic writes killed midway left there
(:func:`eventsim.atomic.remove_temp_files`).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import stat
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from eventsim.errors import RunLockError

LOCK_FILE = ".lock"
#: How long a process that finds the folder locked waits for the holder to record itself (seconds).
_HOLDER_WAIT = 1.0


@contextmanager
def run_folder_lock(folder: str | os.PathLike) -> Iterator[Path]:
    """Hold the exclusive lock of the run folder ``folder`` (created if needed) while the block runs.

    Raises :class:`RunLockError` at once, without waiting, when another
    process holds it. The lock is per open file, so a second ``with`` on the
    same folder inside one process is refused too: one writer, whatever its
    process.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd = _open_lock_file(folder / LOCK_FILE)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLockError(
                f"run folder {folder} is in use by {_holder(fd)}; wait for it to end, or choose another folder"
            ) from None
        try:
            _record_holder(fd)
            yield folder
        finally:
            os.ftruncate(fd, 0)  # an unheld lock names nobody
    finally:
        os.close(fd)  # releases the lock


def _open_lock_file(path: Path) -> int:
    """Open (or create) the lock file, which must be a regular file of its own.

    A run folder may come from someone else: a ``.lock`` that is a symbolic
    link would have the lock's writes truncate whatever it points to, so
    links are not followed (``O_NOFOLLOW``) and anything but a regular file
    is refused.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if exc.errno != errno.ELOOP:
            raise
        raise RunLockError(f"{path} is a symbolic link, not a lock file; remove it") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise RunLockError(f"{path} is not a regular file, so it cannot be the folder's lock; remove it")
    return fd


def _record_holder(fd: int) -> None:
    argv = [Path(sys.argv[0]).name, *sys.argv[1:]] if sys.argv and sys.argv[0] else ["python"]
    holder = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": _clipped(" ".join(argv)),
        "since": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)


def _clipped(text: str, most: int = 200) -> str:
    """``text`` on one line and at most ``most`` characters: it goes into a one-line error message."""
    text = " ".join(text.split())
    return text if len(text) <= most else text[: most - 3] + "..."


def _holder(fd: int) -> str:
    """Who holds the lock, as its file says; the holder writes it just after locking, so wait a moment for it."""
    deadline = time.monotonic() + _HOLDER_WAIT
    while True:
        raw = os.pread(fd, 4096, 0)
        if raw or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    try:
        h = json.loads(raw)
        pid, host, since, command = (h[k] for k in ("pid", "host", "since", "command"))
        if type(pid) is not int or not all(isinstance(v, str) for v in (host, since, command)):
            raise TypeError
    except (ValueError, TypeError, KeyError, RecursionError):  # written by something else, cut short, or nested
        return "another process (its lock file does not say which)"
    return _clipped(f"pid {pid} on {host} since {since} ({command})", 400)
