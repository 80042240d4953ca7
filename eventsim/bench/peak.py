"""The core's float32 add throughput: the yardstick of the event scatter.

An event scatter is a stream of short contiguous vector adds (``cur[row :
row + C] += w[tap : tap + C]``), so the fair limit to compare it with is the
same operation at its best: two float32 vectors resident in the L1 cache,
one added into the other again and again, vectorised by LLVM. One add is
one SynOp's worth of arithmetic; a scatter reaching a fraction f of this
throughput spends (1 - f) of its time on anything else (index arithmetic,
bounds, cache misses).
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: 2 x 4 KiB: both vectors stay in any L1 data cache.
VECTOR = 1024
#: 2^20 passes: about 1e9 adds, tenths of a second on a current core.
PASSES = 1 << 20


@njit(cache=True, nogil=True)
def add_passes(acc: np.ndarray, x: np.ndarray, passes: int) -> None:
    """``acc += x``, ``passes`` times, element by element (each pass a contiguous vector add)."""
    for _ in range(passes):
        for i in range(acc.shape[0]):
            acc[i] += x[i]


def add_vectors(passes: int = PASSES, size: int = VECTOR) -> tuple[np.ndarray, np.ndarray, int]:
    """The two float32 vectors of the micro-benchmark and the number of adds one run performs.

    ``x`` holds small dyadic values so ``acc`` stays finite and exact however long it runs.
    """
    acc = np.zeros(size, np.float32)
    x = np.full(size, 2.0**-20, np.float32)
    return acc, x, passes * size
