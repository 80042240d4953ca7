"""The neuron window kernels against a stepwise NumPy reference, bit for bit, on layers of awkward sizes.

The kernels (kernels.plain_lif_window, kernels.flagged_lif_window) pack
their spike flags into blocks of 64 neurons to emit the events; these tests
take layers whose sizes are not multiples of 64 or 8, with none to all of
their neurons firing in a step, and compare every output with the
recursion of docs/semantics.md ("Neurons") written here step by step over
whole arrays:

    U[t] = lam * R + g * I[t]                       (immediate reset)
         = V + g * I[t] - theta * s[t-1]            (delayed reset, V = lam * U[t-1];
           / v_reset + g * I[t] where s[t-1]         soft / hard, left to right)
    s[t] = U[t] >= theta (U[t] > theta when strict)
    R    = U - theta (soft) or v_reset (hard) where s[t], else U

with the count ``gamma += s`` and the trace ``f = lam * f + s``, the events
of a step in ascending channel-last neuron order with their C-order index
``c * P + p``, and overflow where some U of the window is inf or NaN.
"""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from eventsim import kernels

#: (positions, channels): sizes 1, 7, 63, 64, 65, 130 and a few more, in one or several channels.
LAYERS = [(1, 1), (7, 1), (1, 7), (63, 1), (21, 3), (64, 1), (32, 2), (65, 1), (13, 5), (130, 1), (65, 2),
          (26, 5), (17 * 17, 3)]


