"""The PyTorch reference candidate computes eventsim's function, and its gradients are the rules'.

:class:`eventsim.testing.torch_candidate.TorchCandidate` serves as the
independent check of the ``bptt`` and ``lee2020-code`` rules, so its
gradients must be gradients of the same forward pass: on random float64
networks with dyadic weights its spikes, potentials and reported layer
outputs must equal :func:`eventsim.dense.run_dense` bit for bit, dropout
masks included. A few gradients are checked against values worked out by
hand from docs/semantics.md, "Gradient rules", and one layer's gradients
against the rules' recursions written out in NumPy.
"""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import eventsim as es  # noqa: E402
from eventsim.dense import run_dense  # noqa: E402
from eventsim.learning import surrogates as sg  # noqa: E402
from eventsim.learning.parameters import parameters  # noqa: E402
from eventsim.testing.compare import recorded_layers  # noqa: E402
from eventsim.testing.protocol import GradientRequest  # noqa: E402
from eventsim.testing.strategies import Features, net_cases  # noqa: E402
from eventsim.testing.torch_candidate import TorchCandidate  # noqa: E402

STRAIGHT_THROUGH = sg.StraightThrough()
float64_cases = net_cases(dtypes=st.just(np.float64), features=Features().including("input_gain", "reset_delayed"))


def _neurons(layers):
    for layer in layers:
        if isinstance(layer, es.Residual):
            yield from _neurons(layer.main)
            yield layer.neuron
        elif isinstance(layer, es.LIF):
            yield layer


def run(network, x, *, rule="bptt", masks=None):
    """The candidate's records of a run on time-major ``x`` ``(T, batch, *input_shape)``."""
    return TorchCandidate(rule=rule).build(network).run(x, masks=masks)


def gradients(network, x, grad_output, *, rule="bptt", surrogate=STRAIGHT_THROUGH, detach_reset=True, masks=None):
    request = GradientRequest(np.asarray(grad_output, dtype=np.float64), surrogate, detach_reset)
    return TorchCandidate(rule=rule).build(network).gradients(x, request, masks=masks)


def _assert_same_forward(records, ref, network):
    assert list(records) == list(recorded_layers(network))
    assert {n for n, r in records.items() if r.potentials is not None} == ref.potentials.keys()
    for name, record in records.items():  # spikes of every neuron layer, passed currents, masked values
        np.testing.assert_array_equal(record.outputs, ref.outputs[name].swapaxes(0, 1), err_msg=f"outputs of {name}")
        if record.potentials is not None:
            np.testing.assert_array_equal(record.potentials, ref.potentials[name].swapaxes(0, 1),
                                          err_msg=f"potentials of {name}")


def _check_gradients(case, rule, masks, **kw):
    g = np.random.default_rng(case.seed).integers(-2, 3, size=(case.batch,) + case.network.output_shape) / 4
    grads = gradients(case.network, case.spikes, g, rule=rule, masks=masks, **kw)
    params = parameters(case.network)
    assert grads.keys() == params.keys()
    for key, p in params.items():
        assert grads[key].dtype == np.float64 and grads[key].shape == p.shape, key
        assert np.all(np.isfinite(grads[key])), key


SURROGATES = [sg.StraightThrough(), sg.FastSigmoid(), sg.ArcTan(), sg.Sigmoid(), sg.Triangle(width=0.5)]


@given(case=float64_cases, train=st.booleans(), detach_reset=st.booleans(), surrogate=st.sampled_from(SURROGATES))
def test_bptt_forward_is_eventsims(case, train, detach_reset, surrogate):
    x = case.events.to_dense()
    ref = run_dense(case.network, x, train=train, rng=np.random.default_rng(case.seed) if train else None)
    masks = ref.masks if train else None
    _assert_same_forward(run(case.network, case.spikes, masks=masks), ref, case.network)
    _check_gradients(case, "bptt", masks, surrogate=surrogate, detach_reset=detach_reset)


@given(case=float64_cases, train=st.booleans())
def test_lee2020_code_forward_is_eventsims(case, train):
    # The rule needs hard reset to 0: check the refusal, then make every neuron so.
    neurons = list(_neurons(case.network.layers))
    if any(n.reset != "hard" or n.v_reset != 0.0 for n in neurons):
        with pytest.raises(es.LayerError, match="hard reset"):
            TorchCandidate(rule="lee2020-code").build(case.network)
        for n in neurons:
            n.reset, n.v_reset = "hard", 0.0
    ref = run_dense(case.network, case.events.to_dense(), train=train,
                    rng=np.random.default_rng(case.seed) if train else None)
    masks = ref.masks if train else None
    _assert_same_forward(run(case.network, case.spikes, rule="lee2020-code", masks=masks), ref, case.network)
    _check_gradients(case, "lee2020-code", masks)


