"""snnTorch against eventsim: the adapter, and graphs snnTorch's own export_to_nir writes.

The exported graphs are read with eventsim.nir.from_nir at snnTorch's export
step dt = 1e-4 and run in both; docs/conventions.md names these tests.
"""

import numpy as np
import pytest
from hypothesis import given, settings

pytest.importorskip("nir")
torch = pytest.importorskip("torch")
snn = pytest.importorskip("snntorch")
export_nir = pytest.importorskip("snntorch.export_nir")

import eventsim as es
from eventsim.nir import from_nir
from eventsim.learning.surrogates import ArcTan, Sigmoid
from eventsim.testing import (
    GradientRequest, Unsupported, compare_forward, net_cases, reference_gradients, reference_records,
)
from eventsim.testing.snntorch_adapter import (
    FEATURES, SURROGATES, SnnTorchCandidate, _snntorch_surrogate, reproduce_subtract_without_reset_delay,
)
from eventsim.testing.torch_modules import network_output, parameter_gradients

SNNTORCH_DT = 1e-4  # the step snnTorch's export_to_nir writes tau = dt / (1 - beta) for


def _spikes(case) -> np.ndarray:
    return np.ascontiguousarray(np.swapaxes(case.events.to_dense(), 0, 1))


@settings(max_examples=15)
@given(net_cases(features=FEATURES))
def test_adapter_reproduces_eventsim_bit_for_bit(case):
    spikes = _spikes(case)
    records = SnnTorchCandidate().build(case.network).run(spikes)
    comparison = compare_forward(case.network, spikes, records, exact=True)
    assert comparison.ok, str(comparison)


@pytest.mark.parametrize("neuron, problem", [
    (es.LIF(1.0, leak=0.5, strict=False), ">="),
    (es.LIF(1.0, leak=0.5, v_reset=-0.5), "v_reset"),
    (es.LIF(1.0, leak=0.5, reset="soft"), "reset_delayed=True"),
    (es.LIF(1.0, leak=0.5, input_gain=0.5), "input_gain"),
    (es.LIF(1.0, leak=0.5, synapse_leak=0.5, synapse_gain=2.0), "synapse_gain"),
    (es.LIF(1.0, leak=0.5, v_rest=0.25), "a rest potential"),
    (es.LIF(1.0, leak=0.5, max_spikes=2), "several spikes per step"),
    (es.LIF(1.0, leak=0.5, v_min=-1.0), "clamp"),
])
def test_adapter_declines_what_snntorch_neurons_cannot_compute(neuron, problem):
    net = es.Network([es.Linear(3, 2, weight=np.ones((2, 3), np.float32)), neuron], (3,))
    with pytest.raises(Unsupported, match=problem) as info:
        SnnTorchCandidate().build(net)
    assert "'lif1'" in str(info.value)


@pytest.mark.parametrize("layers, problem", [
    ([es.Delay(1), es.Linear(3, 2, weight=np.ones((2, 3), np.float32)), es.LIF(1.0, leak=0.5)], "no delays"),
    ([es.Linear(3, 2, weight=np.ones((2, 3), np.float32), delay=1), es.LIF(1.0, leak=0.5)], "synaptic delays"),
])
def test_adapter_declines_delays_which_snntorch_has_none_of(layers, problem):
    with pytest.raises(Unsupported, match=problem):
        SnnTorchCandidate().build(es.Network(layers, (3,)))


def test_without_reset_delay_a_subtractive_reset_must_act_at_once():
    soft = {"reset": "soft"}
    for delayed, reset_delay in ((False, True), (True, False)):
        net = es.Network([es.Linear(3, 2, weight=np.ones((2, 3), np.float32)),
                          es.LIF(1.0, leak=0.5, reset_delayed=delayed, **soft)], (3,))
        with pytest.raises(Unsupported, match=f"reset_delay={reset_delay} needs reset_delayed={reset_delay}"):
            SnnTorchCandidate(reset_delay=reset_delay).build(net)


