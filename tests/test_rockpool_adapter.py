"""Rockpool against eventsim: the adapter, its matrix rows, and what Rockpool 3.1.0 computes.

Expected values come from closed forms, from eventsim's reference and from
Rockpool's own functions (``StepPWL``), never from the adapter. The rows of
eventsim.testing.rockpool_adapter.MATRIX_ROWS are run here with a few cases
each: the conforming ones conform, the others show their divergence.
"""

import dataclasses
import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")
pytest.importorskip("rockpool")

import eventsim as es  # noqa: E402
from eventsim.learning.surrogates import ArcTan, StraightThrough  # noqa: E402
from eventsim.testing import (  # noqa: E402
    GradientRequest, Unsupported, check_case, compare_forward, compare_gradients, conform, dyadic, random_events,
    reference_gradients, reference_records,
)
from eventsim.testing.matrix_rows import CLASSES  # noqa: E402
from eventsim.testing.rockpool_adapter import MATRIX_ROWS, RockpoolCandidate, candidate  # noqa: E402
from eventsim.testing.strategies import NetCase  # noqa: E402

ROWS = {row.name: row for row in MATRIX_ROWS}
SYNAPTIC_STATE = "Rockpool synaptic state: isyn = beta (isyn + input)"
WINDOW = "LIFTorch / LIFNeuronTorch, StepPWL learning_window 0.5 (default)"
FLOAT64 = "LIFTorch / LIFNeuronTorch .double(), float64"


def _case(layers, input_shape, spikes) -> NetCase:
    """A case of a hand-made network and dense input ``(batch, T, *input_shape)``."""
    dtype = spikes.dtype.type
    batch, steps = spikes.shape[:2]
    case = NetCase(0, dtype, input_shape, layers, batch, steps, 0.0)
    case.network = es.Network(layers, input_shape, dtype=dtype)
    case.events = es.Events.from_dense(spikes)
    return case


def _linear(**options) -> es.Linear:
    return es.Linear(2, 2, weight=np.ones((2, 2), np.float32), **options)


def _pulse(steps: int, dtype=np.float64) -> np.ndarray:
    """One sample, one input, a 1 at the first of ``steps`` steps: ``(batch, T, 1)``."""
    spikes = np.zeros((1, steps, 1), dtype)
    spikes[0, 0, 0] = 1.0
    return spikes


# ---------------------------------------------------------------- closed forms
def test_liftorch_takes_the_input_into_its_current_decayed_in_the_same_step():
    """J[t] = beta^(t+1) and U[t] = sum_k alpha^(t-k) beta^(k+1) after a unit pulse at step 0 (t from 0):
    the pulse reaches the potential in its own step, scaled by beta; nothing fires below theta = 100."""
    alpha, beta, steps = 0.75, 0.5, 6
    neuron = es.LIF(100.0, leak=alpha, reset="soft", strict=False, synapse_leak=beta, synapse_gain=beta)
    case = _case([neuron], (1,), _pulse(steps))
    record = candidate().build(case.network).run(case.spikes)["lif1"]
    t = np.arange(steps)
    current = beta ** (t + 1)
    potential = np.array([sum(alpha ** (s - k) * beta ** (k + 1) for k in range(s + 1)) for s in t])
    np.testing.assert_array_equal(record.synaptic[:, 0, 0], current)
    np.testing.assert_array_equal(record.potentials[:, 0, 0], potential)
    assert not record.outputs.any()


def test_lifneurontorch_counts_spikes_and_subtracts_them():
    """A constant input 2.5 into an IF neuron of threshold 1 with no bound on the count: U = 2.5, 3, 3.5, ...
    from R = U - n, n = floor(U); Rockpool's counts and pre-threshold potentials."""
    neuron = es.IF(1.0, reset="soft", strict=False, max_spikes=None)
    spikes = np.full((1, 4, 1), 2.5)
    case = _case([neuron], (1,), spikes)
    record = candidate().build(case.network).run(case.spikes)["if1"]
    np.testing.assert_array_equal(record.potentials[:, 0, 0], [2.5, 3.0, 2.5, 3.0])
    np.testing.assert_array_equal(record.outputs[:, 0, 0], [2, 3, 2, 3])
    assert record.synaptic is None


