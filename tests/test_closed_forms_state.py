"""Closed forms of the state beyond the potential, recurrent connections and delays, on the dense twin.

docs/semantics.md, "State beyond the potential", "Recurrent connections" and
"Delays". Each expected value is derived by hand from those sections and
written here (a geometric sum, a cascade read off the weights, a shifted
input, a floor), never taken from another run of the twin.
"""

from fractions import Fraction
from math import ceil, floor

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import eventsim as es
from eventsim.dense import run_dense
from eventsim.testing.strategies import DTYPES, dyadic, net_cases

FORMS = ("product", "euler", "euler-divide", "subtract-divide")
LEAKS = (0.5, 0.75, 0.9, 1 - 1 / 3, float(np.exp(-1 / 20)), 0.3)


def constant(value: float, steps: int, n: int, dtype=np.float64) -> np.ndarray:
    return np.full((1, steps, n), value, dtype)


def neuron_net(neuron: es.LIF, n: int = 1, dtype=np.float64) -> es.Network:
    return es.Network([neuron], (n,), dtype=dtype)


# ================================================================ synaptic current
@given(alpha=st.sampled_from(LEAKS + (0.0, 1.0)), leak=st.sampled_from(LEAKS + (1.0,)), form=st.sampled_from(FORMS),
       h=st.sampled_from([1.0, 0.5, 0.3, 2.0]), current=st.floats(-2.0, 2.0).filter(lambda i: abs(i) > 1e-3),
       steps=st.integers(1, 200))
def test_cuba_lif_under_constant_input_matches_its_two_state_closed_form(alpha, leak, form, h, current, steps):
    # J[t] = h I sum_{k<t} alpha^k = h I (1 - alpha^t) / (1 - alpha)   (h I t for alpha = 1)
    # U[t] = g sum_{s=1}^t lam^(t-s) J[s]; with (1 - alpha^s) / (1 - alpha) summed:
    #      = g h I / (1 - alpha) [ S_lam(t) - alpha (alpha^t - lam^t) / (alpha - lam) ]   (t lam^t when alpha = lam)
    # where S_lam(t) = sum_{k<t} lam^k. Below threshold (theta = inf), so no reset.
    assume(form == "product" or leak < 1.0)
    neuron = es.LIF(np.inf, leak=leak, arithmetic=form, synapse_leak=alpha, synapse_gain=h)
    r = run_dense(neuron_net(neuron), constant(current, steps, 1))
    t = np.arange(1, steps + 1, dtype=np.float64)
    g = neuron.input_gain

    def geometric(q):  # sum_{k<t} q^k
        return t if q == 1.0 else (1 - q**t) / (1 - q)

    j = h * current * geometric(alpha)
    if alpha == 1.0:  # J[s] = h I s: sum_s lam^(t-s) s
        weighted = t * (t + 1) / 2 if leak == 1.0 else np.array(
            [sum(leak ** (k - s) * s for s in range(1, k + 1)) for k in range(1, steps + 1)])
        u = g * h * current * weighted
    else:
        cross = t * alpha**t if alpha == leak else alpha * (alpha**t - leak**t) / (alpha - leak)
        u = g * h * current / (1 - alpha) * (geometric(leak) - cross)
    np.testing.assert_allclose(r.synaptic["lif1"][0, :, 0], j, rtol=1e-12)
    np.testing.assert_allclose(r.potentials["lif1"][0, :, 0], u, rtol=1e-11)
    assert not r.outputs["lif1"].any()


def test_cuba_readout_is_the_last_potential_over_t():
    # A synaptic current in a Readout: alpha = 1/2, one unit input at step 1, IF potential.
    # J = 1, 1/2, 1/4, 1/8; U = 1, 3/2, 7/4, 15/8; readout U[T]/T = 15/32.
    x = np.zeros((1, 4, 1))
    x[0, 0, 0] = 1.0
    net = es.Network([es.Readout(synapse_leak=0.5)], (1,), dtype=np.float64)
    r = run_dense(net, x)
    np.testing.assert_array_equal(r.synaptic["readout1"][0, :, 0], [1, 0.5, 0.25, 0.125])
    np.testing.assert_array_equal(r.potentials["readout1"][0, :, 0], [1, 1.5, 1.75, 1.875])
    np.testing.assert_array_equal(r.readout, [[15 / 32]])


# ================================================================== recurrence
@given(n=st.integers(2, 7), steps=st.integers(1, 25), leak=st.sampled_from([1.0, 0.5, 0.875]),
       weight=st.sampled_from([0.75, 1.0, 2.5]), seed_current=st.sampled_from([0.625, 1.0, 3.0]), dtype=DTYPES)
