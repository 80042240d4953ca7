"""Properties of the gradient rules that hold whatever the reference.

docs/semantics.md, "Gradient rules": bounds of Lee et al.'s a', the zero
gradient of silent neurons, the fast sigmoid with c = 0 being the
straight-through estimator, and lee2020 keeping nothing that grows with T.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.learning.rules import BPTT, Lee2020, Lee2020Code, lee2020_derivative
from eventsim.learning.surrogates import FastSigmoid, StraightThrough
from eventsim.testing.strategies import LEAKS, net_cases, random_events


def _grad_output(case, rng):
    return rng.normal(size=(case.batch,) + case.network.output_shape).astype(case.dtype)


@given(
    seed=st.integers(0, 2**32 - 1),
    steps=st.integers(1, 300),
    tau=st.floats(2.0, 1000.0),
    theta=st.sampled_from([0.25, 1.0, 3.0]),
)
def test_lee2020_derivative_bounds(seed, steps, tau, theta):
    """For gamma >= 1: (1/theta)(1 - 1/tau) <= a' <= 1/theta, from real spike trains."""
    rng = np.random.default_rng(seed)
    n = 50
    lam = np.exp(-1 / tau)
    spikes = rng.random((steps, n)) < rng.random(n)  # each neuron its own rate
    gamma = spikes.sum(axis=0).astype(np.float64)
    trace = (spikes * lam ** np.arange(steps - 1, -1, -1)[:, None]).sum(axis=0)
    a = lee2020_derivative(gamma, trace, theta, lam)
    fired = gamma > 0
    lower = (1 - 1 / tau) / theta
    assert np.all(a[fired] >= lower - 1e-12), (a[fired].min(), lower)
    assert np.all(a[fired] <= 1 / theta + 1e-12)
    assert np.all(a[~fired] == 0)


def test_lee2020_derivative_extremes():
    """A single spike at T gives a' = (1/theta)(1 + ln lam); a single spike at step 1, the upper end."""
    lam, steps, theta = np.exp(-1 / 100), 100, 1.0
    at_end = lee2020_derivative(np.array([1.0]), np.array([1.0]), theta, lam)
    at_start = lee2020_derivative(np.array([1.0]), np.array([lam ** (steps - 1)]), theta, lam)
    assert at_end[0] == pytest.approx(1 - 1 / 100, abs=1e-15)
    assert at_start[0] == pytest.approx(1 - lam ** (steps - 1) / 100, abs=1e-15)
    assert lee2020_derivative(np.array([3.0]), np.array([2.0]), 2.0, 1.0)[0] == 0.5  # IF: 1/theta


def _silent_hidden_network(dtype):
    """conv -> LIF that can never fire (theta far above any input) -> linear -> readout."""
    rng = np.random.default_rng(1)
    layers = [
        es.Conv2d(2, 3, 3, padding=1, weight=rng.normal(0, 0.5, (3, 2, 3, 3)).astype(dtype)),
        es.LIF(1e6, tau=20.0),
        es.Flatten(),
        es.Linear(3 * 5 * 5, 4, weight=rng.normal(0, 0.5, (4, 75)).astype(dtype)),
        es.Readout(tau=20.0),
    ]
    return es.Network(layers, (2, 5, 5), dtype=dtype)


@pytest.mark.parametrize("rule", [Lee2020(), Lee2020Code(), BPTT()], ids=lambda r: r.name)
def test_silent_layer_passes_no_gradient(rule):
    """gamma = 0 everywhere in a hidden layer: nothing reaches the weights before it.

    For lee2020 and lee2020-code this is the zero-spike rule (a' = 0); for
    bptt with the straight-through surrogate the gradient is 1/theta = 1e-6
    per step, nonzero but small, so bptt is checked to be tiny instead."""
    net = _silent_hidden_network(np.float64)
    events = random_events(np.random.default_rng(2), 2, 8, (2, 5, 5), 0.5, np.float64)
    result = net.run(events, record=rule.records)
    assert result.events["lif1"].sum() == 0
    grads = rule.gradients(net, events, result, np.ones((2, 4)))
    assert np.all(grads["fc1.weight"] == 0)  # no input spikes reach fc1 either
    if rule.name == "bptt":
        assert np.abs(grads["conv1.weight"]).max() < 1e-4
    else:
        assert np.all(grads["conv1.weight"] == 0)


@settings(max_examples=15)
@given(case=net_cases(), c_seed=st.integers(0, 2**16))
def test_fast_sigmoid_with_c0_is_straight_through(case, c_seed):
    rng = np.random.default_rng(c_seed)
    train = bool(rng.integers(2))
    run_rng = np.random.default_rng(c_seed)
    result = case.network.run(case.events, record=BPTT.records, train=train, rng=run_rng)
    g = _grad_output(case, rng)
    a = BPTT(surrogate=FastSigmoid(c=0.0)).gradients(case.network, case.events, result, g)
    b = BPTT(surrogate=StraightThrough()).gradients(case.network, case.events, result, g)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def _lenet_like(dtype=np.float32):
    rng = np.random.default_rng(0)
    layers = [
        es.Conv2d(2, 4, 5, padding=2, weight=rng.normal(0, 0.3, (4, 2, 5, 5)).astype(dtype)),
        es.LIF(1.0, tau=100.0),
        es.SpikingAvgPool(2),
        es.Flatten(),
        es.Linear(4 * 8 * 8, 10, weight=rng.normal(0, 0.1, (10, 256)).astype(dtype)),
        es.Readout(tau=100.0),
    ]
    return es.Network(layers, (2, 16, 16), dtype=dtype)


def test_lee2020_saved_state_does_not_grow_with_steps():
    """The bytes lee2020 keeps for its backward pass are the same at T = 10 and T = 1000."""
    net = _lenet_like()
    kept = {}
    for steps in (10, 1000):
        events = random_events(np.random.default_rng(3), 2, steps, (2, 16, 16), 0.05, np.float32)
        result = net.run(events, record=Lee2020.records)
        saved = Lee2020().saved(events, result)
        kept[steps] = sum(a.nbytes for a in saved.values())
        assert result.events["lif1"].sum() > 0  # the layers are active, the check is not vacuous
    assert kept[10] == kept[1000], kept


@given(leak=LEAKS)
def test_lee2020_code_refuses_resets_the_code_does_not_have(leak):
    net = es.Network([es.Linear(3, 2, weight=np.ones((2, 3), np.float32)), es.LIF(1.0, leak=leak, reset="soft")], (3,))
    events = random_events(np.random.default_rng(0), 1, 4, (3,), 0.5, np.float32)
    result = net.run(events, record=Lee2020Code.records)
    with pytest.raises(es.LayerError, match="hard reset to 0"):
        Lee2020Code().gradients(net, events, result, np.ones((1, 2), np.float32))


def test_rules_name_missing_records():
    net = _lenet_like()
    events = random_events(np.random.default_rng(0), 1, 3, (2, 16, 16), 0.1, np.float32)
    result = net.run(events)
    for rule in (Lee2020(), Lee2020Code(), BPTT()):
        with pytest.raises(es.OptionError, match="record="):
            rule.gradients(net, events, result, np.zeros((1, 10), np.float32))
    result = net.run(events, record=Lee2020.records)
    with pytest.raises(es.OptionError, match="grad_output must have shape"):
        Lee2020().gradients(net, events, result, np.zeros((1, 9), np.float32))
