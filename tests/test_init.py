"""Lee et al. 2020 initialisation: variance, order of draws, kappa, dtype."""

import math

import numpy as np
import pytest
from scipy.stats import chi2

import eventsim as es
from eventsim.errors import OptionError
from eventsim.learning.init import default_kappa, init_lee2020


def _plain(dtype=np.float32):
    return es.Network([
        es.Conv2d(2, 8, 3, padding=1),
        es.LIF(1.0, tau=10.0),
        es.SpikingAvgPool(2),
        es.Flatten(),
        es.Linear(8 * 4 * 4, 10, bias=np.full(10, 0.5, dtype)),
        es.Readout(),
    ], input_shape=(2, 8, 8), dtype=dtype)


def _residual(dtype=np.float32):
    return es.Network([
        es.Conv2d(2, 4, 3, padding=1),
        es.IF(1.0),
        es.Residual(
            [es.Conv2d(4, 6, 3, stride=2, padding=1), es.IF(1.0), es.Conv2d(6, 6, 3, padding=1)],
            es.IF(1.0),
            skip=es.Conv2d(4, 6, 1, stride=2),
        ),
        es.Flatten(),
        es.Linear(6 * 4 * 4, 3),
        es.Readout(),
    ], input_shape=(2, 8, 8), dtype=dtype)


def _weighted(net):
    return [layer for layer in net.walk() if isinstance(layer, es.layers.Weighted)]


def _assert_variance(w, variance, p=1e-6):
    """n s^2 / sigma^2 ~ chi2(n) for n draws of known mean 0: a two-sided bound of probability 1 - p."""
    n = w.size
    stat = float(np.sum(w.astype(np.float64) ** 2)) / variance
    assert chi2.ppf(p / 2, n) < stat < chi2.ppf(1 - p / 2, n)
    assert abs(float(w.mean())) < 5 * math.sqrt(variance / n)


@pytest.mark.parametrize("kappa", [None, 0.5])
def test_variance_of_a_big_layer(kappa):
    net = es.Network([
        es.Conv2d(16, 64, 5),
        es.LIF(1.0, tau=10.0),
        es.Flatten(),
        es.Linear(64 * 4 * 4, 500),
        es.Readout(),
    ], input_shape=(16, 8, 8), dtype=np.float64)
    init_lee2020(net, np.random.default_rng(0), kappa=kappa)
    k = 2.0 if kappa is None else kappa
    conv, fc = _weighted(net)
    assert conv.fan_in == 16 * 5 * 5 and fc.fan_in == 64 * 4 * 4
    _assert_variance(conv.weight, k / conv.fan_in)
    _assert_variance(fc.weight, k / fc.fan_in)


def test_weights_are_drawn_in_network_order_from_the_generator():
    net = _residual(np.float64)
    init_lee2020(net, np.random.default_rng(7))
    layers = _weighted(net)
    assert [layer.name for layer in layers] == ["conv1", "res1.conv1", "res1.conv2", "res1.conv3", "fc1"]
    rng = np.random.default_rng(7)
    for layer in layers:
        expected = rng.normal(0.0, math.sqrt(1.0 / layer.fan_in), layer.weight_shape)
        assert np.array_equal(layer.weight, expected), layer.name


def test_same_seed_same_weights():
    a, b, c = _plain(), _plain(), _plain()
    init_lee2020(a, np.random.default_rng(3))
    init_lee2020(b, np.random.default_rng(3))
    init_lee2020(c, np.random.default_rng(4))
    for la, lb, lc in zip(_weighted(a), _weighted(b), _weighted(c)):
        assert np.array_equal(la.weight, lb.weight)
        assert not np.array_equal(la.weight, lc.weight)


def test_default_kappa():
    assert default_kappa(_plain()) == 2.0
    assert default_kappa(_residual()) == 1.0
    for make, kappa in ((_plain, 2.0), (_residual, 1.0)):
        default, explicit = make(), make()
        init_lee2020(default, np.random.default_rng(1))
        init_lee2020(explicit, np.random.default_rng(1), kappa=kappa)
        for a, b in zip(_weighted(default), _weighted(explicit)):
            assert np.array_equal(a.weight, b.weight)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dtype_and_biases(dtype):
    net = _plain(dtype)
    assert all(layer.weight is None for layer in _weighted(net))
    init_lee2020(net, np.random.default_rng(2))
    conv, fc = _weighted(net)
    assert conv.weight.dtype == dtype and fc.weight.dtype == dtype
    assert conv.bias is None
    assert fc.bias.dtype == dtype and np.array_equal(fc.bias, np.zeros(10))
    # float64 draws rounded once: a float32 network gets the float64 network's weights, rounded
    wide = _plain(np.float64)
    init_lee2020(wide, np.random.default_rng(2))
    for a, b in zip(_weighted(net), _weighted(wide)):
        assert np.array_equal(a.weight, b.weight.astype(dtype))


def test_network_runs_after_init():
    net = _residual()
    init_lee2020(net, np.random.default_rng(0))
    x = (np.random.default_rng(1).random((2, 5, 2, 8, 8)) < 0.2).astype(np.float32)
    assert net.run(es.Events.from_dense(x)).output.shape == (2, 3)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rng=np.random.RandomState(0)), "rng must be a numpy.random.Generator, got RandomState"),
        (dict(rng=0), "rng must be a numpy.random.Generator, got int"),
        (dict(kappa=0.0), "kappa must be a finite number > 0, got 0.0"),
        (dict(kappa=float("inf")), "kappa"),
        (dict(kappa=True), "kappa"),
    ],
)
def test_bad_options(kwargs, match):
    net = _plain()
    kwargs = {"rng": np.random.default_rng(0), **kwargs}
    with pytest.raises(OptionError, match=match):
        init_lee2020(net, **kwargs)
    assert all(layer.weight is None for layer in _weighted(net))