def test_a_ring_carries_one_seeded_spike_around_forever(n, steps, leak, weight, seed_current, dtype):
    # W_rec[(i+1) % n, i] = w > theta = 0.5; only neuron 0 gets input, at step 0, and fires.
    # Then neuron t % n receives w at step t (its predecessor fired at t-1) and fires, reset to 0;
    # every other neuron is at 0 (never reached, or reset and leaked: lam * 0 = 0).
    w = np.zeros((n, n), dtype)
    w[(np.arange(n) + 1) % n, np.arange(n)] = weight
    net = es.Network([es.Recurrent(es.LIF(0.5, leak=leak), es.Linear(n, n, weight=w))], (n,), dtype=dtype)
    x = np.zeros((1, steps, n), dtype)
    x[0, 0, 0] = seed_current
    r = run_dense(net, x)
    expected_spikes = np.zeros((steps, n), dtype)
    expected_spikes[np.arange(steps), np.arange(steps) % n] = 1
    expected_u = expected_spikes * dtype(weight)
    expected_u[0, 0] = seed_current
    np.testing.assert_array_equal(r.outputs["rec1.lif1"][0], expected_spikes)
    np.testing.assert_array_equal(r.outputs["rec1"][0], expected_spikes)
    np.testing.assert_array_equal(r.potentials["rec1.lif1"][0], expected_u)
    # The connection's output at step t is the current it adds then: W n[t-1].
    np.testing.assert_array_equal(r.outputs["rec1.fc1"][0, 1:], expected_spikes[:-1] @ w.T)
    assert not r.outputs["rec1.fc1"][0, 0].any()


@given(steps=st.integers(2, 20), leak=st.sampled_from([1.0, 0.5, 0.75]), weight=st.sampled_from([0.125, 0.25, 0.375]))
def test_a_chain_below_threshold_stops_after_one_link_and_leaks(steps, leak, weight):
    # 0 -> 1 -> 2 with w < theta = 0.5: neuron 1 receives w once (step 1) and never fires;
    # its potential leaks, U[t, 1] = w lam^(t-1); neuron 2 never receives anything.
    w = np.zeros((3, 3))
    w[1, 0] = w[2, 1] = weight
    net = es.Network([es.Recurrent(es.LIF(0.5, leak=leak), es.Linear(3, 3, weight=w))], (3,), dtype=np.float64)
    x = np.zeros((1, steps, 3))
    x[0, 0, 0] = 1.0
    r = run_dense(net, x)
    t = np.arange(steps)
    np.testing.assert_array_equal(r.outputs["rec1.lif1"][0, :, 0], t == 0)
    assert not r.outputs["rec1.lif1"][0, :, 1:].any()
    np.testing.assert_array_equal(r.potentials["rec1.lif1"][0, :, 1], np.where(t >= 1, weight * leak ** (t - 1.0), 0))
    assert not r.potentials["rec1.lif1"][0, :, 2].any()


def test_the_recurrent_connection_scales_by_the_spike_count():
    # Neuron 0 (max_spikes None, >=, soft) gets 3.5 at step 0: n = floor(3.5) = 3, R = 0.5.
    # Neuron 1 receives 3 * 0.25 = 0.75 at step 1 (below theta 1), nothing else: U stays 0.75 (IF).
    w = np.array([[0.0, 0.0], [0.25, 0.0]])
    neuron = es.IF(1.0, reset="soft", strict=False, max_spikes=None)
    net = es.Network([es.Recurrent(neuron, es.Linear(2, 2, weight=w))], (2,), dtype=np.float64)
    x = np.zeros((1, 3, 2))
    x[0, 0, 0] = 3.5
    r = run_dense(net, x)
    np.testing.assert_array_equal(r.outputs["rec1.if1"][0], [[3, 0], [0, 0], [0, 0]])
    np.testing.assert_array_equal(r.potentials["rec1.if1"][0], [[3.5, 0], [0.5, 0.75], [0.5, 0.75]])


@given(bias=st.sampled_from([0.125, 0.25, 0.375, 0.75]), theta=st.sampled_from([0.5, 1.0, 1.5]),
       steps=st.integers(1, 30))
def test_the_recurrent_bias_enters_every_step_from_the_first(bias, theta, steps):
    # No input, W_rec = 0, bias b: U[t] = (t+1) b (IF, steps counted from 0) until it exceeds theta;
    # the first spike is at the first t with (t+1) b > theta, then the hard reset starts the count again.
    net = es.Network([es.Recurrent(es.IF(theta), es.Linear(1, 1, weight=np.zeros((1, 1)), bias=np.array([bias])))],
                     (1,), dtype=np.float64)
    r = run_dense(net, np.zeros((1, steps, 1)))
    period = floor(Fraction(theta) / Fraction(bias)) + 1  # smallest k with k b > theta
    t = np.arange(steps)
    np.testing.assert_array_equal(r.potentials["rec1.if1"][0, :, 0], (t % period + 1) * bias)
    np.testing.assert_array_equal(r.outputs["rec1.if1"][0, :, 0], (t % period) == period - 1)


