"""Encoders: each against its documented formula, its statistics, and bad input.

Rate coding is checked against the binomial distribution of its counts, the
other encoders against closed forms (a ramp's delta events, latency's step
formula) and properties (monotone latencies, no events from still or uniform
scenes).
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy.stats import binom

from eventsim import Events, EventsError, OptionError
from eventsim.encoders.delta import delta
from eventsim.encoders.direct import direct
from eventsim.encoders.latency import latency
from eventsim.encoders.rate import rate
from eventsim.encoders.saccade import saccade, triangle_path

DTYPES = st.sampled_from([np.float32, np.float64])
SEEDS = st.integers(0, 2**32 - 1)
SHAPES = hnp.array_shapes(min_dims=2, max_dims=4, min_side=1, max_side=5)


def arrays_in(low=-1.0, high=1.0, shape=SHAPES):
    """Float64 arrays in [low, high] (low <= 0 <= high), with exact zeros and both ends likely."""
    elements = st.one_of(st.sampled_from([low, 0.0, high]), st.floats(low, high, allow_nan=False))
    return hnp.arrays(np.float64, shape, elements=elements)


def assert_same_events(a: Events, b: Events) -> None:
    """The same container field by field: row pointers, indices in their order, values and dtypes."""
    assert (a.batch, a.steps, a.shape) == (b.batch, b.steps, b.shape)
    for field in ("indptr", "index", "value"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field


def digit(size=28):
    """A blocky 7-like stroke on black, values in {0, 1}."""
    img = np.zeros((size, size))
    img[6:10, 7:21] = 1
    img[10:23, 15:19] = 1
    return img


# ---------------------------------------------------------------------- rate
@pytest.mark.parametrize("scale", [1.0, 0.5])
def test_rate_counts_lie_within_the_binomial_bound(scale):
    # Each element's count over T steps is Binomial(T, |scale * x|). The bound
    # holds for all elements at once with probability >= 1 - 1e-9 (a union
    # bound over elements and both tails), so a failure means a wrong rate.
    steps, alpha = 2000, 1e-9
    x = np.linspace(-1, 1, 81).reshape(3, 27)
    counts = np.abs(rate(x, steps, rng=np.random.default_rng(1), scale=scale).totals())
    p = np.abs(scale * x)
    tail = alpha / (2 * x.size)
    low, high = binom.ppf(tail, steps, p), binom.isf(tail, steps, p)
    assert np.all((low <= counts) & (counts <= high))
    assert np.all(counts[p == 1] == steps) and np.all(counts[p == 0] == 0)


@given(x=arrays_in(), steps=st.integers(1, 6), seed=SEEDS, dtype=DTYPES)
def test_rate_is_its_formula_and_signs_follow_x(x, steps, seed, dtype):
    u = np.random.default_rng(seed).random((x.shape[0], steps) + x.shape[1:])
    events = rate(x, steps, uniforms=u, scale=0.5, dtype=dtype)
    expected = np.sign(x)[:, None] * (np.abs(0.5 * x)[:, None] > u)
    assert events.dtype == dtype and events.shape == x.shape[1:] and events.steps == steps
    np.testing.assert_array_equal(events.to_dense(), expected.astype(dtype))
    sign = np.broadcast_to(np.sign(x)[:, None], expected.shape)
    dense = events.to_dense()
    assert np.all(dense[dense != 0] == sign[dense != 0])


@given(x=arrays_in(), steps=st.integers(1, 6), seed=SEEDS, dtype=DTYPES, scale=st.sampled_from([1.0, 0.5, 0.3]))
def test_rate_events_are_laid_out_as_from_dense_of_the_formula(x, steps, seed, dtype, scale):
    # The events are written straight into their container; from_dense of the
    # dense formula fixes the layout (rows b * T + t, indices ascending, valid
    # events that pass Events' own checks).
    u = np.random.default_rng(seed).random((x.shape[0], steps) + x.shape[1:])
    expected = Events.from_dense((np.sign(x)[:, None] * (np.abs(scale * x)[:, None] > u)).astype(dtype))
    events = rate(x, steps, uniforms=u, scale=scale, dtype=dtype)
    assert_same_events(events, expected)
    Events(events.indptr, events.index, events.value, batch=events.batch, steps=steps, shape=events.shape)


@given(x=arrays_in(), steps=st.integers(1, 6), seed=SEEDS)
def test_rate_rng_draws_the_documented_uniforms(x, steps, seed):
    from_rng = rate(x, steps, rng=np.random.default_rng(seed))
    u = np.random.default_rng(seed).random((x.shape[0], steps) + x.shape[1:])
    from_uniforms = rate(x, steps, uniforms=u)
    np.testing.assert_array_equal(from_rng.to_dense(), from_uniforms.to_dense())
    np.testing.assert_array_equal(rate(x, steps, uniforms=u).to_dense(), from_uniforms.to_dense())


def test_rate_leaves_the_generator_where_its_documented_call_does():
    used, called = np.random.default_rng(4), np.random.default_rng(4)
    rate(np.full((3, 2, 5), 0.5), 7, rng=used)
    called.random((3, 7, 2, 5))
    assert used.bit_generator.state == called.bit_generator.state


@given(x=arrays_in(), steps=st.integers(1, 6), seed=SEEDS)
def test_rate_with_a_generator_per_sample_codes_each_sample_as_alone(x, steps, seed):
    alone = [rate(x[b : b + 1], steps, rng=np.random.default_rng((seed, b))) for b in range(x.shape[0])]
    together = rate(x, steps, rng=[np.random.default_rng((seed, b)) for b in range(x.shape[0])])
    assert_same_events(together, Events.concat(alone))
    u = np.stack([np.random.default_rng((seed, b)).random((steps,) + x.shape[1:]) for b in range(x.shape[0])])
    assert_same_events(together, rate(x, steps, uniforms=u))


def test_rate_same_seed_same_events_other_seed_other_events():
    x = np.full((2, 50), 0.5)
    a, b, c = (rate(x, 20, rng=np.random.default_rng(s)) for s in (3, 3, 4))
    for field in ("indptr", "index", "value"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.to_dense(), c.to_dense())


def test_rate_float32_uniforms_equal_their_float64_values():
    x = np.array([[0.25, -0.75, 0.5]])
    u = np.random.default_rng(0).random((1, 30, 3)).astype(np.float32)
    as_float64 = rate(x, 30, uniforms=u.astype(np.float64))
    np.testing.assert_array_equal(rate(x, 30, uniforms=u).to_dense(), as_float64.to_dense())


# -------------------------------------------------------------------- direct
@given(x=arrays_in(-4.0, 4.0), steps=st.integers(1, 5), dtype=DTYPES)
def test_direct_repeats_x_at_every_step(x, steps, dtype):
    events = direct(x, steps, dtype=dtype)
    dense = events.to_dense()
    assert dense.shape == (x.shape[0], steps) + x.shape[1:] and dense.dtype == dtype
    for t in range(steps):
        np.testing.assert_array_equal(dense[:, t], x.astype(dtype))
    assert events.n_events == steps * np.count_nonzero(x.astype(dtype))


@given(x=arrays_in(-4.0, 4.0), steps=st.integers(1, 5), dtype=DTYPES)
def test_direct_events_are_laid_out_as_from_dense_of_x_repeated(x, steps, dtype):
    expected = Events.from_dense(np.repeat(x.astype(dtype)[:, None], steps, axis=1))
    assert_same_events(direct(x, steps, dtype=dtype), expected)


def test_direct_drops_entries_that_round_to_zero_in_its_dtype():
    x = np.array([[1e-50, 0.0, -3.0], [0.0, 0.0, 0.0]])
    events = direct(x, 2, dtype=np.float32)
    assert events.n_events == 2 and list(events.index) == [2, 2] and list(events.value) == [-3.0, -3.0]
    assert list(events.indptr) == [0, 1, 2, 2, 2]


# ------------------------------------------------------------------- latency
def first_steps(events: Events) -> np.ndarray:
    """Step of each input's spike, -1 where it has none; checks there is at most one."""
    dense = events.to_dense()
    assert np.all(dense.sum(axis=1) <= 1)
    return np.where(dense.any(axis=1), dense.argmax(axis=1), -1)