@pytest.mark.parametrize("surrogate", [
    sg.StraightThrough(), sg.FastSigmoid(), sg.FastSigmoid(c=3.0, b=0.5), sg.FastSigmoid(c=0.0),
    sg.ArcTan(), sg.ArcTan(alpha=0.5), sg.Sigmoid(), sg.Sigmoid(alpha=1.5), sg.Triangle(), sg.Triangle(width=0.3),
])
def test_surrogate_formulas(surrogate):
    u = torch.linspace(-3, 4, 57, dtype=torch.float64).reshape(1, 3, 19)
    theta = torch.tensor([0.5, 2.0, np.inf], dtype=torch.float64).reshape(3, 1)
    got = TorchCandidate().surrogate_derivative(surrogate, u, theta).numpy()
    th = np.broadcast_to(theta.numpy(), u.shape)
    want = surrogate.derivative(u.numpy() - th, th)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=1e-15)
    assert np.all(got[:, 2] == 0)  # theta = inf: no gradient


# ------------------------------------------------------------ hand-checked cases
def _one_lif(reset="hard", dropout=None):
    """Linear(1 -> 1, w = 0.75) -> LIF(theta 1, lam 0.5); input 1 at steps 1..3 (time-major).

    Hard reset: U = 0.75, 1.125 (fires), 0.75. Soft reset: U = 0.75, 1.125
    (fires), 0.8125. One spike, at t = 2.
    """
    layers = [es.Linear(1, 1, weight=np.array([[0.75]])), es.LIF(1.0, leak=0.5, reset=reset)]
    if dropout is not None:
        layers.append(es.Dropout(0.5))
    net = es.Network(layers, (1,), dtype=np.float64)
    return net, np.ones((3, 1, 1))


@pytest.mark.parametrize("reset, detach_reset, surrogate, want", [
    # straight-through, sigma = 1/theta = 1; E[t] = G + lam E[t+1] (1 - s[t]) with the reset detached:
    # E3 = 1, E2 = 1 + 0.5 * 1 * 0 = 1, E1 = 1 + 0.5 * 1 = 1.5; dW = sum_t E[t] x[t] = 3.5
    ("hard", True, sg.StraightThrough(), 3.5),
    # reset live, dR/ds = -U: E3 = 1; gS2 = 1 + 0.5 * (-1.125) = 0.4375, E2 = 0.4375;
    # gR1 = 0.21875, gS1 = 1 - 0.21875 * 0.75 = 0.8359375, E1 = 0.8359375 + 0.21875 = 1.0546875
    ("hard", False, sg.StraightThrough(), 1 + 0.4375 + 1.0546875),
    # triangle, width 1: sigma = 1 - |U - 1| = 0.75, 0.875, 0.75;
    # E3 = 0.75, E2 = 0.875, E1 = 0.75 + 0.5 * 0.875 = 1.1875
    ("hard", True, sg.Triangle(), 0.75 + 0.875 + 1.1875),
    # soft reset, dR/dU = 1, detached: E3 = 1, E2 = 1 + 0.5 = 1.5, E1 = 1 + 0.75 = 1.75
    ("soft", True, sg.StraightThrough(), 1 + 1.5 + 1.75),
    # soft reset live, dR/ds = -theta = -1: E3 = 1; gR2 = 0.5, gS2 = 1 - 0.5, E2 = 0.5 + 0.5 = 1;
    # gR1 = 0.5, gS1 = 0.5, E1 = 1
    ("soft", False, sg.StraightThrough(), 3.0),
])
def test_bptt_one_lif_by_hand(reset, detach_reset, surrogate, want):
    net, x = _one_lif(reset)
    np.testing.assert_array_equal(run(net, x)[net.layers[1].name].outputs[:, 0, 0], [0, 1, 0])
    grads = gradients(net, x, np.ones((1, 1)), surrogate=surrogate, detach_reset=detach_reset)
    assert grads[f"{net.layers[0].name}.weight"][0, 0] == pytest.approx(want, rel=1e-15)


