"""Whole random networks: the event path and the dense twin agree bit for bit.

Random stacks of conv / linear / pooling (all four kinds) / dropout / residual /
neuron layers with random sizes, thresholds (per layer and per channel), leaks,
reset modes, strict or not, input densities from 0 to 1, float32 and float64.
Weights and input values are dyadic, so the exactness contract of docs/semantics.md
applies: every spike and every potential must be identical.
"""

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import eventsim as es
from eventsim.dense import run_dense
from eventsim.testing.strategies import net_cases


def assert_runs_identical(case, train: bool, window=None):
    net, events = case.network, case.events

    def same_draws():  # each run gets its own generator, seeded alike
        return dict(train=train, rng=np.random.default_rng(case.seed) if train else None)

    got = net.run(events, record=("spikes", "potentials", "counts"), window=window, **same_draws())
    ref = run_dense(net, events.to_dense(), **same_draws())
    assert got.masks.keys() == ref.masks.keys()
    for name, mask in ref.masks.items():
        np.testing.assert_array_equal(got.masks[name], mask, err_msg=f"dropout mask of {name}")
    assert got.spikes.keys() <= ref.outputs.keys()
    for name, spikes in got.spikes.items():
        dense_out = spikes.to_dense()
        np.testing.assert_array_equal(dense_out, ref.outputs[name], err_msg=f"output events of {name}")
        np.testing.assert_array_equal(got.counts[name], ref.outputs[name].sum(axis=1), err_msg=f"counts of {name}")
        assert got.events[name].tolist() == np.count_nonzero(dense_out.reshape(events.batch, -1), axis=1).tolist()
    assert got.potentials.keys() == ref.potentials.keys()
    for name, u in got.potentials.items():
        assert u.dtype == case.dtype
        np.testing.assert_array_equal(u, ref.potentials[name], err_msg=f"potentials of {name}")
    if ref.readout is None:
        assert got.output is None
    else:
        np.testing.assert_array_equal(got.output, ref.readout)
    return got


@given(case=net_cases())
def test_random_networks_event_path_equals_dense_twin(case):
    assert_runs_identical(case, train=False)


@given(case=net_cases(), window=st.integers(1, 5))
def test_training_runs_with_dropout_and_any_window_are_identical(case, window):
    got = assert_runs_identical(case, train=True, window=window)
    # the window only changes how the work is cut, never the numbers
    again = case.network.run(case.events, record=("potentials",), train=True, rng=np.random.default_rng(case.seed))
    for name, u in again.potentials.items():
        np.testing.assert_array_equal(u, got.potentials[name])


def test_every_layer_kind_in_one_network():
    rng = np.random.default_rng(3)

    def w(*shape):
        return (rng.integers(-8, 9, size=shape) / 8).astype(np.float32)

    layers = [
        es.Conv2d(2, 4, 3, padding=1, weight=w(4, 2, 3, 3), bias=w(4)),
        es.LIF(np.array([0.5, 1.0, 1.5, 1.0]), leak=0.875, reset="soft"),
        es.Dropout(0.2),
        es.SpikingAvgPool(2),
        es.Residual([es.Conv2d(4, 3, 3, padding=1, weight=w(3, 4, 3, 3)), es.IF(0.5, strict=False),
                     es.Conv2d(3, 6, 3, stride=2, padding=1, weight=w(6, 3, 3, 3))],
                    es.LIF(1.0, tau=100.0), skip=es.Conv2d(4, 6, 1, stride=2, weight=w(6, 4, 1, 1))),
        es.Residual([es.Conv2d(6, 6, 3, padding=1, weight=w(6, 6, 3, 3))], es.IF(1.0, reset="hard", v_reset=-0.5)),
        es.MaxPool(2, stride=1),
        es.SumPool(1),
        es.AvgPool(2, stride=1),
        es.Identity(),
        es.IF(0.25),
        es.Flatten(),
        es.Linear(6, 5, weight=w(5, 6)),
        es.Readout(leak=0.99),
    ]
    net = es.Network(layers, (2, 12, 12))

    class Case:  # what assert_runs_identical reads
        network, dtype, seed = net, np.float32, 11
        events = es.Events.from_dense((rng.random((2, 16, 2, 12, 12)) < 0.3).astype(np.float32))

    got = assert_runs_identical(Case, train=True)
    assert set(got.synops) == {"conv1", "res1.conv1", "res1.conv2", "res1.conv3", "res2.conv1", "fc1"}
    assert set(got.pool_ops) == {"pool1", "pool2", "pool3", "pool4", "res2.skip", "skip1"}
    assert got.events["lif1"].sum() > 0 and got.events["res1.lif1"].sum() > 0
