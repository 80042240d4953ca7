"""Finiteness in the dtype that computes (docs/semantics.md, "Bad input"; eventsim.finite).

A parameter that is finite in float64 may be inf (or 0) once rounded to the
network's float32; a sum of finite float32 values may overflow. Either way a
run must stop with a LayerError naming the layer (and, for an overflow during
the run, the step), in the event path and in the dense twin alike, and never
hand back inf or NaN.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsim import dense
from eventsim.errors import LayerError, NIRError
from eventsim.events import Events
from eventsim.layers import IF, LIF, Dropout, Flatten, Linear, Readout, SpikingAvgPool, SumPool
from eventsim.network import Network
from eventsim.norm import CurrentNorm
from eventsim.threads import set_threads
from fuzzing import untrusted

F32_MAX = float(np.finfo(np.float32).max)  # 3.4028235e38


def ones(batch: int, steps: int, shape: tuple[int, ...], value: float = 1.0, at: int | None = None) -> np.ndarray:
    """Dense float32 input: ``value`` everywhere, or only at step ``at``."""
    x = np.zeros((batch, steps) + shape, np.float32)
    if at is None:
        x[:] = value
    else:
        x[:, at] = value
    return x


def assert_refused_by_both(net: Network, x: np.ndarray, match: str, **run) -> tuple[str, str]:
    """Both the event path and the dense twin raise LayerError matching ``match``; their messages."""
    with pytest.raises(LayerError, match=match) as event:
        net.run(Events.from_dense(x), **run)
    dense_run = {k: v for k, v in run.items() if k in ("train", "masks")}
    with pytest.raises(LayerError, match=match) as twin:
        dense.run_dense(net, x, **dense_run)
    return str(event.value), str(twin.value)


# ------------------------------------------------ parameters rounded to float32
def test_input_gain_that_is_inf_in_float32():
    """g = 1e300 is finite in float64 and inf in float32: the run computed inf potentials, silently."""
    net = Network([Linear(2, 2, weight=np.ones((2, 2), np.float32)), LIF(1.0, leak=1.0, input_gain=1e300)], (2,))
    for message in assert_refused_by_both(net, ones(1, 3, (2,)), "input_gain"):
        assert "layer 'lif1' (LIF): input_gain is inf in float32 (1e+300 in float64)" in message
    # The same layer computes in float64, where the gain is finite.
    net64 = Network([Linear(2, 2, weight=np.ones((2, 2))), LIF(1.0, leak=1.0, input_gain=1e300)], (2,), np.float64)
    out = net64.run(Events.from_dense(ones(1, 3, (2,)).astype(np.float64)), record=("potentials",))
    assert np.isfinite(out.potentials["lif1"]).all()


def test_nir_lif_with_a_huge_r():
    """The issue's case: a foreign NIR LIF with r = 1e300 must not give a float32 network that runs.

    The importer refuses it, naming the node; the layer's own check (the test
    above) would refuse the run if it got that far.
    """
    nir = pytest.importorskip("nir")
    from eventsim.nir import from_nir

    shape = (2,)
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array(shape)),
        nir.Linear(weight=np.eye(2)),
        nir.LIF(tau=np.full(shape, 4.0), r=np.full(shape, 1e300), v_leak=np.zeros(shape),
                v_threshold=np.ones(shape)),
        nir.Output(output_type=np.array(shape)),
    )
    with pytest.raises(NIRError, match=r"NIR node 'lif' \(LIF\): r=1e\+300 .* input gain 2\.5e\+299, beyond the range "
                                        r"of float32"):
        from_nir(graph, dt=1.0)


@pytest.mark.parametrize("make, what", [
    (lambda: LIF(1e300, leak=1.0), "threshold is inf in float32"),
    (lambda: LIF(1e-50, leak=1.0), "threshold is 0.0 in float32"),
    (lambda: LIF(1.0, leak=1.0, v_reset=1e300), "v_reset is inf in float32"),
    (lambda: LIF(1.0, leak=1.0, input_gain=1e-50), "input_gain is 0.0 in float32"),
    (lambda: LIF(np.array([1.0, 1e39]), leak=1.0), r"threshold is inf in float32 at index \(1,\)"),
])
def test_neuron_options_that_break_in_float32(make, what):
    net = Network([Linear(2, 2, weight=np.ones((2, 2), np.float32)), make()], (2,))
    assert_refused_by_both(net, ones(1, 2, (2,)), what)


def test_an_infinite_threshold_stays_allowed():
    """theta = inf is a neuron that never fires (Readout; ANN-to-SNN conversion's silent channels)."""
    net = Network([Linear(2, 2, weight=np.ones((2, 2), np.float32)), IF(np.array([np.inf, 1.0])),
                   Linear(2, 1, weight=np.ones((1, 2), np.float32)), Readout()], (2,))
    x = ones(1, 4, (2,))
    out = net.run(Events.from_dense(x), record=("counts",))
    np.testing.assert_array_equal(out.counts["if1"], [[0, 4]])  # I = 2 > 1 at every step: fires every step
    np.testing.assert_array_equal(dense.run_dense(net, x).readout, out.output)


def test_spiking_pool_threshold_that_is_inf_in_float32_names_the_pool():
    net = Network([SpikingAvgPool(2, threshold_ratio=1e300)], (1, 2, 2))
    for message in assert_refused_by_both(net, ones(1, 2, (1, 2, 2)), "threshold is inf in float32"):
        assert message.startswith("layer 'pool1' (SpikingAvgPool)")


def test_leak_set_after_construction_is_checked():
    """leak was a plain attribute: lif.leak = 1e300 was taken, and potentials grew to inf."""
    lif = LIF(1.0, leak=0.5)
    for bad in (1e300, 1.5, -0.1, float("nan")):
        with pytest.raises(LayerError, match="leak must be in"):
            lif.leak = bad
    assert lif.leak == 0.5


@pytest.mark.parametrize("option, bad, message", [
    ("v_rest", float("nan"), "v_rest must be a finite number"),
    ("v_min", float("nan"), "v_min must be a number or -inf"),
    ("v_init", float("inf"), "v_init must be a finite number"),
    ("max_spikes", 0, "max_spikes must be an int >= 1"),
])
def test_state_option_set_after_construction_is_checked_where_it_takes_effect(option, bad, message):
    """The options of "State beyond the potential" are plain attributes: lif.v_rest = nan after
    construction ran, the event path reading the NaN as "no rest potential" and the twin computing NaN."""
    lif = LIF(1.0, leak=0.5, v_rest=0.25, v_min=-2.0, max_spikes=3)
    net = Network([Linear(2, 2, weight=np.ones((2, 2), np.float32)), lif, Readout()], (2,))
    setattr(lif, option, bad)
    assert_refused_by_both(net, ones(1, 3, (2,)), message)


def test_spike_cap_that_float32_cannot_hold_is_refused():
    """max_spikes = 2^24 + 3 became 2^24 + 4 in float32: a neuron could fire one spike more than its cap."""
    lif = LIF(1.0, leak=1.0, max_spikes=2**24 + 3)
    net = Network([Linear(2, 2, weight=np.ones((2, 2), np.float32)), lif, Readout()], (2,))
    assert_refused_by_both(net, ones(1, 3, (2,)), r"max_spikes 16777219 is 16777220\.0 in float32")
    wide = Network([Linear(2, 2, weight=np.ones((2, 2))), LIF(1.0, leak=1.0, max_spikes=2**24 + 3), Readout()],
                   (2,), dtype=np.float64)
    wide.run(Events.from_dense(ones(1, 3, (2,)).astype(np.float64)))  # float64 holds it
    for huge, shown in ((10**39, "inf in float32"), (10**400, "inf in float32")):
        lif.max_spikes = huge
        assert_refused_by_both(net, ones(1, 3, (2,)), f"max_spikes {huge} is {shown}")


def test_float64_bias_that_is_inf_in_float32():
    """The dense twin rounded a float64 bias of 1e300 to inf and ran; the event path refuses the dtype."""
    fc = Linear(2, 2, weight=np.ones((2, 2)), bias=np.array([1e300, 0.0]))
    net = Network([fc, Readout()], (2,))
    with pytest.raises(LayerError, match=r"bias is inf in float32 at index \(0,\) \(1e\+300 in float64\)"):
        dense.run_dense(net, ones(1, 2, (2,)))
    with pytest.raises(LayerError, match="holds a float64 weight but the network runs in float32"):
        net.run(Events.from_dense(ones(1, 2, (2,))))


def test_norm_factor_that_is_inf_in_float32():
    """k = scale / sqrt(var + eps) in float64: 3e38 / sqrt(1e-5) is finite there and inf in float32."""
    norm = CurrentNorm(eps=1e-5)
    net = Network([Linear(2, 2, weight=np.ones((2, 2), np.float32)), LIF(1.0, leak=1.0, norm=norm), ], (2,))
    norm.scale = np.full(2, 3e38, np.float32)
    norm.running_var = np.zeros(2, np.float32)
    assert_refused_by_both(net, ones(1, 2, (2,)), r"factor k.* is inf in float32")


# ------------------------------------------------------------ overflow in a run
def test_two_weights_near_float32_max_sum_to_inf():
    """3e38 + 3e38 = inf in float32: the readout came back inf with no error."""
    net = Network([Linear(2, 1, weight=np.full((1, 2), 3e38, np.float32)), Readout()], (2,))
    x = ones(2, 5, (2,), at=3)
    x[0] = 0  # sample 0 stays finite; sample 1 overflows at step 3
    event, twin = assert_refused_by_both(net, x, "step 3 of sample 1")
    assert event.startswith("layer 'readout1' (Readout): a potential is not finite")
    assert twin.startswith("layer 'fc1' (Linear): an output value is not finite")  # the twin sees the current first
    # The step is found whatever the window the event path cuts the run into.
    for window in (1, 2, 5):
        with pytest.raises(LayerError, match="at step 3 of sample 1"):
            net.run(Events.from_dense(x), window=window)


def test_potential_that_overflows_over_steps():
    """Each step's current is finite; their running sum in U is not: the step where it turns inf is named."""
    net = Network([Linear(1, 1, weight=np.full((1, 1), 1.5e38, np.float32)), Readout()], (1,))
    # U = 1.5e38, 3.0e38, inf: overflow at step 2, found by both paths in the neuron.
    assert_refused_by_both(net, ones(1, 4, (1,)), r"layer 'readout1' \(Readout\): a potential is not finite .* at step 2 ")


def test_bias_near_float32_max_overflows_the_current():
    fc = Linear(1, 1, weight=np.full((1, 1), 2e38, np.float32), bias=np.full(1, 2e38, np.float32))
    net = Network([fc, LIF(np.inf, leak=0.0)], (1,))
    assert_refused_by_both(net, ones(1, 3, (1,), at=1), "not finite .* at step 1 of sample 0")


def test_pooled_values_that_overflow_are_refused_where_they_are_passed_on():
    """A sum pool with no neuron after it passes its currents on as event values."""
    net = Network([SumPool(2), Flatten(), Linear(1, 1, weight=np.full((1, 1), 1e-30, np.float32)), Readout()],
                  (1, 2, 2))
    for message in assert_refused_by_both(net, ones(1, 3, (1, 2, 2), value=1e38, at=2), "at step 2 of sample 0"):
        assert message.startswith("layer 'pool1' (SumPool): an output value is not finite")


def test_dropout_scaled_values_that_overflow():
    net = Network([Dropout(0.5), Linear(1, 1, weight=np.full((1, 1), 1e-30, np.float32)), Readout()], (1,))
    masks = {"drop1": np.ones((1, 1), bool)}
    assert_refused_by_both(net, ones(1, 2, (1,), value=3e38, at=1), r"layer 'drop1' \(Dropout\).* at step 1",
                    train=True, masks=masks)


def test_summed_counts_that_overflow():
    """Two finite pooled values sum to inf in the counts record, which is refused; the run without it is fine."""
    net = Network([SumPool(1), Flatten(), Linear(1, 1, weight=np.full((1, 1), 1e-30, np.float32)), Readout()],
                  (1, 1, 1))
    events = Events.from_dense(ones(1, 2, (1, 1, 1), value=3e38))
    assert np.isfinite(net.run(events).output).all()
    with pytest.raises(LayerError, match=r"layer 'pool1' \(SumPool\): the summed output values \(counts\)"):
        net.run(events, record=("counts",))


def test_the_error_does_not_depend_on_the_threads():
    """Several samples overflow: the first of them is named, on 1 thread as on 2."""
    net = Network([Linear(2, 1, weight=np.full((1, 2), 3e38, np.float32)), Readout()], (2,))
    x = ones(6, 4, (2,))
    x[:2] = 0
    x[2, :2] = 0  # sample 2 overflows at step 2, samples 3 to 5 at step 0
    messages = set()
    try:
        for threads in (1, 2):
            set_threads(threads)
            with pytest.raises(LayerError) as err:
                net.run(Events.from_dense(x))
            messages.add(str(err.value))
    finally:
        set_threads(None)
    assert messages == {"layer 'readout1' (Readout): a potential is not finite (inf or NaN) at step 2 of sample 2: "
                        "the sum overflows float32; make the weights or inputs smaller, or run the network in float64"}


# -------------------------------------------------------------------- property
# Every finite float32, with ordinary magnitudes drawn as often as the extremes.
finite32 = st.one_of(st.floats(-4, 4, width=32), st.floats(-F32_MAX, F32_MAX, width=32))
positive32 = st.one_of(st.floats(0.125, 4, width=32), st.floats(np.finfo(np.float32).tiny, F32_MAX, width=32))
NAMED_STEP = re.compile(r"^layer '[\w.]+' \(\w+\): .* at step \d+ of sample \d+")
NAMED_GRADIENT = re.compile(r"^layer '[\w.]+' \(\w+\): the gradient of its \w+ is not finite")


@st.composite
def networks(draw):
    """A small float32 network whose every parameter is finite in float32, and a finite float32 input."""
    n_in, n_hidden, n_out = draw(st.integers(1, 3)), draw(st.integers(1, 3)), draw(st.integers(1, 2))
    batch, steps = draw(st.integers(1, 2)), draw(st.integers(1, 4))

    def array(shape, elements=finite32):
        return np.array(draw(st.lists(elements, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))),
                        np.float32).reshape(shape)

    reset = draw(st.sampled_from(["hard", "soft"]))
    neuron = LIF(array((n_hidden,), positive32), leak=draw(st.floats(0, 1, width=32)), reset=reset,
                 v_reset=draw(finite32) if reset == "hard" else 0.0, strict=draw(st.booleans()),
                 input_gain=draw(positive32), reset_delayed=draw(st.booleans()))
    net = Network([
        Linear(n_in, n_hidden, weight=array((n_hidden, n_in)),
               bias=array((n_hidden,)) if draw(st.booleans()) else None),
        neuron,
        Linear(n_hidden, n_out, weight=array((n_out, n_hidden))),
        Readout(leak=draw(st.floats(0, 1, width=32)), input_gain=draw(positive32)),
    ], (n_in,))
    spikes = draw(st.booleans())
    x = array((batch, steps, n_in), st.sampled_from([0.0, 1.0]) if spikes else finite32)
    return net, x


