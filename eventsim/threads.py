"""How many threads a batch runs on, and the map that spreads its samples over them.

The samples of a batch are independent until something is summed over them,
so :meth:`eventsim.Network.run` and the gradient rules hand their samples to
:func:`ordered_map`, whose threads each take the next sample until none is
left. The Numba kernels release the GIL (``nogil``), so the threads run in
parallel on the cores. Results come back in sample order,
and every sum over samples is taken in that order by the caller, so a result
is bit-identical whatever the number of threads.

The number of threads is ``set_threads(n)``, else the environment variable
``EVENTSIM_THREADS``, else the number of CPUs this process may run on.
"""

from __future__ import annotations

import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Callable, Iterable, Sequence, TypeVar

import numpy as np

from eventsim.errors import OptionError

#: The environment variable giving the default number of threads.
ENV_VAR = "EVENTSIM_THREADS"

T = TypeVar("T")
R = TypeVar("R")

_lock = threading.Lock()
_chosen: int | None = None  # set_threads' value; None: the default
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_in_task = threading.local()  # marks the pool's own threads


def _positive(n: object, source: str) -> int:
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 1:
        raise OptionError(f"{source} must be a positive integer number of threads, got {n!r}")
    return int(n)


def default_threads() -> int:
    """``EVENTSIM_THREADS`` if set, else the number of CPUs available to the process."""
    raw = os.environ.get(ENV_VAR, "").strip()
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise OptionError(f"environment variable {ENV_VAR} must be a positive integer, got {raw!r}") from None
        return _positive(n, f"environment variable {ENV_VAR}")
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def set_threads(n: int | None) -> None:
    """Run the samples of a batch on ``n`` threads (None: back to :func:`default_threads`).

    Raises
    ------
    OptionError
        If ``n`` is not a positive integer.
    """
    global _chosen
    _chosen = None if n is None else _positive(n, "set_threads(n)")


def get_threads() -> int:
    """The number of threads a batch runs on."""
    return _chosen if _chosen is not None else default_threads()


def _mark_task() -> None:
    _in_task.active = True


def _executor(n: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size != n:
            if _pool is not None:
                _pool.shutdown(wait=False)
            _pool = ThreadPoolExecutor(max_workers=n, thread_name_prefix="eventsim", initializer=_mark_task)
            _pool_size = n
        return _pool


def ordered_map(fn: Callable[[T], R], items: Iterable[T], order: Sequence[int] | None = None) -> list[R]:
    """``fn`` applied to every item on :func:`get_threads` threads; the results in the items' order.

    One task per thread, not per item: up to ``get_threads()`` threads of
    the pool each take the next item not yet taken until none is left, so a
    thread that drew short items takes more of them, and handing over costs
    one task per thread, not one per item; the calling thread waits. The
    threads take the items in ``order`` (a permutation of their indices;
    by default the items' own order): longest first, the last items taken
    are short ones, and the threads finish close together. With
    one thread, one item, or when called from inside a task (a map in a map
    would wait on the pool it occupies), the items run one after the other
    in the calling thread. What ``fn`` computes for an item must not depend
    on the other items: then the results do not depend on the threads.

    Every item runs even when one fails; then the error of the first failed
    item (in the items' order) is raised.
    """
    items = list(items)
    threads = get_threads()
    n = min(threads, len(items))
    if order is None:
        order = range(len(items))
    elif sorted(int(i) for i in order) != list(range(len(items))):
        raise ValueError(f"ordered_map: order must be a permutation of range({len(items)})")
    if n <= 1 or getattr(_in_task, "active", False):
        return [fn(item) for item in items]
    results: list = [None] * len(items)
    errors: dict[int, BaseException] = {}
    taken = itertools.count()  # next() on it is atomic under the GIL: each item is taken once

    def take_items() -> None:
        for t in iter(taken.__next__, None):
            if t >= len(items):
                return
            i = int(order[t])
            try:
                results[i] = fn(items[i])
            except BaseException as exc:  # noqa: BLE001 -- raised below, in the items' order
                errors[i] = exc

    wait([_executor(threads).submit(take_items) for _ in range(n)])
    if errors:
        raise errors[min(errors)]
    return results
