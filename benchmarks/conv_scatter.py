"""Event-driven convolution against its dense twin, on one core.

Workload (issue: first layer of Lee's N-MNIST LeNet): 2 -> 20 channels, 5x5
kernel, padding 2, 34x34 input, T steps of unit spikes at a given density. The
event kernel scatters every step's events into the currents of all T steps;
the dense twin (im2col + one BLAS matrix product) computes the same currents
from the dense input. Both run on one thread in the same process, the ratio is
measured here and now, and the two outputs are checked to be equal.

Run:  python benchmarks/conv_scatter.py [--steps 100] [--repeats 7]
"""

from __future__ import annotations

import os

# One core for both sides: BLAS must not use more threads than the kernel.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import platform

import numpy as np

from eventsim.dense import conv2d
from eventsim.events import Events
from eventsim.kernels import conv_scatter
from timing import best_time

C_IN, C_OUT, K, PAD, SIZE = 2, 20, 5, 2, 34


def measure(density: float, steps: int, repeats: int, rng: np.random.Generator) -> dict:
    dense_in = (rng.random((steps, C_IN, SIZE, SIZE)) < density).astype(np.float32)
    events = Events.from_dense(dense_in[None])
    weight = rng.normal(size=(C_OUT, C_IN, K, K)).astype(np.float32)
    weight_scatter = np.ascontiguousarray(weight.transpose(1, 2, 3, 0))
    n_out = SIZE * SIZE * C_OUT
    result = {}

    def event_path():
        cur = np.zeros((steps, n_out), np.float32)
        result["synops"] = conv_scatter(cur, events.indptr, events.index, events.value, weight_scatter,
                                        (SIZE, SIZE), (SIZE, SIZE), (1, 1), (PAD, PAD))
        result["event"] = cur

    def dense_path():
        result["dense"] = conv2d(dense_in, weight, stride=(1, 1), padding=(PAD, PAD))

    t_event = best_time(event_path, repeats)
    t_dense = best_time(dense_path, repeats)
    event_chw = result["event"].reshape(steps, SIZE * SIZE, C_OUT).transpose(0, 2, 1).reshape(result["dense"].shape)
    np.testing.assert_allclose(event_chw, result["dense"], rtol=1e-4, atol=1e-4)
    return {
        "density": density,
        "events": events.n_events,
        "synops": result["synops"],
        "event_ms": t_event * 1e3,
        "dense_ms": t_dense * 1e3,
        "gsynops_per_s": result["synops"] / t_event / 1e9,
        "speedup": t_dense / t_event,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"conv {C_IN}->{C_OUT} {K}x{K} pad {PAD} on {SIZE}x{SIZE}, T={args.steps}, float32, 1 thread, "
          f"best of {args.repeats}; {platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"{'density':>8} {'events':>8} {'SynOps':>11} {'event ms':>9} {'dense ms':>9} {'GSynOps/s':>10} {'speed-up':>9}")
    for density in (0.005, 0.02, 0.10):
        r = measure(density, args.steps, args.repeats, rng)
        print(f"{r['density']:>8.1%} {r['events']:>8d} {r['synops']:>11,d} {r['event_ms']:>9.2f} "
              f"{r['dense_ms']:>9.2f} {r['gsynops_per_s']:>10.2f} {r['speedup']:>8.1f}x")


if __name__ == "__main__":
    main()