def _one_neuron(neuron, connection=None, dtype=np.float64) -> es.Network:
    """input -> Linear(1, 1, weight 1) -> neuron (in a Recurrent block around ``connection``)."""
    layer = neuron if connection is None else es.Recurrent(neuron, connection)
    return es.Network([es.Linear(1, 1, weight=np.ones((1, 1), dtype)), layer], (1,), dtype=dtype)


def _potentials(net: es.Network, currents, **options) -> tuple[np.ndarray, np.ndarray]:
    """snnTorch's (through the adapter) and eventsim's pre-threshold potentials of the last layer."""
    spikes = np.reshape(np.asarray(currents, net.dtype), (-1, 1, 1))
    name = list(reference_records(net, spikes))[-1]
    theirs = SnnTorchCandidate(**options).build(net).run(spikes)[name].potentials.ravel()
    return theirs, reference_records(net, spikes)[name].potentials.ravel()


def test_synaptic_zero_reset_discards_the_steps_input():
    """Synaptic(reset_mechanism="zero"): after a spike the potential is (1 - reset)(beta U + syn) = 0, where
    eventsim's hard reset (and Leaky's) keeps the step's input: theta 1, beta 1/2, alpha 1/2, inputs 2, 1."""
    theirs, ours = _potentials(_one_neuron(es.LIF(1.0, leak=0.5, synapse_leak=0.5)), [2.0, 1.0])
    assert list(theirs) == [2.0, 0.0]  # syn = 2, mem = 2 (spike); then zeroed whatever the input
    assert list(ours) == [2.0, 0.5 * 2.0 + 1.0]  # J = 1/2 * 2 + 1 = 2 enters the reset potential 0


def test_rleaky_adds_the_recurrent_current_last():
    """RLeaky computes (beta U + I) + W s: with beta U = 1, I = W s = 2^-24 the float32 sum 1 + 2^-24 is a
    tie that rounds to 1 twice, where eventsim's 1 + (I + W s) = 1 + 2^-23 is exact; float64 holds every
    sum exactly. Step 1: input 2 fires over theta 1.5; step 2: beta U = 1, the soft reset subtracts 1.5."""
    tiny = 2.0 ** -24
    for dtype, differs in ((np.float32, True), (np.float64, False)):
        neuron = es.LIF(1.5, leak=0.5, reset="soft", reset_delayed=True)
        net = _one_neuron(neuron, es.Linear(1, 1, weight=np.full((1, 1), tiny, dtype)), dtype)
        theirs, ours = _potentials(net, [2.0, tiny])
        assert theirs[0] == ours[0] == 2.0
        assert ours[1] == dtype(1 + 2 * tiny) - dtype(1.5)
        assert (theirs[1] != ours[1]) == differs
        if differs:
            assert theirs[1] == dtype(1.0) - dtype(1.5)


def test_reproducer_shows_a_subtract_neuron_stuck_above_its_threshold():
    """snnTorch alone, Leaky(beta=1, threshold=1, "subtract"): after input 2.5 the potential is 1.5 > 1,
    which a soft reset fires again (2.5 - 1 - 1 = 0.5); with reset_delay=False it never does."""
    delayed, immediate = reproduce_subtract_without_reset_delay()
    assert "(spike 1, mem 1.5) (spike 0, mem 0.5)" in delayed
    assert immediate.endswith("(spike 1, mem 1.5) (spike 0, mem 1.5) (spike 0, mem 1.5) (spike 0, mem 1.5)")


@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
def test_snntorch_surrogates_differentiate_as_the_declared_ones(surrogate):
    """snnTorch's own surrogate backward (surrogate.py), run through the adapter's spike, against
    eventsim's formula at theta = 1, float64."""
    x = torch.linspace(-3, 3, 241, dtype=torch.float64, requires_grad=True)
    spikes = _snntorch_surrogate(snn, surrogate)(x)
    assert spikes.dtype == torch.float64
    np.testing.assert_array_equal(spikes.detach().numpy(), (x > 0).numpy())
    spikes.sum().backward()
    expected = surrogate.derivative(x.detach().numpy(), 1.0)  # relative to the bump's height: sig (1 - sig)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=0, atol=1e-12 * expected.max())  # cancels in the tails


