"""Closed-form checks of the dense gradient references (bptt and lee2020).

Every expected number is worked out by hand in the test from
docs/semantics.md, "Gradient rules", on networks of one or two neurons and a
few steps; none comes from another implementation. One test checks the
synapse and pooling adjoints against finite differences on a network without
spiking neurons, where the bptt gradient is the exact gradient.
"""

from math import log

import numpy as np
import pytest

import eventsim as es
from eventsim.dense import run_dense
from eventsim.learning.dense import bptt_gradients, lee2020_gradients
from eventsim.learning.dense.bptt import surrogate_derivative
from eventsim.learning.dense.lee2020 import lif_pseudo_derivative, spike_statistics
from eventsim.learning.parameters import parameters
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle

F64 = np.float64
ST = StraightThrough()


def arr(*values) -> np.ndarray:
    return np.asarray(values, dtype=F64)


def steps_input(values, n: int = 1) -> np.ndarray:
    """One sample, the given value at each step on all ``n`` inputs: ``(1, T, n)``."""
    return np.repeat(arr(*values)[None, :, None], n, axis=2)


# ------------------------------------------------------------ one LIF neuron
# Linear(1 -> 1, w = 0.75) into LIF(theta = 1, lam = 0.5), input 1 at each of
# T = 3 steps, so I = 0.75 every step. Forward:
#   U1 = 0.75 (no spike); U2 = 0.5 * 0.75 + 0.75 = 1.125 (spike);
#   hard: U3 = 0.5 * 0 + 0.75 = 0.75; soft: U3 = 0.5 * 0.125 + 0.75 = 0.8125 (no spike).
# g_out = dL/dcount = 1, so G[t] = 1; straight-through sigma = 1/theta = 1.
#
# hard, detached:  E3 = 1;  E2 = 1 + 0.5*1*(1 - s2 = 0) = 1;  E1 = 1 + 0.5*1*1 = 1.5        -> 3.5
# hard, attached:  E3 = 1;  gR2 = 0.5, gS2 = 1 + 0.5*(0 - 1.125) = 0.4375, E2 = 0.4375;
#                  gR1 = 0.21875, gS1 = 1 + 0.21875*(0 - 0.75) = 0.8359375,
#                  E1 = 0.8359375 + 0.21875 = 1.0546875                                  -> 2.4921875
# soft, detached:  E3 = 1;  E2 = 1 + 0.5*1 = 1.5;  E1 = 1 + 0.5*1.5 = 1.75                  -> 4.25
# soft, attached:  dR/ds = -theta = -1:  E2 = (1 - 0.5) + 0.5 = 1;  E1 = (1 - 0.5) + 0.5 = 1 -> 3.0
# dW = sum_t E[t] * x[t] with x[t] = 1.
@pytest.mark.parametrize(
    "reset, detach, expected",
    [("hard", True, 3.5), ("hard", False, 2.4921875), ("soft", True, 4.25), ("soft", False, 3.0)],
)
def test_bptt_single_lif_by_hand(reset, detach, expected):
    net = es.Network([es.Linear(1, 1, weight=arr([0.75]), bias=arr(0.0)), es.LIF(1.0, leak=0.5, reset=reset)],
                     (1,), dtype=F64)
    grads = bptt_gradients(net, steps_input([1, 1, 1]), arr([1.0]), surrogate=ST, detach_reset=detach)
    assert set(grads) == {"fc1.weight", "fc1.bias"}
    assert grads["fc1.weight"].dtype == F64 and grads["fc1.weight"].shape == (1, 1)
    assert grads["fc1.weight"][0, 0] == pytest.approx(expected, rel=1e-15)
    assert grads["fc1.bias"][0] == pytest.approx(expected, rel=1e-15)  # the bias sees input 1 at every step too


