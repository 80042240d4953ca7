"""Fixed chunks of a batch, and the one order in which sums over samples are taken.

A training step splits its batch into chunks of ``chunk_size`` consecutive
samples; each chunk's gradient can be computed anywhere (in this process,
or on a worker of a cluster: :mod:`eventsim.cluster`). For the weights not to
depend on where and in how many pieces the chunks were computed, the sum
over samples must be taken in one order that every split reproduces. Floating
point addition is not associative, so "the same sum" means the same tree:

    S(x_0 .. x_{n-1}) = S(x_0 .. x_{m-1}) + S(x_m .. x_{n-1}),    m = 2^floor(log2(n - 1))

the first ``m`` items (``m`` the largest power of two below ``n``) and the
rest, each summed the same way, a single item being its own sum.

With ``chunk_size`` a power of two ``c``, every chunk (samples
``[k c, (k + 1) c)``, the last one possibly shorter) is a subtree of this tree
over the batch, and the tree over the chunk sums is the tree's top: for
``n`` in ``(2^a, 2^(a+1)]`` and ``c <= 2^a`` the first split is at ``2^a``
on both levels. So a gradient summed per chunk and then over chunks is
bit-identical to the gradient summed over the whole batch at once, for every
chunk size and every number of workers; :func:`tree_sum` is the one function
both levels use.
"""

from __future__ import annotations

import threading
from typing import Callable, Sequence, TypeVar

import numpy as np
from numba import njit

from eventsim.errors import OptionError

T = TypeVar("T")


def tree_sum(items: Sequence[T], add: Callable[[T, T], T]) -> T:
    """``items[0] + ... + items[n-1]`` as the fixed tree of the module docstring, ``add(a, b)`` for ``a + b``.

    ``add`` may update and return its first argument (each item is used
    once). Raises :class:`OptionError` for no items.
    """
    tree = TreeSum(len(items), add)
    for i, item in enumerate(items):
        tree.put(i, item)
    return tree.total()


class TreeSum:
    """:func:`tree_sum` of ``n`` items handed in one by one, in any order and from any thread.

    Two partial sums are added as soon as both halves of their node of the
    tree are in, so what is held is the items and partial sums still
    waiting for a sibling, not all n items: with items arriving about in
    order, a few per thread plus the binary digits of n. The tree's nodes
    below the top are the aligned blocks ``[j 2^k, (j + 1) 2^k)`` inside the
    blocks of the binary digits of n (``2^k1 > 2^k2 > ...`` items, from the
    left); the top is ``S(2^k1) + (S(2^k2) + ...)``, as
    :func:`tree_sum_rows` explains. ``add(a, b)`` for ``a + b`` may update
    and return ``a``; the additions run outside the lock, so threads handing
    in items add in parallel.
    """

    def __init__(self, n: int, add: Callable[[T, T], T]) -> None:
        if n < 1:
            raise OptionError("a sum over no items")
        self._add = add
        self._digits: list[tuple[int, int]] = []  # (start, size) of each binary digit's block, left to right
        start = 0
        for k in range(n.bit_length() - 1, -1, -1):
            if n >> k & 1:
                self._digits.append((start, 1 << k))
                start += 1 << k
        self._waiting: dict[tuple[int, int], T] = {}  # (start, size) -> the sum of that block
        self._lock = threading.Lock()

    def put(self, i: int, item: T) -> None:
        """Hand in item ``i``, adding it (and the sums it completes) into the tree as far as it goes."""
        start, size = i, 1
        while True:
            with self._lock:
                if (start, size) in self._digits:  # a digit's whole block: waits for total()
                    self._waiting[(start, size)] = item
                    return
                sibling = start ^ size  # blocks inside a digit's block are aligned to their size
                other = self._waiting.pop((sibling, size), None)
                if other is None:
                    self._waiting[(start, size)] = item
                    return
            item = self._add(other, item) if sibling < start else self._add(item, other)
            start, size = min(start, sibling), 2 * size

    def held(self) -> int:
        """How many items and partial sums are held."""
        with self._lock:
            return len(self._waiting)

    def total(self) -> T:
        """The sum, once every item is in."""
        roots = [self._waiting.get(digit) for digit in self._digits]
        if any(root is None for root in roots) or len(self._waiting) != len(roots):
            raise OptionError("the tree's sum was asked for before every item was handed in")
        out = roots[-1]
        for root in reversed(roots[:-1]):
            out = self._add(root, out)
        return out


