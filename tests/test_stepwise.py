"""The stepwise kernels (a synapse's currents integrated step by step, eventsim.kernels.stepwise) against
the scatter kernel over the whole window followed by kernels.flagged_lif_window: the same events, potentials,
counts, traces and operation counts, bit for bit, and the one-row buffers left zero.

flagged_lif_window is itself checked against the full update in test_silent_blocks.py, and the scatter kernels
against their dense twins in test_kernels.py; whole networks through the stepwise path are checked against the
dense twin in test_silent_blocks.py.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsim import kernels
from eventsim.testing.strategies import DTYPES, dyadic, random_events

SHIFT = 6  # the blocks of the network's runs (stages.FLAG_SHIFT); the kernels take any
seeds = st.integers(0, 2**32 - 1)
neurons = st.fixed_dictionaries({
    "leak": st.sampled_from([1.0, 0.875, 0.99, 0.0]), "soft": st.booleans(), "strict": st.booleans(),
    "v_reset": st.sampled_from([0.0, -0.5, 2.0]), "v_init": st.sampled_from([0.0, 0.5, 3.0]),
    "gain": st.sampled_from([1.0, 0.75, -1.0]), "records": st.booleans(), "shift": st.sampled_from([SHIFT, 0, 3])})


def one_sample(events):
    """The row pointers, indices and values of a batch of one sample: a window of its steps."""
    return events.indptr, events.index, events.value


def assert_same_bits(a, b, what: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what} differs"


def compare(rng, dtype, n, channels, events, scatter, stepwise, p):
    """Run ``scatter(cur, flags, shift)`` then flagged_lif_window, and ``stepwise(v, row, flags, shift, *neuron)``,
    from the same state; assert every output is the same."""
    steps = events[0].shape[0] - 1
    shift = p["shift"]
    blocks = (n + (1 << shift) - 1) >> shift
    theta = rng.choice([0.5, 1.0, 1.5, np.inf], size=channels).astype(dtype)
    v = np.full(n, p["v_init"], dtype)
    counts = np.zeros(n, dtype) if p["records"] else None
    traces = rng.integers(0, 3, n).astype(dtype) if p["records"] else None
    neuron = (theta, dtype(p["leak"]), p["soft"], dtype(p["v_reset"]), p["strict"])
    state = [(v.copy(), None if a is None else a.copy(), None if b is None else b.copy()) for a, b in
             [(counts, traces)] * 2]
    cur, flags = np.zeros((steps, n), dtype), np.zeros((steps, blocks), np.uint8)
    ops = scatter(cur, flags, shift)
    (v1, c1, t1), (v2, c2, t2) = state
    want = kernels.flagged_lif_window(v1, cur, flags, shift, *neuron, c1, t1, dtype(p["gain"]))
    row, row_flags = np.zeros((1, n), dtype), np.zeros((1, blocks), np.uint8)
    got = stepwise(v2, row, row_flags, shift, *neuron, c2, t2, dtype(p["gain"]))
    for a, b, what in zip(got, (*want, ops), ("indptr", "index", "value", "overflow", "skipped", "ops")):
        assert_same_bits(a, b, what)
    assert_same_bits(v2, v1, "potential")
    if p["records"]:
        assert_same_bits(c2, c1, "counts")
        assert_same_bits(t2, t1, "traces")
    assert not row.any() and not row_flags.any()  # zero again for the next layer


@settings(max_examples=40, deadline=None)
@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 12), ci=st.integers(1, 3), co=st.integers(1, 5),
       hw=st.integers(1, 8), k=st.integers(1, 4), stride=st.integers(1, 2), pad=st.integers(0, 2),
       density=st.sampled_from([0.02, 0.2, 0.6]), p=neurons)
def test_conv_lif_window_is_the_scatter_then_the_window(seed, dtype, steps, ci, co, hw, k, stride, pad, density, p):
    rng = np.random.default_rng(seed)
    ho = (hw + 2 * pad - k) // stride + 1
    if ho < 1:
        return
    weight = dyadic(rng, (ci, k, k, co), dtype, scale=4)  # the kernels' layout (C, kh, kw, O)
    indptr, index, value = one_sample(random_events(rng, 1, steps, (ci, hw, hw), density, dtype))
    geometry = ((hw, hw), (ho, ho), (stride, stride), (pad, pad))
    compare(rng, dtype, ho * ho * co, co, (indptr, index, value),
            lambda cur, flags, shift: kernels.conv_scatter(cur, indptr, index, value, weight, *geometry, flags, shift),
            lambda v, row, flags, shift, *neuron: kernels.conv_lif_window(v, indptr, index, value, weight, *geometry,
                                                                          row, flags, shift, *neuron), p)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 12), c=st.integers(1, 4), hw=st.integers(2, 9),
       k=st.integers(1, 3), stride=st.integers(1, 3), weight=st.sampled_from([1.0, 0.25]),
       density=st.sampled_from([0.02, 0.2, 0.6]), p=neurons)
def test_pool_lif_window_is_the_scatter_then_the_window(seed, dtype, steps, c, hw, k, stride, weight, density, p):
    rng = np.random.default_rng(seed)
    ho = (hw - k) // stride + 1
    if ho < 1:
        return
    indptr, index, value = one_sample(random_events(rng, 1, steps, (c, hw, hw), density, dtype))
    geometry = (c, (hw, hw), (ho, ho), (k, k), (stride, stride))
    w = dtype(weight)
    compare(rng, dtype, ho * ho * c, c, (indptr, index, value),
            lambda cur, flags, shift: kernels.pool_scatter(cur, indptr, index, value, w, *geometry, flags, shift),
            lambda v, row, flags, shift, *neuron: kernels.pool_lif_window(v, indptr, index, value, w, *geometry, row,
                                                                          flags, shift, *neuron), p)


@settings(max_examples=25, deadline=None)
@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 12), ni=st.integers(1, 30), no=st.integers(1, 150),
       density=st.sampled_from([0.02, 0.2, 0.6]), p=neurons)
def test_linear_lif_window_is_the_scatter_then_the_window(seed, dtype, steps, ni, no, density, p):
    rng = np.random.default_rng(seed)
    weight_t = dyadic(rng, (ni, no), dtype, scale=4)
    indptr, index, value = one_sample(random_events(rng, 1, steps, (ni,), density, dtype))
    compare(rng, dtype, no, 1, (indptr, index, value),
            lambda cur, flags, shift: kernels.linear_scatter(cur, indptr, index, value, weight_t, None, 0, flags,
                                                             shift),
            lambda v, row, flags, shift, *neuron: kernels.linear_lif_window(v, indptr, index, value, weight_t, row,
                                                                            flags, shift, *neuron), p)
