"""Progress bars for long runs: tqdm's, counting samples.

:func:`progress_bar` turns the ``progress=`` option every long-running
function takes (a text stream, ``"stderr"`` or None) into a tqdm bar; through
``tqdm.auto`` a notebook gets tqdm's widget instead of text.
"""

from __future__ import annotations

import sys
from typing import TextIO

from tqdm.auto import tqdm

# tqdm's own layout with the rate always in samples per second (its default turns
# into seconds per sample below one sample a second, which hides the figure runs compare).
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_noinv_fmt}{postfix}]"


def progress_bar(total: int, label: str, progress: TextIO | str | None, *, initial: int = 0,
                 unit: str = "samples") -> tqdm:
    """A tqdm bar over ``total`` samples (or other ``unit``s), ``initial`` of them already done.

    Parameters
    ----------
    total : int
        Samples to process.
    label : str
        Shown first (e.g. "epoch 3/10").
    progress : text stream, "stderr" or None
        Where the bar goes: a stream, ``"stderr"`` (whatever ``sys.stderr``
        is when the bar starts, so redirections made later still apply; in a
        notebook, the widget) or None (silent: a disabled bar).
    initial : int
        Samples already done (a resumed epoch); the rate counts only the new ones.
    unit : str
        What is counted ("samples"; a download counts "MiB").

    Notes
    -----
    Callers use the bar as a context manager, so that an interrupted run ends
    the bar's line before its error message, and show their figures with
    ``bar.set_postfix({...}, refresh=False)`` before ``bar.update(n)`` (the
    final ones before the block ends).
    tqdm redraws at most every 0.1 s; ``TQDM_MININTERVAL=10`` in the
    environment makes a log file get a line every 10 s instead.
    """
    stream = sys.stderr if progress == "stderr" else progress
    # tqdm takes file=None for stderr: silence has to be asked for with disable
    return tqdm(total=total, initial=initial, desc=label, file=stream, disable=stream is None, unit=f" {unit}",
                bar_format=BAR_FORMAT, dynamic_ncols=True)
