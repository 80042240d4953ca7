"""Threshold balancing for ANN-to-SNN conversion (Ngu & Lee 2022, Algorithm 2): properties."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.encoders import direct
from eventsim.learning.conversion import balance_thresholds, channel_statistic
from eventsim.learning.zoo import build_model


@settings(max_examples=10)
@given(seed=st.integers(0, 2**16), steps=st.sampled_from([4, 16]))
def test_potentials_stay_below_twice_the_threshold_on_calibration_data(seed, steps):
    """With theta = the maximum current and soft reset, U < theta after a step without a spike and
    U - theta < theta after one, so U never exceeds 2 theta on the calibration data."""
    rng = np.random.default_rng(seed)
    net = build_model("ngu2022-mnist", input="mnist", rng=rng)
    x = direct(rng.random((4, 1, 28, 28)), steps)
    thresholds = balance_thresholds(net, x)
    run = net.run(x, record=("potentials",))
    for name, theta in thresholds.items():
        u = run.potentials[name]
        theta = theta.reshape((1, 1, -1) + (1,) * (u.ndim - 3)).astype(np.float32)
        assert np.all(u <= 2 * theta), name


def test_layer_thresholds_are_the_maximum_of_channel_thresholds():
    rng = np.random.default_rng(0)
    currents = rng.normal(size=(3, 5, 4, 6, 6))
    channel = channel_statistic(currents, "channel")
    assert channel.shape == (4,)
    np.testing.assert_array_equal(channel, currents.max(axis=(0, 1, 3, 4)))
    np.testing.assert_array_equal(channel_statistic(currents, "layer"), np.full(4, channel.max()))
    assert np.all(channel_statistic(currents, "percentile", 99.0) <= channel)
    # On a real network the first layer sees the same currents under both methods.
    net_a = build_model("ngu2022-mnist", input="mnist", rng=np.random.default_rng(1))
    net_b = build_model("ngu2022-mnist", input="mnist", rng=np.random.default_rng(1))
    x = direct(rng.random((3, 1, 28, 28)), 4)
    by_channel = balance_thresholds(net_a, x, method="channel")
    by_layer = balance_thresholds(net_b, x, method="layer")
    np.testing.assert_array_equal(by_layer["if1"], np.full(12, by_channel["if1"].max()))


def test_spike_rate_times_threshold_approaches_relu_as_1_over_t():
    """One converted layer under constant input: |rate * theta - ReLU(I)| <= theta / T."""
    rng = np.random.default_rng(2)
    weight = rng.normal(size=(6, 8))
    x = rng.random((5, 8))
    errors = []
    for steps in (8, 64, 512):
        net = es.Network([es.Linear(8, 6, weight=weight), es.IF(1.0, reset="soft", strict=False)], (8,),
                         dtype=np.float64)
        thresholds = balance_thresholds(net, direct(x, steps, dtype=np.float64), method="layer")
        theta = thresholds["if1"][0]
        run = net.run(direct(x, steps, dtype=np.float64), record=("counts",))
        ann = np.maximum(x @ weight.T, 0)
        err = np.abs(run.counts["if1"] / steps * theta - ann).max()
        assert err <= theta / steps + 1e-12
        errors.append(err)
    assert errors[0] > errors[1] > errors[2]


def test_a_channel_without_positive_current_never_fires():
    net = es.Network([es.Linear(3, 2, weight=np.array([[1.0, 1, 1], [-1, -1, -1]])),
                      es.IF(1.0, reset="soft", strict=False)], (3,), dtype=np.float64)
    x = direct(np.ones((2, 3)), 5, dtype=np.float64)
    theta = balance_thresholds(net, x, method="percentile", percentile=100)["if1"]
    assert theta[0] == 3.0
    net2 = es.Network([es.Linear(3, 2, weight=np.array([[-1.0, -1, -1], [-1, -1, -1]])),
                       es.IF(1.0, reset="soft", strict=False)], (3,), dtype=np.float64)
    assert np.isinf(balance_thresholds(net2, x)["if1"]).all()
    assert net2.run(x).events["if1"].sum() == 0


def test_alpha_scales_every_threshold():
    rng = np.random.default_rng(3)
    x = direct(rng.random((2, 1, 28, 28)), 4)
    plain = balance_thresholds(build_model("ngu2022-mnist", input="mnist", rng=np.random.default_rng(4)), x)
    scaled = balance_thresholds(build_model("ngu2022-mnist", input="mnist", rng=np.random.default_rng(4)), x,
                                alpha=0.5)
    np.testing.assert_allclose(scaled["if1"], 0.5 * plain["if1"])
    with pytest.raises(es.OptionError, match="alpha"):
        balance_thresholds(build_model("ngu2022-mnist", input="mnist", rng=rng), x, alpha=1.5)


def test_rate_input_mode_is_seeded_and_matches_direct_in_expectation():
    """Bernoulli input of rate x gives the same expected current as direct input x."""
    from eventsim.learning.conversion import encode_images, snn_accuracy

    rng = np.random.default_rng(5)
    images = rng.random((3, 1, 28, 28))
    rate_events = encode_images(images, 2000, "rate", np.random.default_rng(0), np.float64)
    # Each mean of 2000 Bernoulli draws has std <= sqrt(0.25 / 2000); 6 std bounds all 2352 of them.
    np.testing.assert_allclose(rate_events.totals() / 2000, images, atol=6 * np.sqrt(0.25 / 2000))
    net = build_model("ngu2022-mnist", input="mnist", rng=np.random.default_rng(6), dtype=np.float64)
    balance_thresholds(net, direct(images, 8, dtype=np.float64))
    labels = np.array([0, 1, 2])
    a = snn_accuracy(net, images, labels, steps=8, mode="rate", seed=1)
    b = snn_accuracy(net, images, labels, steps=8, mode="rate", seed=1)
    assert a == b and a["synops_per_sample"] > 0
    with pytest.raises(es.OptionError, match="input mode"):
        encode_images(images, 4, "poisson", None, np.float64)