def test_lee2020_single_lif_by_hand():
    # The same forward: one spike, at step t_k = 2 of T = 3, so gamma = 1 and
    # f = lam^(T - t_k) = 0.5; a' = (1/theta)(1 + ln(0.5) * 0.5 / 1). D = g_out * a';
    # the summed input is x = 3, so dW = 3 a' and db = a'.
    net = es.Network([es.Linear(1, 1, weight=arr([0.75]), bias=arr(0.0)), es.LIF(1.0, leak=0.5)], (1,), dtype=F64)
    grads = lee2020_gradients(net, steps_input([1, 1, 1]), arr([2.0]))
    aprime = 1 + log(0.5) * 0.5
    assert grads["fc1.weight"][0, 0] == pytest.approx(2.0 * 3 * aprime, rel=1e-14)
    assert grads["fc1.bias"][0] == pytest.approx(2.0 * aprime, rel=1e-14)


# ---------------------------------------------------------- readout only
@pytest.mark.parametrize("t", [1, 2, 3])
def test_readout_only_gradient(t):
    # Linear(1 -> 1) into Readout(lam = 0.5), T = 3, a single input 1 at step t.
    # bptt: readout = U[T]/T with U[T] = sum_t lam^(T-t) I[t], so dW = g * lam^(T-t) / T.
    # lee2020: the leak is noise, D = g / T on the summed input 1: dW = g / T whatever t.
    lam, T, g = 0.5, 3, 1.5
    net = es.Network([es.Linear(1, 1, weight=arr([0.25])), es.Readout(leak=lam)], (1,), dtype=F64)
    x = np.zeros((1, T, 1), F64)
    x[0, t - 1, 0] = 1.0
    bptt = bptt_gradients(net, x, arr([g]), surrogate=ST)
    assert bptt["fc1.weight"][0, 0] == pytest.approx(g * lam ** (T - t) / T, rel=1e-15)
    lee = lee2020_gradients(net, x, arr([g]))
    assert lee["fc1.weight"][0, 0] == pytest.approx(g / T, rel=1e-15)


# ------------------------------------------------------------ lee2020 a'
def test_lee2020_aprime_bounds_and_extremes():
    # a' = (1/theta)(1 + ln(lam) f/gamma) with f/gamma in [lam^(T-1), 1], ln(lam) < 0:
    # (1/theta)(1 + ln lam) <= a' <= 1/theta; a silent neuron gets 0.
    lam, theta, T = 0.9, 0.5, 6
    rng = np.random.default_rng(3)
    s = (rng.random((4, T, 50)) < 0.3).astype(F64)
    s[0, :, 0] = 0  # never fires
    s[0, :, 1] = 0
    s[0, -1, 1] = 1  # one spike at the last step: f/gamma = 1, the largest correction
    s[0, :, 2] = 0
    s[0, 0, 2] = 1  # one spike at the first step: f/gamma = lam^(T-1), the smallest
    gamma, f = spike_statistics(s, lam)
    a = lif_pseudo_derivative(gamma, f, theta, lam)
    assert a[0, 0] == 0.0
    assert a[0, 1] == pytest.approx((1 / theta) * (1 + log(lam)), rel=1e-15)  # the lower bound, reached
    assert a[0, 2] == pytest.approx((1 / theta) * (1 + log(lam) * lam ** (T - 1)), rel=1e-14)
    fired = gamma > 0
    assert np.all(a[~fired] == 0)
    assert np.all(a[fired] <= 1 / theta + 1e-15)
    assert np.all(a[fired] >= (1 / theta) * (1 + log(lam)) - 1e-15)