@given(
    x=arrays_in(0.0, 1.0),
    steps=st.integers(1, 50),
    mode=st.sampled_from(["linear", "log"]),
    threshold=st.sampled_from([0.01, 0.25, 0.5]),
    tau=st.sampled_from([None, 0.5, 3.0, 40.0]),
)
def test_latency_one_spike_above_threshold_and_larger_is_earlier(x, steps, mode, threshold, tau):
    tau = None if mode == "linear" else tau
    events = latency(x, steps, mode=mode, tau=tau, threshold=threshold)
    t = first_steps(events)
    np.testing.assert_array_equal(t >= 0, x > threshold)
    assert np.all(events.value == 1)
    fired_x, fired_t = x[t >= 0], t[t >= 0]
    order = np.argsort(fired_x, kind="stable")
    assert np.all(np.diff(fired_t[order]) <= 0)  # ascending x, non-increasing step


def test_latency_linear_steps():
    x = np.array([[1.0, 0.5, 0.26, 0.25, 0.0]])
    t = first_steps(latency(x, 11, threshold=0.25))
    # (1 - x) / 0.75 * 10 = 0, 6.67, 9.87; x = 0.25 and 0 are at or below the threshold.
    np.testing.assert_array_equal(t, [[0, 7, 10, -1, -1]])