def test_snntorchs_sigmoid_surrogate_is_nan_far_below_the_threshold():
    """Why SURROGATES leaves out snnTorch's default sigmoid slope 25: its backward computes
    exp(-slope x) / (exp(-slope x) + 1)^2, inf / inf once slope x < -709 (float64); conform found it
    on a conv -> IF network whose potential fell 44 below the threshold."""
    x = torch.tensor([-2.0, -28.0, -29.0], dtype=torch.float64, requires_grad=True)
    snn.surrogate.sigmoid(slope=25)(x).sum().backward()
    assert np.isfinite(x.grad[0].item()) and x.grad[1].item() >= 0 and np.isnan(x.grad[2].item())
    assert Sigmoid(alpha=25.0).derivative(np.array([-29.0]), 1.0)[0] == 0.0  # eventsim's: 0, not NaN


def _small_net() -> es.Network:
    rng = np.random.default_rng(5)
    return es.Network([es.Linear(6, 5, weight=rng.normal(0, 0.8, (5, 6))), es.LIF(0.5, leak=0.875),
                       es.Linear(5, 3, weight=rng.normal(0, 0.8, (3, 5))), es.Readout(leak=0.875)], (6,),
                      dtype=np.float64)


def test_snntorchs_own_float32_spikes_round_float64_gradients():
    """Why the adapter fires in the potential's dtype: with snnTorch's own spikes (float32 whatever
    the input), every gradient through a spike is rounded to float32, a relative error far above
    the contract's 1e-9; the adapter's spikes keep float64 and meet it."""
    net = _small_net()
    spikes = (np.random.default_rng(6).random((8, 4, 6)) < 0.5).astype(np.float64)
    request = GradientRequest(grad_output=np.random.default_rng(7).normal(size=(4, 3)), surrogate=ArcTan())
    expected = reference_gradients(net, spikes, request)
    model = SnnTorchCandidate().build(net)
    adapter = model.gradients(spikes, request)
    for neuron in model.neurons():  # snnTorch's own default spike_grad, atan(alpha=2) = eventsim's ArcTan()
        neuron.spike_grad = snn.surrogate.atan()
    with torch.enable_grad():
        native = parameter_gradients(network_output(net, model._forward(spikes)), request, model.weighted)
    error = {key: np.max(np.abs(values - expected[key])) / np.max(np.abs(expected[key])) for key, values in
             native.items()}
    assert 1e-9 < error["fc1.weight"] < 1e-5, error
    for key, values in adapter.items():
        np.testing.assert_allclose(values, expected[key], rtol=0, atol=1e-12 * np.max(np.abs(expected[key])))


def test_adapter_declines_an_undetached_reset_and_foreign_surrogates():
    net = _small_net()
    model = SnnTorchCandidate().build(net)
    spikes = np.zeros((2, 1, 6))
    grad = np.ones((1, 3))
    with pytest.raises(Unsupported, match="detach_reset=False"):
        model.gradients(spikes, GradientRequest(grad_output=grad, surrogate=ArcTan(), detach_reset=False))
    with pytest.raises(Unsupported, match="no snnTorch counterpart"):
        model.gradients(spikes, GradientRequest(grad_output=grad, surrogate=es.learning.Triangle()))


def _snntorch_net(reset: str, dtype=np.float32) -> es.Network:
    """conv -> LIF -> avg pool -> flatten -> linear -> LIF with dyadic weights, built to fire often."""
    rng = np.random.default_rng(3)
    soft = {"reset": "soft", "reset_delayed": True} if reset == "subtract" else {}
    return es.Network([
        es.Conv2d(2, 3, 3, padding=1, weight=(rng.integers(-2, 9, (3, 2, 3, 3)) / 8).astype(dtype)),
        es.LIF(1.0, leak=0.75, **soft),
        es.AvgPool(2),
        es.Flatten(),
        es.Linear(12, 4, weight=(rng.integers(-4, 9, (4, 12)) / 8).astype(dtype),
                  bias=(rng.integers(0, 4, 4) / 8).astype(dtype)),
        es.LIF(np.array([0.5, 1.0, 1.5, 0.5]), leak=0.875, **soft),
    ], input_shape=(2, 4, 4), dtype=dtype)


