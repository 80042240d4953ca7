"""``Network.frozen``: the runs within it share one plan (constants checked, weights laid out once)."""

from __future__ import annotations

import numpy as np
import pytest

import eventsim as es
from eventsim.learning.losses import CrossEntropy
from eventsim.learning.rules import BPTT
from eventsim.learning.steps import local_chunks
from eventsim.stages import SynapseOp


def network() -> es.Network:
    net = es.Network([
        es.Conv2d(2, 4, 3, padding=1), es.LIF(0.5, leak=0.9), es.SpikingAvgPool(2),
        es.Flatten(), es.Linear(64, 5), es.LIF(0.4, leak=0.9), es.Linear(5, 3), es.Readout(leak=0.95),
    ], (2, 8, 8))
    rng = np.random.default_rng(0)
    for layer in net.walk():
        if isinstance(layer, (es.Conv2d, es.Linear)):
            layer.weight = rng.normal(0, 0.8, layer.weight_shape).astype(np.float32)
    return net


def spikes(batch: int = 3, steps: int = 12) -> es.Events:
    return es.Events.from_dense((np.random.default_rng(1).random((batch, steps, 2, 8, 8)) < 0.3).astype(np.float32))


@pytest.fixture
def builds(monkeypatch) -> list[str]:
    """The layers whose layouts are built, one entry per build."""
    built: list[str] = []
    layout = SynapseOp._layout

    def counted(op: SynapseOp) -> np.ndarray:
        built.append(op.name)
        return layout(op)

    monkeypatch.setattr(SynapseOp, "_layout", counted)
    return built


def test_runs_within_the_block_share_one_plan_and_give_the_same_numbers(builds):
    net, events = network(), spikes()
    alone = [net.run(events, record=("potentials",)) for _ in range(3)]
    assert len(builds) == 3 * 3  # three weighted layers, every run
    builds.clear()
    with net.frozen():
        with net.frozen():  # nested: the outer block's plans
            shared = [net.run(events, record=("potentials",)) for _ in range(3)]
    assert sorted(builds) == sorted(layer.name for layer in net.walk() if isinstance(layer, (es.Conv2d, es.Linear)))
    for a, b in zip(alone, shared):
        np.testing.assert_array_equal(a.output, b.output)
        for name in a.potentials:
            np.testing.assert_array_equal(a.potentials[name], b.potentials[name])


def test_after_the_block_changed_weights_and_thresholds_are_read_again():
    net, events = network(), spikes()
    with net.frozen():
        before = net.run(events).output
    fc = [layer for layer in net.walk() if isinstance(layer, es.Linear)][-1]  # the readout's synapse
    fc.weight = fc.weight * np.float32(2)
    lif = next(layer for layer in net.walk() if isinstance(layer, es.LIF))
    lif.threshold = 0.3
    after = net.run(events).output
    fresh = network()
    [layer for layer in fresh.walk() if isinstance(layer, es.Linear)][-1].weight = fc.weight.copy()
    next(layer for layer in fresh.walk() if isinstance(layer, es.LIF)).threshold = 0.3
    np.testing.assert_array_equal(after, fresh.run(events).output)
    assert not np.array_equal(before, after)


def test_a_training_step_in_segments_builds_each_layout_once(builds):
    """bptt in segments runs the network once forward and once per segment and sample: one plan, one build per layer."""
    net, events = network(), spikes(steps=12)
    labels = np.array([0, 1, 2])
    local_chunks(net, BPTT(segment=4), CrossEntropy(), events, labels, {}, 4)
    assert len(builds) == 3
