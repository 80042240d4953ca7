"""The neuron options that express other frameworks' conventions: ``input_gain`` and ``reset_delayed``.

docs/semantics.md, "Neurons": ``U[t] = lam * R(U[t-1], s[t-1]) + g * I[t]``,
and with ``reset_delayed`` ``U[t] = R(lam * U[t-1], s[t-1]) + g * I[t]``.
Checked here: validation; the event path against the dense twin bit for bit
on random networks with random options; hand-derived and closed-form
potentials of single neurons; the gradient rules against the dense references
with the options on; the gain folded into the weights (a change of variables
every rule must respect); and the ``bptt`` carry of the delayed reset against
finite differences of a smooth version of the recursion.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.learning.dense import bptt_gradients, lee2020_gradients
from eventsim.learning.dense.bptt import lif_backward
from eventsim.learning.rules import BPTT, Lee2020, Lee2020Code
from eventsim.learning.surrogates import Sigmoid
from eventsim.testing.strategies import deep_cases, dyadic, net_cases
from test_gradients_dense import SURROGATES, assert_gradients_close
from test_network_equivalence import assert_runs_identical

#: Dyadic gains; ``EULER`` stands for ``1 - lam`` of the layer (forward Euler).
EULER = "1 - lam"
GAINS = st.sampled_from([0.5, 0.25, 1.0, 2.0, 0.125, EULER])
FLOAT64 = st.just(np.float64)


def set_conventions(draw, network: es.Network) -> None:
    """Give every neuron layer of ``network`` a random gain and (spiking layers) a random reset timing."""
    for layer in network.walk():
        if not isinstance(layer, es.LIF):
            continue
        gain = draw(GAINS)
        if gain == EULER:
            gain = 1.0 - layer.leak if layer.leak < 1.0 else 0.5
        layer.input_gain = gain
        if not isinstance(layer, es.Readout):
            layer.reset_delayed = draw(st.booleans())


@st.composite
def convention_cases(draw, cases):
    case = draw(cases)
    set_conventions(draw, case.network)
    return case


def one_neuron_run(neuron: es.LIF, currents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Potentials and spikes ``(T, N)`` of one flat layer fed ``currents`` ``(T, N)`` directly."""
    net = es.Network([neuron], currents.shape[1:], dtype=currents.dtype)
    result = net.run(es.Events.from_dense(currents[None]), record=("potentials", "spikes"))
    name = neuron.name
    return result.potentials[name][0], result.spikes[name].to_dense()[0]


# ------------------------------------------------------------------ options
def test_options_show_in_repr_and_defaults_are_the_plain_recursion():
    lif = es.LIF(1.0, leak=0.5, input_gain=0.25, reset_delayed=True)
    assert "input_gain=0.25" in repr(lif) and "reset_delayed=True" in repr(lif)
    assert es.IF().input_gain == 1.0 and es.IF().reset_delayed is False
    assert "input_gain=0.5" in repr(es.Readout(leak=0.5, input_gain=0.5))
    assert "reset_delayed" not in repr(es.Readout())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: es.LIF(1.0, leak=0.5, input_gain=0.0), "input_gain must be positive and finite, got 0.0"),
        (lambda: es.LIF(1.0, leak=0.5, input_gain=-1.0), "input_gain must be positive and finite"),
        (lambda: es.IF(input_gain=np.inf), "input_gain must be positive and finite, got inf"),
        (lambda: es.IF(input_gain=np.nan), "input_gain must be positive and finite, got nan"),
        (lambda: es.IF(input_gain="2"), "input_gain must be a number, got '2'"),
        (lambda: es.IF(input_gain=True), "input_gain must be a number, got True"),
        (lambda: es.Readout(input_gain=-0.5), "input_gain must be positive and finite"),
        (lambda: es.LIF(1.0, leak=0.5, reset_delayed=1), "reset_delayed must be True or False, got 1"),
        (lambda: es.IF(reset_delayed="yes"), "reset_delayed must be True or False"),
    ],
)
def test_bad_options_name_the_layer_and_the_field(make, message):
    with pytest.raises(es.LayerError, match=message):
        make()