def _export(reset: str):
    """The eventsim net, its snnTorch model, and the graph snnTorch's export_to_nir writes of that model."""
    net = _snntorch_net(reset)
    model = SnnTorchCandidate().build(net)
    graph = export_nir.export_to_nir(model.module, torch.zeros(1, 2, 4, 4), ignore_dims=[0])
    spikes = (np.random.default_rng(4).random((12, 3, 2, 4, 4)) < 0.5).astype(np.float32)
    return net, model, graph, spikes


def _imported_records(imported: es.Network, spikes: np.ndarray, names: list[str]) -> dict:
    """eventsim's records of the imported network, keyed by the original network's layer names."""
    records = reference_records(imported, spikes)
    return {original: records[node] for original, node in zip(names, [layer.name for layer in imported.layers])
            if node in records}


def test_snntorch_export_uses_hard_reset_and_dt_1e4():
    """What export_to_nir writes for Leaky: LIF nodes with tau = dt/(1-beta), r = tau/dt, v_reset 0 (so hard reset)."""
    _, _, graph, _ = _export("zero")
    lifs = [node for node in graph.nodes.values() if type(node).__name__ == "LIF"]
    assert len(lifs) == 2
    tau = np.asarray(lifs[0].tau, np.float64)
    np.testing.assert_allclose(tau, SNNTORCH_DT / (1 - 0.75), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(lifs[0].r, np.float64), tau / SNNTORCH_DT, rtol=1e-6)
    assert not np.any(np.asarray(lifs[0].v_reset))


def test_exported_zero_reset_net_runs_identically():
    """Leaky(reset_mechanism="zero") is eventsim's default hard reset: identical spikes and potentials, no flags."""
    net, model, graph, spikes = _export("zero")
    imported = from_nir(graph, dt=SNNTORCH_DT)
    neurons = [layer for layer in imported.layers if isinstance(layer, es.LIF)]
    # Computed in float64 from float32 tau and r, lam and g miss beta and 1 by an ulp of float32 or less:
    # rounded to the network's float32 they are beta and 1 exactly.
    assert [(np.float32(n.leak), np.float32(n.input_gain), n.reset) for n in neurons] == \
        [(np.float32(0.75), np.float32(1.0), "hard"), (np.float32(0.875), np.float32(1.0), "hard")]
    ours = _imported_records(imported, spikes, [layer.name for layer in net.layers])
    theirs = model.run(spikes)
    assert theirs["lif1"].outputs.any() and theirs["lif2"].outputs.any()
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(ours[name].outputs, theirs[name].outputs, err_msg=name)
        np.testing.assert_array_equal(ours[name].potentials, theirs[name].potentials, err_msg=name)


def test_exported_subtract_net_needs_the_convention_flags():
    """Leaky's default "subtract" reset exports as a NIR LIF, i.e. hard reset: the spikes differ, until the
    imported neurons get reset="soft", reset_delayed=True (docs/conventions.md)."""
    net, model, graph, spikes = _export("subtract")
    theirs = model.run(spikes)
    names = [layer.name for layer in net.layers]
    imported = from_nir(graph, dt=SNNTORCH_DT)
    plain = _imported_records(imported, spikes, names)
    assert not np.array_equal(plain["lif1"].outputs, theirs["lif1"].outputs)
    for layer in imported.layers:
        if isinstance(layer, es.LIF):
            layer.reset, layer.reset_delayed = "soft", True
    flagged = _imported_records(imported, spikes, names)
    for name in ("lif1", "lif2"):
        np.testing.assert_array_equal(flagged[name].outputs, theirs[name].outputs, err_msg=name)
        np.testing.assert_array_equal(flagged[name].potentials, theirs[name].potentials, err_msg=name)
