"""Norse against eventsim: the adapter, and the Norse rows of docs/conventions.md.

Norse's box neurons are eventsim's LIF in the "euler" arithmetic form
(U = R + k (I - R), gain k = 1 - leak), bit for bit with every leak; the
product form lam R + g I with the same gain rounds like Norse's only when
the leak is 0.5. Its surrogate methods are checked against eventsim's
surrogates; the adapter's conform runs are in tests/test_adapters_conform.py.
"""

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("torch")
norse = pytest.importorskip("norse.torch")

import eventsim as es
from eventsim.testing import GradientRequest, Unsupported, compare_forward, net_cases, reference_records
from eventsim.testing.norse_adapter import FEATURES, LEAKS, SURROGATES, NorseCandidate

FLOAT32 = replace(FEATURES, dtypes=(np.float32,))


def _norse_records(case):
    return NorseCandidate().build(case.network).run(case.spikes)


@settings(max_examples=25)
@given(st.one_of(net_cases(features=FLOAT32), net_cases(features=FEATURES)))
def test_adapter_reproduces_eventsim_bit_for_bit(case):
    """Dyadic weights, the euler form, every declared leak (0.9 and 2/3 among them), float32 above all."""
    records = _norse_records(case)
    comparison = compare_forward(case.network, case.spikes, records, exact=True)
    assert comparison.ok, str(comparison)


def _float32_exact_difference(pair) -> bool:
    """I - R representable, and no halving that underflows into the subnormals (where x / 2 rounds)."""
    r, i = (np.float32(v) for v in pair)
    normal = all(v == 0 or abs(v) >= 2.0**-100 for v in (r, i, i - r))
    return normal and np.isfinite(i - r) and float(i - r) == float(i) - float(r)


@settings(max_examples=300)
@given(st.tuples(st.floats(-1e6, 1e6, width=32), st.floats(-1e6, 1e6, width=32)).filter(_float32_exact_difference))
def test_norse_euler_step_with_leak_one_half_is_eventsims_leak_then_gain(pair):
    """The proof in norse_adapter's docstring: with lam = k = 1/2 and I - R representable (and no
    underflow), Norse's fl(R + fl(k fl(I - R))) equals eventsim's fl(fl(lam R) + fl(g I)) in float32."""
    import torch

    r, i = (np.float32(v) for v in pair)
    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(0.5), v_leak=torch.tensor(0.0), v_th=torch.tensor(np.inf))
    _, state = norse.functional.lif_box.lif_box_feed_forward_step(
        torch.tensor([i]), norse.functional.lif_box.LIFBoxFeedForwardState(v=torch.tensor([r])), p, dt=1.0)
    half = np.float32(0.5)
    assert state.v.numpy()[0] == half * r + half * i


def test_norse_euler_step_with_leak_seven_eighths_is_not_bit_for_bit_in_float32():
    """Why FEATURES has the leak 0.5 alone: with lam = 0.875 eventsim rounds lam R, then the sum; Norse
    rounds the sum only, and the two differ by an ulp (found by conform on a 1x1 conv and one LIF)."""
    import torch

    r, i = np.float32(1 + 3 * 2**-23), np.float32(1.0)  # exact: R + (I - R) / 8 = 1 + 21 * 2**-26
    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(0.125), v_leak=torch.tensor(0.0), v_th=torch.tensor(np.inf))
    _, state = norse.functional.lif_box.lif_box_feed_forward_step(
        torch.tensor([i]), norse.functional.lif_box.LIFBoxFeedForwardState(v=torch.tensor([r])), p, dt=1.0)
    eventsim = np.float32(0.875) * r + np.float32(0.125) * i
    assert state.v.numpy()[0] != eventsim
    assert float(state.v.numpy()[0]) - float(eventsim) == 2.0**-23  # one ulp of [1, 2)


@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
def test_norse_threshold_methods_differentiate_as_the_declared_surrogates(surrogate):
    """Norse's own backward (functional/threshold.py) against eventsim's surrogate formula, float64."""
    import torch

    from eventsim.testing.norse_adapter import _norse_method

    method, alpha = _norse_method(surrogate)
    x = torch.linspace(-3, 3, 241, dtype=torch.float64, requires_grad=True)
    norse.functional.threshold.threshold(x, method, alpha).sum().backward()
    expected = surrogate.derivative(x.detach().numpy(), 1.0)  # relative to the bump's height: sig (1 - sig)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=0, atol=1e-12 * expected.max())  # cancels in the tails


