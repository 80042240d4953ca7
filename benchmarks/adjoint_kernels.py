"""The input gradients of fc1 (``linear_transpose``) and of the two pools (``pool_transpose``) of Lee's N-MNIST LeNet, on one core.

Workload: the bptt backward of Lee's LeNet5 for N-MNIST calls both kernels
with the delta of a run of K steps. fc1 (3200 -> 200): ``K x 200 x 3200``
multiply-adds, all of W read per frame; the pools (2x2, stride 2,
channel-last): 34x34x20 and 17x17x50 inputs, one multiply-add per input
value and frame. The deltas are what the fast sigmoid ``1 / (1 + 25 |U -
theta|)^2`` makes of random potentials, times a random upstream gradient:
no zero, as in training.

Each kernel is timed against the loop it replaced, written below as the
baseline (same additions in the same order, so the same bits; the script
checks that), in the same run. Printed: best time per call of
``--repeats`` calls after a warm-up, multiply-adds per second, and the
baseline's time over the kernel's.

Run:  python benchmarks/adjoint_kernels.py [--frames 50] [--repeats 9]
"""

from __future__ import annotations

import os

# One core: the kernels do not thread themselves, and nothing else should.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import platform

import numpy as np
from numba import njit

from eventsim.kernels import linear_transpose, pool_transpose
from timing import best_time, dense_delta

#: (name, channels, input side): the LeNet's two 2x2 stride-2 average pools.
POOLS = (("pool1", 20, 34), ("pool2", 50, 17))
#: fc1's (outputs, inputs).
FC1 = (200, 3200)


@njit(cache=True, nogil=True)
def baseline_linear_transpose(grad_in, delta, weight):
    """The previous loop: frame, output, input; W read whole for every frame."""
    for k in range(delta.shape[0]):
        for o in range(delta.shape[1]):
            d = delta[k, o]
            if d == 0:
                continue
            for i in range(weight.shape[1]):
                grad_in[k, i] += d * weight[o, i]


@njit(cache=True, nogil=True)
def baseline_pool_transpose(grad_in, delta, weight, channels, in_hw, out_hw, kernel, stride):
    """The previous loop: frame, window, position in the window, channel."""
    w = in_hw[1]
    ho, wo = out_hw
    kh, kw = kernel
    sh, sw = stride
    for k in range(delta.shape[0]):
        for oy in range(ho):
            for ox in range(wo):
                d_at = (oy * wo + ox) * channels
                for i in range(kh):
                    for j in range(kw):
                        in_at = ((oy * sh + i) * w + ox * sw + j) * channels
                        for c in range(channels):
                            grad_in[k, in_at + c] += weight * delta[k, d_at + c]


def compare(kernel, baseline, grad_shape: tuple[int, int], args: tuple, macs: int, repeats: int) -> dict:
    """Time both on zeroed gradients (as the caller hands them), after checking that they give the same bits."""
    ours, theirs = np.zeros(grad_shape, np.float32), np.zeros(grad_shape, np.float32)
    kernel(ours, *args)
    baseline(theirs, *args)
    if not np.array_equal(ours.view(np.uint32), theirs.view(np.uint32)):
        raise SystemExit(f"{kernel.__name__}: not the baseline's bits")
    seconds = best_time(lambda: kernel(ours, *args), repeats)
    base = best_time(lambda: baseline(theirs, *args), repeats)
    return {"ms": seconds * 1e3, "gmacs": macs / seconds / 1e9, "base_ms": base * 1e3, "macs": macs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    k = args.frames
    print(f"adjoint kernels, K={k} frames, float32, 1 thread, best of {args.repeats}; "
          f"{platform.processor() or platform.machine()}, numpy {np.__version__}")
    print(f"{'layer':>6} {'shape':>16} {'M MACs':>8} {'ms/call':>8} {'G MACs/s':>9} {'baseline ms':>12} {'speed-up':>9}")
    rows = []
    n_out, n_in = FC1
    weight = rng.normal(0, 0.1, size=FC1).astype(np.float32)
    r = compare(linear_transpose, baseline_linear_transpose, (k, n_in),
                (dense_delta(k, n_out, rng), weight), k * n_out * n_in, args.repeats)
    rows.append(("fc1", f"{n_in}->{n_out}", r))
    for name, c, side in POOLS:
        half = side // 2
        pool_args = (dense_delta(k, half * half * c, rng), np.float32(0.25), c, (side, side), (half, half),
                     (2, 2), (2, 2))
        r = compare(pool_transpose, baseline_pool_transpose, (k, side * side * c), pool_args,
                    k * side * side * c, args.repeats)
        rows.append((name, f"{side}x{side}x{c} 2x2/2", r))
    for name, shape, r in rows:
        print(f"{name:>6} {shape:>16} {r['macs'] / 1e6:>8.2f} {r['ms']:>8.3f} {r['gmacs']:>9.2f} "
              f"{r['base_ms']:>12.3f} {r['base_ms'] / r['ms']:>8.2f}x")


if __name__ == "__main__":
    main()
