"""The data beside the repository for tests (../shared/data, or EVENTSIM_DATA), and a few N-MNIST samples binned.

Tests that need the real data skip with a clear reason when it is missing
(``EVENTSIM_DATA`` unset and no ../shared/data beside the repository).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from eventsim.datasets import NMNIST
from eventsim.encoders.binning import bin_events


def data_root() -> Path:
    root = Path(os.environ.get("EVENTSIM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (root / "NMNIST" / "Train").is_dir():
        pytest.skip(f"N-MNIST subset not found under {root} (set EVENTSIM_DATA)")
    return root


def samples(count: int, steps: int, *, split: str = "train", window_us: int = 300_000, dtype=np.float32) -> list:
    """The first ``count`` samples taking digits in turn (0, 1, ..., 9, 0, ...), each binned into
    ``steps`` binary steps over the first ``window_us`` of its recording."""
    data = NMNIST(data_root(), split)
    first = [int(np.flatnonzero(data.labels == d)[0]) for d in range(10)]
    out = []
    for i in range(count):
        digit = i % 10
        recording, label = data[first[digit] + i // 10]
        events = bin_events(recording, sensor=(34, 34), steps=steps, step_us=window_us // steps,
                            start_us=int(recording["t"][0]), dtype=dtype)
        out.append((events, label))
    return out