def test_latency_log_steps_follow_the_rc_crossing_and_clip():
    x = np.array([[4.0, 1.0, 0.5, 0.2, 0.101, 0.1, 0.0]])
    tau, threshold, steps = 10.0, 0.1, 30
    t = first_steps(latency(x, steps, mode="log", tau=tau, threshold=threshold))
    expected = [min(round(tau * math.log(v / (v - threshold))), steps - 1) if v > threshold else -1 for v in x[0]]
    assert expected[4] == steps - 1  # 10 * ln(101) = 46 steps: clipped to the last one
    np.testing.assert_array_equal(t[0], expected)


def test_latency_default_tau_spans_the_window():
    # tau = T - 1: inputs down to threshold * e / (e - 1) fire inside the window.
    x = np.array([[1.0, 0.0159, 0.0157]])
    t = first_steps(latency(x, 100, mode="log"))
    assert t[0, 0] <= 1 and t[0, 1] < 99 and t[0, 2] == 99


# --------------------------------------------------------------------- delta
def delta_reference(x: np.ndarray, threshold: float, off_spikes: bool) -> np.ndarray:
    """Delta modulation element by element, in plain Python, as the docstring states it."""
    out = np.zeros(x.shape)
    batch, steps = x.shape[:2]
    for b in range(batch):
        for i in np.ndindex(x.shape[2:]):
            ref = x[(b, 0) + i]
            for t in range(1, steps):
                d = x[(b, t) + i] - ref
                if d > threshold or d < -threshold:
                    out[(b, t) + i] = 1 if d > 0 else (-1 if off_spikes else 0)
                    ref = x[(b, t) + i]
    return out


@given(
    seed=SEEDS, shape=hnp.array_shapes(min_dims=3, max_dims=4, min_side=1, max_side=6),
    threshold=st.sampled_from([0.25, 0.5, 1.0]), off_spikes=st.booleans(), dtype=DTYPES,
)
def test_delta_matches_its_definition_on_random_walks(seed, shape, threshold, off_spikes, dtype):
    # Dyadic steps keep every difference exact, ties with the threshold included.
    walk = np.cumsum(np.random.default_rng(seed).integers(-3, 4, shape) / 4, axis=1)
    events = delta(walk, threshold, off_spikes=off_spikes, dtype=dtype)
    assert events.dtype == dtype
    np.testing.assert_array_equal(events.to_dense(), delta_reference(walk, threshold, off_spikes))


@given(level=st.floats(-1e6, 1e6, allow_nan=False), steps=st.integers(1, 20))
def test_delta_constant_signal_gives_no_events(level, steps):
    assert delta(np.full((2, steps, 3), level), 1e-3).n_events == 0


@pytest.mark.parametrize("slope, threshold, every", [(0.25, 0.5, 3), (0.25, 1.0, 5), (0.5, 0.25, 1), (0.125, 0.375, 4)])
@pytest.mark.parametrize("sign", [1, -1])
def test_delta_ramp_fires_every_k_steps_with_its_sign(slope, threshold, every, sign):
    steps = 40
    ramp = (sign * slope * np.arange(steps))[None, :, None]
    dense = delta(ramp, threshold).to_dense()[0, :, 0]
    assert every == math.floor(threshold / slope) + 1
    np.testing.assert_array_equal(np.flatnonzero(dense), np.arange(every, steps, every))
    assert np.all(dense[dense != 0] == sign) and np.count_nonzero(dense) == (steps - 1) // every
    assert delta(ramp, threshold, off_spikes=False).n_events == (np.count_nonzero(dense) if sign > 0 else 0)


def test_delta_reference_moves_to_the_current_value():
    # A jump of three thresholds fires once and then the signal is still.
    x = np.array([0.0, 0.0, 3.0, 3.0, 3.0, 2.0, 2.0])[None, :, None]
    np.testing.assert_array_equal(delta(x, 1.0).to_dense()[0, :, 0], [0, 0, 1, 0, 0, 0, 0])
    np.testing.assert_array_equal(delta(x, 0.5).to_dense()[0, :, 0], [0, 0, 1, 0, 0, -1, 0])


