"""The neuron window kernels on the first LIF layer of Lee's N-MNIST LeNet, on one core.

Workload: :func:`eventsim.kernels.plain_lif_window` and
:func:`eventsim.kernels.flagged_lif_window` (``clear``, the immediate hard
reset, float32) over a window of ``--steps`` steps of the 34 x 34 x 20 =
23,120 channel-last neurons that follow conv1. A share of the currents is
nonzero (``--density``, 5 % by default), drawn uniformly from ``[0, scale)``;
the scales give firing shares from none to about a tenth of the neurons
per step. The flagged kernel receives the flags of the 64-neuron blocks
that hold a current; for it the currents are drawn in a fixed quarter of
the blocks only (as a sparse layer has them), so that the others are skipped.

Printed per kernel and scale: the share of neurons that fire per step and
the best time of ``--repeats`` calls after a warm-up, in ns per neuron and
step (the window's buffer is refilled before each call, untimed: the kernel
zeroes it).

Run:  python benchmarks/neuron_window.py [--steps 181] [--repeats 7]
"""

from __future__ import annotations

import os

# One core: the kernel does not thread itself, and nothing else should.
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import platform

import numpy as np

from eventsim.kernels import flagged_lif_window, plain_lif_window
from timing import best_time

POSITIONS, CHANNELS = 34 * 34, 20
#: log2 of the flag blocks (eventsim.stages.FLAG_SHIFT).
SHIFT = 6
LEAK, THETA = np.float32(0.95), 1.0
SCALES = (0.2, 1.0, 3.0, 8.0)


def currents(steps: int, density: float, scale: float, block_share: float, rng: np.random.Generator):
    """A (steps, N) float32 window with about ``density`` of it nonzero, in ``block_share`` of the blocks; its flags.

    The same blocks at every step, as the active region of a recording stays where it is.
    """
    n = POSITIONS * CHANNELS
    blocks = (n + (1 << SHIFT) - 1) >> SHIFT
    in_block = np.repeat(rng.random((1, blocks)) < block_share, 1 << SHIFT, axis=1)[:, :n]
    nonzero = in_block & (rng.random((steps, n)) < density / block_share)
    cur = np.where(nonzero, rng.random((steps, n)) * scale, 0).astype(np.float32)
    reached = np.zeros((steps, blocks << SHIFT), bool)
    reached[:, :n] = nonzero
    return cur, reached.reshape(steps, blocks, -1).any(axis=2).astype(np.uint8)


def measure(flagged: bool, steps: int, density: float, scale: float, repeats: int, rng: np.random.Generator) -> dict:
    cur, flags = currents(steps, density, scale, 0.25 if flagged else 1.0, rng)
    n = cur.shape[1]
    theta = np.full(CHANNELS, THETA, np.float32)
    buf, buf_flags = np.empty_like(cur), np.empty_like(flags)
    state = [np.zeros(n, np.float32) for _ in range(3)]  # potential, counts, traces
    out = {}

    def refill():
        buf[:] = cur
        buf_flags[:] = flags
        for a in state:
            a[:] = 0

    def call():
        v, counts, traces = state
        if flagged:
            out["events"] = flagged_lif_window(v, buf, buf_flags, SHIFT, theta, LEAK, False, np.float32(0), False,
                                               counts, traces, np.float32(1))[1].shape[0]
        else:
            out["events"] = plain_lif_window(v, buf, theta, LEAK, False, np.float32(0), False, counts, traces,
                                             np.float32(1), None, True)[1].shape[0]

    seconds = best_time(call, repeats, before=refill)
    return {"ns": seconds / cur.size * 1e9, "firing": out["events"] / cur.size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=181, help="steps of the window (default 181)")
    parser.add_argument("--density", type=float, default=0.05, help="share of nonzero currents (default 0.05)")
    parser.add_argument("--repeats", type=int, default=7, help="timed calls; the best is kept (default 7)")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print(f"{platform.processor() or platform.machine()}, {POSITIONS * CHANNELS} neurons, {args.steps} steps, "
          f"{args.density:.0%} of the currents nonzero, float32, best of {args.repeats}")
    for flagged in (False, True):
        name = "flagged_lif_window (currents in 1/4 of the blocks)" if flagged else "plain_lif_window"
        print(name)
        for scale in SCALES:
            r = measure(flagged, args.steps, args.density, scale, args.repeats, rng)
            print(f"  scale {scale:4.1f}: {r['firing']:7.2%} firing per step, {r['ns']:.3f} ns per neuron and step")


if __name__ == "__main__":
    main()