def test_options_set_later_are_validated_and_a_readout_has_no_reset_to_delay():
    lif = es.LIF(1.0, leak=0.5, name="hidden")
    with pytest.raises(es.LayerError, match=r"layer 'hidden' \(LIF\): input_gain must be positive"):
        lif.input_gain = 0
    readout = es.Readout(name="out")
    with pytest.raises(es.LayerError, match=r"layer 'out' \(Readout\): a Readout never fires, so reset_delayed"):
        readout.reset_delayed = True
    readout.reset_delayed = False
    assert lif.input_gain == 1.0 and readout.reset_delayed is False


# ------------------------------------------------------------ event == dense
@given(case=convention_cases(net_cases()), train=st.booleans(), window=st.one_of(st.none(), st.integers(1, 5)))
def test_event_path_equals_dense_twin_with_any_gain_and_reset_timing(case, train, window):
    assert_runs_identical(case, train=train, window=window)


@settings(max_examples=20)
@given(case=net_cases(hard_zero=True))
def test_delayed_hard_reset_to_zero_is_the_default_reset(case):
    before = case.network.run(case.events, record=("spikes", "potentials"))
    for layer in case.network.walk():
        if isinstance(layer, es.LIF) and not isinstance(layer, es.Readout):
            layer.reset_delayed = True
    after = case.network.run(case.events, record=("spikes", "potentials"))
    for name, u in before.potentials.items():
        np.testing.assert_array_equal(after.potentials[name], u, err_msg=name)
        np.testing.assert_array_equal(after.spikes[name].to_dense(), before.spikes[name].to_dense(), err_msg=name)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), gain=st.sampled_from([0.125, 0.25, 0.5, 2.0, 4.0]),
       dtype=st.sampled_from([np.float32, np.float64]), reset=st.sampled_from(["hard", "soft"]),
       delayed=st.booleans())
def test_gain_is_the_same_as_scaling_the_input(seed, gain, dtype, reset, delayed):
    rng = np.random.default_rng(seed)
    x = dyadic(rng, (12, 5), dtype)
    def neuron(g):
        return es.LIF(0.5, leak=0.75, reset=reset, input_gain=g, reset_delayed=delayed)
    u_gain, s_gain = one_neuron_run(neuron(gain), x)
    u_scaled, s_scaled = one_neuron_run(neuron(1.0), (x * dtype(gain)).astype(dtype))
    np.testing.assert_array_equal(u_gain, u_scaled)
    np.testing.assert_array_equal(s_gain, s_scaled)


def test_recorded_currents_are_before_the_gain():
    x = np.array([[[0.5, -1.0], [1.5, 0.25], [0.0, 2.0]]], np.float32)
    net = es.Network([es.LIF(1.0, leak=0.5, input_gain=0.25, name="n")], (2,))
    result = net.run(es.Events.from_dense(x), record=("currents", "potentials"))
    np.testing.assert_array_equal(result.currents["n"], x)
    assert result.potentials["n"][0, 0, 0] == np.float32(0.125)  # 0.25 * 0.5


# -------------------------------------------------------------- closed forms
def test_delayed_soft_reset_hand_derived():
    # theta = 1, lam = 1/2, I = 3/4 at every step.
    # Delayed: the subtracted theta is not leaked:
    #   U1 = 3/4; U2 = 3/8 + 3/4 = 9/8 (spike); U3 = 9/16 + 3/4 - 1 = 5/16;
    #   U4 = 5/32 + 3/4 = 29/32; U5 = 29/64 + 3/4 = 77/64 (spike); U6 = 77/128 + 3/4 - 1 = 45/128.
    # Default (reset before the leak): U3 = (9/8 - 1)/2 + 3/4 = 13/16.
    x = np.full((6, 1), 0.75)
    u, s = one_neuron_run(es.LIF(1.0, leak=0.5, reset="soft", reset_delayed=True), x)
    np.testing.assert_array_equal(u[:, 0], [3 / 4, 9 / 8, 5 / 16, 29 / 32, 77 / 64, 45 / 128])
    np.testing.assert_array_equal(s[:, 0], [0, 1, 0, 0, 1, 0])
    u_default, _ = one_neuron_run(es.LIF(1.0, leak=0.5, reset="soft"), x)
    assert u_default[2, 0] == 13 / 16