def test_lee2020_if_neuron_is_straight_through_and_silent_neuron_gets_zero():
    # Two IF neurons (lam = 1, so a' = 1/theta = 2 when gamma > 0) fed by
    # Linear(1 -> 2, w = (1, 0.25)), input 1 at T = 2 steps: neuron 0 gets
    # I = 1 > 0.5 and fires twice; neuron 1 gets 0.25, then 0.5 (not > 0.5): silent.
    net = es.Network([es.Linear(1, 2, weight=arr([1.0], [0.25]), bias=arr(0.0, 0.0)), es.IF(0.5)], (1,), dtype=F64)
    grads = lee2020_gradients(net, steps_input([1, 1]), arr([1.0, 1.0]))
    np.testing.assert_array_equal(grads["fc1.weight"], arr([2.0 * 2], [0.0]))  # D = 2, summed input 2
    np.testing.assert_array_equal(grads["fc1.bias"], arr(2.0, 0.0))


def test_lee2020_spiking_avg_pool_gates_on_gamma():
    # SpikingAvgPool(2) on a 1 x 2 x 4 map: the left window gets four unit spikes
    # per step via a 1x1 conv of weight 1 and fires (0.25 * 4 = 1 > 0.75); the
    # right window gets nothing. D = G * 1[gamma > 0], then 1/4 to each input;
    # the conv then collects dW = sum of D_in * x = 4 inputs * 1/4 * 2 steps * g.
    x = np.zeros((1, 2, 1, 2, 4), F64)
    x[0, :, 0, :, :2] = 1
    net = es.Network([es.Conv2d(1, 1, 1, weight=np.ones((1, 1, 1, 1), F64), bias=arr(0.0)), es.SpikingAvgPool(2)],
                     (1, 2, 4), dtype=F64)
    g = np.array([[[[3.0, 5.0]]]])  # (B, C, 1, 2)
    grads = lee2020_gradients(net, x, g)
    assert grads["conv1.weight"][0, 0, 0, 0] == pytest.approx(3.0 * 4 * 0.25 * 2)
    # The bias reaches all 8 inputs once (totals): 4 * 0.25 * 3 on the left, 0 on the right.
    assert grads["conv1.bias"][0] == pytest.approx(3.0)


def test_lee2020_dropout_scales_kept_and_zeroes_dropped():
    # Linear(1 -> 2, w = 1) -> IF(0.5) fires at both of T = 2 steps in both neurons;
    # Dropout(0.5) keeps neuron 0 (value 2) and drops neuron 1; Linear(2 -> 1, w = 1)
    # -> Readout(lam = 1): readout = (2 + 2) / 2 = 2. g = 1, D_out = 1/T = 0.5;
    # dW2 = 0.5 * (summed values 4, 0); G at dropout = 0.5 * (1, 1) -> keep * 2 = (1, 0);
    # a' = 1/0.5 = 2 -> D1 = (2, 0); dW1 = D1 * summed input 2.
    net = es.Network([es.Linear(1, 2, weight=arr([1.0], [1.0])), es.IF(0.5), es.Dropout(0.5),
                      es.Linear(2, 1, weight=arr([1.0, 1.0])), es.Readout()], (1,), dtype=F64)
    masks = {"drop1": np.array([[True, False]])}
    grads = lee2020_gradients(net, steps_input([1, 1]), arr([1.0]), masks=masks)
    np.testing.assert_array_equal(grads["fc2.weight"], arr([2.0, 0.0]))
    np.testing.assert_array_equal(grads["fc1.weight"], arr([4.0], [0.0]))


