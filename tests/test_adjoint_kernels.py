"""The adjoint kernels ``linear_transpose`` and ``pool_transpose`` against references written here.

Each kernel documents the order in which it adds the terms of every input
gradient (linear: outputs ascending, zero deltas skipped; pool: windows in
row-major order). The references below are plain NumPy loops that add the
terms in that order, one rounding per multiplication and per addition, so
the kernels must match them bit for bit on arbitrary (non-dyadic) floats,
-0, infinities and NaN; a kernel that regrouped or reordered the sums, fused
a multiply-add or added a skipped ``0 * w`` would differ. A second check
against a matrix product of the adjoint (order-free, to a tolerance) makes
sure the documented order sums the right terms.

Where two NaNs of different sign meet (``inf - inf`` makes a negative NaN),
which one an addition returns depends on the operand order the compiler
picks, which IEEE 754 and LLVM leave open; NaN is compared by position only.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from eventsim import kernels
from eventsim.testing.strategies import DTYPES

seeds = st.integers(0, 2**32 - 1)
#: What a delta may hold besides ordinary floats: zeros of both signs (skipped
#: by the linear kernel), infinities and NaN.
specials = st.sampled_from(["none", "zeros", "negative zeros", "inf", "nan"])


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    """Equal bit patterns (so -0 differs from 0) everywhere but at NaN, which must be NaN in both."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(expected))
    finite_or_inf = ~np.isnan(expected)
    bits = np.uint32 if actual.dtype == np.float32 else np.uint64
    np.testing.assert_array_equal(actual.view(bits)[finite_or_inf], expected.view(bits)[finite_or_inf])


def spiked(rng: np.random.Generator, values: np.ndarray, special: str) -> np.ndarray:
    """``values`` with about a quarter of its entries replaced by ``special``."""
    out = values.copy()
    where = rng.random(out.shape) < 0.25
    if special == "zeros":
        out[where] = 0.0
    elif special == "negative zeros":
        out[where] = -0.0
    elif special == "inf":
        out[where] = np.where(rng.random(out.shape) < 0.5, np.inf, -np.inf)[where]
    elif special == "nan":
        out[where] = np.nan
    return out


#: What a kernel accumulates into: zeros, negative zeros (``-0 + 0`` is ``+0``:
#: an added ``0 * w`` shows) or floats (a regrouped sum shows).
starts = st.sampled_from(["zeros", "negative zeros", "floats"])


def start_gradient(rng: np.random.Generator, shape: tuple[int, ...], dtype, start: str) -> np.ndarray:
    if start == "floats":
        return rng.normal(0, 1, shape).astype(dtype)
    return np.full(shape, -0.0 if start == "negative zeros" else 0.0, dtype)


def linear_reference(grad_in: np.ndarray, delta: np.ndarray, weight: np.ndarray,
                     delay: np.ndarray | None) -> np.ndarray:
    """``grad_in[k - d[o, i], i] += D[k, o] * W[o, i]`` for k, then o, ascending, zero deltas skipped."""
    out = grad_in.copy()
    frames, n_out = delta.shape
    columns = np.arange(weight.shape[1])
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, as in the kernel
        for k, o in np.ndindex(frames, n_out):
            d = delta[k, o]
            if d == 0:
                continue
            rows = np.full(columns.shape, k) if delay is None else k - delay[o]
            ok = rows >= 0
            out[rows[ok], columns[ok]] += d * weight[o, ok]  # each (row, column) once: no repeated index
    return out


@given(seed=seeds, dtype=DTYPES, frames=st.sampled_from([1, 2, 5]), n_in=st.integers(1, 70),
       n_out=st.sampled_from([1, 2, 7, 8, 9, 16, 17, 30]), special=specials, start=starts,
       weight_special=st.sampled_from(["none", "inf", "nan"]), delayed=st.booleans())
def test_linear_transpose_adds_outputs_in_ascending_order(seed, dtype, frames, n_in, n_out, special, start,
                                                         weight_special, delayed):
    """Infinite or NaN weights: a zero delta that were not skipped would add ``0 * inf`` (NaN)."""
    rng = np.random.default_rng(seed)
    weight = spiked(rng, rng.normal(0, 1, (n_out, n_in)).astype(dtype), weight_special)
    delta = spiked(rng, rng.normal(0, 1, (frames, n_out)).astype(dtype), special)
    delay = rng.integers(0, 4, (n_out, n_in)) if delayed else None
    grad_in = start_gradient(rng, (frames, n_in), dtype, start)
    expected = linear_reference(grad_in, delta, weight, delay)
    kernels.linear_transpose(grad_in, delta, weight, delay)
    assert_same_bits(grad_in, expected)


@given(seed=seeds, dtype=DTYPES, frames=st.sampled_from([1, 3]), n_in=st.sampled_from([255, 256, 257, 700]),
       special=st.sampled_from(["none", "negative zeros", "nan"]), start=starts)
def test_linear_transpose_across_blocks_of_columns(seed, dtype, frames, n_in, special, start):
    """Enough outputs that the kernel splits the columns into blocks (of 256: BLOCK_BYTES / (No * itemsize) is less)."""
    n_out = 4100
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 1, (n_out, n_in)).astype(dtype)
    delta = spiked(rng, rng.normal(0, 1, (frames, n_out)).astype(dtype), special)
    grad_in = start_gradient(rng, (frames, n_in), dtype, start)
    expected = linear_reference(grad_in, delta, weight, None)
    kernels.linear_transpose(grad_in, delta, weight)
    assert_same_bits(grad_in, expected)


