"""Every Numba kernel against its dense NumPy twin, bit for bit (dyadic values).

The kernels work on one window of events and a channel-last current buffer;
the twins work on dense (C, H, W) arrays. Both sides get the same dyadic
weights and event values, so every sum is exact and equality is demanded.
"""

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from eventsim import dense, kernels
from eventsim.testing.strategies import DTYPES, VALUES, dyadic, random_events

seeds = st.integers(0, 2**32 - 1)
densities = st.sampled_from([0.0, 0.02, 0.2, 0.7, 1.0])


def to_c_order(cur, shape):
    """(K, H*W*C) channel-last -> (K, C, H, W)."""
    c, h, w = shape
    return cur.reshape(-1, h * w, c).transpose(0, 2, 1).reshape((-1, c, h, w))


def window(rng, steps, shape, density, dtype, values=VALUES):
    ev = random_events(rng, 1, steps, shape, density, dtype, values)
    return ev, (ev.indptr, ev.index, ev.value), ev.to_dense()[0]


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 5), density=densities,
       cin=st.integers(1, 3), cout=st.integers(1, 5), h=st.integers(1, 9), w=st.integers(1, 9),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 3), pw=st.integers(0, 3))
def test_conv_scatter_equals_dense_conv(seed, dtype, steps, density, cin, cout, h, w, kh, kw, sh, sw, ph, pw):
    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    rng = np.random.default_rng(seed)
    _, x, xd = window(rng, steps, (cin, h, w), density, dtype)
    weight = dyadic(rng, (cout, cin, kh, kw), dtype)
    expected = dense.conv2d(xd, weight, stride=(sh, sw), padding=(ph, pw))
    ho, wo = expected.shape[-2:]
    cur = np.zeros((steps, ho * wo * cout), dtype)
    synops = kernels.conv_scatter(cur, *x, np.ascontiguousarray(weight.transpose(1, 2, 3, 0)),
                                  (h, w), (ho, wo), (sh, sw), (ph, pw))
    np.testing.assert_array_equal(to_c_order(cur, (cout, ho, wo)), expected)
    assert synops == sum(dense.conv2d_synops(xd[t], (kh, kw), cout, (sh, sw), (ph, pw)) for t in range(steps))


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 5), density=densities,
       n_in=st.integers(1, 30), n_out=st.integers(1, 12))
def test_linear_scatter_equals_dense_linear(seed, dtype, steps, density, n_in, n_out):
    rng = np.random.default_rng(seed)
    _, x, xd = window(rng, steps, (n_in,), density, dtype)
    weight = dyadic(rng, (n_out, n_in), dtype)
    cur = np.zeros((steps, n_out), dtype)
    synops = kernels.linear_scatter(cur, *x, np.ascontiguousarray(weight.T))
    np.testing.assert_array_equal(cur, dense.linear(xd, weight))
    assert synops == sum(dense.linear_synops(xd[t], n_out) for t in range(steps))


pool_geometry = dict(c=st.integers(1, 3), h=st.integers(1, 9), w=st.integers(1, 9),
                     kh=st.sampled_from([1, 2, 4]), kw=st.sampled_from([1, 2, 4]),
                     sh=st.integers(1, 4), sw=st.integers(1, 4))


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 4), density=densities, average=st.booleans(), **pool_geometry)
def test_pool_scatter_equals_dense_pooling(seed, dtype, steps, density, average, c, h, w, kh, kw, sh, sw):
    assume(h >= kh and w >= kw)
    rng = np.random.default_rng(seed)
    _, x, xd = window(rng, steps, (c, h, w), density, dtype)
    twin = dense.avg_pool if average else dense.sum_pool
    expected = twin(xd, (kh, kw), (sh, sw))
    ho, wo = expected.shape[-2:]
    weight = dtype(1 / (kh * kw)) if average else dtype(1)
    cur = np.zeros((steps, ho * wo * c), dtype)
    ops = kernels.pool_scatter(cur, *x, weight, c, (h, w), (ho, wo), (kh, kw), (sh, sw))
    np.testing.assert_array_equal(to_c_order(cur, (c, ho, wo)), expected)
    assert ops == sum(dense.pool_ops(xd[t], (kh, kw), (sh, sw)) for t in range(steps))


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 4), density=densities, **pool_geometry)
def test_maxpool_events_equal_dense_max_pool(seed, dtype, steps, density, c, h, w, kh, kw, sh, sw):
    assume(h >= kh and w >= kw)
    rng = np.random.default_rng(seed)
    # signed values exercise the "positions without an event hold 0" rule
    _, x, xd = window(rng, steps, (c, h, w), density, dtype)
    expected = dense.max_pool(xd, (kh, kw), (sh, sw))
    ho, wo = expected.shape[-2:]
    indptr, index, value, ops = kernels.maxpool_events(*x, c, (h, w), (ho, wo), (kh, kw), (sh, sw))
    got = np.zeros((steps, c * ho * wo), dtype)
    for t in range(steps):
        got[t, index[indptr[t]:indptr[t + 1]]] = value[indptr[t]:indptr[t + 1]]
    np.testing.assert_array_equal(got.reshape(expected.shape), expected)
    assert np.all(value != 0)
    assert ops == sum(dense.pool_ops(xd[t], (kh, kw), (sh, sw)) for t in range(steps))


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 4), density=densities, c=st.integers(1, 3),
       h=st.integers(1, 9), w=st.integers(1, 9), sh=st.integers(1, 3), sw=st.integers(1, 3))