# ------------------------------------------------------------- residual
@pytest.mark.parametrize("rule", ["bptt", "lee2020"])
def test_residual_block_by_hand(rule):
    # Linear(w0 = 1) -> Residual(main = [Linear(wa = 1.5), IF(1), Linear(wb = 0.5)],
    # identity skip, IF(1)); input 1 at T = 2 steps. IF1 gets 1.5 and fires at both
    # steps (reset to 0); IF2 gets 0.5 * 1 + 1 = 1.5 and fires at both steps.
    # g_out = dL/dcount = 1. Both rules: the neuron D is 1 per step (IF, straight-through
    # 1/theta = 1, and for bptt the leak path is cut by the reset, 1 - s = 0).
    #   dWb = D2 * (spikes of IF1 summed) = 2;  D1 = wb * D2 * 1 = 0.5 per step -> dWa = 0.5 * 2 = 1;
    #   block input gradient = wa * D1 + D2 (skip) = 1.75 per step -> dW0 = 1.75 * 2 = 3.5.
    lin = lambda w, name: es.Linear(1, 1, weight=arr([w]), name=name)  # noqa: E731
    block = es.Residual([lin(1.5, "a"), es.IF(1.0), lin(0.5, "b")], es.IF(1.0), name="res")
    net = es.Network([lin(1.0, "w0"), block], (1,), dtype=F64)
    x, g = steps_input([1, 1]), arr([1.0])
    grads = bptt_gradients(net, x, g, surrogate=ST) if rule == "bptt" else lee2020_gradients(net, x, g)
    assert set(grads) == set(parameters(net)) == {"w0.weight", "a.weight", "b.weight"}
    assert grads["b.weight"][0, 0] == pytest.approx(2.0)
    assert grads["a.weight"][0, 0] == pytest.approx(1.0)
    assert grads["w0.weight"][0, 0] == pytest.approx(3.5)


# ------------------------------------------------------------ max pooling
def test_max_pool_routes_to_first_maximum():
    # Conv2d(1 -> 1, 2x2, W = [[1, 0], [0, 0]]) on a 3x3 map copies x[y, x] to
    # out[y, x] for the 2x2 output; MaxPool(2) over it. With x[0,1] = x[1,0] = 1 the
    # maximum 1 ties at (0,1) and (1,0); row-major first is (0,1), so
    # dW[i, j] = D * x[0 + i, 1 + j] = [[1, x02], [x11, x12]] = [[1, 0.5], [0, 0]]
    # (routing to (1,0) would give [[1, 0], [x20, 0]] = [[1, 0], [0.25, 0]]).
    x = np.zeros((1, 1, 1, 3, 3), F64)
    x[0, 0, 0, 0, 1] = x[0, 0, 0, 1, 0] = 1.0
    x[0, 0, 0, 0, 2] = 0.5
    x[0, 0, 0, 2, 0] = 0.25
    w = np.array([[[[1.0, 0.0], [0.0, 0.0]]]])
    net = es.Network([es.Conv2d(1, 1, 2, weight=w), es.MaxPool(2), es.Flatten(),
                      es.Linear(1, 1, weight=arr([1.0])), es.Readout()], (1, 3, 3), dtype=F64)
    for grads in (bptt_gradients(net, x, arr([1.0]), surrogate=ST), lee2020_gradients(net, x, arr([1.0]))):
        np.testing.assert_array_equal(grads["conv1.weight"][0, 0], [[1.0, 0.5], [0.0, 0.0]])


# ------------------------------------------------------------- surrogates
def test_surrogate_formulas_at_hand_points():
    theta = 2.0
    assert surrogate_derivative(ST, np.array([0.3]), theta)[0] == 0.5
    # b / (1 + c|x|)^2 with b = 1/theta: 0.5 / (1 + 10 * 0.1)^2
    assert surrogate_derivative(FastSigmoid(), np.array([-0.1]), theta)[0] == pytest.approx(0.125)
    assert surrogate_derivative(ArcTan(2.0), np.array([0.0]), theta)[0] == pytest.approx(1.0)
    # (alpha/2) / (1 + (pi/2 * alpha * x)^2) at alpha = 2, x = 1/pi: 1 / (1 + 1)
    assert surrogate_derivative(ArcTan(2.0), np.array([1 / np.pi]), theta)[0] == pytest.approx(0.5)
    assert surrogate_derivative(Sigmoid(4.0), np.array([0.0]), theta)[0] == pytest.approx(1.0)
    assert surrogate_derivative(Sigmoid(4.0), np.array([-1e4]), theta)[0] == 0.0  # no overflow
    np.testing.assert_allclose(surrogate_derivative(Triangle(1.0), np.array([0.5, -1.5]), theta), [0.5, 0.0])
    for sur in (ST, FastSigmoid(), ArcTan(), Sigmoid(), Triangle()):
        assert surrogate_derivative(sur, np.array([-np.inf]), np.inf)[0] == 0.0