@pytest.mark.parametrize("keep", [None, True, False])
def test_lee2020_code_one_lif_by_hand(keep):
    # One spike at t = 2 of T = 3: gamma = 1, f = 0.5^(3-2), NG = 1 + ln(0.5) * 0.5.
    # D[t] = s[t] NG/theta G + (1 - s[t]) D[t+1]: D3 = 0, D2 = NG G, D1 = D2; dW = 2 NG G,
    # with G = 1 (no dropout) or the mask value 2 (kept at p = 0.5) or 0 (dropped).
    net, x = _one_lif(dropout=keep is not None)
    masks = None if keep is None else {net.layers[2].name: np.array([[keep]])}
    grads = gradients(net, x, np.ones((1, 1)), rule="lee2020-code", masks=masks)
    ng = 1 + math.log(0.5) * 0.5
    g = {None: 1.0, True: 2.0, False: 0.0}[keep]
    assert grads[f"{net.layers[0].name}.weight"][0, 0] == pytest.approx(2 * ng * g, rel=1e-15)


def test_readout_by_hand():
    # U = 0.625, 0.1875, 0.46875; readout U[3]/3 = 0.15625. g = 2.
    w, b = np.array([[0.5, -0.25]]), np.array([0.125])
    net = es.Network([es.Linear(2, 1, weight=w, bias=b), es.Readout(leak=0.5)], (2,), dtype=np.float64)
    x = np.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, 1.0]]])
    g = np.array([[2.0]])
    record = run(net, x)[net.layers[1].name]
    np.testing.assert_array_equal(record.potentials[:, 0, 0], [0.625, 0.1875, 0.46875])
    np.testing.assert_array_equal(record.outputs, np.zeros((3, 1, 1)))  # a readout never fires
    fc = net.layers[0].name
    # bptt: D[t] = lam^(T-t) g / T = (0.25, 0.5, 1) * 2/3
    grads = gradients(net, x, g)
    np.testing.assert_allclose(grads[f"{fc}.weight"], [[(0.25 + 1) * 2 / 3, (0.5 + 1) * 2 / 3]], rtol=1e-15)
    np.testing.assert_allclose(grads[f"{fc}.bias"], [(0.25 + 0.5 + 1) * 2 / 3], rtol=1e-15)
    # lee2020-code: D[t] = g / T at every step
    grads = gradients(net, x, g, rule="lee2020-code")
    np.testing.assert_allclose(grads[f"{fc}.weight"], [[4 / 3, 4 / 3]], rtol=1e-15)
    np.testing.assert_allclose(grads[f"{fc}.bias"], [2.0], rtol=1e-15)


def test_spiking_avg_pool_by_hand():
    # Conv 1x1 (w = 1, no neuron) -> SpikingAvgPool(2): four unit currents give 1 > 0.75, so the pool
    # neuron fires at both steps and resets to 0.
    net = es.Network([es.Conv2d(1, 1, 1, weight=np.ones((1, 1, 1, 1))), es.SpikingAvgPool(2)], (1, 2, 2),
                     dtype=np.float64)
    x = np.ones((2, 1, 1, 2, 2))
    conv, pool = (layer.name for layer in net.layers)
    assert run(net, x, rule="lee2020-code")[pool].outputs.ravel().tolist() == [1, 1]
    g = np.ones((1, 1, 1, 1))
    # lee2020-code: D[t] = s[t] G = 1, then 1/4 to each input: dW = 2 steps * 4 pixels * 1/4
    assert gradients(net, x, g, rule="lee2020-code")[f"{conv}.weight"].item() == 2.0
    # bptt, straight-through 1/0.75, detached reset: E2 = 4/3, E1 = 4/3 + lam E2 (1 - s1) = 4/3
    assert gradients(net, x, g)[f"{conv}.weight"].item() == pytest.approx(8 / 3, rel=1e-15)


def test_lee2020_code_refuses_other_resets():
    for neuron in (es.LIF(1.0, leak=0.5, reset="soft"), es.LIF(1.0, leak=0.5, v_reset=-0.5)):
        net = es.Network([es.Linear(1, 1, weight=np.array([[0.75]])), neuron], (1,), dtype=np.float64)
        with pytest.raises(es.LayerError, match=f"{neuron.name}.*hard reset"):
            TorchCandidate(rule="lee2020-code").build(net)
    with pytest.raises(es.OptionError, match="rule"):
        TorchCandidate(rule="lee2020")