def test_one_by_one_sum_pool_scatter_equals_subsampling(seed, dtype, steps, density, c, h, w, sh, sw):
    rng = np.random.default_rng(seed)
    _, x, xd = window(rng, steps, (c, h, w), density, dtype)
    expected = dense.subsample(xd, (sh, sw))
    ho, wo = expected.shape[-2:]
    cur = np.zeros((steps, ho * wo * c), dtype)
    ops = kernels.pool_scatter(cur, *x, dtype(1), c, (h, w), (ho, wo), (1, 1), (sh, sw))
    np.testing.assert_array_equal(to_c_order(cur, (c, ho, wo)), expected)
    assert ops == np.count_nonzero(expected)


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 30), c=st.integers(1, 3), hw=st.integers(1, 5),
       leak=st.sampled_from([1.0, 0.5, 0.875, 0.99]), soft=st.booleans(), strict=st.booleans(),
       v_reset=st.sampled_from([0.0, -0.5, 0.25]), split=st.integers(1, 30))
def test_lif_window_equals_stepwise_lif(seed, dtype, steps, c, hw, leak, soft, strict, v_reset, split):
    rng = np.random.default_rng(seed)
    if soft:
        v_reset = 0.0
    theta = rng.choice([0.5, 1.0, 1.5, np.inf], size=c)
    current = dyadic(rng, (steps, c, hw, hw), dtype, scale=4)
    # event path: channel-last buffers, state carried across two windows
    n = c * hw * hw
    cl = current.reshape(steps, c, hw * hw).transpose(0, 2, 1).reshape(steps, n).copy()
    v, counts, traces = np.zeros(n, dtype), np.zeros(n, dtype), np.zeros(n, dtype)
    spikes = np.zeros((steps, n), dtype)
    cut = min(split, steps)
    for lo, hi in ((0, cut), (cut, steps)):
        if lo == hi:
            continue
        indptr, index, value, overflow = kernels.lif_window(v, cl[lo:hi], theta.astype(dtype), dtype(leak), soft,
                                                            dtype(v_reset), strict, counts, traces)
        assert not overflow
        assert np.all(value == 1)  # one spike per step: every event is a unit spike
        for k in range(hi - lo):
            spikes[lo + k, index[indptr[k]:indptr[k + 1]]] = 1
    # twin: the literal recursion, one step at a time
    u = np.zeros((1, c, hw, hw), dtype)
    s = np.zeros(u.shape, bool)
    trace = np.zeros(u.shape, np.float64)
    for t in range(steps):
        u, s = dense.lif_step(u, s, current[t][None], threshold=theta, leak=leak,
                              reset="soft" if soft else "hard", v_reset=v_reset, strict=strict)
        np.testing.assert_array_equal(to_c_order(cl[t:t + 1], (c, hw, hw)), u)
        np.testing.assert_array_equal(spikes[t].reshape(c, hw, hw), s[0])
        trace = leak * trace + s
    np.testing.assert_array_equal(to_c_order(counts[None], (c, hw, hw))[0], spikes.sum(0).reshape(c, hw, hw))
    np.testing.assert_allclose(to_c_order(traces[None], (c, hw, hw))[0], trace[0],
                               rtol=2e-6 if dtype == np.float32 else 1e-14)


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 6), density=densities, n=st.integers(1, 40),
       p=st.sampled_from([0.0, 0.2, 0.5, 0.75]))
