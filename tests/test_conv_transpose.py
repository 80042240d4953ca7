"""conv_transpose against NumPy: its documented order of summation bit for bit, and the adjoint's definition.

Two references written here, on random (not dyadic) values, so that rounding
shows: the order of summation the kernel documents (blocks of 4 output
channels, then ky, then kx, each adding ``(w0*d0 + w1*d1) + (w2*d2 + w3*d3)``
to a sum from 0 that is then added to the buffer) evaluated with NumPy's
elementwise float arithmetic, which must match bit for bit; and the adjoint
as its definition, ``dL/ds = sum W[o, c, ky, kx] * D[o, oy, ox]`` scattered
into the padded input by einsum in float64, which must match to rounding.
The shapes cover what the vectorised kernel treats apart: input channels in
tiles of 8, 4, 2 and 1, maps narrower and wider than a vector, padding wider
than half the kernel (delta rows longer than the input's), strides, frames
and blocks of output channels whose delta is all zero.
"""

import numpy as np
from hypothesis import assume, given
from hypothesis import strategies as st

from eventsim import kernels
from eventsim.testing.strategies import DTYPES

seeds = st.integers(0, 2**32 - 1)


def to_c_order(rows, shape):
    """(K, H*W*C) channel-last -> (K, C, H, W)."""
    c, h, w = shape
    return rows.reshape(-1, h * w, c).transpose(0, 2, 1).reshape((-1, c, h, w))


def to_channel_last(maps):
    """(K, C, H, W) -> (K, H*W*C)."""
    return np.ascontiguousarray(maps.transpose(0, 2, 3, 1).reshape(maps.shape[0], -1))


def reached(size, kernel, stride, pad, n_out):
    """Per tap k, the inputs i reached and the outputs o reaching them: ``i + pad - k = o * stride``."""
    out = []
    for k in range(kernel):
        pairs = [(i, (i + pad - k) // stride) for i in range(size)
                 if (i + pad - k) % stride == 0 and 0 <= (i + pad - k) // stride < n_out]
        out.append((np.array([i for i, _ in pairs], int), np.array([o for _, o in pairs], int)))
    return out


def in_documented_order(delta, weight, in_hw, stride, padding):
    """The adjoint summed in the kernel's documented order, one NumPy operation per (frame, block, tap)."""
    frames, co, ho, wo = delta.shape
    _, ci, kh, kw = weight.shape
    blocks = -(-co // 4)
    w4 = np.zeros((4 * blocks, ci, kh, kw), weight.dtype)
    w4[:co] = weight
    d4 = np.zeros((frames, 4 * blocks, ho, wo), delta.dtype)
    d4[:, :co] = delta
    rows = reached(in_hw[0], kh, stride[0], padding[0], ho)
    cols = reached(in_hw[1], kw, stride[1], padding[1], wo)
    out = np.zeros((frames, ci, *in_hw), delta.dtype)
    for k in range(frames):
        total = np.zeros((ci, *in_hw), delta.dtype)
        for b in range(blocks):
            d = d4[k, 4 * b:4 * b + 4]
            if not d.any():
                continue
            for ky, (ys, oys) in enumerate(rows):
                for kx, (xs, oxs) in enumerate(cols):
                    w = w4[4 * b:4 * b + 4, :, ky, kx][:, :, None, None]
                    s = d[:, oys][:, :, oxs][:, None]
                    term = (w[0] * s[0] + w[1] * s[1]) + (w[2] * s[2] + w[3] * s[3])
                    total[np.ix_(range(ci), ys, xs)] += term
        out[k] = total
    return out


def by_definition(delta, weight, in_hw, stride, padding):
    """``D[o, oy, ox] * W[o, c, ky, kx]`` added at padded input ``(oy*sh + ky, ox*sw + kx)``, float64."""
    frames, _, ho, wo = delta.shape
    _, ci, kh, kw = weight.shape
    (h, w), (sh, sw), (ph, pw) = in_hw, stride, padding
    padded = np.zeros((frames, ci, h + 2 * ph + sh * ho + kh, w + 2 * pw + sw * wo + kw))
    for ky in range(kh):
        for kx in range(kw):
            padded[:, :, ky:ky + sh * ho:sh, kx:kx + sw * wo:sw] += np.einsum(
                "koyx,oc->kcyx", delta.astype(np.float64), weight[:, :, ky, kx].astype(np.float64))
    return padded[:, :, ph:ph + h, pw:pw + w]


@given(seed=seeds, dtype=DTYPES, frames=st.integers(1, 3), cin=st.integers(1, 20), cout=st.integers(1, 13),
       h=st.integers(1, 20), w=st.integers(1, 20), kh=st.integers(1, 5), kw=st.integers(1, 5),
       sh=st.integers(1, 3), sw=st.integers(1, 3), ph=st.integers(0, 4), pw=st.integers(0, 4),
       zeros=st.booleans())
def test_conv_transpose_sums_in_its_documented_order(seed, dtype, frames, cin, cout, h, w, kh, kw, sh, sw, ph, pw,
                                                     zeros):
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    rng = np.random.default_rng(seed)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    weight = rng.normal(size=(cout, cin, kh, kw)).astype(dtype)
    delta = rng.normal(size=(frames, cout, ho, wo)).astype(dtype)
    if zeros:  # frames and output channels without gradient: the kernel skips them
        delta[rng.random(frames) < 0.4] = 0
        delta[:, rng.random(cout) < 0.4] = 0
    before = rng.normal(size=(frames, h * w * cin)).astype(dtype)
    grad_in = before.copy()
    kernels.conv_transpose(grad_in, to_channel_last(delta), weight, (h, w), (ho, wo), (sh, sw), (ph, pw))
    added = in_documented_order(delta, weight, (h, w), (sh, sw), (ph, pw))
    np.testing.assert_array_equal(grad_in, before + to_channel_last(added))
    tol = 1e-5 if dtype == np.float32 else 1e-12
    exact = by_definition(delta, weight, (h, w), (sh, sw), (ph, pw))
    scale = max(1.0, float(np.abs(exact).max()))
    np.testing.assert_allclose(to_c_order(grad_in - before, (cin, h, w)), exact,
                               rtol=0, atol=tol * scale * cout * kh * kw)


def test_conv_transpose_on_the_lenet_conv2_shape():
    """20 -> 50 channels, 5x5, padding 2, 17x17, dense float32 delta: the shape the bptt backward spends most on."""
    rng = np.random.default_rng(7)
    weight = rng.normal(0, 0.1, size=(50, 20, 5, 5)).astype(np.float32)
    delta = rng.normal(0, 1e-3, size=(3, 50, 17, 17)).astype(np.float32)
    grad_in = np.zeros((3, 17 * 17 * 20), np.float32)
    kernels.conv_transpose(grad_in, to_channel_last(delta), weight, (17, 17), (17, 17), (1, 1), (2, 2))
    expected = in_documented_order(delta, weight, (17, 17), (1, 1), (2, 2))
    np.testing.assert_array_equal(grad_in, to_channel_last(expected))
