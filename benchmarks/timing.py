"""What the kernel benchmarks share: the best of repeated timings, and a dense bptt delta to time adjoints on."""

from __future__ import annotations

import time
from typing import Callable

import numpy as np


def best_time(call: Callable[[], object], repeats: int, before: Callable[[], object] | None = None) -> float:
    """The shortest of ``repeats`` timed ``call()``, after one untimed (Numba compilation or cache load).

    ``before``, if given, runs untimed before every call (to refill inputs the call consumes).
    """
    times = []
    for i in range(repeats + 1):
        if before is not None:
            before()
        t0 = time.perf_counter()
        call()
        if i:  # the first call is the warm-up
            times.append(time.perf_counter() - t0)
    return min(times)


def dense_delta(rows: int, n: int, rng: np.random.Generator) -> np.ndarray:
    """``dL/dS * sigma'(U - theta)`` with the fast sigmoid of slope 25 at random potentials: dense, float32."""
    potential = rng.normal(0.5, 0.5, size=(rows, n))
    surrogate = 1.0 / (1.0 + 25.0 * np.abs(potential - 1.0)) ** 2
    return (rng.normal(0, 1e-3, size=(rows, n)) * surrogate).astype(np.float32)