@given(networks())
def test_finite_parameters_and_inputs_give_finite_numbers_or_a_named_step(case):
    """Never non-finite numbers back: finite outputs, potentials and gradients, or a LayerError.

    The error names the layer and the step of a forward overflow, or the
    layer and the parameter of a gradient that overflowed backward.
    """
    from eventsim.learning.rules import BPTT

    net, x = case
    rule = BPTT()
    events = Events.from_dense(x)

    def forward_and_backward():
        try:
            result = net.run(events, record=rule.records + ("potentials", "counts"), train=True)
            grad_output = np.ones((x.shape[0],) + net.output_shape, np.float32)
            return result, rule.gradients(net, events, result, grad_output)
        except LayerError as exc:
            assert NAMED_STEP.match(str(exc)) or NAMED_GRADIENT.match(str(exc)), str(exc)
            raise

    def finite(answer):
        result, grads = answer
        assert np.isfinite(result.output).all()
        for records in (result.potentials, result.counts):
            assert all(np.isfinite(v).all() for v in records.values())
        assert all(np.isfinite(g).all() for g in grads.values()), grads

    untrusted("finiteness: event path", forward_and_backward, finite)

    def twin():
        try:
            return dense.run_dense(net, x)
        except LayerError as exc:
            assert NAMED_STEP.match(str(exc)), str(exc)
            raise

    def twin_finite(run):
        assert np.isfinite(run.readout).all()
        assert all(np.isfinite(u).all() for u in run.potentials.values())

    untrusted("finiteness: dense twin", twin, twin_finite)