def reference(v, cur, theta, leak, soft, v_reset, strict, gain, fired, clear):
    """The window by the recursion of the module docstring: (indptr, index, value, overflow, R, counts, traces, buffer, fired)."""
    steps, n = cur.shape
    dtype = cur.dtype.type
    channels = theta.shape[0]
    plane = n // channels
    th = np.tile(theta, plane)  # channel-last: neuron j has channel j % C
    r, counts, traces = v.copy(), np.zeros(n, cur.dtype), np.zeros(n, cur.dtype)
    prev = None if fired is None else fired.copy()
    buffer = np.zeros_like(cur)
    indptr, index, value = [0], [], []
    overflow = False
    with np.errstate(invalid="ignore", over="ignore"):
        for t in range(steps):
            gi = dtype(gain) * cur[t]
            if prev is None:
                u = leak * r + gi
            else:
                u = np.where(prev, (r + gi) - th if soft else v_reset + gi, r + gi)
            s = u > th if strict else u >= th
            overflow |= not np.isfinite(u).all()
            spikes = s.astype(cur.dtype)
            counts += spikes
            traces = leak * traces + spikes
            if prev is None:
                r = np.where(s, u - th if soft else np.full(n, v_reset, cur.dtype), u)
            else:
                r, prev = leak * u, s
            if not clear:
                buffer[t] = u
            j = np.flatnonzero(s)  # ascending channel-last order
            index.extend((j % channels) * plane + j // channels)
            value.extend([dtype(1)] * j.size)
            indptr.append(indptr[-1] + j.size)
    return (np.array(indptr, np.int64), np.array(index, np.int64), np.array(value, cur.dtype), overflow, r, counts,
            traces, buffer, prev)


def assert_same_bits(got, want, what: str) -> None:
    """The same bits, but for the sign and payload of a NaN, which IEEE 754 leaves to the order of the
    operands the compiler picks (``0 * inf`` then ``+`` another NaN); where the NaNs are must agree."""
    got, want = np.asarray(got), np.asarray(want)
    assert got.dtype == want.dtype and got.shape == want.shape, what
    if got.dtype.kind == "f":
        nan = np.isnan(want)
        assert np.array_equal(np.isnan(got), nan), f"{what}: NaN elsewhere"
        got, want = np.where(nan, 0, got), np.where(nan, 0, want)
    assert got.tobytes() == want.tobytes(), f"{what} differs"


def window_case(seed: int, dtype, layer: tuple, steps: int, firing: str, nonfinite: bool):
    """Currents, thresholds and initial potentials of one window.

    ``firing``: "none" (no current reaches a threshold), "all" (every
    neuron reaches it at every step), "some" (sparse currents of dyadic
    values, so that U = theta happens and the strict test matters).
    """
    rng = np.random.default_rng(seed)
    plane, channels = layer
    n = plane * channels
    theta = rng.choice([0.5, 1.0, 1.5], size=channels).astype(dtype)
    if firing == "none":
        cur = np.where(rng.random((steps, n)) < 0.3, -rng.integers(0, 4, (steps, n)) / 4, 0).astype(dtype)
        v = np.zeros(n, dtype)
    elif firing == "all":
        cur = np.full((steps, n), 8, dtype)
        v = np.zeros(n, dtype)
    else:
        density = rng.choice([0.05, 0.3, 0.9])
        cur = np.where(rng.random((steps, n)) < density, rng.integers(-2, 7, (steps, n)) / 4, 0).astype(dtype)
        v = (rng.integers(-4, 8, n) / 4).astype(dtype)
        theta[rng.random(channels) < 0.2] = np.inf  # a channel that never fires
    if nonfinite:
        for _ in range(rng.integers(1, 3)):
            cur[rng.integers(steps), rng.integers(n)] = rng.choice([np.inf, -np.inf, np.nan])
    return cur, theta, v


#: The per-neuron sums a caller keeps; the others are passed as None (a run that does not record them).
KEPT = [("counts", "traces"), ("counts",), ("traces",), ()]

cases = dict(seed=st.integers(0, 2**32 - 1), dtype=st.sampled_from([np.float32, np.float64]),
             layer=st.sampled_from(LAYERS), steps=st.integers(1, 12),
             firing=st.sampled_from(["none", "some", "some", "all"]), nonfinite=st.booleans(),
             leak=st.sampled_from([1.0, 0.75, 0.5, 0.0]), soft=st.booleans(), strict=st.booleans(),
             v_reset=st.sampled_from([0.0, -0.5, 0.25]))


@settings(max_examples=80, deadline=None)
@given(clear=st.booleans(), delayed=st.booleans(), kept=st.sampled_from(KEPT), **cases)
def test_plain_window_equals_the_stepwise_reference(seed, dtype, layer, steps, firing, nonfinite, leak, soft, strict,
                                                    v_reset, clear, delayed, kept):
    cur, theta, v = window_case(seed, dtype, layer, steps, firing, nonfinite)
    n = cur.shape[1]
    fired = (np.random.default_rng(seed + 1).random(n) < 0.5) if delayed else None
    want = reference(v, cur, theta, dtype(leak), soft, dtype(v_reset), strict, 1.0, fired, clear)
    counts, traces = (np.zeros(n, dtype) if what in kept else None for what in ("counts", "traces"))
    got_fired = None if fired is None else fired.copy()
    got = kernels.plain_lif_window(v, cur, theta, dtype(leak), soft, dtype(v_reset), strict, counts, traces, dtype(1),
                                   got_fired, clear)
    for a, b, what in zip(got[:3], want[:3], ("indptr", "index", "value")):
        assert_same_bits(a, b, what)
    assert got[3] == want[3], "overflow flag"
    for a, b, what in ((v, want[4], "potential"), (counts, want[5], "counts"), (traces, want[6], "traces"),
                       (cur, want[7], "buffer")):
        if a is not None:  # a count or trace left out (None) is neither kept nor needed for the rest
            assert_same_bits(a, b, what)
    if delayed:
        assert_same_bits(got_fired, want[8], "fired")


@settings(max_examples=80, deadline=None)
@given(shift=st.integers(0, 7), extra_flags=st.sampled_from([0.0, 0.3]), kept=st.sampled_from(KEPT), **cases)
def test_flagged_window_equals_the_stepwise_reference(seed, dtype, layer, steps, firing, nonfinite, leak, soft, strict,
                                                      v_reset, shift, extra_flags, kept):
    """Flags on the blocks that received a current, and on some that did not."""
    cur, theta, v = window_case(seed, dtype, layer, steps, firing, nonfinite)
    n = cur.shape[1]
    block = 1 << shift
    blocks = (n + block - 1) // block
    reached = np.zeros((steps, blocks * block), bool)
    reached[:, :n] = cur != 0
    flags = reached.reshape(steps, blocks, block).any(axis=2)
    flags |= np.random.default_rng(seed + 1).random(flags.shape) < extra_flags
    flags = flags.astype(np.uint8)
    want = reference(v, cur, theta, dtype(leak), soft, dtype(v_reset), strict, 1.0, None, True)
    counts, traces = (np.zeros(n, dtype) if what in kept else None for what in ("counts", "traces"))
    got = kernels.flagged_lif_window(v, cur, flags, shift, theta, dtype(leak), soft, dtype(v_reset), strict, counts,
                                     traces, dtype(1))
    for a, b, what in zip(got[:3], want[:3], ("indptr", "index", "value")):
        assert_same_bits(a, b, what)
    assert got[3] == want[3], "overflow flag"
    for a, b, what in ((v, want[4], "potential"), (counts, want[5], "counts"), (traces, want[6], "traces"),
                       (cur, want[7], "buffer")):
        if a is not None:
            assert_same_bits(a, b, what)
    assert not flags.any(), "flags left set"


def test_every_neuron_of_a_step_fires_in_order():
    """A step in which all 130 neurons of two channels fire, then one in which none does: every event, in order."""
    theta = np.array([1.0, 2.0], np.float32)
    cur = np.zeros((2, 130), np.float32)
    cur[0] = 5
    v = np.zeros(130, np.float32)
    counts, traces = np.zeros(130, np.float32), np.zeros(130, np.float32)
    indptr, index, value, overflow = kernels.plain_lif_window(v, cur, theta, np.float32(1), False, np.float32(0),
                                                              False, counts, traces, np.float32(1), None, True)
    assert indptr.tolist() == [0, 130, 130]
    # channel-last neuron j = 2 * p + c has the C-order index c * 65 + p
    assert index.tolist() == [c * 65 + p for p in range(65) for c in range(2)]
    assert value.tolist() == [1.0] * 130 and not overflow and not cur.any()


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 40))
def test_a_run_that_keeps_no_counts_or_traces_computes_the_same_spikes_and_readout(seed, steps):
    """Counts and traces are left out of the neuron kernels unless recorded: the rest is unchanged, and the
    counts, when recorded, are the spikes summed (Events.totals, another summation of the same events)."""
    import eventsim as es

    rng = np.random.default_rng(seed)
    net = es.Network([es.Conv2d(2, 4, 3, padding=1), es.LIF(0.5, leak=0.9), es.SpikingAvgPool(2), es.Flatten(),
                      es.Linear(64, 6), es.LIF(0.4, leak=0.8), es.Linear(6, 3), es.Readout(leak=0.95)], (2, 8, 8))
    for layer in net.walk():
        if isinstance(layer, (es.Conv2d, es.Linear)):
            layer.weight = rng.normal(0, 0.8, layer.weight_shape).astype(np.float32)
    events = es.Events.from_dense((rng.random((2, steps, 2, 8, 8)) < 0.3).astype(np.float32))
    lean = net.run(events, record=("spikes",))
    full = net.run(events, record=("spikes", "counts", "traces"))
    assert_same_bits(lean.output, full.output, "readout")
    for name, spikes in full.spikes.items():
        for what in ("indptr", "index", "value"):
            assert_same_bits(getattr(lean.spikes[name], what), getattr(spikes, what), f"{name} spikes {what}")
        assert_same_bits(full.counts[name], spikes.totals(), f"{name} counts")
    assert not lean.counts and not lean.traces
