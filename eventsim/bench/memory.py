"""Peak resident memory of one measured part of a process (Linux ``/proc``, glibc).

The kernel keeps the process's peak resident set (``VmHWM``) and resets it to
the current one when ``5`` is written to ``/proc/self/clear_refs``. Before
the reset, glibc's malloc thresholds are fixed at 128 KiB and freed memory is
handed back (``mallopt``, ``malloc_trim``): otherwise glibc raises its
thresholds as it sees large blocks freed, keeps what earlier repetitions
freed resident, and the peak of the measured part would include it. So the
peak read afterwards is what was resident before the part (code, data,
weights) plus the part's own peak of live memory.

Elsewhere (no ``/proc``, or no glibc) the readings are None.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")
#: glibc's mallopt parameters (malloc.h) and the threshold the measurement fixes.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
FIXED_THRESHOLD = 128 * 1024


def _status_mb(field: str) -> float | None:
    try:
        with STATUS.open() as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def resident_mb() -> float | None:
    """The resident set now (``VmRSS``), in MiB."""
    return _status_mb("VmRSS")


def peak_resident_mb() -> float | None:
    """The peak resident set since the start or the last :func:`reset_peak` (``VmHWM``), in MiB."""
    return _status_mb("VmHWM")


def _fix_malloc() -> None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt, malloc_trim = libc.mallopt, libc.malloc_trim
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to fix
        return
    mallopt(M_MMAP_THRESHOLD, FIXED_THRESHOLD)
    mallopt(M_TRIM_THRESHOLD, FIXED_THRESHOLD)
    malloc_trim(0)


def reset_peak() -> float | None:
    """Fix the allocator, reset the peak resident set to the current one; returns that, in MiB.

    Call it right before the measured part and read :func:`peak_resident_mb` after it.
    """
    _fix_malloc()
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return None
    return resident_mb()
