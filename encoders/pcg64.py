"""NumPy's PCG64 stream of uniform doubles, drawn only where they are read.

``numpy.random.Generator(PCG64(...)).random`` yields, for draw j = 0, 1, ...
of the stream::

    s[j+1] = (M * s[j] + inc) mod 2^128           M = 2549297995355413924 * 2^64 + 4865540595714422341
    x[j]   = rotr64(hi(s[j+1]) ^ lo(s[j+1]), hi(s[j+1]) >> 58)
    u[j]   = (x[j] >> 11) * 2^-53                 (the top 53 bits: exact in float64)

so draw j is the output of the state after j + 1 steps. A linear
congruential generator jumps d steps at once (Brown 1994)::

    s[j+d] = A_d * s[j] + S_d * inc,   A_d = M^d,  S_d = sum_{i<d} M^i   (mod 2^128)

with ``A_{2d} = A_d^2`` and ``S_{2d} = S_d * (A_d + 1)``, so a jump of d takes
one multiply-add per set bit of d (the ladder of ``d = 2^k``). Drawing only
the numbers a caller reads, in the order of the stream, thus costs those
numbers and the gaps' bits, not the gaps. The numbers of a ``(T, n)`` call
read at the same columns of every row are cheaper still: column i's state
in row t + 1 is ``A_n * s + S_n * inc`` of its state in row t, so after
jumps to the columns of row 0 every number costs one multiply-add, and the
columns' states advance independently of each other (no chain of jumps
through all of them).

References: NumPy's ``numpy/random/src/pcg64/pcg64.h`` (constants, step and
output order) and ``numpy/random/_common.pxd`` (``uint64_to_double``, the
double of PCG64's ``random``); M. E. O'Neill 2014, "PCG: A Family of
Simple Fast Space-Efficient Statistically Good Algorithms for Random Number
Generation" (HMC-CS-2014-0905; the XSL-RR output); F. B. Brown 1994,
"Random number generation with arbitrary strides" (the jump).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from eventsim.errors import OptionError

MULTIPLIER = (2549297995355413924 << 64) + 4865540595714422341  #: M, NumPy's PCG_DEFAULT_MULTIPLIER_128
_MASK_64 = (1 << 64) - 1
_MASK_128 = (1 << 128) - 1
_LEVELS = 63  # jumps d < 2^63: every int64 count of draws
_ZERO = np.uint64(0)
_TWO_TO_MINUS_53 = 1.0 / 9007199254740992.0


def _jump_ladder() -> np.ndarray:
    """``(_LEVELS, 4)`` uint64: row k holds ``(hi, lo)`` of ``A_{2^k}`` then of ``S_{2^k}``, from exact integers."""
    rows, a, s = [], MULTIPLIER, 1
    for _ in range(_LEVELS):
        rows.append((a >> 64, a & _MASK_64, s >> 64, s & _MASK_64))
        a, s = a * a & _MASK_128, s * (a + 1) & _MASK_128
    return np.array(rows, dtype=np.uint64)


_LADDER = _jump_ladder()


def has_numpy_pcg64(generator: object) -> bool:
    """Whether ``generator`` is a plain ``numpy.random.Generator`` on a plain ``numpy.random.PCG64``.

    Exact types: a subclass may draw differently, and other bit generators
    (PCG64DXSM, Philox, MT19937) have other streams.
    """
    return type(generator) is np.random.Generator and type(generator.bit_generator) is np.random.PCG64


def random_at(generator: np.random.Generator, columns: np.ndarray, out: np.ndarray) -> None:
    """Write ``generator.random(out.shape)[t, columns]`` into ``out[t, columns]``, drawing only those numbers.

    ``out`` is a ``(T, n)`` float64 array and ``columns`` strictly ascending
    integer indices in ``[0, n)``; the other entries of ``out`` are left as they
    were. The generator (see :func:`has_numpy_pcg64`) is left exactly where
    ``generator.random(out.shape)`` leaves it: its 128-bit state advanced by
    ``T * n`` steps, ``has_uint32`` and ``uinteger`` (NumPy's buffered half
    of a 64-bit draw, which ``random`` neither reads nor changes) kept.
    Anything else raises :class:`~eventsim.errors.OptionError`, the
    generator untouched.
    """
    if not (isinstance(out, np.ndarray) and out.dtype == np.float64 and out.ndim == 2):
        raise OptionError("random_at: out must be a (T, n) float64 array")
    if not has_numpy_pcg64(generator):
        raise OptionError("random_at: generator must be a numpy.random.Generator on numpy.random.PCG64")
    with pcg64_states([generator]) as (_, states, incs):
        if not _random_at(states[0], incs[0], np.asarray(columns, dtype=np.int64).reshape(-1), out):
            raise OptionError(f"random_at: columns must be strictly ascending indices in [0, {out.shape[1]})")


@contextmanager
def pcg64_states(generators: Sequence[np.random.Generator]) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The LCG states of ``generators`` (each :func:`has_numpy_pcg64`), written back after the block.

    Yields ``slots`` ``(B,)`` int64, ``states`` and ``incs`` ``(U, 2)``
    uint64 ``(hi, lo)``: generator b's state is row ``slots[b]``, one row per
    distinct generator (a Generator given for several samples goes on from
    where the previous one left it, as its own calls would). The block
    advances ``states`` in place; on leaving it normally each generator's
    state becomes its row, ``has_uint32`` and ``uinteger`` kept; if the block
    raises, the generators are untouched. Every generator's lock (the one
    NumPy's own draws hold) is held throughout, taken in one global order
    (by ``id``) so that two calls on overlapping lists cannot deadlock.
    """
    slot_of: dict[int, int] = {}
    slots = np.array([slot_of.setdefault(id(g), len(slot_of)) for g in generators], np.int64)
    distinct = list({id(g): g for g in generators}.values())  # in order of first appearance: slot order
    locks = [g.bit_generator.lock for g in sorted(distinct, key=id)]
    for lock in locks:
        lock.acquire()
    try:
        full = [g.bit_generator.state for g in distinct]
        # Each 128-bit integer as 16 little-endian bytes: uint64 (lo, hi), turned into (hi, lo) rows.
        raw = b"".join(f["state"][key].to_bytes(16, "little") for f in full for key in ("state", "inc"))
        lcg = np.frombuffer(raw, "<u8").reshape(len(distinct), 2, 2)[:, :, ::-1]
        states, incs = np.ascontiguousarray(lcg[:, 0], np.uint64), np.ascontiguousarray(lcg[:, 1], np.uint64)
        yield slots, states, incs
        for g, f, (hi, lo) in zip(distinct, full, states.tolist()):
            f["state"]["state"] = (hi << 64) | lo
            g.bit_generator.state = f
    finally:
        for lock in locks:
            lock.release()


