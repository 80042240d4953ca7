"""A minimal N-MNIST reader for the learning tests (the full reader lives in eventsim.datasets).

Reads the original 5-byte records (x, y, polarity bit + 23-bit microsecond
timestamp, big-endian), bins them into T steps over a fixed window
(``step = floor((t - t_first) / (window / T))``, binary bins, polarity as
channel) and returns ``(Events of batch 1, label)`` pairs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import eventsim as es


def data_root() -> Path:
    root = Path(os.environ.get("EVENTSIM_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    if not (root / "NMNIST" / "Train").is_dir():
        pytest.skip(f"N-MNIST subset not found under {root} (set EVENTSIM_DATA)")
    return root


def read_bin(path: Path) -> np.ndarray:
    raw = np.fromfile(path, np.uint8)
    assert raw.size % 5 == 0, f"{path}: {raw.size} bytes is not a whole number of 5-byte events"
    ev = raw.reshape(-1, 5).astype(np.int64)
    t = ((ev[:, 2] & 0x7F) << 16) | (ev[:, 3] << 8) | ev[:, 4]
    return np.stack([ev[:, 0], ev[:, 1], ev[:, 2] >> 7, t], axis=1)


def binned(path: Path, steps: int, window_us: int, dtype) -> es.Events:
    x, y, p, t = read_bin(path).T
    keep = (y < 34) & (x < 34)
    x, y, p, t = x[keep], y[keep], p[keep], t[keep]
    step = (t - t[0]) * steps // window_us
    inside = step < steps
    dense = np.zeros((1, steps, 2, 34, 34), dtype)
    dense[0, step[inside], p[inside], y[inside], x[inside]] = 1
    return es.Events.from_dense(dense)


def samples(count: int, steps: int, *, split: str = "Train", window_us: int = 300_000, dtype=np.float32) -> list:
    """The first ``count`` samples taking digits in turn (0, 1, ..., 9, 0, ...), files in name order."""
    root = data_root() / "NMNIST" / split
    files = [sorted((root / str(d)).glob("*.bin")) for d in range(10)]
    out = []
    for i in range(count):
        digit = i % 10
        out.append((binned(files[digit][i // 10], steps, window_us, dtype), digit))
    return out