def test_gradient_that_overflows_is_refused():
    """A finite forward pass whose backward overflows: the optimizer would have written inf into fc1.weight."""
    from eventsim.learning.rules import BPTT

    net = Network([Linear(1, 1, weight=np.ones((1, 1), np.float32)), LIF(1.0, leak=1.0),
                   Linear(1, 1, weight=np.full((1, 1), 3e38, np.float32)), Readout()], (1,))
    events = Events.from_dense(ones(1, 1, (1,), value=1e10))
    rule = BPTT()
    result = net.run(events, record=rule.records, train=True)
    assert np.isfinite(result.output).all()
    with pytest.raises(LayerError, match=r"layer 'fc1' \(Linear\): the gradient of its weight is not finite"):
        rule.gradients(net, events, result, np.ones((1, 1), np.float32))


@pytest.mark.parametrize("neuron", [
    lambda: LIF(1.0, leak=1.0),  # +inf fires and a hard reset forgets it
    lambda: LIF(1.0, leak=0.0),
    lambda: LIF(1.0, leak=0.5, reset="soft"),
    lambda: LIF(1.0, leak=1.0, reset_delayed=True),
    lambda: LIF(1.0, leak=0.5, reset="soft", reset_delayed=True),
    lambda: LIF(np.inf, leak=1.0),  # never fires: inf stays in the state
], ids=["hard", "no-leak", "soft", "hard-delayed", "soft-delayed", "silent"])
@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["+inf", "-inf"])
def test_overflow_is_found_at_its_step_for_every_reset(neuron, sign):
    """An inf current at step 3, mid-window, in every neuron convention (lif_window sees it in two places)."""
    weight = np.array([[1.0, 3e38 * sign, 3e38 * sign]], np.float32)
    net = Network([Linear(3, 1, weight=weight), neuron()], (3,))
    x = np.zeros((1, 6, 3), np.float32)
    x[0, :, 0] = 1.0  # finite current at every step
    x[0, 3, 1:] = 1.0  # the two large ones join at step 3 only
    for window in (None, 2, 6):
        with pytest.raises(LayerError, match=r"layer 'lif1' \(LIF\): a potential is not finite .* at step 3 "):
            net.run(Events.from_dense(x), window=window)
    assert_refused_by_both(net, x, "at step 3 of sample 0")