@njit(cache=True, nogil=True)
def _random_at(state, inc, columns, out):
    """:func:`random_at` on the LCG state ``(hi, lo)``, which it advances in place by ``out.size`` steps.

    Returns False, with nothing drawn, unless ``columns`` ascend strictly
    within ``[0, n)`` (else a jump would go backwards and ``out`` be written
    out of bounds).
    """
    steps, n = out.shape
    m = columns.shape[0]
    for k in range(m):
        if columns[k] < 0 or columns[k] >= n or (k > 0 and columns[k] <= columns[k - 1]):
            return False
    his, los = np.empty(m, np.uint64), np.empty(m, np.uint64)
    step = column_streams(state, inc, columns, steps, n, his, los)
    for t in range(steps):
        for k in range(m):
            out[t, columns[k]] = draw_and_step(his, los, k, step)
    return True


@njit(cache=True, nogil=True)
def column_streams(state, inc, columns, steps, n, his, los):
    """Set up the draws ``u[t, columns[k]]`` of ``generator.random((steps, n))`` from the LCG ``(state, inc)``.

    ``state`` and ``inc`` are ``(hi, lo)`` uint64 arrays, ``columns`` ``m``
    strictly ascending indices in ``[0, n)`` (not checked) and ``his``,
    ``los`` at least ``m`` long. Writes into ``his[k], los[k]`` the state
    whose output is ``u[0, columns[k]]`` (draw j is the output of step
    ``j + 1``), advances ``state`` in place by ``steps * n`` (where the
    whole call leaves the generator) and returns the map ``s -> A_n * s +
    S_n * inc`` that moves a state on by one row of n draws, as ``(A_hi,
    A_lo, C_hi, C_lo)`` for :func:`draw_and_step`. The rows' states then
    advance independently of each other, one multiply-add per number drawn,
    instead of one chain of jumps through all of them.
    """
    total = steps * n
    ladder = _stream_ladder(inc, _bit_length(total))
    hi, lo = state[0], state[1]
    taken = 0  # LCG steps taken so far
    for k in range(columns.shape[0]):
        hi, lo = _jump(hi, lo, columns[k] + 1 - taken, ladder)
        taken = columns[k] + 1
        his[k], los[k] = hi, lo
    state[0], state[1] = _jump(state[0], state[1], total, ladder)
    return _affine(n, ladder)