def test_fast_sigmoid_with_c0_equals_straight_through():
    rng = np.random.default_rng(0)
    net = es.Network([es.Linear(4, 3, weight=rng.normal(size=(3, 4))), es.LIF(np.array([0.5, 1.0, 1.5]), leak=0.8),
                      es.Linear(3, 2, weight=rng.normal(size=(2, 3))), es.Readout(leak=0.9)], (4,), dtype=F64)
    x = (rng.random((2, 5, 4)) < 0.5).astype(F64)
    g = rng.normal(size=(2, 2))
    a = bptt_gradients(net, x, g, surrogate=FastSigmoid(c=0.0), detach_reset=False)
    b = bptt_gradients(net, x, g, surrogate=ST, detach_reset=False)
    assert any(np.abs(v).max() > 0 for v in b.values())
    for key in b:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-15, atol=0)


def test_bptt_never_firing_neuron_gets_no_surrogate_gradient():
    # theta = inf: sigma = 0 and no NaN from -theta or inf - inf, even with the
    # soft reset attached; the neuron passes nothing back.
    net = es.Network([es.Linear(1, 1, weight=arr([1.0])), es.LIF(np.inf, leak=0.5, reset="soft")], (1,), dtype=F64)
    grads = bptt_gradients(net, steps_input([1, 1, 1]), arr([1.0]), surrogate=Triangle(), detach_reset=False)
    assert grads["fc1.weight"][0, 0] == 0.0


# ---------------------------------------------- adjoints vs finite differences
def test_synapse_adjoints_match_finite_differences():
    # No spiking neuron: the readout is linear in every weight (max pooling is
    # piecewise linear, with distinct values almost surely), so bptt's gradient is
    # the exact gradient of L = sum(g * readout) and central differences find it.
    rng = np.random.default_rng(1)
    layers = [
        es.Conv2d(2, 3, 3, stride=2, padding=(1, 2), weight=rng.normal(size=(3, 2, 3, 3)), bias=rng.normal(size=3)),
        es.MaxPool(2, stride=1),
        es.AvgPool(2, stride=1),
        es.Conv2d(3, 2, (2, 1), padding=(1, 0), weight=rng.normal(size=(2, 3, 2, 1))),
        es.SumPool(1, stride=(1, 2)),
        es.Flatten(),
        es.Linear(12, 3, weight=rng.normal(size=(3, 12)), bias=rng.normal(size=3)),
        es.Readout(leak=0.7),
    ]
    net = es.Network(layers, (2, 7, 8), dtype=F64)
    assert net.shapes[layers[-2].name][0] == (12,)
    x = rng.normal(size=(2, 3, 2, 7, 8))
    g = rng.normal(size=(2, 3))
    grads = bptt_gradients(net, x, g, surrogate=ST)
    params = parameters(net)
    h = 1e-6
    for key, p in params.items():
        numeric = np.zeros(p.shape)
        for idx in np.ndindex(p.shape):
            old = p[idx]
            p[idx] = old + h
            up = (g * run_dense(net, x).readout).sum()
            p[idx] = old - h
            down = (g * run_dense(net, x).readout).sum()
            p[idx] = old
            numeric[idx] = (up - down) / (2 * h)
        np.testing.assert_allclose(grads[key], numeric, rtol=1e-6, atol=1e-8, err_msg=key)


def test_grad_output_shape_is_checked():
    net = es.Network([es.Linear(1, 2, weight=arr([1.0], [1.0])), es.Readout()], (1,), dtype=F64)
    with pytest.raises(ValueError, match="grad_output"):
        lee2020_gradients(net, steps_input([1]), arr([1.0]))