# ------------------------------------------- one layer against the rules' recursions
def _random_layer(seed, reset, v_reset, reset_delayed=False):
    """Linear(5 -> 4, dyadic, bias) -> LIF with per-neuron thresholds and an input gain; random input, T = 9."""
    rng = np.random.default_rng(seed)
    w = rng.integers(-8, 9, size=(4, 5)) / 8
    b = rng.integers(-4, 5, size=4) / 8
    lif = es.LIF(rng.choice([0.25, 0.5, 1.0], size=4), leak=float(rng.choice([1.0, 0.75, np.exp(-0.05)])),
                 reset=reset, v_reset=v_reset, strict=bool(rng.integers(2)),
                 input_gain=float(rng.choice([1.0, 0.5, 1.5])), reset_delayed=reset_delayed)
    net = es.Network([es.Linear(5, 4, weight=w, bias=b), lif], (5,), dtype=np.float64)
    x = rng.choice([0.0, 1.0, -1.0, 0.5], size=(9, 2, 5))
    g = rng.integers(-3, 4, size=(2, 4)) / 4
    return net, x, g


def _weight_grads(net, x, d):
    fc = net.layers[0].name
    return {f"{fc}.weight": np.einsum("tbo,tbi->oi", d, x), f"{fc}.bias": d.sum(axis=(0, 1))}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("reset, v_reset, detach_reset, reset_delayed", [
    ("hard", 0.0, True, False), ("hard", -0.5, False, False), ("soft", 0.0, True, False), ("soft", 0.0, False, False),
    ("hard", -0.5, False, True), ("hard", 0.25, True, True), ("soft", 0.0, False, True), ("soft", 0.0, True, True),
])
def test_bptt_matches_recursion(seed, reset, v_reset, detach_reset, reset_delayed):
    # docs/semantics.md, "bptt", V the potential carried to the next step:
    # gS[t] = G[t] + E[t+1] dV/ds[t] (no second term when detached),
    # E[t] = gS[t] sigma(U[t] - theta) + E[t+1] dV/dU[t], D[t] = g E[t]; G = grad at every step (count output).
    net, x, grad = _random_layer(seed, reset, v_reset, reset_delayed)
    lif, surrogate = net.layers[1], sg.FastSigmoid(c=2.0)
    record = run(net, x)[lif.name]
    u, s = record.potentials, record.outputs
    theta, lam, gain = lif.thresholds((4,)), lif.leak, lif.input_gain
    e = np.zeros_like(u)
    nxt = np.zeros_like(grad)
    for t in reversed(range(u.shape[0])):
        if reset == "hard":
            dv_du = lam * (1 - s[t])
            dv_ds = v_reset - lam * u[t] if reset_delayed else lam * (v_reset - u[t])
        else:
            dv_du = lam * np.ones_like(grad)
            dv_ds = -theta if reset_delayed else -lam * theta
        gs = grad + (0 if detach_reset else nxt * dv_ds)
        e[t] = nxt = gs * surrogate.derivative(u[t] - theta, theta) + nxt * dv_du
    grads = gradients(net, x, grad, surrogate=surrogate, detach_reset=detach_reset)
    for key, want in _weight_grads(net, x, gain * e).items():
        np.testing.assert_allclose(grads[key], want, rtol=1e-12, atol=1e-12, err_msg=key)


@pytest.mark.parametrize("seed", range(8))
def test_lee2020_code_matches_recursion(seed):
    # docs/semantics.md, "lee2020-code": D[t] = s[t] (g NG/theta) G + (1 - s[t]) D[t+1],
    # NG = 1 + ln(lam) f / gamma (0 if gamma = 0), f = sum_k lam^(T - t_k).
    net, x, grad = _random_layer(seed, "hard", 0.0, reset_delayed=bool(seed % 2))
    lif = net.layers[1]
    s = run(net, x, rule="lee2020-code")[lif.name].outputs
    steps = s.shape[0]
    theta, lam, gain = lif.thresholds((4,)), lif.leak, lif.input_gain
    gamma = s.sum(axis=0)
    f = (s * lam ** (steps - 1 - np.arange(steps))[:, None, None]).sum(axis=0)
    ng = np.where(gamma > 0, 1 + np.log(lam) * f / np.maximum(gamma, 1), 0.0)
    d = np.zeros_like(s)
    nxt = np.zeros_like(grad)
    for t in reversed(range(steps)):
        d[t] = nxt = s[t] * gain * ng / theta * grad + (1 - s[t]) * nxt
    grads = gradients(net, x, grad, rule="lee2020-code")
    for key, want in _weight_grads(net, x, d).items():
        np.testing.assert_allclose(grads[key], want, rtol=1e-12, atol=1e-12, err_msg=key)
