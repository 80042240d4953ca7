"""The input gradient of a convolution (``conv_transpose``) on the shapes of Lee's N-MNIST LeNet, on one core.

Workload: the bptt backward of Lee's LeNet5 for N-MNIST calls
:func:`eventsim.kernels.conv_transpose` once per sample with the delta of all
T steps. With a surrogate gradient that delta is dense (the straight-through
and fast-sigmoid surrogates never vanish), so the kernel performs
``T x Ho x Wo x Co x Ci x kh x kw`` multiply-adds per sample whatever the
spikes do: 7.2 M per step for conv2 (20 -> 50 channels, 5x5, padding 2,
17x17 maps), 1.2 M for conv1 (2 -> 20, 34x34; its input gradient is needed
only when a layer precedes it). The delta here is what the fast sigmoid
``1 / (1 + 25 |U - theta|)^2`` makes of random potentials, times a random
upstream gradient: no zero anywhere, as in training.

Printed: best time per sample of ``--repeats`` calls after a warm-up, the
useful multiply-adds per second, and that rate over the core's float32 add
throughput measured in the same run (:mod:`eventsim.bench.peak`: one add per
element of an L1-resident vector; a multiply-add is a multiplication and an
addition, so the ratio can exceed 1).

Run:  python benchmarks/conv_transpose.py [--steps 100] [--repeats 7]
"""

from __future__ import annotations

import os

# One core: the kernel does not thread itself, and nothing else should.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import platform

import numpy as np

from eventsim.bench import peak
from eventsim.kernels import conv_transpose
from timing import best_time, dense_delta

#: (name, input channels, output channels, map side): the LeNet's two convolutions, 5x5, padding 2, stride 1.
LAYERS = (("conv2", 20, 50, 17), ("conv1", 2, 20, 34))
KERNEL, PAD = 5, 2


def add_peak(repeats: int) -> float:
    """float32 adds per second of one core (:func:`eventsim.bench.peak.add_passes`)."""
    acc, x, adds = peak.add_vectors()
    return adds / best_time(lambda: peak.add_passes(acc, x, peak.PASSES), repeats)


def measure(ci: int, co: int, side: int, steps: int, repeats: int, rng: np.random.Generator) -> dict:
    weight = rng.normal(0, 0.1, size=(co, ci, KERNEL, KERNEL)).astype(np.float32)
    delta = dense_delta(steps, side * side * co, rng)
    grad_in = np.zeros((steps, side * side * ci), np.float32)
    hw = (side, side)

    def call():
        conv_transpose(grad_in, delta, weight, hw, hw, (1, 1), (PAD, PAD))

    seconds = best_time(call, repeats)
    macs = steps * side * side * weight.size
    return {"ms": seconds * 1e3, "gmacs": macs / seconds / 1e9, "macs": macs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    adds = add_peak(args.repeats)
    print(f"conv_transpose, T={args.steps}, float32, 1 thread, best of {args.repeats}; "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}; "
          f"add peak {adds / 1e9:.1f} G adds/s")
    print(f"{'layer':>6} {'shape':>22} {'M MACs':>8} {'ms/sample':>10} {'G MACs/s':>9} {'/ add peak':>11}")
    for name, ci, co, side in LAYERS:
        r = measure(ci, co, side, args.steps, args.repeats, rng)
        shape = f"{ci}->{co} {KERNEL}x{KERNEL} {side}x{side}"
        print(f"{name:>6} {shape:>22} {r['macs'] / 1e6:>8.1f} {r['ms']:>10.2f} {r['gmacs']:>9.1f} "
              f"{r['gmacs'] * 1e9 / adds:>11.2f}")


if __name__ == "__main__":
    main()
