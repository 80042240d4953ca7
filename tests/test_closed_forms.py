"""Closed-form checks of the neuron, pooling, readout and dropout semantics.

Each test compares a run of the event path against a formula derived from
docs/semantics.md by hand, not against another implementation.
"""

from fractions import Fraction
from math import ceil, floor

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventsim as es
from eventsim.testing.strategies import DTYPES, dyadic


def constant_input(value: float, steps: int, n: int, dtype) -> es.Events:
    return es.Events.from_dense(np.full((1, steps, n), value, dtype))


@given(seed=st.integers(0, 2**32 - 1), dtype=DTYPES, steps=st.integers(1, 40),
       theta=st.sampled_from([0.5, 1.0, 1.25, 3.0]))
def test_soft_reset_if_conserves_charge(seed, dtype, steps, theta):
    # With lam = 1 and reset by subtraction nothing is lost: the summed input equals
    # theta times the spike count plus the potential left after the last reset.
    rng = np.random.default_rng(seed)
    x = dyadic(rng, (1, steps, 6), dtype, scale=4)
    x[rng.random(x.shape) < 0.3] = 0
    net = es.Network([es.IF(theta, reset="soft")], (6,), dtype=dtype)
    r = net.run(es.Events.from_dense(x), record=("counts", "potentials"))
    gamma = r.counts["if1"][0]
    u_last = r.potentials["if1"][0, -1]
    fired_last = u_last > theta
    residual = u_last - theta * fired_last
    np.testing.assert_array_equal(x[0].sum(axis=0, dtype=np.float64), theta * gamma + residual)


@given(dtype=DTYPES, steps=st.integers(1, 64), num=st.integers(0, 16), theta=st.sampled_from([0.5, 1.0, 2.0]),
       strict=st.booleans())
def test_soft_reset_if_under_constant_current_fires_floor_t_i_over_theta(dtype, steps, num, theta, strict):
    current = Fraction(num, 16) * Fraction(theta)  # 0 <= I <= theta: at most one spike per step
    net = es.Network([es.IF(theta, reset="soft", strict=strict)], (1,), dtype=dtype)
    r = net.run(constant_input(float(current), steps, 1, dtype), record=("counts",))
    ratio = steps * current / Fraction(theta)
    # U[t] = t*I - theta*n(t-1) fires iff n(t-1) + 1 < t*I/theta (strict) or <= (not strict).
    expected = floor(ratio) if not strict else ceil(ratio) - 1 if ratio > 0 else 0
    assert r.counts["if1"][0, 0] == expected


@given(leak=st.sampled_from([0.5, 0.9, 0.99, float(np.exp(-1 / 20))]), current=st.floats(0.05, 2.0),
       theta=st.sampled_from([0.5, 1.0, 2.0]), steps=st.integers(1, 200))
def test_lif_under_constant_current_matches_closed_form(leak, current, theta, steps):
    # Before the first spike U[t] = I (1 - lam^t) / (1 - lam); a hard reset to 0 restores
    # the initial state, so spikes repeat with the period of the first one.
    t = np.arange(1, steps + 1)
    closed = current * (1 - leak**t) / (1 - leak)
    margin = np.abs(closed - theta).min()
    if margin < 1e-9:
        return  # a tie with the threshold is decided by rounding, not by the formula
    net = es.Network([es.LIF(theta, leak=leak)], (1,), dtype=np.float64)
    r = net.run(constant_input(current, steps, 1, np.float64), record=("potentials", "spikes"))
    above = np.flatnonzero(closed > theta)
    spike_steps = np.nonzero(r.spikes["lif1"].to_dense()[0, :, 0])[0] + 1
    if above.size == 0:
        assert spike_steps.size == 0
        np.testing.assert_allclose(r.potentials["lif1"][0, :, 0], closed, rtol=1e-12)
    else:
        period = int(t[above[0]])
        np.testing.assert_array_equal(spike_steps, np.arange(period, steps + 1, period))
        u = r.potentials["lif1"][0, :, 0]
        np.testing.assert_allclose(u, closed[(t - 1) % period], rtol=1e-12)