def test_delayed_hard_reset_is_not_leaked():
    # theta = 1, lam = 1/2, v_reset = -1/2, I = 3/2 then 1/4:
    # U1 = 3/2 (spike); delayed U2 = -1/2 + 1/4 = -1/4; default U2 = -1/4 + 1/4 = 0.
    x = np.array([[1.5], [0.25]])
    delayed, _ = one_neuron_run(es.LIF(1.0, leak=0.5, v_reset=-0.5, reset_delayed=True), x)
    default, _ = one_neuron_run(es.LIF(1.0, leak=0.5, v_reset=-0.5), x)
    assert delayed[1, 0] == -0.25 and default[1, 0] == 0.0


@settings(max_examples=30)
@given(seed=st.integers(0, 2**32 - 1), leak=st.sampled_from([1.0, 0.5, 0.9, float(np.exp(-0.05))]),
       gain=st.sampled_from([0.3, 1.0, 2.0]), reset=st.sampled_from(["hard", "soft"]),
       v_reset=st.sampled_from([0.0, -0.5, 0.25]), delayed=st.booleans(), steps=st.integers(1, 25))
def test_potentials_follow_the_closed_form(seed, leak, gain, reset, v_reset, delayed, steps):
    """Unrolled recursion, with the spike steps t_k the run reports:

    soft:  U[t] = g sum_{k<=t} lam^(t-k) I[k] - theta sum_{t_k<t} lam^(t-t_k-d)
    hard:  U[t] = lam^(t-t0-d) v_reset + g sum_{t0<k<=t} lam^(t-k) I[k]   (t0 the last spike before t)

    with d = 1 for the delayed reset (the reset is applied after the leak), d = 0 otherwise.
    """
    rng = np.random.default_rng(seed)
    theta = 1.0
    if reset == "soft":
        v_reset = 0.0
    x = rng.uniform(-0.5, 1.5, size=(steps, 4))
    u, s = one_neuron_run(es.LIF(theta, leak=leak, reset=reset, v_reset=v_reset, input_gain=gain,
                                 reset_delayed=delayed), x)
    d = 1 if delayed else 0
    expected = np.zeros_like(u)
    for n in range(x.shape[1]):
        spike_steps = np.flatnonzero(s[:, n])
        for t in range(steps):
            before = spike_steps[spike_steps < t]
            if reset == "soft":
                start = 0
                reset_part = -theta * sum(leak ** (t - tk - d) for tk in before)
            elif before.size:
                start = before[-1] + 1
                reset_part = leak ** (t - before[-1] - d) * v_reset
            else:
                start, reset_part = 0, 0.0
            expected[t, n] = reset_part + gain * sum(leak ** (t - k) * x[k, n] for k in range(start, t + 1))
    np.testing.assert_allclose(u, expected, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(s, u > theta)


@settings(max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), beta=st.sampled_from([0.9, 0.95, float(np.exp(-0.1))]),
       threshold=st.sampled_from([0.3, 1.0]))