def test_norse_superspike_ignores_its_alpha():
    """Norse 1.1's SuperSpike backward is 1 / (|x| + 1)^2 whatever alpha (its docstring says alpha
    replaces SuperSpike's beta): alpha 1 and 100 give the same gradient, FastSigmoid(c=1, b=1)."""
    import torch

    grads = []
    for alpha in (1.0, 100.0):
        x = torch.tensor([-0.5, 0.0, 0.25, 2.0], dtype=torch.float64, requires_grad=True)
        norse.functional.threshold.threshold(x, "super", alpha).sum().backward()
        grads.append(x.grad.numpy())
    np.testing.assert_array_equal(grads[0], grads[1])
    np.testing.assert_allclose(grads[0], 1 / (np.abs([-0.5, 0.0, 0.25, 2.0]) + 1) ** 2, rtol=1e-15)


def _product_form(layer: es.layers.Layer) -> es.layers.Layer:
    """``layer`` with eventsim's default neuron: the product form with g = 1."""
    if isinstance(layer, es.Readout):
        return es.Readout(leak=layer.leak, name=layer.name)
    if isinstance(layer, es.LIF):
        return es.LIF(layer.threshold, leak=layer.leak, reset=layer.reset, v_reset=layer.v_reset, strict=layer.strict,
                      name=layer.name)
    return layer


@settings(max_examples=15)
@given(net_cases(features=FEATURES.without("residual")))
def test_without_the_euler_form_eventsim_differs_exactly_where_current_flows(case):
    """eventsim's default neuron (product form, g = 1) disagrees with Norse as soon as any neuron sees a
    nonzero current (some potential is nonzero), and agrees on the cases where none does."""
    records = _norse_records(case)
    current_flows = any(np.any(r.potentials) for r in reference_records(case.network, case.spikes).values()
                        if r.potentials is not None)
    default = es.Network([_product_form(layer) for layer in case.network.layers], case.input_shape,
                         dtype=case.network.dtype)
    comparison = compare_forward(default, case.spikes, records, exact=True)
    assert comparison.ok != current_flows, str(comparison)


def _linear_net(neuron: es.LIF, dtype=np.float64) -> es.Network:
    return es.Network([es.Linear(3, 2, weight=np.ones((2, 3), dtype)), neuron], (3,), dtype=dtype)


@pytest.mark.parametrize("neuron, problem", [
    (es.LIF(1.0, leak=0.5), "arithmetic='product' \\(leak 0.5\\) rounds differently"),
    (es.LIF(1.0, leak=0.75, input_gain=0.25), "arithmetic='product'"),  # the Euler gain, not the Euler form
    (es.IF(1.0), "arithmetic='product' \\(leak 1.0\\)"),
    (es.LIF(1.0, leak=0.5, arithmetic="euler-divide"), "arithmetic='euler-divide'"),
    (es.LIF(1.0, leak=0.5, arithmetic="euler", strict=False), ">="),
    (es.LIF(np.array([1.0, np.inf]), leak=0.5, arithmetic="euler", reset="soft"), "infinite threshold"),
])
def test_adapter_declines_what_box_neurons_cannot_compute(neuron, problem):
    net = _linear_net(neuron)
    with pytest.raises(Unsupported, match=problem) as info:
        NorseCandidate().build(net)
    assert f"'{net.layers[1].name}'" in str(info.value)


def test_adapter_declines_spiking_average_pooling_by_name():
    net = es.Network([es.SpikingAvgPool(2), es.Flatten(), es.Linear(4, 1, weight=np.ones((1, 4), np.float32)),
                      es.LIF(1.0, leak=0.5, input_gain=0.5)], (1, 4, 4))
    with pytest.raises(Unsupported, match="no Norse counterpart") as info:
        NorseCandidate().build(net)
    assert f"'{net.layers[0].name}'" in str(info.value)


def _box_cell(theta: float, v_reset: float, leak: float):
    """Norse's LIFBoxCell as docs/conventions.md maps it: dt = 1, tau_mem_inv = 1 - leak, v_leak = 0."""
    import torch

    p = norse.LIFBoxParameters(tau_mem_inv=torch.tensor(1.0 - leak, dtype=torch.float64),
                               v_leak=torch.tensor(0.0, dtype=torch.float64),
                               v_th=torch.tensor(theta, dtype=torch.float64),
                               v_reset=torch.tensor(v_reset, dtype=torch.float64))
    return norse.LIFBoxCell(p, dt=1.0)