@given(width=st.integers(2, 8), steps=st.integers(1, 12), dtype=DTYPES)
def test_a_shift_convolution_walks_a_spike_along_the_row(width, steps, dtype):
    # 3x3 kernel with the single tap W[0, 0, 1, 0] = 1, padding 1: I[y, x] = s[y, x - 1].
    # A spike seeded at (0, 0) at step 0 moves one column per step and leaves the map at the edge.
    w = np.zeros((1, 1, 3, 3), dtype)
    w[0, 0, 1, 0] = 1
    rec = es.Recurrent(es.IF(0.5), es.Conv2d(1, 1, 3, padding=1, weight=w))
    net = es.Network([rec], (1, 2, width), dtype=dtype)
    x = np.zeros((1, steps, 1, 2, width), dtype)
    x[0, 0, 0, 0, 0] = 1
    r = run_dense(net, x)
    expected = np.zeros((steps, 1, 2, width), dtype)
    for t in range(min(steps, width)):
        expected[t, 0, 0, t] = 1
    np.testing.assert_array_equal(r.outputs["rec1.if1"][0], expected)


# ====================================================================== delays
@given(case=net_cases(max_blocks=3, max_steps=10), d=st.integers(0, 12), train=st.booleans())
def test_a_delay_before_a_network_equals_the_input_shifted(case, d, train):
    x = case.events.to_dense()
    steps = x.shape[1]
    shifted = np.zeros_like(x)
    shifted[:, d:] = x[:, :max(steps - d, 0)]

    def run(layers, inputs):
        net = es.Network(layers, case.network.input_shape, dtype=case.dtype)
        return run_dense(net, inputs, train=train, rng=np.random.default_rng(case.seed) if train else None)

    delayed = run([es.Delay(d, name="delay")] + list(case.network.layers), x)
    plain = run(list(case.network.layers), shifted)
    np.testing.assert_array_equal(delayed.outputs["delay"], shifted)
    for name, out in plain.outputs.items():
        np.testing.assert_array_equal(delayed.outputs[name], out, err_msg=name)
    for name, u in plain.potentials.items():
        np.testing.assert_array_equal(delayed.potentials[name], u, err_msg=name)
    if plain.readout is not None:
        np.testing.assert_array_equal(delayed.readout, plain.readout)


@given(seed=st.integers(0, 2**32 - 1), per=st.sampled_from(["channel", "neuron"]), steps=st.integers(1, 9),
       dtype=DTYPES)
def test_per_channel_and_per_neuron_delays_shift_each_neuron_by_its_own_d(seed, per, steps, dtype):
    rng = np.random.default_rng(seed)
    shape = (3, 2, 2)
    d = rng.integers(0, steps + 2, size=shape[:1] if per == "channel" else shape)
    x = dyadic(rng, (2, steps) + shape, dtype)
    r = run_dense(es.Network([es.Delay(d)], shape, dtype=dtype), x)
    per_neuron = np.broadcast_to(d.reshape(d.shape + (1,) * (3 - d.ndim)), shape)
    expected = np.zeros_like(x)
    for c, i, j in np.ndindex(*shape):
        k = per_neuron[c, i, j]
        expected[:, k:, c, i, j] = x[:, :max(steps - k, 0), c, i, j]  # events moved past T are dropped
    np.testing.assert_array_equal(r.outputs["delay1"], expected)


# ======================================================= several spikes per step
@given(num=st.integers(1, 64), theta=st.sampled_from([0.25, 0.5, 0.75, 1.0, 1.5]), steps=st.integers(1, 40),
       extra=st.one_of(st.none(), st.integers(0, 3)), strict=st.booleans(), dtype=DTYPES)
def test_multi_spike_if_under_constant_current_emits_t_i_over_theta_spikes(num, theta, steps, extra, strict, dtype):
    # Soft reset keeps the residue R = t I - theta N(t) in [0, theta) (or (0, theta] strict), so
    # U[t+1] / theta < 1 + I / theta never asks for more than ceil(I / theta) <= M spikes:
    # N(T) = floor(T I / theta) with >=, and ceil(T I / theta) - 1 with > (the same unless T I / theta is whole).
    current = Fraction(num, 8)
    ratio = current / Fraction(theta)
    bound = None if extra is None else ceil(ratio) + extra  # any M >= I / theta
    net = neuron_net(es.IF(theta, reset="soft", strict=strict, max_spikes=bound), dtype=dtype)
    r = run_dense(net, constant(float(current), steps, 1, dtype))
    total = steps * ratio
    expected = floor(total) if not strict else ceil(total) - 1
    assert r.outputs["if1"].sum() == expected
    assert r.outputs["if1"].max() <= ceil(ratio)