# ---------------------------------------------------------------- the adapter, bit for bit
@st.composite
def rockpool_cases(draw):
    """Linear stacks of the neurons Rockpool has: with a synaptic current whose gain is its leak (LIFTorch,
    maybe recurrent) or without (LIFNeuronTorch); several spikes, initial potentials, dyadic weights."""
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    rng = np.random.default_rng(draw(st.integers(0, 255)))
    n_in = n = draw(st.integers(1, 4))
    layers = []
    for _ in range(draw(st.integers(1, 2))):
        out = draw(st.integers(1, 4))
        bias = dyadic(rng, (out,), dtype) if draw(st.booleans()) else None
        layers.append(es.Linear(n, out, weight=dyadic(rng, (out, n), dtype), bias=bias))
        beta = draw(st.sampled_from([None, 0.5, 1.0]))
        options = dict(reset="soft", strict=False, max_spikes=draw(st.sampled_from([1, 2, None])),
                       v_init=draw(st.sampled_from([0.0, 0.5, -0.25])))
        if beta is not None:
            options.update(synapse_leak=beta, synapse_gain=beta)
        theta = np.resize(np.array(draw(st.lists(st.sampled_from([0.25, 0.5, 1.0, 1.5]), min_size=1, max_size=4))), out)
        neuron = es.LIF(theta, leak=draw(st.sampled_from([1.0, 0.5, 0.875, float(np.exp(-0.01))])), **options)
        if beta is not None and draw(st.booleans()):
            neuron = es.Recurrent(neuron, es.Linear(out, out, weight=dyadic(rng, (out, out), dtype)))
        layers.append(neuron)
        n = out
    events = random_events(rng, draw(st.integers(1, 3)), draw(st.integers(1, 10)), (n_in,),
                           draw(st.sampled_from([0.2, 0.5, 1.0])), dtype)
    return _case(layers, (n_in,), events.to_dense())


@settings(max_examples=25, deadline=None)
@given(rockpool_cases(), st.sampled_from(["decays", "taus"]))
def test_adapter_reproduces_eventsim_bit_for_bit(case, leak_mode):
    """Spikes, potentials and synaptic currents exactly; in float64 the gradients within the contract."""
    model = candidate(leak_mode=leak_mode).build(case.network)
    comparison = compare_forward(case.network, case.spikes, model.run(case.spikes), exact=True,
                                 reference=reference_records(case.network, case.spikes))
    assert comparison.ok, str(comparison)
    if case.dtype is np.float64:
        request = GradientRequest(np.random.default_rng(1).normal(size=(case.batch,) + case.network.output_shape),
                                  StraightThrough(), detach_reset=False)
        gradients = compare_gradients(case.network, reference_gradients(case.network, case.spikes, request),
                                      model.gradients(case.spikes, request))
        assert gradients.ok, str(gradients)


def test_a_recurrent_layer_feeds_its_spikes_through_w_rec_into_its_current():
    """Two neurons, w_rec sends neuron 0's spike to neuron 1 with weight 1 (eventsim's W_rec[1, 0]); with
    beta = 1 neuron 1's current is 1 from the step after neuron 0 fires, a closed form."""
    neuron = es.LIF(1.0, leak=1.0, reset="soft", strict=False, synapse_leak=1.0, synapse_gain=1.0)
    block = es.Recurrent(neuron, es.Linear(2, 2, weight=np.array([[0.0, 0.0], [1.0, 0.0]])))
    spikes = np.zeros((1, 3, 2))
    spikes[0, 0, 0] = 1.0  # neuron 0 fires at step 0 and then every step (J stays 1)
    case = _case([block], (2,), spikes)
    record = candidate().build(case.network).run(case.spikes)["rec1.lif1"]
    np.testing.assert_array_equal(record.synaptic[:, 0, 1], [0.0, 1.0, 2.0])
    np.testing.assert_array_equal(record.outputs[:, 0, 0], [1, 1, 1])