# ------------------------------------------------------------------- saccade
@pytest.mark.parametrize("level", [0.0, 0.3, 1.0])
def test_saccade_blank_image_gives_no_events(level):
    assert saccade(np.full((2, 28, 28), level), steps=120).n_events == 0


def test_saccade_counts_grow_with_image_contrast():
    counts = [saccade(c * digit()[None], steps=150).n_events for c in (0.25, 0.5, 1.0)]
    assert 0 < counts[0] < counts[1] < counts[2]


@pytest.mark.parametrize("height, width", [(28, 28), (10, 17)])
def test_saccade_shape_and_binary_values(height, width):
    img = np.random.default_rng(0).random((3, height, width))
    events = saccade(img, steps=60, dtype=np.float64)
    assert (events.batch, events.steps, events.shape) == (3, 60, (2, height + 6, width + 6))
    assert events.dtype == np.float64 and np.all(events.value == 1)
    assert events.n_events > 0 and events.row(0, 0)[0].size == 0  # step 0 sets the references


def test_saccade_is_deterministic_without_noise_and_reproducible_with_it():
    img = digit()[None]
    a, b = saccade(img, steps=90), saccade(img, steps=90)
    np.testing.assert_array_equal(a.to_dense(), b.to_dense())
    noisy = [saccade(img, steps=90, noise=0.01, rng=np.random.default_rng(s)) for s in (5, 5, 6)]
    np.testing.assert_array_equal(noisy[0].to_dense(), noisy[1].to_dense())
    assert not np.array_equal(noisy[0].to_dense(), noisy[2].to_dense())
    assert np.all(noisy[0].to_dense() >= a.to_dense())  # noise adds events, removes none


def test_saccade_noise_rate_on_a_blank_image():
    steps, p = 50, 0.02
    events = saccade(np.zeros((2, 8, 8)), steps=steps, noise=p, rng=np.random.default_rng(2))
    trials = 2 * steps * 2 * 14 * 14
    assert binom.ppf(1e-9, trials, p) <= events.n_events <= binom.isf(1e-9, trials, p)


def first_step(series: np.ndarray) -> float:
    """Index of the first nonzero entry, inf if there is none."""
    nonzero = np.flatnonzero(series)
    return nonzero[0] if nonzero.size else math.inf


def test_saccade_polarity_a_dot_leaving_is_off_a_dot_arriving_is_on():
    # A bright dot on black first moves down (and a little right): its start
    # pixel dims first (OFF, channel 0), the pixel below it brightens first
    # (ON, channel 1).
    img = np.zeros((1, 9, 9))
    img[0, 4, 4] = 1.0
    dense = saccade(img, steps=61).to_dense()[0]
    dy, dx = triangle_path(61, 3.0)[0]
    y, x = int(3 + 4 + dy), int(3 + 4 + dx)
    off, on = 0, 1
    assert first_step(dense[:, off, y, x]) < first_step(dense[:, on, y, x])
    assert first_step(dense[:, on, y + 1, x]) < first_step(dense[:, off, y + 1, x])


def test_triangle_path_visits_the_corners():
    path = triangle_path(7, 3.0)
    np.testing.assert_array_equal(path[[0, 2, 4, 6]], [[-3, 0], [3, 3], [3, -3], [-3, 0]])
    np.testing.assert_array_equal(triangle_path(1, 3.0), [[-3, 0]])


# ----------------------------------------------------------------- bad input
X = np.full((2, 4), 0.5)
NAN = np.array([[0.5, np.nan]])
GEN = np.random.default_rng(0)


