"""The dense twin of synaptic delays on Linear layers (docs/semantics.md, "Delays", "Counting").

``I[t, o] = sum_i W[o, i] s[t - d[o, i], i] (+ b[o])`` with ``s = 0`` before
step 0, the bias not delayed and currents landing at or after T dropped.
Independent references:

- the sum written out by hand, term by term, in exact rational arithmetic
  (dyadic weights and inputs, so the float sum must equal it exactly);
- shifts: one-hot weights turn a per-synapse delay into a shifted copy of
  one input; a delay of 0 is the plain Linear; a per-output delay is a
  ``Delay`` after the (bias-free) Linear, a per-input delay a ``Delay``
  before it;
- hand-computed currents and SynOps; SynOps counted again from the arrival
  side (which delayed inputs are nonzero at each step before T).

The last test holds the event path to this twin and its SynOps counter.
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventsim as es
from eventsim.dense import linear, linear_synops, run_dense
from eventsim.dense.counting import delayed_linear_synops
from eventsim.dense.linear import delayed_linear
from eventsim.testing.strategies import DTYPES, dyadic

seeds = st.integers(0, 2**32 - 1)
FORMS = ("layer", "output", "synapse")


def draw_delay(rng: np.random.Generator, form: str, n_out: int, n_in: int, high: int):
    """A delay given as the layer takes it (one int, ``(out,)`` or ``(out, in)``) and the same per synapse."""
    if form == "layer":
        d = int(rng.integers(0, high + 1))
        return d, np.full((n_out, n_in), d)
    if form == "output":
        d = rng.integers(0, high + 1, size=n_out)
        return d, np.repeat(d[:, None], n_in, axis=1)
    d = rng.integers(0, high + 1, size=(n_out, n_in))
    return d, d


def spikes_and_values(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Dyadic input values, about half of them zero (no event)."""
    return np.where(rng.random(shape) < 0.5, dyadic(rng, shape, dtype), 0).astype(dtype)


# ============================================================ the sum by hand
@given(seed=seeds, n_in=st.integers(1, 4), n_out=st.integers(1, 4), steps=st.integers(1, 9),
       form=st.sampled_from(FORMS), with_bias=st.booleans(), dtype=DTYPES)
def test_the_currents_are_the_delayed_sum_written_out_term_by_term(seed, n_in, n_out, steps, form, with_bias, dtype):
    rng = np.random.default_rng(seed)
    delay, per_synapse = draw_delay(rng, form, n_out, n_in, steps + 1)
    w = dyadic(rng, (n_out, n_in), dtype)
    b = dyadic(rng, n_out, dtype) if with_bias else None
    x = spikes_and_values(rng, (2, steps, n_in), dtype)
    fc = es.Linear(n_in, n_out, weight=w, bias=b, delay=delay, name="fc")
    r = run_dense(es.Network([fc, es.LIF(0.5, leak=0.75, name="lif")], (n_in,), dtype=dtype), x)

    expected = np.zeros((2, steps, n_out), dtype)
    for batch, t, o in np.ndindex(*expected.shape):
        total = Fraction(0) if b is None else Fraction(float(b[o]))
        for i in range(n_in):
            source = t - per_synapse[o, i]
            if source >= 0:
                total += Fraction(float(w[o, i])) * Fraction(float(x[batch, source, i]))
        expected[batch, t, o] = float(total)
    np.testing.assert_array_equal(r.outputs["fc"], expected)
    # The neuron integrates exactly these currents: the same as a lone neuron fed them.
    alone = run_dense(es.Network([es.LIF(0.5, leak=0.75, name="lif")], (n_out,), dtype=dtype), expected)
    np.testing.assert_array_equal(r.potentials["lif"], alone.potentials["lif"])
    np.testing.assert_array_equal(r.outputs["lif"], alone.outputs["lif"])