def _run_cell(cell, currents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Norse's spikes and returned potentials v, one neuron, from Norse's initial state."""
    import torch

    state, spikes, v = None, [], []
    with torch.no_grad():
        for current in currents:
            z, state = cell(torch.tensor([current], dtype=torch.float64), state)
            spikes.append(float(z[0]))
            v.append(float(state.v[0]))
    return np.array(spikes), np.array(v)


def test_norse_returns_the_potential_after_the_reset_and_fires_on_greater_than():
    """The Norse LIFBox row: from v = 0, U = lam R + (1 - lam) I; fires on v - v_th > 0 (U = theta does
    not fire); the v Norse returns is R(U, s) (v_reset after a spike), not the pre-threshold U."""
    leak, theta, v_reset = 0.5, 1.0, -0.5
    currents = np.array([2.0, 0.0, 2.0, 3.0, 4.0, 0.0])  # U: 1 (= theta), 0.5, 1.25 (fires), ...
    spikes, v = _run_cell(_box_cell(theta, v_reset, leak), currents)
    layer = es.LIF(theta, leak=leak, input_gain=1 - leak, v_reset=v_reset)
    net = es.Network([layer], (1,), dtype=np.float64)
    ref = reference_records(net, currents.reshape(-1, 1, 1))[layer.name]
    u, s = ref.potentials.ravel(), ref.outputs.ravel()
    assert u[0] == theta and s[0] == 0
    np.testing.assert_array_equal(spikes, s)
    assert s.any() and not np.array_equal(v, u)
    np.testing.assert_array_equal(v, np.where(s == 1, v_reset, u))
    loose = es.Network([es.LIF(theta, leak=leak, input_gain=1 - leak, v_reset=v_reset, strict=False)], (1,),
                       dtype=np.float64)
    assert reference_records(loose, currents.reshape(-1, 1, 1))["lif1"].outputs.ravel()[0] == 1


@settings(max_examples=20)
@given(leak=st.sampled_from(LEAKS), theta=st.sampled_from([0.5, 1.0, 1.5]), v_reset=st.sampled_from([0.0, -0.5]),
       currents=st.lists(st.integers(-8, 16).map(lambda k: k / 4), min_size=1, max_size=12))
def test_norse_lif_with_a_one_step_synapse_is_the_box_neuron(leak, theta, v_reset, currents):
    """The Norse LIF row: with dt tau_syn_inv = 1 the synaptic current i decays to 0 within the step, so
    LIFCell is eventsim's LIF in the euler form (spikes; v after the reset, as LIFBox)."""
    import torch

    p = norse.LIFParameters(tau_syn_inv=torch.tensor(1.0, dtype=torch.float64),
                            tau_mem_inv=torch.tensor(1.0 - leak, dtype=torch.float64),
                            v_leak=torch.tensor(0.0, dtype=torch.float64),
                            v_th=torch.tensor(theta, dtype=torch.float64),
                            v_reset=torch.tensor(v_reset, dtype=torch.float64))
    spikes, v = _run_cell(norse.LIFCell(p, dt=1.0), np.array(currents))
    layer = es.LIF(theta, leak=leak, arithmetic="euler", v_reset=v_reset)
    ref = reference_records(es.Network([layer], (1,), dtype=np.float64), np.reshape(currents, (-1, 1, 1)))["lif1"]
    u, s = ref.potentials.ravel(), ref.outputs.ravel()
    np.testing.assert_array_equal(spikes, s)
    np.testing.assert_array_equal(v, np.where(s == 1, v_reset, u))


def _decayed(alpha: float, currents: np.ndarray) -> np.ndarray:
    """Norse's own current after one LIFCell step from i = 0 with input ``currents``: i_jump - k i_jump."""
    import torch

    p = norse.LIFParameters(tau_syn_inv=torch.tensor(1.0 - alpha), tau_mem_inv=torch.tensor(0.5),
                            v_leak=torch.tensor(0.0), v_th=torch.tensor(np.inf))
    state = norse.functional.lif.LIFFeedForwardState(v=torch.zeros(len(currents)), i=torch.zeros(len(currents)))
    _, state = norse.functional.lif.lif_feed_forward_step(torch.from_numpy(currents), state, p, dt=1.0)
    return state.i.numpy()


def test_norse_lif_decays_its_current_as_i_plus_minus_k_i():
    """The LIF row's rounding note: Norse's fl(j + fl(-k j)) is eventsim's fl(alpha j) when k = 1 - alpha is a
    power of two (every synapse leak the strategies draw: 1/2, 3/4, 7/8), and an ulp apart for some j
    when it is not (alpha = 0.9, float32)."""
    currents = np.random.default_rng(0).uniform(-4, 4, 2000).astype(np.float32)
    for alpha in (0.5, 0.75, 0.875):
        np.testing.assert_array_equal(_decayed(alpha, currents), np.float32(alpha) * currents)
    differs = _decayed(0.9, currents) != np.float32(0.9) * currents
    assert differs.any()
    ulps = np.abs(_decayed(0.9, currents)[differs] - np.float32(0.9) * currents[differs])
    assert np.all(ulps <= np.spacing(np.abs(currents[differs])))


def _recurrent_net(bias=None, dtype=np.float64, **neuron) -> es.Network:
    rng = np.random.default_rng(1)
    options = dict(leak=0.75, arithmetic="euler", synapse_leak=0.5, **neuron)
    return es.Network([es.Linear(4, 3, weight=(rng.integers(-8, 9, (3, 4)) / 8).astype(dtype)),
                       es.Recurrent(es.LIF(0.5, **options),
                                    es.Linear(3, 3, weight=(rng.integers(-8, 9, (3, 3)) / 8).astype(dtype), bias=bias)),
                       es.Linear(3, 2, weight=(rng.integers(-8, 9, (2, 3)) / 8).astype(dtype)),
                       es.Readout(leak=0.75, arithmetic="euler")], (4,), dtype=dtype)


def test_lif_recurrent_cell_differentiates_with_its_reset_detached():
    """LIFRecurrentCell (z.detach() in lif_step): Norse's gradients are eventsim's bptt with detach_reset=True
    on a network whose only spiking layer is recurrent; detach_reset=False is declined."""
    from eventsim.testing import GradientRequest, compare_gradients, reference_gradients

    net = _recurrent_net()
    spikes = (np.random.default_rng(2).random((10, 3, 4)) < 0.6).astype(np.float64)
    assert reference_records(net, spikes)["rec1.lif1"].outputs.any()
    model = NorseCandidate().build(net)
    request = GradientRequest(grad_output=np.random.default_rng(3).normal(size=(3, 2)), surrogate=SURROGATES[0])
    comparison = compare_gradients(net, reference_gradients(net, spikes, request), model.gradients(spikes, request))
    assert comparison.ok, str(comparison)
    with pytest.raises(Unsupported, match="LIFRecurrentCell detaches its reset"):
        model.gradients(spikes, GradientRequest(grad_output=request.grad_output, surrogate=SURROGATES[0],
                                                detach_reset=False))


def test_a_network_with_recurrent_and_feed_forward_cells_has_no_single_reset_convention():
    net = _recurrent_net()
    layers = [net.layers[0], es.LIF(0.5, leak=0.75, arithmetic="euler"), *net.layers[1:]]
    mixed = es.Network(layers, (4,), dtype=np.float64)
    request = GradientRequest(grad_output=np.ones((1, 2)), surrogate=SURROGATES[0])
    with pytest.raises(Unsupported, match="no single detach_reset"):
        NorseCandidate().build(mixed).gradients(np.zeros((2, 1, 4)), request)


@pytest.mark.parametrize("net, problem", [
    (_recurrent_net(bias=np.ones(3)), "no recurrent bias"),
    (_recurrent_net(reset="soft"), "LIFRecurrentCell resets to v_reset"),
    (_linear_net(es.LIF(1.0, leak=0.5, arithmetic="euler", synapse_leak=0.5, reset="soft")),
     "LIFCell resets to v_reset"),
    (_linear_net(es.LIF(1.0, leak=0.5, arithmetic="euler", v_rest=0.25)), "LIFBoxCell computes \\(I \\+ v_leak\\)"),
    (_linear_net(es.LIF(1.0, leak=0.5, arithmetic="euler", synapse_leak=0.5, synapse_gain=2.0)), "synapse_gain"),
    (_linear_net(es.LIF(1.0, leak=0.5, arithmetic="euler", v_init=0.5)), "an initial potential"),
    (es.Network([es.Recurrent(es.LIF(1.0, leak=0.5, arithmetic="euler"),
                              es.Conv2d(1, 1, 3, padding=1, weight=np.ones((1, 1, 3, 3))))], (1, 3, 3)),
     "a convolution as the recurrent connection"),
])
def test_adapter_declines_what_norse_cells_cannot_compute(net, problem):
    with pytest.raises(Unsupported, match=problem):
        NorseCandidate().build(net)