def test_delayed_soft_reset_performs_snntorch_leaky_operations_in_float32(seed, beta, threshold):
    """snnTorch's Leaky with reset_mechanism="subtract", step by step, in float32:
    ``reset = 1[mem > thr]`` (from the previous potential), ``mem = beta * mem + input``,
    ``mem = mem - reset * thr``, ``spk = 1[mem > thr]``. Same operations in the same
    order, so the potentials must agree bit for bit, whatever the input values."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-0.5, 1.0, size=(40, 5)).astype(np.float32)
    u, s = one_neuron_run(es.LIF(threshold, leak=beta, reset="soft", reset_delayed=True), x)
    beta32, thr32 = np.float32(beta), np.float32(threshold)
    mem = np.zeros(5, np.float32)
    for t in range(x.shape[0]):
        reset = (mem > thr32).astype(np.float32)
        mem = beta32 * mem + x[t]
        mem = mem - reset * thr32
        np.testing.assert_array_equal(u[t], mem, err_msg=f"step {t}")
        np.testing.assert_array_equal(s[t], mem > thr32, err_msg=f"step {t}")


@pytest.mark.parametrize("leak", [0.5, 0.875, float(np.exp(-1 / 20))])
def test_euler_gain_converges_to_the_input(leak):
    """g = 1 - lam is forward Euler of tau dU/dt = -U + I: U[t] = I (1 - lam^t), fixed point I."""
    current, steps = 0.75, 400
    u, s = one_neuron_run(es.LIF(np.inf, leak=leak, input_gain=1.0 - leak), np.full((steps, 1), current))
    t = np.arange(1, steps + 1)
    np.testing.assert_allclose(u[:, 0], current * (1 - leak ** t), rtol=1e-12)
    assert abs(u[-1, 0] - current) < 1e-8 and not s.any()
    readout = es.Network([es.Readout(leak=leak, input_gain=1.0 - leak)], (1,), dtype=np.float64)
    out = readout.run(es.Events.from_dense(np.full((1, steps, 1), current))).output
    np.testing.assert_allclose(out[0, 0], current * (1 - leak ** steps) / steps, rtol=1e-12)


# ----------------------------------------------------------------- gradients
@settings(max_examples=60)
@given(case=convention_cases(st.one_of(net_cases(dtypes=FLOAT64), deep_cases(dtypes=FLOAT64))),
       surrogate=SURROGATES, detach=st.booleans(), train_seed=st.one_of(st.none(), st.integers(0, 2**16)))
def test_bptt_with_conventions_equals_dense_bptt(case, surrogate, detach, train_seed):
    grads, g, masks = gradients_of(case, BPTT(surrogate=surrogate, detach_reset=detach), train_seed)
    ref = bptt_gradients(case.network, case.events.to_dense(), g, surrogate=surrogate, detach_reset=detach,
                         masks=masks)
    assert_gradients_close(grads, ref, case.dtype)


@settings(max_examples=40)
@given(case=convention_cases(st.one_of(net_cases(dtypes=FLOAT64), deep_cases(dtypes=FLOAT64))),
       train_seed=st.one_of(st.none(), st.integers(0, 2**16)))
def test_lee2020_with_conventions_equals_dense_equations(case, train_seed):
    grads, g, masks = gradients_of(case, Lee2020(), train_seed)
    ref = lee2020_gradients(case.network, case.events.to_dense(), g, masks=masks)
    assert_gradients_close(grads, ref, case.dtype)


def gradients_of(case, rule, train_seed, network=None):
    network = network or case.network
    train = train_seed is not None
    result = network.run(case.events, record=rule.records, train=train,
                         rng=np.random.default_rng(train_seed) if train else None)
    g = np.random.default_rng(case.seed + 2).normal(size=(case.batch,) + network.output_shape)
    return rule.gradients(network, case.events, result, g), g, (result.masks if train else None)


def fold_gains(draw, gained: list, folded: list, factors: dict) -> None:
    """Give a neuron fed only by Conv2d/Linear layers a gain g in ``gained`` and multiply
    those layers' weights and biases by g in ``folded`` instead; record g per parameter key."""
    for i, (a, b) in enumerate(zip(gained, folded)):
        if isinstance(a, es.Residual):
            fold_gains(draw, a.main, b.main, factors)
            pairs, neuron = [(a.main[-1], b.main[-1]), (a.skip, b.skip)], a.neuron
        elif isinstance(a, es.LIF) and i > 0:
            pairs, neuron = [(gained[i - 1], folded[i - 1])], a
        else:
            continue
        if not all(isinstance(syn, (es.Conv2d, es.Linear)) for syn, _ in pairs):
            continue
        gain = draw(st.sampled_from([0.25, 0.5, 2.0]))
        neuron.input_gain = gain
        for syn, twin in pairs:
            twin.weight = twin.weight * gain
            factors[f"{syn.name}.weight"] = gain
            if twin.bias is not None:
                twin.bias = twin.bias * gain
                factors[f"{syn.name}.bias"] = gain


@settings(max_examples=30)
@given(data=st.data(), case=st.one_of(net_cases(dtypes=FLOAT64, hard_zero=True),
                                      deep_cases(dtypes=FLOAT64, hard_zero=True)),
       rule=st.sampled_from([BPTT(), BPTT(surrogate=Sigmoid(), detach_reset=False), Lee2020(), Lee2020Code()]))
def test_a_gain_folded_into_the_weights_scales_their_gradients(data, case, rule):
    """g * (W x) = (g W) x exactly for dyadic g, so the two networks run alike, and by the
    chain rule every rule must give dL/dW = g * dL/d(gW); all other gradients are equal."""
    gained, folded = copy.deepcopy(case.layers), copy.deepcopy(case.layers)
    factors: dict[str, float] = {}
    fold_gains(data.draw, gained, folded, factors)
    nets = [es.Network(layers, case.input_shape, dtype=case.dtype) for layers in (gained, folded)]
    runs = [net.run(case.events, record=("potentials",)) for net in nets]
    for name, u in runs[0].potentials.items():
        np.testing.assert_array_equal(runs[1].potentials[name], u, err_msg=name)
    grads_gained, _, _ = gradients_of(case, rule, None, nets[0])
    grads_folded, _, _ = gradients_of(case, rule, None, nets[1])
    expected = {key: factors.get(key, 1.0) * grad for key, grad in grads_folded.items()}
    assert_gradients_close(grads_gained, expected, case.dtype)