@njit(cache=True, nogil=True)
def tree_sum_rows(parts, n, out, lo, hi, clear):
    """Rows ``lo:hi`` of the first ``n`` items of ``parts`` summed as :func:`tree_sum` sums, transposed into ``out``.

    Per element, the additions of ``tree_sum(items, add)`` with ``add(a, b)
    = a + b``, in the same tree: the items are taken left to right, and two
    partial sums of the same number of items are added as soon as both
    exist (a binary counter); the partial sums left at the end are added
    from the right. After n items these are the sums of blocks of ``2^k1 >
    2^k2 > ...`` items, the binary digits of n (for n a power of two, one
    block: the sum of its two halves), and ``S(2^k1) + (S(2^k2) + ...)`` is
    the tree of the module docstring, whose first split takes the largest
    power of two below n.

    Parameters
    ----------
    parts : (S, R, C) float array, S >= n
        Item b is ``parts[b]``; rows ``lo:hi`` of the first n items are
        zeroed afterwards if ``clear`` (only the rows that are not zero
        already, +0 everywhere, as a gradient accumulator's untouched rows
        are; its values are never -0, since ``+0 + x`` is not: a sample
        leaves most rows of a linear layer's weight gradient untouched, and
        a cache line that is not written need not go back to memory).
    n : int
        Items, at least 1.
    out : (C, R) float array
        ``out[c, r]`` receives the sum of ``parts[b, r, c]`` over the items.
    lo, hi : int
        The rows summed.
    clear : bool

    Returns
    -------
    bool
        Whether every sum is finite.
    """
    cols = parts.shape[2]
    stack = np.empty((64, cols), parts.dtype)  # partial sums; at most log2(n) + 1 at once
    sizes = np.empty(64, np.int64)
    written = np.zeros(n, np.bool_)
    # The sums of 16 rows are written to out together: a row of sums is a
    # column of out, one element per page when a row of out spans pages.
    block = np.empty((16, cols), parts.dtype)
    finite = True
    for r in range(lo, hi):
        top = 0
        for b in range(n):
            nonzero = False
            if top > 0 and sizes[top - 1] == 1:  # the item joins the single one before it at once
                for c in range(cols):
                    v = parts[b, r, c]
                    stack[top - 1, c] = stack[top - 1, c] + v
                    nonzero |= v != 0
                sizes[top - 1] = 2
            else:
                for c in range(cols):
                    v = parts[b, r, c]
                    stack[top, c] = v
                    nonzero |= v != 0
                sizes[top] = 1
                top += 1
            written[b] = nonzero
            while top > 1 and sizes[top - 1] == sizes[top - 2]:
                for c in range(cols):
                    stack[top - 2, c] = stack[top - 2, c] + stack[top - 1, c]
                sizes[top - 2] *= 2
                top -= 1
        while top > 1:
            for c in range(cols):
                stack[top - 2, c] = stack[top - 2, c] + stack[top - 1, c]
            top -= 1
        i = (r - lo) % 16
        for c in range(cols):
            block[i, c] = stack[0, c]
            finite &= abs(stack[0, c]) < np.inf  # False for inf and NaN
        if i == 15 or r == hi - 1:
            for c in range(cols):
                for k in range(i + 1):
                    out[c, r - i + k] = block[k, c]
        if clear:
            for b in range(n):
                if written[b]:  # a row of zeros is left alone: its memory stays clean
                    for c in range(cols):
                        parts[b, r, c] = 0
    return finite


def check_chunk_size(chunk_size: object) -> int:
    """``chunk_size`` as an int, or :class:`OptionError`: it must be a power of two (module docstring)."""
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1 \
            or chunk_size & (chunk_size - 1):
        raise OptionError(f"chunk_size must be a power of two (1, 2, 4, 8, ...), got {chunk_size!r}: "
                          "then the chunks' gradient sums are subtrees of the batch's and the weights do not "
                          "depend on the chunking")
    return chunk_size


def chunk_bounds(batch: int, chunk_size: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of each chunk of a batch of ``batch`` samples: ``chunk_size`` each, the last one shorter."""
    return [(lo, min(batch, lo + chunk_size)) for lo in range(0, batch, chunk_size)]