# ---------------------------------------------------------------- what the adapter declines
@pytest.mark.parametrize("layers, problem", [
    ([_linear(), es.LIF(1.0, leak=0.5, reset="hard", strict=False)], "reset='hard'"),
    ([_linear(), es.LIF(1.0, leak=0.5, reset="soft")], "strict=True"),
    ([_linear(), es.LIF(1.0, leak=0.5, reset="soft", strict=False, input_gain=0.5)], "gain 1"),
    ([_linear(), es.LIF(1.0, leak=0.5, reset="soft", strict=False, arithmetic="euler")], "product form"),
    ([_linear(), es.LIF(1.0, leak=0.5, reset="soft", strict=False, v_rest=0.25)], "rest potential"),
    ([_linear(), es.LIF(1.0, leak=0.5, reset="soft", strict=False, v_min=-1.0)], "clamp"),
    ([_linear(), es.LIF(1.0, leak=0.5, reset="soft", strict=False, synapse_leak=0.5)],
     "synapse_gain must equal synapse_leak"),
    ([es.Recurrent(es.IF(1.0, reset="soft", strict=False), _linear())], "no w_rec"),
    ([es.Recurrent(es.IF(1.0, reset="soft", strict=False, synapse_leak=0.5, synapse_gain=0.5),
                   _linear(bias=np.zeros(2)))], "without a bias"),
    ([_linear(delay=1), es.IF(1.0, reset="soft", strict=False)], "synaptic delays"),
    ([_linear(), es.Readout(leak=0.5)], "NaN"),
    ([_linear(), es.IF(np.array([1.0, np.inf]), reset="soft", strict=False)], "infinite threshold"),
])
def test_adapter_declines_what_rockpool_cannot_compute(layers, problem):
    net = es.Network(layers, (2,))
    with pytest.raises(Unsupported, match=problem) as info:
        RockpoolCandidate().build(net)
    assert "layer '" in str(info.value)


def test_adapter_declines_convolutions():
    conv = es.Conv2d(1, 2, 3, weight=np.ones((2, 1, 3, 3), np.float32))
    net = es.Network([conv, es.IF(1.0, reset="soft", strict=False)], (1, 5, 5))
    with pytest.raises(Unsupported, match="no torch module"):
        RockpoolCandidate().build(net)


def test_adapter_declines_a_detached_reset_and_other_surrogates():
    case = _case([es.Linear(1, 1, weight=np.ones((1, 1))), es.IF(1.0, reset="soft", strict=False)], (1,),
                 _pulse(2))
    model = candidate().build(case.network)
    for request, problem in ((GradientRequest(np.ones((1, 1)), StraightThrough(), True), "detach_reset"),
                             (GradientRequest(np.ones((1, 1)), ArcTan(), False),
                              "no Rockpool counterpart")):
        with pytest.raises(Unsupported, match=problem):
            model.gradients(case.spikes, request)


# ---------------------------------------------------------------- Rockpool's surrogate
@pytest.mark.parametrize("window", [np.inf, 0.5])
def test_steppwl_backward_is_straight_through_within_its_window(window):
    """Rockpool's own StepPWL (lif_torch.py) against eventsim's straight-through derivative 1/theta, which it
    equals where vmem >= theta - window and is 0 below (float32: StepPWL's counts are float32)."""
    from rockpool.nn.modules.torch.lif_torch import StepPWL

    theta = torch.tensor(1.5)
    x = torch.linspace(-3, 3, 97, requires_grad=True)
    StepPWL.apply(x, theta, torch.tensor(window), torch.tensor(2.0**16)).sum().backward()
    u = x.detach().numpy()
    expected = StraightThrough().derivative(u - 1.5, 1.5) * (u >= 1.5 - window)
    np.testing.assert_array_equal(x.grad.numpy(), expected)


# ---------------------------------------------------------------- the known divergences
def test_rockpool_synaptic_state_is_eventsims_with_the_gain_of_its_leak():
    """The row "Rockpool synaptic state": a CubaLIF with synapse_gain 1 built as Rockpool's tau_syn alone takes
    beta times its input (J[0] = beta, not 1); eventsim's flags synapse_gain = synapse_leak reproduce it."""
    port = candidate(**ROWS[SYNAPTIC_STATE].options)
    cubalif = dict(leak=0.75, reset="soft", strict=False, synapse_leak=0.5)
    spikes = _pulse(4)
    with_gain_one = _case([es.LIF(100.0, synapse_gain=1.0, **cubalif)], (1,), spikes)
    outcome = check_case(port, with_gain_one)
    assert outcome.status == "fails"
    assert "synaptic current differs" in str(outcome) and "eventsim 1.0, candidate 0.5" in str(outcome)
    flags = _case([es.LIF(100.0, synapse_gain=0.5, **cubalif)], (1,), spikes)
    assert check_case(port, flags).status == "conforms"