@settings(max_examples=20)
@given(case=st.one_of(net_cases(dtypes=FLOAT64, hard_zero=True), deep_cases(dtypes=FLOAT64, hard_zero=True)))
def test_lee2020_code_accepts_a_delayed_hard_reset_to_zero(case):
    rule = Lee2020Code()
    before, _, _ = gradients_of(case, rule, None)
    for layer in case.network.walk():
        if isinstance(layer, es.LIF) and not isinstance(layer, es.Readout):
            layer.reset_delayed = True
    after, _, _ = gradients_of(case, rule, None)
    for key, grad in before.items():
        np.testing.assert_array_equal(after[key], grad, err_msg=key)


def test_lee2020_code_refuses_a_delayed_soft_reset():
    net = es.Network([es.LIF(1.0, leak=0.5, reset="soft", reset_delayed=True, name="soft"), es.Readout()], (2,))
    events = es.Events.from_dense(np.ones((1, 3, 2), np.float32))
    result = net.run(events, record=Lee2020Code.records)
    with pytest.raises(es.LayerError, match=r"'soft' \(LIF\): rule 'lee2020-code' reproduces code with hard reset"):
        Lee2020Code().gradients(net, events, result, np.ones((1, 2), np.float32))


def smooth_recursion(current, *, leak, gain, theta, reset, v_reset, delayed, alpha):
    """The neuron recursion of docs/semantics.md with the step function replaced by
    ``sig(alpha (U - theta))``, so that it is differentiable; returns U and s, ``(T, N)``."""
    u_prev = np.zeros(current.shape[1])
    s_prev = np.zeros(current.shape[1])
    us, ss = [], []
    for i in current:
        if delayed:
            leaked = leak * u_prev
            carried = leaked - theta * s_prev if reset == "soft" else leaked * (1 - s_prev) + v_reset * s_prev
        else:
            r = u_prev - theta * s_prev if reset == "soft" else u_prev * (1 - s_prev) + v_reset * s_prev
            carried = leak * r
        u_prev = carried + gain * i
        s_prev = 1 / (1 + np.exp(-alpha * (u_prev - theta)))
        us.append(u_prev)
        ss.append(s_prev)
    return np.array(us), np.array(ss)


@pytest.mark.parametrize("reset, v_reset", [("soft", 0.0), ("hard", 0.0), ("hard", -0.5)])
@pytest.mark.parametrize("delayed", [False, True])
def test_bptt_carry_equals_finite_differences_of_the_smooth_recursion(reset, v_reset, delayed):
    """With a smooth spike, sigma its exact derivative and the reset not detached, the
    bptt recursion is exact reverse-mode differentiation: compare with central differences."""
    rng = np.random.default_rng(7)
    steps, n, alpha = 8, 3, 3.0
    opts = dict(leak=0.8, gain=0.6, theta=1.0, reset=reset, v_reset=v_reset, delayed=delayed, alpha=alpha)
    current = rng.uniform(0.0, 1.0, size=(steps, n))
    weight = rng.normal(size=(steps, n))  # L = sum_t weight[t] * s[t]

    def loss(i):
        return float(np.sum(weight * smooth_recursion(i, **opts)[1]))

    u, s = smooth_recursion(current, **opts)
    ours = lif_backward(weight[None], u[None], s[None], theta=1.0, leak=0.8, reset=reset, v_reset=v_reset,
                        surrogate=Sigmoid(alpha=alpha), detach_reset=False, input_gain=0.6,
                        reset_delayed=delayed)[0]
    eps = 1e-6
    numeric = np.zeros_like(current)
    for t in range(steps):
        for j in range(n):
            bump = np.zeros_like(current)
            bump[t, j] = eps
            numeric[t, j] = (loss(current + bump) - loss(current - bump)) / (2 * eps)
    np.testing.assert_allclose(ours, numeric, rtol=1e-6, atol=1e-8)
