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

from typing import Callable, Sequence, TypeVar

from eventsim.errors import OptionError

T = TypeVar("T")


def split_point(n: int) -> int:
    """The largest power of two below ``n`` (``n >= 2``): where :func:`tree_sum` splits ``n`` items."""
    return 1 << ((n - 1).bit_length() - 1)


def tree_sum(items: Sequence[T], add: Callable[[T, T], T]) -> T:
    """``items[0] + ... + items[n-1]`` as the fixed tree of the module docstring, ``add(a, b)`` for ``a + b``.

    ``add`` may update and return its first argument (each item is used
    once). Raises :class:`OptionError` for no items.
    """
    if not items:
        raise OptionError("a sum over no items")
    if len(items) == 1:
        return items[0]
    m = split_point(len(items))
    return add(tree_sum(items[:m], add), tree_sum(items[m:], add))


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
