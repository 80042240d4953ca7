"""A dependency-free progress bar for long runs.

On a terminal the bar redraws one line in place; elsewhere (CI logs, files) it
writes a plain line at most every ``every`` seconds and at the end, so logs
stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class ProgressBar:
    """``label  done/total [=====>    ] 12.3 samples/s  key value ...``.

    Parameters
    ----------
    total : int
        Samples to process.
    label : str
        Printed first (e.g. "epoch 3/10").
    stream : text stream, "stderr" or None
        Where to write: a stream, ``"stderr"`` (the default: whatever
        ``sys.stderr`` is when the bar starts, so redirections made later
        still apply) or None (silent).
    every : float
        Seconds between lines when the stream is not a terminal.
    unit : str
        What is counted, for the rate (``samples/s``, ``MiB/s``).
    """

    WIDTH = 24

    def __init__(self, total: int, label: str = "", stream: TextIO | str | None = "stderr", every: float = 10.0,
                 unit: str = "samples") -> None:
        self.total = max(1, int(total))
        self.label = label
        self.stream = sys.stderr if stream == "stderr" else stream
        self.every = every
        self.unit = unit
        self.done = 0
        self.start = time.perf_counter()
        self._last = self.start
        self._tty = bool(stream is not None and getattr(stream, "isatty", lambda: False)())

    def rate(self) -> float:
        """Units counted per second so far."""
        elapsed = time.perf_counter() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int, **metrics: float) -> None:
        """Count ``n`` more units and show the metrics given."""
        self.done += n
        if self.stream is None:
            return
        now = time.perf_counter()
        if self._tty or now - self._last >= self.every:
            self._last = now
            self._write(self._line(metrics), final=False)

    def close(self, **metrics: float) -> None:
        """Write the final line."""
        if self.stream is not None:
            self._write(self._line(metrics), final=True)

    def _line(self, metrics: dict) -> str:
        filled = int(self.WIDTH * min(self.done, self.total) / self.total)
        bar = "=" * filled + (">" if filled < self.WIDTH else "") + " " * max(0, self.WIDTH - filled - 1)
        shown = "  ".join(f"{k} {v:.4g}" for k, v in metrics.items())
        return f"{self.label}  {self.done}/{self.total} [{bar}] {self.rate():.1f} {self.unit}/s  {shown}".rstrip()

    def _write(self, line: str, final: bool) -> None:
        if self._tty:
            self.stream.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()