@pytest.mark.parametrize("strict", [True, False])
def test_max_spikes_caps_the_count_and_the_residue_carries_over(strict):
    # I = 2.5, theta = 1, M = 2, soft: U = 2.5 -> n = 2, R = 0.5; U = 3.0 -> n = 2 (>=: floor 3 capped;
    # >: ceil(3) - 1 = 2), R = 1.0; U = 3.5 -> n = 2, R = 1.5; U = 4.0 -> n = 2, R = 2.0.
    net = neuron_net(es.IF(1.0, reset="soft", strict=strict, max_spikes=2))
    r = run_dense(net, constant(2.5, 4, 1))
    np.testing.assert_array_equal(r.potentials["if1"][0, :, 0], [2.5, 3.0, 3.5, 4.0])
    np.testing.assert_array_equal(r.outputs["if1"][0, :, 0], [2, 2, 2, 2])


# ============================================================= rest and initial potential
@given(form=st.sampled_from(FORMS), leak=st.sampled_from(LEAKS), v_rest=st.floats(-3.0, 0.9), synaptic=st.booleans(),
       steps=st.integers(1, 50), dtype=DTYPES)
def test_a_neuron_at_rest_without_input_stays_at_rest_exactly(form, leak, v_rest, synaptic, steps, dtype):
    # R = v_rest, X = 0: every form's operations give v_rest back exactly (v - v = 0, 0 * c = 0, v + 0 = v).
    neuron = es.LIF(1.0, leak=leak, arithmetic=form, v_rest=v_rest, synapse_leak=0.5 if synaptic else None)
    r = run_dense(neuron_net(neuron, 3, dtype), np.zeros((2, steps, 3), dtype))
    np.testing.assert_array_equal(r.potentials["lif1"], np.full((2, steps, 3), dtype(v_rest)))
    assert not r.outputs["lif1"].any()


@given(form=st.sampled_from(FORMS), leak=st.sampled_from(LEAKS), v_rest=st.floats(-2.0, 2.0),
       v_init=st.floats(-2.0, 2.0), steps=st.integers(1, 100))
def test_an_initial_potential_decays_geometrically_toward_rest(form, leak, v_rest, v_init, steps):
    # U[t] = v_rest + lam^t (v_init - v_rest), never firing (theta = inf); the readout is U[T] / T.
    net = es.Network([es.Readout(leak=leak, arithmetic=form, v_rest=v_rest, v_init=v_init)], (1,), dtype=np.float64)
    r = run_dense(net, np.zeros((1, steps, 1)))
    t = np.arange(1, steps + 1)
    closed = v_rest + leak**t * (v_init - v_rest)
    # A step rounds at most 4 times, each by at most u |value| with |value| <= 4 (|R|, |v_rest| <= 2), and the
    # exact step damps earlier errors by lam <= 1: after t steps the twin is within 16 u t; the closed form's
    # own evaluation adds a few u per term.
    bound = 16 * float(np.finfo(np.float64).eps / 2) * (t + 2)
    assert np.all(np.abs(r.potentials["readout1"][0, :, 0] - closed) <= bound)
    assert abs(r.readout[0, 0] - closed[-1] / steps) <= bound[-1] / steps * 2


# ======================================================================== clamp
@given(leak=st.sampled_from([1.0, 0.5, 0.75]), v_min=st.integers(-16, 0), below=st.integers(1, 16),
       steps=st.integers(1, 20), dtype=DTYPES)
def test_the_clamp_holds_the_potential_at_v_min(leak, v_min, below, steps, dtype):
    # A constant input I < v_min <= 0: at the first step U = lam * 0 + I = I < v_min, clamped to R = v_min;
    # after that U = lam * v_min + I < v_min every step (lam v_min >= v_min), so U = lam v_min + I from then on.
    v_min, current = v_min / 4, (v_min - below) / 4
    net = neuron_net(es.LIF(1.0, leak=leak, v_min=v_min), dtype=dtype)
    r = run_dense(net, constant(current, steps, 1, dtype))
    expected = np.full(steps, leak * v_min + current)
    expected[0] = current
    np.testing.assert_array_equal(r.potentials["lif1"][0, :, 0], expected)


def test_the_clamp_applies_after_the_hard_reset():
    # v_reset = -1 is below v_min = -0.5: a neuron that fires resets to -1, then the clamp lifts R to -0.5.
    # U = 2 -> fires, R = max(-1, -0.5) = -0.5; U = 0.5 * -0.5 + 0 = -0.25.
    x = np.array([[[2.0], [0.0]]])
    r = run_dense(neuron_net(es.LIF(1.0, leak=0.5, v_reset=-1.0, v_min=-0.5)), x)
    np.testing.assert_array_equal(r.potentials["lif1"][0, :, 0], [2.0, -0.25])
