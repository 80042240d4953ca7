"""The event path of synaptic currents, rest potentials, clamps, several spikes, recurrence and delays.

docs/semantics.md, "State beyond the potential", "Recurrent connections",
"Delays". The event path equals the dense twin bit for bit on generated
networks that mix these features (dyadic weights and inputs, float32 and
float64); and on its own: results do not depend on the window a run takes
(recurrent stages step inside windows, delays hold events across them), a
delay equals a shifted input, a recurrent layer with zero weights is the
plain layer, and the closed forms of the issue. PyTorch is compared in
tests/test_torch_state.py.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import eventsim as es
from eventsim.dense import run_dense
from eventsim.learning.rules import BPTT, Lee2020, Lee2020Code
from eventsim.testing.strategies import dyadic, random_events

DTYPES = st.sampled_from([np.float32, np.float64])
#: Where bit-identity is guaranteed (docs/semantics.md, "Numerics": every partial sum of a current exact):
#: the terms of a current here have at most 3 fractional bits (weights k/4 or k/8 up to 2, integer counts
#: and bias k/8), so with every current and event value below 2^12 the sums over the largest fan-in
#: (54 terms) need at most 22 bits.
EXACT_BELOW = 2.0**12


def within_the_exact_range(ref) -> bool:
    """Whether every layer's output in the dense run stays below :data:`EXACT_BELOW`.

    A recurrent layer with several spikes per step can multiply its counts
    tenfold each step (a generated case reached 1e7 spikes in 7 steps); past
    float32's 24 bits the sums round by their order, which the contract leaves
    to the implementation.
    """
    return all(np.abs(out).max(initial=0.0) < EXACT_BELOW for out in ref.outputs.values())


def _neuron(draw, spiking: bool = True):
    options = {}
    if draw(st.booleans()):
        options["synapse_leak"] = draw(st.sampled_from([0.0, 0.5, 0.75, 1.0]))
        if draw(st.booleans()):
            options["synapse_gain"] = draw(st.sampled_from([0.25, 0.5, 2.0]))
    if draw(st.booleans()):
        options["v_rest"] = draw(st.sampled_from([-0.25, 0.125, 0.5]))
    if not spiking:
        return es.Readout(leak=draw(st.sampled_from([0.5, 1.0])), **options)
    if draw(st.booleans()):
        options["v_min"] = draw(st.sampled_from([-1.0, -0.25, 0.0]))
        options["v_init"] = max(options["v_min"], options.get("v_rest", 0.0))
    if draw(st.booleans()):
        options["max_spikes"] = draw(st.sampled_from([2, 3, None]))
    soft = draw(st.booleans())
    return es.LIF(draw(st.sampled_from([0.5, 1.0, 1.5])), leak=draw(st.sampled_from([0.5, 0.75, 1.0])),
                  reset="soft" if soft else "hard", strict=draw(st.booleans()), **options)


def _synaptic_delay(draw, rng, shape):
    """None, or delays of a Linear: one for the layer, one per output or one per synapse."""
    form = draw(st.sampled_from([None, None, "layer", "output", "synapse"]))
    if form is None:
        return None
    return rng.integers(0, 4, {"layer": (), "output": shape[:1], "synapse": shape}[form])


@st.composite
def state_cases(draw):
    """A flat network mixing the features, dyadic weights and input, and the run's dtype."""
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_in, n_hidden, n_out = draw(st.integers(1, 5)), draw(st.integers(1, 6)), draw(st.integers(1, 3))
    layers = [es.Linear(n_in, n_hidden, weight=dyadic(rng, (n_hidden, n_in), dtype, scale=4),
                        delay=_synaptic_delay(draw, rng, (n_hidden, n_in)))]
    neuron = _neuron(draw)
    if draw(st.booleans()):
        connection = es.Linear(n_hidden, n_hidden, weight=dyadic(rng, (n_hidden, n_hidden), dtype, scale=4),
                               bias=dyadic(rng, (n_hidden,), dtype, scale=8) if draw(st.booleans()) else None)
        layers.append(es.Recurrent(neuron, connection))
    else:
        layers.append(neuron)
    if draw(st.booleans()):
        kind = draw(st.sampled_from(["layer", "neuron"]))
        layers.append(es.Delay(draw(st.integers(0, 4)) if kind == "layer" else rng.integers(0, 5, n_hidden)))
    layers += [es.Linear(n_hidden, n_out, weight=dyadic(rng, (n_out, n_hidden), dtype, scale=4),
                         delay=_synaptic_delay(draw, rng, (n_out, n_hidden))),
               _neuron(draw, spiking=draw(st.booleans()))]
    steps = draw(st.integers(1, 12))
    events = random_events(rng, draw(st.integers(1, 2)), steps, (n_in,), draw(st.sampled_from([0.2, 0.6])), dtype,
                           values=(1.0,))
    return es.Network(layers, (n_in,), dtype=dtype), events


