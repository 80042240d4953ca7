"""Reading and binning the N-MNIST subset: eventsim against tonic, in the same run.

Both sides read every ``.bin`` file of ``<data>/NMNIST`` (1,100 files in the
subset) and bin it into T steps with counts (eventsim:
``read_nmnist`` + ``bin_events(values="count")``; tonic: ``read_mnist_file``
+ ``ToFrame(n_time_bins=T)``), best of a few repeats each, files in the OS
cache after the first pass. The frames are checked to be equal. Without tonic
only eventsim is timed.

Run:  python benchmarks/nmnist_reading.py [--data ../shared/data] [--steps 100] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from eventsim.datasets.folders import find
from eventsim.datasets.nmnist import read_nmnist
from eventsim.encoders.binning import bin_events


def best(fn, repeats: int) -> tuple[float, object]:
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="data folder (default: EVENTSIM_DATA, then the user folder)")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    files = sorted(Path(find("NMNIST", args.data)).glob("*/*/*.bin"))
    n_events = sum(read_nmnist(f).shape[0] for f in files)

    def ours():
        return [bin_events(read_nmnist(f), sensor=(34, 34), steps=args.steps, values="count") for f in files]

    t_ours, frames = best(ours, args.repeats)
    print(f"{len(files)} files, {n_events:,} events, T = {args.steps}")
    print(f"eventsim: {t_ours:.3f} s  {n_events / t_ours / 1e6:.2f} M events/s")
    try:
        import tonic.io
        import tonic.transforms
    except ImportError:
        print("tonic not installed (pip install -e '.[tonic]'): no comparison")
        return
    layout = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])
    to_frame = tonic.transforms.ToFrame(sensor_size=(34, 34, 2), n_time_bins=args.steps)

    def theirs():
        return [to_frame(tonic.io.read_mnist_file(str(f), dtype=layout)) for f in files]

    t_tonic, tonic_frames = best(theirs, args.repeats)
    for f, a, b in zip(files, frames, tonic_frames):
        assert np.array_equal(a.to_dense()[0], b), f"frames differ for {f}"
    print(f"tonic:    {t_tonic:.3f} s  {n_events / t_tonic / 1e6:.2f} M events/s")
    print(f"eventsim / tonic speed: {t_tonic / t_ours:.2f}x (frames equal on every file)")


if __name__ == "__main__":
    main()