def test_rockpool_synaptic_current_rounds_once_after_the_sum():
    """With beta = 0.75 Rockpool computes fl(beta fl(J + I)), eventsim fl(fl(beta J) + fl(beta I)): the same
    in exact arithmetic, not bit for bit. Inputs 2, then 1 + 2^-23 (float32): J[0] = 1.5 in both; Rockpool's
    J + I = 2.5 + 2^-23 rounds to 2.5 (a tie, to even), so J[1] = 1.875; eventsim's beta I = 0.75 + 2^-23
    (a tie, to even) and J[1] = 1.125 + 0.75 + 2^-23, exact. Why the matrix's synaptic leaks are 0.5 and 1."""
    first, second = np.float32(2.0), np.float32(1 + 2**-23)
    rockpool, eventsim = np.float32(1.875), np.float32(1.875 + 2**-23)
    neuron = es.LIF(100.0, leak=0.5, reset="soft", strict=False, synapse_leak=0.75, synapse_gain=0.75)
    case = _case([neuron], (1,), np.array([[[first], [second]]], np.float32))
    record = candidate().build(case.network).run(case.spikes)["lif1"]
    assert record.synaptic[1, 0, 0] == rockpool
    assert reference_records(case.network, case.spikes)["lif1"].synaptic[1, 0, 0] == eventsim


def test_steppwl_default_window_loses_the_gradient_below_it():
    """The row of StepPWL's default learning_window 0.5: a potential of -1 below theta = 1 gets no gradient
    from Rockpool, 1/theta from eventsim's straight-through estimator; with the window inf they agree."""
    layers = [es.Linear(1, 1, weight=np.array([[-1.0]])), es.LIF(1.0, leak=0.5, reset="soft", strict=False)]
    case = _case(layers, (1,), _pulse(2))
    request = GradientRequest(np.ones((1, 1)), StraightThrough(), detach_reset=False)
    assert check_case(candidate(**ROWS[WINDOW].options), case, request=request).status == "fails"
    assert check_case(candidate(), case, request=request).status == "conforms"


def test_rockpool_float64_defect_and_its_reproducer():
    """The defect row: Rockpool's own modules converted with .double() return float32 spikes over one step and
    raise over two (the reproducer uses Rockpool alone); the adapter's float64 changes conform."""
    row = ROWS[FLOAT64]
    module, function = row.expected.reproducer.split(":")
    lines = getattr(importlib.import_module(module), function)()
    assert lines[1] == "-> spikes of dtype torch.float32"
    assert lines[3].startswith("-> RuntimeError") and "dtype" in lines[3]
    layers = [es.Linear(1, 2, weight=np.array([[1.0], [0.5]])), es.IF(0.5, reset="soft", strict=False)]
    case = _case(layers, (1,), _pulse(3))
    assert check_case(candidate(**row.options), case).status == "fails"
    assert check_case(candidate(), case).status == "conforms"


# ---------------------------------------------------------------- the matrix rows
def test_matrix_rows_are_well_formed():
    assert len(ROWS) == len(MATRIX_ROWS)
    for row in MATRIX_ROWS:
        assert isinstance(candidate(**row.options), RockpoolCandidate)
        assert row.device == "cpu"
        assert row.expected is None or row.expected.kind in CLASSES
    assert ROWS[SYNAPTIC_STATE].expected.kind == "convention"
    assert "synapse_gain=beta" in ROWS[SYNAPTIC_STATE].expected.flags


def _conform(row, dtype, examples):
    features = dataclasses.replace(row.features, dtypes={dtype})
    return conform(candidate(**row.options), features=features, examples=examples,
                   gradients=row.gradients and dtype == np.float64)


@pytest.mark.parametrize("row", [r for r in MATRIX_ROWS if r.expected is None], ids=lambda r: r.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_conforming_rows_conform(row, dtype):
    report = _conform(row, dtype, examples=10)
    assert report.ok, str(report)


@pytest.mark.parametrize("name, dtype, kind, what", [
    (SYNAPTIC_STATE, np.float32, "dyadic forward", "synaptic current differs"),
    (WINDOW, np.float64, "bptt gradients", "gradients DIVERGE"),
    (FLOAT64, np.float64, "dyadic forward", "float32"),
])
def test_rows_with_an_expected_divergence_show_it(name, dtype, kind, what):
    report = _conform(ROWS[name], dtype, examples=10)
    failures = {f.kind: f for f in report.failures}
    assert kind in failures, str(report)
    assert what in str(failures[kind])