def test_dropout_events_equal_dense_dropout(seed, dtype, steps, density, n, p):
    rng = np.random.default_rng(seed)
    _, x, xd = window(rng, steps, (n,), density, dtype)
    keep = dense.draw_dropout_mask(rng, 1, (n,), p)[0]
    scale = dtype(1 / (1 - p))
    indptr, index, value = kernels.dropout_events(*x, keep, scale)
    got = np.zeros((steps, n), dtype)
    for t in range(steps):
        got[t, index[indptr[t]:indptr[t + 1]]] = value[indptr[t]:indptr[t + 1]]
    np.testing.assert_array_equal(got, dense.apply_dropout(xd, np.broadcast_to(keep, xd.shape), 1 / (1 - p)))


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 5), c=st.integers(1, 4), hw=st.integers(1, 4))
def test_currents_to_events_emit_the_nonzero_currents(seed, dtype, steps, c, hw):
    rng = np.random.default_rng(seed)
    currents = dyadic(rng, (steps, c, hw, hw), dtype, high=2)
    n = c * hw * hw
    cl = currents.reshape(steps, c, hw * hw).transpose(0, 2, 1).reshape(steps, n).copy()
    totals = np.zeros(n, dtype)
    indptr, index, value = kernels.currents_to_events(cl, c, totals)
    got = np.zeros((steps, n), dtype)
    for t in range(steps):
        got[t, index[indptr[t]:indptr[t + 1]]] = value[indptr[t]:indptr[t + 1]]
    np.testing.assert_array_equal(got.reshape(currents.shape), currents)
    assert index.shape[0] == np.count_nonzero(currents)
    np.testing.assert_array_equal(to_c_order(totals[None], (c, hw, hw))[0], currents.sum(0))


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 4), c=st.integers(1, 4), hw=st.integers(1, 4))
def test_add_bias_adds_one_current_per_channel(seed, dtype, steps, c, hw):
    rng = np.random.default_rng(seed)
    bias = dyadic(rng, (c,), dtype)
    cur = np.zeros((steps, hw * hw * c), dtype)
    kernels.add_bias(cur, bias)
    np.testing.assert_array_equal(to_c_order(cur, (c, hw, hw)), np.broadcast_to(bias[:, None, None], (steps, c, hw, hw)))


def test_conv_scatter_refuses_a_strided_buffer():
    cur = np.zeros((2, 8), np.float32)[:, ::2]  # writes through a copy would be lost
    one = np.ones(1, np.float32)
    with pytest.raises(ValueError, match="must be C-contiguous"):
        kernels.conv_scatter(cur, np.array([0, 1, 1]), np.array([0]), one, np.ones((1, 1, 1, 1), np.float32),
                             (2, 2), (2, 2), (1, 1), (0, 0))


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 4), density=densities,
       cin=st.integers(1, 5), cout=st.integers(1, 9), h=st.integers(1, 8), w=st.integers(1, 8),
       kh=st.integers(1, 4), kw=st.integers(1, 4), sh=st.integers(1, 3), sw=st.integers(1, 3),
       ph=st.integers(0, 3), pw=st.integers(0, 3), sparse_delta=st.booleans())
def test_conv_backward_kernels_equal_the_dense_adjoint(seed, dtype, steps, density, cin, cout, h, w, kh, kw,
                                                      sh, sw, ph, pw, sparse_delta):
    """conv_weight_grad and conv_transpose against learning.dense.layerwise.conv2d_backward (dyadic: exact)."""
    from eventsim.learning.dense.layerwise import conv2d_backward

    assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    rng = np.random.default_rng(seed)
    _, x, xd = window(rng, steps, (cin, h, w), density, dtype)
    weight = dyadic(rng, (cout, cin, kh, kw), dtype)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    delta = dyadic(rng, (steps, cout, ho, wo), dtype)
    if sparse_delta:  # whole frames and channels of zeros: the kernels skip them
        delta[rng.random(steps) < 0.5] = 0
        delta[:, rng.random(cout) < 0.5] = 0
    dx, dw, _ = conv2d_backward(delta.astype(np.float64), xd.astype(np.float64), weight, (sh, sw), (ph, pw))
    channel_last = np.ascontiguousarray(delta.transpose(0, 2, 3, 1).reshape(steps, -1))
    grad_w = np.zeros((cin, kh, kw, cout), dtype)
    kernels.conv_weight_grad(grad_w, *x, channel_last, (h, w), (ho, wo), (sh, sw), (ph, pw))
    np.testing.assert_array_equal(grad_w.transpose(3, 0, 1, 2), dw)
    grad_in = np.zeros((steps, h * w * cin), dtype)
    kernels.conv_transpose(grad_in, channel_last, weight, (h, w), (ho, wo), (sh, sw), (ph, pw))
    np.testing.assert_array_equal(to_c_order(grad_in, (cin, h, w)), dx)


@given(seed=seeds, dtype=DTYPES, frames=st.integers(1, 4), n_in=st.integers(1, 30), n_out=st.integers(1, 12))
def test_linear_transpose_equals_the_dense_product(seed, dtype, frames, n_in, n_out):
    rng = np.random.default_rng(seed)
    weight = dyadic(rng, (n_out, n_in), dtype)
    delta = dyadic(rng, (frames, n_out), dtype) * (rng.random((frames, n_out)) < 0.6)
    grad_in = np.zeros((frames, n_in), dtype)
    kernels.linear_transpose(grad_in, delta, weight)
    np.testing.assert_array_equal(grad_in, delta.astype(np.float64) @ weight.astype(np.float64))