@njit(cache=True, nogil=True, inline="always")
def draw_and_step(his, los, k, step):
    """The number of the state ``(his[k], los[k])``, which moves on by the map ``step`` of :func:`column_streams`."""
    hi, lo = his[k], los[k]
    his[k], los[k] = _mul_add(step[0], step[1], hi, lo, step[2], step[3])
    return _uniform(hi, lo)


@njit(cache=True, nogil=True)
def _stream_ladder(inc, levels):
    """Rows k < ``levels`` of the jump ladder for this increment: ``A_{2^k}`` and ``S_{2^k} * inc``.

    With ``S * inc`` multiplied in once, each set bit of a jump costs one
    multiply-add; ``levels`` rows cover jumps ``d < 2^levels``.
    """
    ladder = np.empty((levels, 4), np.uint64)
    for k in range(levels):
        ladder[k, 0], ladder[k, 1] = _LADDER[k, 0], _LADDER[k, 1]
        ladder[k, 2], ladder[k, 3] = _mul_add(_LADDER[k, 2], _LADDER[k, 3], inc[0], inc[1], _ZERO, _ZERO)
    return ladder


@njit(cache=True, nogil=True)
def _bit_length(d):
    """Bits of ``d >= 0`` (0 for 0): the ladder rows a jump of at most ``d`` needs."""
    bits = 0
    while d >> bits:
        bits += 1
    return bits


@njit(cache=True, nogil=True, inline="always")
def _jump(hi, lo, d, ladder):
    """The state ``d >= 0`` steps after ``(hi, lo)``: the ladder's jumps of the set bits of ``d``."""
    k = 0
    while d:
        if d & 1:
            hi, lo = _mul_add(ladder[k, 0], ladder[k, 1], hi, lo, ladder[k, 2], ladder[k, 3])
        d >>= 1
        k += 1
    return hi, lo


@njit(cache=True, nogil=True)
def _affine(d, ladder):
    """``(A_d, S_d * inc)`` as ``(A_hi, A_lo, C_hi, C_lo)``: the ladder's rungs of the set bits of ``d`` composed.

    A rung after ``(A, C)`` gives ``(A_r * A, A_r * C + C_r)``; the rungs are
    powers of one map, so their order does not matter.
    """
    a_hi, a_lo, c_hi, c_lo = _ZERO, np.uint64(1), _ZERO, _ZERO
    k = 0
    while d:
        if d & 1:
            a_hi, a_lo = _mul_add(ladder[k, 0], ladder[k, 1], a_hi, a_lo, _ZERO, _ZERO)
            c_hi, c_lo = _mul_add(ladder[k, 0], ladder[k, 1], c_hi, c_lo, ladder[k, 2], ladder[k, 3])
        d >>= 1
        k += 1
    return a_hi, a_lo, c_hi, c_lo


@njit(cache=True, nogil=True, inline="always")
def _uniform(hi, lo):
    """NumPy's double of the state ``(hi, lo)``: XSL-RR output, its top 53 bits times 2^-53."""
    x = hi ^ lo
    r = hi >> np.uint64(58)
    # The left shift is taken mod 64 so that r = 0 shifts by 0, not by 64 (undefined).
    x = (x >> r) | (x << ((np.uint64(64) - r) & np.uint64(63)))
    return np.float64(x >> np.uint64(11)) * _TWO_TO_MINUS_53


@intrinsic
def _mul_add(typingctx, a_hi, a_lo, b_hi, b_lo, c_hi, c_lo):
    """``(hi, lo)`` of ``(a * b + c) mod 2^128`` for 128-bit numbers given as uint64 halves.

    An intrinsic because Numba has no 128-bit integer: LLVM's i128 multiply
    compiles to one full 64 x 64 -> 128-bit multiply and two low ones.
    """
    if not all(t == types.uint64 for t in (a_hi, a_lo, b_hi, b_lo, c_hi, c_lo)):
        return None
    sig = types.UniTuple(types.uint64, 2)(types.uint64, types.uint64, types.uint64, types.uint64, types.uint64,
                                          types.uint64)

    def codegen(context, builder, signature, args):
        wide, half = ir.IntType(128), ir.IntType(64)

        def joined(hi, lo):
            return builder.or_(builder.shl(builder.zext(hi, wide), ir.Constant(wide, 64)), builder.zext(lo, wide))

        a, b, c = (joined(args[i], args[i + 1]) for i in (0, 2, 4))
        r = builder.add(builder.mul(a, b), c)
        hi, lo = builder.trunc(builder.lshr(r, ir.Constant(wide, 64)), half), builder.trunc(r, half)
        return context.make_tuple(builder, signature.return_type, (hi, lo))

    return sig, codegen
