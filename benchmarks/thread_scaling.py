"""What two threads gain on this machine for work that shares nothing: the ceiling of any 1 -> 2 thread speed-up.

Two workloads, each run once on one thread and then as two copies at once
on two threads (the kernels release the GIL; the copies share no data):

- ``adds``: a float32 add loop over 4 KiB held in L1, compute only;
- ``neuron window``: :func:`eventsim.kernels.flagged_lif_window` on the
  first LIF layer of Lee's N-MNIST LeNet (23,120 neurons, currents in a
  quarter of the blocks, as ``neuron_window.py`` draws them), which reads
  and writes a window of currents far larger than the core's caches.

Printed per workload: the time on one thread, the slower of the two
concurrent copies, and the speed-up ``2 x one / slower``, best of
``--repeats``. A speed-up below 2 for the add loop is the machine (two
vCPUs that are not two whole cores); below that again for the neuron
window, the memory the two cores share. No program's threads scale better
than these on the same machine.

Run:  python benchmarks/thread_scaling.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import threading
import time
from typing import Callable

import numpy as np
from numba import njit

from eventsim.kernels import flagged_lif_window
from neuron_window import CHANNELS, LEAK, SHIFT, THETA, currents

STEPS = 300
ADDS = 400_000_000
#: What a workload hands back: (refill, call), the first run untimed before each timed call of the second.
Workload = tuple[Callable[[], object], Callable[[], object]]


@njit(nogil=True, cache=True)
def _adds(n: int) -> float:
    """``n`` float32 additions into 1,024 sums held in L1."""
    ones = np.ones(1024, np.float32)
    sums = np.zeros(1024, np.float32)
    for _ in range(n // 1024):
        for j in range(1024):
            sums[j] += ones[j]
    return sums[0]


def add_loop() -> Workload:
    return (lambda: None), (lambda: _adds(ADDS))


def neuron_window(rng: np.random.Generator) -> Workload:
    """``(refill, call)``: the window's buffers refilled untimed, then one call of the kernel."""
    cur, flags = currents(STEPS, 0.05, 3.0, 0.25, rng)
    theta = np.full(CHANNELS, THETA, np.float32)
    buf, buf_flags, v = np.empty_like(cur), np.empty_like(flags), np.zeros(cur.shape[1], np.float32)

    def refill():
        buf[:] = cur
        buf_flags[:] = flags
        v[:] = 0

    def call():
        flagged_lif_window(v, buf, buf_flags, SHIFT, theta, LEAK, False, np.float32(0), False, None, None,
                           np.float32(1))

    return refill, call


def one_and_two(make: Callable[[], Workload], repeats: int) -> tuple[float, float]:
    """Best one-thread time and best time of the slower of two concurrent copies."""
    copies = [make() for _ in range(2)]
    for refill, call in copies:  # compile or load from the cache
        refill()
        call()
    one = two = float("inf")
    for _ in range(repeats):
        refill, call = copies[0]
        refill()
        start = time.perf_counter()
        call()
        one = min(one, time.perf_counter() - start)
        for refill, _ in copies:
            refill()
        seconds = [0.0, 0.0]

        def run(i: int) -> None:
            begin = time.perf_counter()
            copies[i][1]()
            seconds[i] = time.perf_counter() - begin

        threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        two = min(two, max(seconds))
    return one, two


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed rounds; the best is kept (default 5)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{platform.processor() or platform.machine()}, best of {args.repeats}")
    for name, make in (("adds", add_loop), ("neuron window", lambda: neuron_window(rng))):
        one, two = one_and_two(make, args.repeats)
        print(f"  {name:14s} 1 thread {one * 1e3:7.1f} ms, 2 at once {two * 1e3:7.1f} ms: {2 * one / two:.2f}x")


if __name__ == "__main__":
    main()