def test_a_small_layer_by_hand():
    """W = [[1, 1/2]], b = 1/4, d = [[0, 2]]: input 1 arrives two steps late, its step-2 and step-3 values never."""
    fc = es.Linear(2, 1, weight=np.array([[1.0, 0.5]]), bias=np.array([0.25]), delay=np.array([[0, 2]]), name="fc")
    x = np.array([[[1.0, 1.0], [0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    r = run_dense(es.Network([fc], (2,), dtype=np.float64), x)
    # t=0: 1 + 0.25; t=1: 0 + 0.25; t=2: 1 + 0.5*1 + 0.25; t=3: 0 + 0.5*1 + 0.25
    assert r.outputs["fc"][0, :, 0].tolist() == [1.25, 0.25, 1.75, 0.75]


# ====================================================================== shifts
@given(seed=seeds, n=st.integers(1, 5), steps=st.integers(1, 10), dtype=DTYPES)
def test_one_hot_weights_with_per_synapse_delays_shift_each_input(seed, n, steps, dtype):
    """Output o reads only input p[o], d[o, p[o]] steps late: a shifted copy of it, for any values."""
    rng = np.random.default_rng(seed)
    p = rng.permutation(n)
    w = np.zeros((n, n), dtype)
    w[np.arange(n), p] = 1
    d = rng.integers(0, steps + 2, size=(n, n))
    x = rng.normal(size=(2, steps, n)).astype(dtype)  # not dyadic: 1 * s plus zeros is s exactly
    r = run_dense(es.Network([es.Linear(n, n, weight=w, delay=d, name="fc")], (n,), dtype=dtype), x)
    expected = np.zeros_like(x)
    for o in range(n):
        k = d[o, p[o]]
        expected[:, k:, o] = x[:, :max(steps - k, 0), p[o]]
    np.testing.assert_array_equal(r.outputs["fc"], expected)


@given(seed=seeds, n_in=st.integers(1, 5), n_out=st.integers(1, 5), steps=st.integers(1, 6),
       form=st.sampled_from(FORMS), dtype=DTYPES)
def test_a_delay_of_zero_is_the_plain_linear_bit_for_bit(seed, n_in, n_out, steps, form, dtype):
    rng = np.random.default_rng(seed)
    zero = {"layer": 0, "output": np.zeros(n_out, np.int64), "synapse": np.zeros((n_out, n_in), np.int64)}[form]
    w = rng.normal(size=(n_out, n_in)).astype(dtype)  # any weights: a zero delay changes nothing
    b = rng.normal(size=n_out).astype(dtype)
    x = rng.normal(size=(2, steps, n_in)).astype(dtype)
    delayed = es.Linear(n_in, n_out, weight=w, bias=b, delay=zero, name="fc")
    assert delayed.delay is None
    plain = es.Linear(n_in, n_out, weight=w, bias=b, name="fc")
    tail = [es.LIF(0.25, leak=0.5, name="lif")]
    a = run_dense(es.Network([delayed] + tail, (n_in,), dtype=dtype), x)
    c = run_dense(es.Network([plain] + tail, (n_in,), dtype=dtype), x)
    for name in ("fc", "lif"):
        np.testing.assert_array_equal(a.outputs[name], c.outputs[name])
    # The delayed sum itself, given zero delays, is the plain one (dyadic: any order of summation is exact).
    wd, bd, xd = dyadic(rng, (n_out, n_in), dtype), dyadic(rng, n_out, dtype), dyadic(rng, (3, steps, n_in), dtype)
    np.testing.assert_array_equal(delayed_linear(xd, wd, np.zeros((n_out, n_in), np.int64), bd),
                                  linear(xd[:, -1], wd, bd))


@st.composite
def delayed_networks(draw, form: str):
    """Dyadic networks fc -> lif -> fc2 -> readout whose first Linear has delays of the given form."""
    rng = np.random.default_rng(draw(seeds))
    n_in, hidden, steps = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 10))
    dtype = draw(DTYPES)
    delay, per_synapse = draw_delay(rng, form, hidden, n_in, steps + 1)
    x = spikes_and_values(rng, (2, steps, n_in), dtype)
    w1, w2 = dyadic(rng, (hidden, n_in), dtype), dyadic(rng, (2, hidden), dtype)
    b1 = dyadic(rng, hidden, dtype)
    return dtype, x, delay, per_synapse, w1, b1, w2


def tail(w2: np.ndarray) -> list:
    return [es.LIF(0.5, leak=0.75, name="lif"), es.Linear(w2.shape[1], 2, weight=w2, name="fc2"),
            es.Readout(leak=0.5, name="out")]


def assert_same_neurons(a, b) -> None:
    for name in ("lif", "out"):
        np.testing.assert_array_equal(a.potentials[name], b.potentials[name], err_msg=name)
    np.testing.assert_array_equal(a.outputs["lif"], b.outputs["lif"])
    np.testing.assert_array_equal(a.readout, b.readout)


@given(case=delayed_networks("output"))
def test_a_per_output_delay_is_a_delay_layer_after_the_bias_free_linear(case):
    dtype, x, delay, _, w1, _, w2 = case
    n_in, hidden = w1.shape[1], w1.shape[0]
    synaptic = [es.Linear(n_in, hidden, weight=w1, delay=delay, name="fc")] + tail(w2)
    after = [es.Linear(n_in, hidden, weight=w1, name="fc"), es.Delay(delay, name="delay")] + tail(w2)
    a = run_dense(es.Network(synaptic, (n_in,), dtype=dtype), x)
    c = run_dense(es.Network(after, (n_in,), dtype=dtype), x)
    np.testing.assert_array_equal(a.outputs["fc"], c.outputs["delay"])
    assert_same_neurons(a, c)


@given(case=delayed_networks("layer"), per_input=st.booleans())
def test_a_delay_per_input_is_a_delay_layer_before_the_linear_and_leaves_the_bias(case, per_input):
    """d[o, i] = e[i] for every o: each input arrives e[i] steps late at every output; the bias is on time."""
    dtype, x, delay, per_synapse, w1, b1, w2 = case
    n_in, hidden = w1.shape[1], w1.shape[0]
    e = np.arange(n_in) % (x.shape[1] + 2) if per_input else np.full(n_in, delay)
    synaptic = [es.Linear(n_in, hidden, weight=w1, bias=b1, delay=np.tile(e, (hidden, 1)), name="fc")] + tail(w2)
    before = [es.Delay(e, name="delay"), es.Linear(n_in, hidden, weight=w1, bias=b1, name="fc")] + tail(w2)
    a = run_dense(es.Network(synaptic, (n_in,), dtype=dtype), x)
    c = run_dense(es.Network(before, (n_in,), dtype=dtype), x)
    np.testing.assert_array_equal(a.outputs["fc"], c.outputs["fc"])
    assert_same_neurons(a, c)


# ====================================================== bias, and the end of T
@pytest.mark.parametrize("delay", [0, 3, 2**31 - 1])
def test_the_bias_is_not_delayed(delay):
    b = np.array([0.5, -0.25])
    fc = es.Linear(3, 2, weight=np.ones((2, 3)), bias=b, delay=delay, name="fc")
    r = run_dense(es.Network([fc], (3,), dtype=np.float64), np.zeros((1, 5, 3)))
    np.testing.assert_array_equal(r.outputs["fc"], np.broadcast_to(b, (1, 5, 2)))


@given(seed=seeds, steps=st.integers(1, 8), beyond=st.integers(0, 3), dtype=DTYPES)
def test_currents_landing_at_or_after_t_are_dropped(seed, steps, beyond, dtype):
    """Every delay >= T: nothing arrives within the run, whatever the input."""
    rng = np.random.default_rng(seed)
    d = rng.integers(steps, steps + beyond + 1, size=(2, 3))
    fc = es.Linear(3, 2, weight=dyadic(rng, (2, 3), dtype), delay=d, name="fc")
    r = run_dense(es.Network([fc], (3,), dtype=dtype), np.ones((2, steps, 3), dtype))
    assert not r.outputs["fc"].any()


def test_delayed_linear_refuses_delays_that_are_not_whole_steps_of_the_weight_shape():
    history, w = np.ones((1, 2, 3)), np.ones((2, 3))
    for bad in (np.zeros((3, 2), np.int64), np.full((2, 3), -1), np.zeros((2, 3))):
        with pytest.raises(ValueError, match="delayed linear: delay must be whole steps >= 0"):
            delayed_linear(history, w, bad)
    with pytest.raises(ValueError, match="delayed linear: input history"):
        delayed_linear(np.ones((1, 0, 3)), w, np.zeros((2, 3), np.int64))


# ===================================================================== SynOps
def test_synops_by_hand():
    """x = [1, 0, 2] at step 1 of 3: input 0 reaches output 0 (lands at 1) but not 1 (at 3);
    input 2 reaches output 1 (at 1) but not 0 (at 4); input 1 sends nothing."""
    delay = np.array([[0, 1, 3], [2, 0, 0]])
    assert delayed_linear_synops(np.array([1.0, 0.0, 2.0]), delay, step=1, steps=3) == 2
    assert delayed_linear_synops(np.array([1.0, 0.0, 2.0]), delay, step=0, steps=3) == 3
    assert delayed_linear_synops(np.array([1.0, 1.0, 1.0]), delay, step=2, steps=3) == 3


@given(seed=seeds, n_in=st.integers(1, 5), n_out=st.integers(1, 5), steps=st.integers(1, 9),
       form=st.sampled_from(FORMS))
def test_synops_counted_on_sending_equal_synops_counted_on_arrival(seed, n_in, n_out, steps, form):
    """Each counted operation is a nonzero s[t - d[o, i], i] that arrives at some step t < T."""
    rng = np.random.default_rng(seed)
    _, d = draw_delay(rng, form, n_out, n_in, steps + 1)
    x = spikes_and_values(rng, (steps, n_in), np.float64)
    sent = sum(delayed_linear_synops(x[t], d, t, steps) for t in range(steps))
    arrived = sum(1 for t in range(steps) for o in range(n_out) for i in range(n_in)
                  if t - d[o, i] >= 0 and x[t - d[o, i], i] != 0)
    assert sent == arrived
    if not d.any():
        assert sent == sum(linear_synops(x[t], n_out) for t in range(steps))


# ============================================== the event path against the twin
@given(case=delayed_networks("synapse"), delay2=st.integers(0, 3))
def test_the_event_path_equals_the_twin_and_its_synops(case, delay2):
    dtype, x, delay, per_synapse, w1, b1, w2 = case
    n_in, hidden = w1.shape[1], w1.shape[0]
    layers = [es.Linear(n_in, hidden, weight=w1, bias=b1, delay=delay, name="fc"), es.LIF(0.5, leak=0.75, name="lif"),
              es.Linear(hidden, 2, weight=w2, delay=delay2, name="fc2"), es.Readout(leak=0.5, name="out")]
    net = es.Network(layers, (n_in,), dtype=dtype)
    twin = run_dense(net, x)
    result = net.run(es.Events.from_dense(x), record=("spikes",))
    np.testing.assert_array_equal(result.spikes["lif"].to_dense(), twin.outputs["lif"])
    np.testing.assert_array_equal(result.output, twin.readout)
    steps = x.shape[1]
    fc2_delay = np.full((2, hidden), delay2)
    for b in range(x.shape[0]):
        assert result.synops["fc"][b] == sum(delayed_linear_synops(x[b, t], per_synapse, t, steps)
                                             for t in range(steps))
        assert result.synops["fc2"][b] == sum(delayed_linear_synops(twin.outputs["lif"][b, t], fc2_delay, t, steps)
                                              for t in range(steps))