def test_spiking_avg_pool_three_unit_spikes_stay_below_threshold():
    # 3 x 0.25 = 0.75 is not > 0.75: no spike, and the 0.75 stays (no leak);
    # the fourth spike, a step later, lifts U to 1.0 > 0.75: fire and reset to 0.
    x = np.zeros((1, 4, 1, 2, 2), np.float32)
    x[0, 0, 0, 0, 0] = x[0, 0, 0, 0, 1] = x[0, 0, 0, 1, 0] = 1
    x[0, 2, 0, 1, 1] = 1
    net = es.Network([es.SpikingAvgPool(2)], (1, 2, 2))
    r = net.run(es.Events.from_dense(x), record=("potentials", "spikes"))
    np.testing.assert_array_equal(r.potentials["pool1"][0, :, 0, 0, 0], [0.75, 0.75, 1.0, 0.0])
    np.testing.assert_array_equal(r.spikes["pool1"].to_dense()[0, :, 0, 0, 0], [0, 0, 1, 0])


def test_spiking_avg_pool_fires_on_three_dropout_scaled_spikes():
    # Lee et al. 2020 A10: kept spikes carry 1/(1-p) = 1.25, so 3 of them give 0.9375 > 0.75.
    x = np.zeros((1, 1, 1, 2, 2), np.float32)
    x[0, 0, 0, 0, 0] = x[0, 0, 0, 0, 1] = x[0, 0, 0, 1, 0] = 1.25
    r = es.Network([es.SpikingAvgPool(2)], (1, 2, 2)).run(es.Events.from_dense(x), record=("counts",))
    assert r.counts["pool1"][0, 0, 0, 0] == 1


@given(seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 30), leak=st.sampled_from([1.0, 0.75, 0.99]))
def test_readout_never_fires_and_is_leak_weighted_mean_current(seed, steps, leak):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(3, 8))
    x = (rng.random((2, steps, 8)) < 0.4).astype(np.float64)
    net = es.Network([es.Linear(8, 3, weight=w), es.Readout(leak=leak)], (8,), dtype=np.float64)
    r = net.run(es.Events.from_dense(x))
    current = x @ w.T  # I_L(t), (batch, T, 3)
    weights = leak ** (steps - np.arange(1, steps + 1))  # lam^(T - t)
    expected = np.einsum("t,btk->bk", weights, current) / steps
    np.testing.assert_allclose(r.output, expected, rtol=1e-12, atol=1e-13)
    assert r.events["readout1"].tolist() == [0, 0]


def _all_fire(n, steps, p):
    """A layer whose neurons fire at every step, followed by dropout."""
    net = es.Network([es.IF(0.5), es.Dropout(p)], (n,))
    return net, constant_input(1.0, steps, n, np.float32)


@pytest.mark.parametrize("p", [0.2, 0.5, 0.75])
def test_dropout_mask_is_held_for_all_steps_and_off_at_inference(p):
    n, steps = 200, 9
    net, x = _all_fire(n, steps, p)
    r = net.run(x, train=True, rng=np.random.default_rng(7), record=("spikes",))
    out = r.spikes["drop1"].to_dense()[0]
    keep = np.random.default_rng(7).random((1, n))[0] >= p
    for t in range(steps):
        np.testing.assert_array_equal(out[t] != 0, keep)
    np.testing.assert_array_equal(out[:, keep], np.float32(1 / (1 - p)))
    np.testing.assert_array_equal(r.masks["drop1"][0], keep)
    inference = net.run(x, record=("spikes",))
    np.testing.assert_array_equal(inference.spikes["drop1"].to_dense(), np.ones((1, steps, n), np.float32))
    assert inference.masks == {}


def test_dropout_masks_differ_between_samples_and_draws():
    net, x = _all_fire(64, 3, 0.5)
    x2 = es.Events.concat([x, x])
    rng = np.random.default_rng(0)
    first = net.run(x2, train=True, rng=rng).masks["drop1"]
    second = net.run(x2, train=True, rng=rng).masks["drop1"]
    assert not np.array_equal(first[0], first[1])
    assert not np.array_equal(first, second)


def test_given_masks_replace_the_draw():
    net, x = _all_fire(10, 4, 0.5)
    keep = np.zeros((1, 10), bool)
    keep[0, [1, 7]] = True
    r = net.run(x, train=True, masks={"drop1": keep}, record=("counts",))
    np.testing.assert_array_equal(r.counts["drop1"][0], np.where(keep[0], 4 * 2.0, 0))
