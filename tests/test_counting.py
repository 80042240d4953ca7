"""Exact SynOps and pooling ops per layer, ANN MACs and energy estimates."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventsim as es
from eventsim import dense
from eventsim.testing.strategies import dyadic


def lenet(in_channels: int, size: int, rng=None, dtype=np.float32) -> es.Network:
    """Lee et al. 2020's LeNet: 5x5 convs with padding 2, spiking average pooling, FC 200, readout."""
    rng = rng or np.random.default_rng(0)
    flat = 50 * ((size // 2) // 2) ** 2
    return es.Network([
        es.Conv2d(in_channels, 20, 5, padding=2, weight=dyadic(rng, (20, in_channels, 5, 5), dtype, scale=4)),
        es.LIF(1.0, tau=100.0),
        es.SpikingAvgPool(2),
        es.Conv2d(20, 50, 5, padding=2, weight=dyadic(rng, (50, 20, 5, 5), dtype, scale=16)),
        es.LIF(1.0, tau=100.0),
        es.SpikingAvgPool(2),
        es.Flatten(),
        es.Linear(flat, 200, weight=dyadic(rng, (200, flat), dtype, scale=16)),
        es.LIF(1.0, tau=100.0),
        es.Linear(200, 10, weight=dyadic(rng, (10, 200), dtype, scale=16)),
        es.Readout(tau=100.0),
    ], (in_channels, size, size), dtype=dtype)


def test_lee_lenet_ann_macs_on_mnist():
    macs = lenet(1, 28).ann_macs()
    assert macs == {"conv1": 392_000, "conv2": 4_900_000, "fc1": 490_000, "fc2": 2_000}
    assert sum(macs.values()) == 5_784_000


def test_ann_macs_of_strided_and_skip_convolutions_match_the_brute_force_formula():
    w = np.ones((6, 4, 1, 1), np.float32)
    net = es.Network([
        es.Residual([es.Conv2d(4, 6, 3, stride=2, padding=1, weight=np.ones((6, 4, 3, 3), np.float32))],
                    es.IF(), skip=es.Conv2d(4, 6, 1, stride=2, weight=w)),
    ], (4, 9, 7))
    macs = net.ann_macs()
    assert macs["res1.conv1"] == dense.ann_macs_conv2d((4, 9, 7), 6, 3, 2, 1)
    assert macs["res1.conv2"] == dense.ann_macs_conv2d((4, 9, 7), 6, 1, 2, 0)


@given(seed=st.integers(0, 2**32 - 1), density=st.sampled_from([0.01, 0.1, 0.5, 1.0]), steps=st.integers(1, 8))
def test_network_synops_equal_brute_force_over_dense_spike_maps(seed, density, steps):
    rng = np.random.default_rng(seed)
    net = es.Network([
        es.Conv2d(2, 3, 3, stride=2, padding=2, weight=dyadic(rng, (3, 2, 3, 3), np.float32)),
        es.IF(0.5),
        es.SpikingAvgPool(2, stride=1),
        es.Residual([es.Conv2d(3, 4, 3, padding=1, weight=dyadic(rng, (4, 3, 3, 3), np.float32)), es.IF(0.5),
                     es.Conv2d(4, 4, 3, stride=2, padding=1, weight=dyadic(rng, (4, 4, 3, 3), np.float32))],
                    es.IF(0.5), skip=es.Conv2d(3, 4, 1, stride=2, weight=dyadic(rng, (4, 3, 1, 1), np.float32))),
        es.MaxPool(2, stride=1),
        es.Flatten(),
        es.Linear(16, 3, weight=dyadic(rng, (3, 16), np.float32)),
        es.Readout(),
    ], (2, 11, 9))
    x = (rng.random((2, steps, 2, 11, 9)) < density).astype(np.float32)
    r = net.run(es.Events.from_dense(x))
    ref = dense.run_dense(net, x)
    out = ref.outputs

    def conv_count(x_in, layer):
        return [sum(dense.conv2d_synops(x_in[b, t], layer.kernel_size, layer.out_channels, layer.stride,
                                        layer.padding) for t in range(steps)) for b in range(2)]

    layers = {layer.name: layer for layer in net.walk()}
    expected_synops = {
        "conv1": conv_count(x, layers["conv1"]),
        "res1.conv1": conv_count(out["pool1"], layers["res1.conv1"]),
        "res1.conv2": conv_count(out["res1.if1"], layers["res1.conv2"]),
        "res1.conv3": conv_count(out["pool1"], layers["res1.conv3"]),
        "fc1": [sum(dense.linear_synops(out["flatten1"][b, t], 3) for t in range(steps)) for b in range(2)],
    }
    assert {k: v.tolist() for k, v in r.synops.items()} == expected_synops
    pool_counts = {
        "pool1": [sum(dense.pool_ops(out["if1"][b, t], 2, 1) for t in range(steps)) for b in range(2)],
        "pool2": [sum(dense.pool_ops(out["res1.if2"][b, t], 2, 1) for t in range(steps)) for b in range(2)],
    }
    assert {k: v.tolist() for k, v in r.pool_ops.items()} == pool_counts
    np.testing.assert_array_equal(r.total_synops(), np.sum(list(expected_synops.values()), axis=0))


def test_synops_count_padded_borders_exactly():
    # One event in the corner of a 5x5 map, 3x3 kernel, padding 1: it reaches the 4 outputs
    # whose windows contain it, not 9 (the border-naive count).
    x = np.zeros((1, 1, 1, 5, 5), np.float32)
    x[0, 0, 0, 0, 0] = 1
    net = es.Network([es.Conv2d(1, 7, 3, padding=1, weight=np.ones((7, 1, 3, 3), np.float32)), es.IF()], (1, 5, 5))
    assert net.run(es.Events.from_dense(x)).synops["conv1"].tolist() == [4 * 7]


def test_energy_presets_and_ratio():
    fp = es.estimate_energy(1e6, 5_784_000, "fp32")
    assert fp.snn_joules == pytest.approx(0.9e-6)
    assert fp.ann_joules == pytest.approx(5_784_000 * 4.6e-12)
    assert fp.ann_over_snn == pytest.approx(5_784_000 * 4.6 / (1e6 * 0.9))
    integer = es.estimate_energy(3.61, 1, "int32")  # Lee et al. 2020 Sec. 5.7: VGG9, 3.61 AC per MAC
    assert integer.ann_over_snn == pytest.approx(3.2 / (3.61 * 0.1))
    assert es.estimate_energy(0, 10).ann_over_snn == float("inf")
    with pytest.raises(es.OptionError, match=">= 0"):
        es.estimate_energy(-1, 10)