@pytest.mark.parametrize(
    "call, error, message",
    [
        (lambda: rate(NAN, 3, rng=GEN), EventsError, r"rate: x is not finite at index \(0, 1\)"),
        (lambda: rate(np.ones(4), 3, rng=GEN), EventsError, r"rate: x must have shape \(B, \*shape\)"),
        (lambda: rate(X, 0, rng=GEN), OptionError, "rate: steps must be an integer >= 1, got 0"),
        (lambda: rate(X, 2.0, rng=GEN), OptionError, "rate: steps must be an integer"),
        (lambda: rate(X * 4, 3, rng=GEN), EventsError,
         r"rate: \|scale \* x\| must be in \[0, 1\], got 2.0 at index \(0, 0\); scale the input"),
        (lambda: rate(X, 3), OptionError, "rate: give exactly one of rng"),
        (lambda: rate(X, 3, rng=GEN, uniforms=np.zeros((2, 3, 4))), OptionError, "exactly one of rng"),
        (lambda: rate(X, 3, rng=0), OptionError,
         r"rate: rng must be a numpy.random.Generator or a list of them \(one per sample\), got int"),
        (lambda: rate(X, 3, rng=[GEN, 0]), OptionError, "rate: rng must be a numpy.random.Generator or a list"),
        (lambda: rate(X, 3, rng=[GEN]), OptionError, "rate: rng holds 1 generators for 2 samples; give one per"),
        (lambda: rate(X, 3, uniforms=np.zeros((2, 4, 4))), EventsError, r"uniforms must have shape .* \(2, 3, 4\)"),
        (lambda: rate(X, 1, uniforms=np.ones((2, 1, 4))), EventsError, r"uniforms must lie in \[0, 1\)"),
        (lambda: rate(X, 1, uniforms=np.zeros((2, 1, 4), int)), EventsError, "uniforms must be a float array"),
        (lambda: rate(X, 3, rng=GEN, scale=-1), OptionError, "rate: scale must be a finite number > 0"),
        (lambda: rate(X, 3, rng=GEN, dtype=np.float16), OptionError, "rate: dtype must be float32 or float64"),
        (lambda: direct(X, 3, dtype=None), OptionError, "direct: dtype must be float32 or float64, got None"),
        (lambda: delta(X[None], 0.5, dtype="no such dtype"), OptionError, "delta: dtype must be float32 or float64"),
        (lambda: rate(X.astype(complex), 3, rng=GEN), EventsError, "rate: x must be a real numeric array"),
        (lambda: direct(np.array([[np.inf]]), 3), EventsError, "direct: x is not finite"),
        (lambda: direct(np.array([[1e300]]), 3), EventsError, "direct: x overflows float32"),
        (lambda: direct(np.zeros((2, 0)), 3), EventsError, "direct: x has an empty axis"),
        (lambda: direct(X, -1), OptionError, "direct: steps must be an integer >= 1"),
        (lambda: latency(X, 3, mode="cubic"), OptionError, "unknown latency mode 'cubic'; choose one of"),
        (lambda: latency(X + 1, 3), EventsError, r"latency: x must be in \[0, 1\], got 1.5 at index \(0, 0\)"),
        (lambda: latency(-X, 3, mode="log"), EventsError, "latency: x must be >= 0, got -0.5 at index"),
        (lambda: latency(NAN, 3), EventsError, "latency: x is not finite"),
        (lambda: latency(X, 3, threshold=1.0), OptionError, "latency: threshold must be < 1"),
        (lambda: latency(X, 3, mode="log", threshold=0.0), OptionError, "latency: threshold must be a finite .* > 0"),
        (lambda: latency(X, 3, mode="log", tau=0.0), OptionError, "latency: tau must be a finite number > 0"),
        (lambda: latency(X, 3, tau=2.0), OptionError, "latency: tau applies to mode 'log' only"),
        (lambda: delta(X, 0.5), EventsError, r"delta: x must have shape \(B, T, \*shape\)"),
        (lambda: delta(NAN[None], 0.5), EventsError, r"delta: x is not finite at index \(0, 0, 1\)"),
        (lambda: delta(X[None], 0.0), OptionError, "delta: threshold must be a finite number > 0"),
        (lambda: delta(X[None], float("nan")), OptionError, "delta: threshold must be a finite number > 0"),
        (lambda: delta(X[None], 0.5, off_spikes="no"), OptionError, "delta: off_spikes must be True or False"),
        (lambda: saccade(np.zeros((28, 28))), EventsError, r"saccade: images must have shape \(B, H, W\) \(3 axes\)"),
        (lambda: saccade(np.full((1, 4, 4), 255.0)), EventsError,
         r"saccade: images must be in \[0, 1\], got 255.0 .* divide 8-bit images by 255"),
        (lambda: saccade(np.full((1, 4, 4), np.nan)), EventsError, "saccade: images is not finite"),
        (lambda: saccade(np.zeros((1, 4, 4)), steps=0), OptionError, "saccade: steps must be an integer >= 1"),
        (lambda: saccade(np.zeros((1, 4, 4)), contrast=0), OptionError, "saccade: contrast must be a finite .* > 0"),
        (lambda: saccade(np.zeros((1, 4, 4)), noise=0.1), OptionError, "saccade: noise > 0 needs rng"),
        (lambda: saccade(np.zeros((1, 4, 4)), noise=1.5, rng=GEN), OptionError, "saccade: noise must be a finite number >= 0 and <= 1, got 1.5"),
        (lambda: saccade(np.zeros((1, 4, 4)), rng=GEN), OptionError, "saccade: rng is only used for noise"),
    ],
)
def test_bad_input_raises_a_clear_error(call, error, message):
    with pytest.raises(error, match=message):
        call()