@given(seed=seeds, dtype=DTYPES, frames=st.integers(1, 4), n_in=st.integers(1, 300),
       n_out=st.integers(1, 40), delayed=st.booleans())
def test_linear_transpose_is_the_transposed_product(seed, dtype, frames, n_in, n_out, delayed):
    """Against ``D @ W`` (delays: one product per delay value, shifted), to the dtype's rounding."""
    rng = np.random.default_rng(seed)
    weight = rng.normal(0, 1, (n_out, n_in)).astype(dtype)
    delta = rng.normal(0, 1, (frames, n_out)).astype(dtype) * (rng.random((frames, n_out)) < 0.7)
    delay = rng.integers(0, 4, (n_out, n_in)) if delayed else np.zeros((n_out, n_in), np.int64)
    expected = np.zeros((frames, n_in))
    for shift in range(min(4, frames)):
        # D[k, o] reaches frame k - shift through the synapses of delay `shift`.
        product = delta.astype(np.float64) @ np.where(delay == shift, weight, 0).astype(np.float64)
        expected[:frames - shift] += product[shift:]
    grad_in = np.zeros((frames, n_in), dtype)
    kernels.linear_transpose(grad_in, delta, weight, delay if delayed else None)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(grad_in, expected, rtol=tol, atol=tol * np.sqrt(n_out))


pool_shapes = dict(c=st.integers(1, 20), h=st.integers(1, 12), w=st.integers(1, 12),
                   kh=st.integers(1, 3), kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3))


def pool_reference(grad_in, delta, weight, c, hw, out_hw, kernel, stride):
    """For each window in row-major order: ``grad_in[window] += weight * D[window's output]``."""
    (h, w), (ho, wo), (kh, kw), (sh, sw) = hw, out_hw, kernel, stride
    out = grad_in.copy().reshape(-1, h, w, c)
    d = delta.reshape(-1, ho, wo, c)
    with np.errstate(invalid="ignore"):  # inf * 0 and inf - inf: NaN, as in the kernel
        for oy, ox in np.ndindex(ho, wo):
            out[:, oy * sh:oy * sh + kh, ox * sw:ox * sw + kw, :] += weight * d[:, oy, ox, None, None, :]
    return out.reshape(grad_in.shape)


def pool_shape(h, w, kh, kw, sh, sw):
    return (h - kh) // sh + 1, (w - kw) // sw + 1


@given(seed=seeds, dtype=DTYPES, frames=st.integers(1, 3), special=specials, start=starts,
       weight_kind=st.sampled_from(["sum", "average", "negative zero"]), **pool_shapes)
def test_pool_transpose_adds_windows_in_row_major_order(seed, dtype, frames, special, start, weight_kind,
                                                        c, h, w, kh, kw, sh, sw):
    kh, kw = min(kh, h), min(kw, w)
    out_hw = pool_shape(h, w, kh, kw, sh, sw)
    rng = np.random.default_rng(seed)
    weight = dtype({"sum": 1.0, "average": 1.0 / (kh * kw), "negative zero": -0.0}[weight_kind])
    delta = spiked(rng, rng.normal(0, 1, (frames, out_hw[0] * out_hw[1] * c)).astype(dtype), special)
    grad_in = start_gradient(rng, (frames, h * w * c), dtype, start)
    args = (delta, weight, c, (h, w), out_hw, (kh, kw), (sh, sw))
    expected = pool_reference(grad_in, *args)
    kernels.pool_transpose(grad_in, *args)
    assert_same_bits(grad_in, expected)


@given(seed=seeds, dtype=DTYPES, frames=st.integers(1, 3), **pool_shapes)
def test_pool_transpose_is_the_transposed_pooling_matrix(seed, dtype, frames, c, h, w, kh, kw, sh, sw):
    """Against ``D @ P`` with ``P[(oy, ox), (y, x)]`` = weight where (y, x) lies in the window, to rounding."""
    kh, kw = min(kh, h), min(kw, w)
    ho, wo = pool_shape(h, w, kh, kw, sh, sw)
    rng = np.random.default_rng(seed)
    weight = dtype(1.0 / (kh * kw))
    inside_y = np.abs(np.arange(h)[None, :] - np.arange(ho)[:, None] * sh - (kh - 1) / 2) <= (kh - 1) / 2
    inside_x = np.abs(np.arange(w)[None, :] - np.arange(wo)[:, None] * sw - (kw - 1) / 2) <= (kw - 1) / 2
    pooling = np.einsum("ay,bx->abyx", inside_y, inside_x).reshape(ho * wo, h * w) * float(weight)
    delta = rng.normal(0, 1, (frames, ho * wo, c)).astype(dtype)
    expected = np.einsum("kpc,pq->kqc", delta.astype(np.float64), pooling).reshape(frames, -1)
    grad_in = np.zeros((frames, h * w * c), dtype)
    kernels.pool_transpose(grad_in, delta.reshape(frames, -1), weight, c, (h, w), (ho, wo), (kh, kw), (sh, sw))
    tol = 1e-6 if dtype == np.float32 else 1e-14
    np.testing.assert_allclose(grad_in, expected, rtol=tol, atol=tol)