RECORDS = ("spikes", "potentials", "synaptic", "counts", "traces", "currents")


@st.composite
def conv_state_cases(draw):
    """A map network: a convolution into a recurrent block with a same-shape convolution, then a readout."""
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    c_in, c, hw, k = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(2, 5)), draw(st.sampled_from([1, 3]))
    connection = es.Conv2d(c, c, k, padding=k // 2, weight=dyadic(rng, (c, c, k, k), dtype, scale=4))
    layers = [es.Conv2d(c_in, c, 3, padding=1, weight=dyadic(rng, (c, c_in, 3, 3), dtype, scale=4)),
              es.Recurrent(_neuron(draw), connection)]
    if draw(st.booleans()):
        layers.append(es.Delay(rng.integers(0, 3, c)))
    layers += [es.Flatten(), es.Linear(c * hw * hw, 2, weight=dyadic(rng, (2, c * hw * hw), dtype, scale=8)),
               _neuron(draw, spiking=False)]
    events = random_events(rng, 1, draw(st.integers(1, 8)), (c_in, hw, hw), 0.4, dtype, values=(1.0,))
    return es.Network(layers, (c_in, hw, hw), dtype=dtype), events


@given(case=st.one_of(state_cases(), conv_state_cases()), window=st.integers(1, 4))
def test_the_event_path_equals_the_dense_twin_bit_for_bit(case, window):
    net, events = case
    got = net.run(events, record=("spikes", "potentials", "synaptic"), window=window)
    ref = run_dense(net, events.to_dense())
    assume(within_the_exact_range(ref))
    for name, spikes in got.spikes.items():
        np.testing.assert_array_equal(spikes.to_dense(), ref.outputs[name], err_msg=f"output events of {name}")
    assert got.potentials.keys() == ref.potentials.keys()
    for name, u in got.potentials.items():
        np.testing.assert_array_equal(u, ref.potentials[name], err_msg=f"potentials of {name}")
    assert got.synaptic.keys() == ref.synaptic.keys()
    for name, j in got.synaptic.items():
        np.testing.assert_array_equal(j, ref.synaptic[name], err_msg=f"synaptic currents of {name}")
    if ref.readout is not None:
        np.testing.assert_array_equal(got.output, ref.readout)


@given(case=state_cases(), window=st.integers(1, 5))
def test_results_do_not_depend_on_the_window(case, window):
    net, events = case
    whole = net.run(events, record=RECORDS)
    split = net.run(events, record=RECORDS, window=window)
    for what in ("potentials", "synaptic", "counts", "traces", "currents"):
        got, ref = getattr(split, what), getattr(whole, what)
        assert got.keys() == ref.keys()
        for name in ref:
            np.testing.assert_array_equal(got[name], ref[name], err_msg=f"{what} of {name}")
    for name, spikes in whole.spikes.items():
        np.testing.assert_array_equal(split.spikes[name].to_dense(), spikes.to_dense(), err_msg=name)
    assert {k: v.tolist() for k, v in split.synops.items()} == {k: v.tolist() for k, v in whole.synops.items()}
    if whole.output is not None:
        np.testing.assert_array_equal(split.output, whole.output)


@given(case=state_cases(), d=st.integers(0, 5))
def test_a_delay_before_the_network_equals_the_input_shifted(case, d):
    net, events = case
    delayed = es.Network([es.Delay(d)] + net.layers, net.input_shape, dtype=net.dtype)
    x = events.to_dense()
    shifted = np.zeros_like(x)
    if d < x.shape[1]:  # a delay of T or more moves every event past the end
        shifted[:, d:] = x[:, : x.shape[1] - d]
    got = delayed.run(events, record=("potentials", "spikes"))
    ref = net.run(es.Events.from_dense(shifted), record=("potentials", "spikes"))
    for name, u in ref.potentials.items():
        np.testing.assert_array_equal(got.potentials[name], u, err_msg=name)


@given(dtype=DTYPES, seed=st.integers(0, 2**32 - 1), soft=st.booleans(), steps=st.integers(1, 10))
def test_a_recurrent_layer_with_zero_weights_is_the_plain_layer(dtype, seed, soft, steps):
    rng = np.random.default_rng(seed)
    w = dyadic(rng, (4, 3), dtype, scale=4)

    def net(recurrent: bool):
        neuron = es.LIF(0.75, leak=0.5, reset="soft" if soft else "hard", synapse_leak=0.5)
        block = es.Recurrent(neuron, es.Linear(4, 4, weight=np.zeros((4, 4), dtype))) if recurrent else neuron
        return es.Network([es.Linear(3, 4, weight=w.copy()), block], (3,), dtype=dtype)

    events = random_events(rng, 2, steps, (3,), 0.5, dtype, values=(1.0,))
    got, ref = (n.run(events, record=("potentials", "synaptic")) for n in (net(True), net(False)))
    np.testing.assert_array_equal(got.potentials["rec1.lif1"], ref.potentials["lif1"])
    np.testing.assert_array_equal(got.synaptic["rec1.lif1"], ref.synaptic["lif1"])


def test_a_seeded_spike_runs_round_a_ring_one_neuron_per_step():
    """Three IF neurons in a ring, weight 2 > theta = 1: neuron i fires at steps i, i + 3, i + 6, ..."""
    ring = np.zeros((3, 3))
    ring[1, 0] = ring[2, 1] = ring[0, 2] = 2.0
    net = es.Network([es.Linear(1, 3, weight=np.array([[2.0], [0.0], [0.0]])),
                      es.Recurrent(es.IF(1.0), es.Linear(3, 3, weight=ring))], (1,), dtype=np.float64)
    x = np.zeros((1, 9, 1))
    x[0, 0, 0] = 1
    result = net.run(es.Events.from_dense(x), record=("spikes",), window=2)
    expected = np.zeros((9, 3))
    for t in range(9):
        expected[t, t % 3] = 1
    np.testing.assert_array_equal(result.spikes["rec1.if1"].to_dense()[0], expected)
    # The connection scatters every spike but the last step's to its 3 outputs.
    assert result.synops["rec1.fc1"].tolist() == [8 * 3]


@pytest.mark.parametrize("strict", [True, False])
@given(current=st.integers(1, 24), theta=st.sampled_from([0.25, 0.5, 1.0]), steps=st.integers(1, 20))
def test_several_spikes_per_step_emit_floor_of_t_i_over_theta_in_total(strict, current, theta, steps):
    """A soft-reset IF neuron under a constant current I emits floor(T I / theta) spikes for M >= I / theta."""
    i = current / 8
    m = int(np.ceil(i / theta)) + 1
    net = es.Network([es.IF(theta, reset="soft", strict=strict, max_spikes=m)], (1,), dtype=np.float64)
    result = net.run(es.Events.from_dense(np.full((1, steps, 1), i)), record=("counts",))
    total = np.floor(steps * i / theta)
    if strict and (steps * i / theta) == total:
        total -= 1  # strict: a potential exactly at k theta has crossed k - 1 thresholds
    assert result.counts["if1"][0, 0] == total


@pytest.mark.parametrize("arithmetic", ["product", "euler", "euler-divide", "subtract-divide"])
def test_a_neuron_at_rest_with_no_input_stays_at_rest(arithmetic):
    net = es.Network([es.LIF(1.0, leak=0.75, v_rest=-0.375, arithmetic=arithmetic)], (2,), dtype=np.float32)
    result = net.run(es.Events.from_dense(np.zeros((1, 6, 2), np.float32)), record=("potentials",))
    assert np.all(result.potentials["lif1"] == np.float32(-0.375))


def test_the_clamp_does_not_hide_an_overflow():
    """-inf clamped to v_min would leave a finite state: the kernel tests every U when there is a clamp."""
    big = np.full((1, 2), -3e38, np.float32)  # two of them sum to -inf in float32
    net = es.Network([es.Linear(2, 1, weight=big), es.LIF(1.0, leak=0.5, v_min=-1.0)], (2,), dtype=np.float32)
    x = np.zeros((1, 5, 2), np.float32)
    x[0, 3] = 1
    with pytest.raises(es.LayerError, match="step 3"):
        net.run(es.Events.from_dense(x))


@pytest.mark.parametrize("rule", [Lee2020(), Lee2020Code()])
@pytest.mark.parametrize("layer, named", [
    (lambda: es.Recurrent(es.LIF(1.0, leak=0.5), es.Linear(2, 2, weight=np.eye(2))), "rec1"),
    (lambda: es.Delay(1), "delay1"),
    (lambda: es.LIF(1.0, leak=0.5, synapse_leak=0.5), "lif1"),
    (lambda: es.LIF(1.0, leak=0.5, max_spikes=2), "lif1"),
    (lambda: es.LIF(1.0, leak=0.5, v_rest=0.25), "lif1"),
    (lambda: es.LIF(1.0, leak=0.5, v_min=-0.5), "lif1"),
])
def test_the_count_rules_refuse_what_their_derivation_does_not_cover(rule, layer, named):
    net = es.Network([es.Linear(2, 2, weight=np.eye(2)), layer(), es.Linear(2, 1, weight=np.ones((1, 2))),
                      es.Readout()], (2,), dtype=np.float64)
    events = es.Events.from_dense(np.ones((1, 3, 2)))
    result = net.run(events, record=("spikes", "counts", "traces", "potentials"))
    with pytest.raises(es.LayerError, match=named):
        rule.gradients(net, events, result, np.ones((1, 1)))
    BPTT().gradients(net, events, net.run(events, record=BPTT.records), np.ones((1, 1)))  # bptt covers it


@pytest.mark.parametrize("options, complaint", [
    (dict(synapse_leak=1.5), "synapse_leak must be in"),
    (dict(synapse_leak=0.5, synapse_tau=2.0), "at most one of synapse_leak"),
    (dict(synapse_gain=2.0), "synapse_gain needs a synaptic current"),
    (dict(v_rest=np.nan), "v_rest must be a finite number"),
    (dict(v_min=np.inf), "v_min must be a number or -inf"),
    (dict(v_min=0.0, v_init=-1.0), "v_init -1.0 is below v_min"),
    (dict(max_spikes=0), "max_spikes must be an int >= 1"),
    (dict(max_spikes=2.5), "max_spikes must be an int >= 1"),
    (dict(reset_delayed=True, max_spikes=2), "reset_delayed=True does not combine with several spikes"),
    (dict(reset_delayed=True, v_rest=0.5), "reset_delayed=True does not combine with a rest potential"),
])
def test_bad_state_options_are_refused_naming_the_option(options, complaint):
    with pytest.raises(es.LayerError, match=complaint):
        es.LIF(1.0, leak=0.5, **options)


@pytest.mark.parametrize("build, complaint", [
    (lambda: es.Delay(-1), "steps must be >= 0"),
    (lambda: es.Delay(1.5), "whole numbers of steps"),
    (lambda: es.Network([es.Delay(np.array([1, 2, 3]))], (2,)), "one value, one per channel"),
    (lambda: es.Recurrent(es.Readout(), es.Linear(2, 2)), "spiking LIF/IF"),
    (lambda: es.Network([es.Recurrent(es.LIF(1.0, leak=0.5), es.Linear(3, 2))], (3,)), "must give the same shape back"),
    (lambda: es.Recurrent(es.LIF(1.0, leak=0.5, norm=es.CurrentNorm()), es.Linear(2, 2)), "takes no input-current norm"),
])
def test_bad_recurrent_blocks_and_delays_are_refused(build, complaint):
    with pytest.raises(es.LayerError, match=complaint):
        build()


@given(case=state_cases())
def test_synops_count_each_event_once_per_synapse(case):
    """docs/semantics.md, "Counting": an event of n spikes is one event; the recurrent connection
    scatters the spikes of every step but the last."""
    from eventsim.dense.counting import delayed_linear_synops, linear_synops

    def synops(layer: es.Linear, x: np.ndarray) -> int:  # x: (T, in) of one sample
        if layer.delay is None:
            return linear_synops(x, layer.out_features)
        return sum(delayed_linear_synops(x[t], layer.delay, t, x.shape[0]) for t in range(x.shape[0]))

    net, events = case
    result = net.run(events, record=("spikes",))
    for layer in net.walk():
        if isinstance(layer, es.Recurrent):
            spikes = result.spikes[layer.neuron.name].to_dense()
            expected = [linear_synops(spikes[b, :-1], layer.connection.out_features) for b in range(events.batch)]
            assert result.synops[layer.connection.name].tolist() == expected
    last_hidden = [n for n in result.spikes if n != net.layers[-1].name][-1]  # what feeds the output synapse
    fed = result.spikes[last_hidden].to_dense()
    out = net.layers[-2]
    assert result.synops[out.name].tolist() == [synops(out, fed[b]) for b in range(events.batch)]
    first = net.layers[0]
    x = events.to_dense()
    assert result.synops[first.name].tolist() == [synops(first, x[b]) for b in range(events.batch)]


@given(dtype=DTYPES, seed=st.integers(0, 2**32 - 1), d=st.integers(0, 4), steps=st.integers(1, 10),
       window=st.integers(1, 4))
def test_one_synaptic_delay_for_the_layer_equals_a_delay_before_it(dtype, seed, d, steps, window):
    rng = np.random.default_rng(seed)
    w = dyadic(rng, (3, 2), dtype, scale=4)

    def net(synaptic: bool):
        layers = [es.Linear(2, 3, weight=w.copy(), delay=d if synaptic else None), es.LIF(0.5, leak=0.75)]
        return es.Network(layers if synaptic else [es.Delay(d)] + layers, (2,), dtype=dtype)

    events = random_events(rng, 2, steps, (2,), 0.5, dtype, values=(1.0,))
    got = net(True).run(events, record=("potentials", "spikes"), window=window)
    ref = net(False).run(events, record=("potentials", "spikes"))
    np.testing.assert_array_equal(got.potentials["lif1"], ref.potentials["lif1"])
    assert got.synops["fc1"].tolist() == ref.synops["fc1"].tolist()  # what lands past T is not counted either way


@pytest.mark.parametrize("layer, named", [
    (lambda: es.LIF(1.0, leak=0.5, synapse_leak=0.5), "lif1"),
    (lambda: es.Recurrent(es.LIF(1.0, leak=0.5), es.Linear(2, 2, weight=np.eye(2))), "rec1"),
    (lambda: es.Delay(1), "delay1"),
])
def test_the_dense_reference_gradients_refuse_what_they_do_not_model(layer, named):
    """They used to differentiate a synaptic-current layer as a plain LIF: silently wrong numbers."""
    from eventsim.learning.dense import bptt_gradients
    from eventsim.learning.surrogates import StraightThrough

    net = es.Network([es.Linear(2, 2, weight=np.eye(2)), layer(), es.Linear(2, 1, weight=np.ones((1, 2))),
                      es.Readout()], (2,), dtype=np.float64)
    with pytest.raises(es.LayerError, match=f"{named}.*dense reference of the gradient rules .* does not cover"):
        bptt_gradients(net, np.ones((1, 3, 2)), np.ones((1, 1)), surrogate=StraightThrough())
