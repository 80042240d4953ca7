"""What every dataset of ``(recording or events, label)`` items shares: the index of an item."""

from __future__ import annotations


def sample_index(i: int, count: int) -> int:
    """``i`` as an index into ``count`` samples, ``-count <= i < count`` (negative from the end), else IndexError."""
    if not -count <= i < count:
        raise IndexError(f"sample {i} is outside the {count} samples")
    return i % count
