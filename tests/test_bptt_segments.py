"""The ``bptt`` backward in segments, and the run from given states that it rests on.

References: a run without checkpoints (the potentials and spikes of the
steps a continued run covers), the one-sweep backward over all T recorded
potentials (``segment=None``: the same bits where one segment covers all T),
the dense float64 reference :func:`eventsim.learning.dense.bptt_gradients`
(within the project's gradient bound, ``GRADIENT_RTOL`` of each gradient's
scale), and the same step computed on other thread counts and chunk sizes
(the same bits).
"""

from __future__ import annotations

import numpy as np
import pytest

import eventsim as es
from eventsim.kernels import surrogate_recursion
from eventsim.kernels.bptt import FAST_SIGMOID
from eventsim.learning.dense import bptt_gradients
from eventsim.learning.losses import CrossEntropy
from eventsim.learning.rules import BPTT, rule_from_config
from eventsim.learning.steps import local_chunks
from eventsim.learning.surrogates import FastSigmoid, StraightThrough, Triangle
from eventsim.stages import NeuronState
from eventsim.testing.compare import GRADIENT_RTOL, gradient_errors


@pytest.fixture(autouse=True)
def default_threads():
    yield
    es.set_threads(None)


def lenet(dtype=np.float64, seed: int = 0, leak: float = 0.9) -> es.Network:
    """A small LeNet of every layer the segments cover: conv, spiking average pooling, max pooling, dropout, readout."""
    net = es.Network([
        es.Conv2d(2, 4, 3, padding=1), es.LIF(0.5, leak=leak), es.SpikingAvgPool(2),
        es.Conv2d(4, 6, 3), es.LIF(0.5, leak=leak, reset="soft"), es.MaxPool(2),
        es.Flatten(), es.Dropout(0.25), es.Linear(6, 8), es.LIF(0.4, leak=leak, reset_delayed=True),
        es.Linear(8, 3), es.Readout(leak=0.95),
    ], (2, 8, 8), dtype=dtype)
    rng = np.random.default_rng(seed)
    for layer in net.walk():
        if isinstance(layer, (es.Conv2d, es.Linear)):
            layer.weight = rng.normal(0, 0.8, layer.weight_shape).astype(dtype)
            layer.bias = rng.normal(0, 0.1, layer.out_size).astype(dtype)
    return net


def spikes(batch: int, steps: int, dtype=np.float64, seed: int = 1) -> es.Events:
    x = (np.random.default_rng(seed).random((batch, steps, 2, 8, 8)) < 0.3).astype(dtype)
    return es.Events.from_dense(x)


# ------------------------------------------------------------- the run API
def test_a_run_continued_from_a_checkpoint_has_the_steps_of_the_whole_run():
    net, events, steps = lenet(np.float32), spikes(2, 17, np.float32), 17
    masks = net.dropout_masks(2, np.random.default_rng(3))
    whole = net.run(events, record=("spikes", "potentials"), train=True, masks=masks, checkpoints=(0, 5, 11))
    plain = net.run(events, record=("spikes", "potentials"), train=True, masks=masks)
    for name in plain.potentials:  # checkpoints change nothing of the run
        assert np.array_equal(whole.potentials[name], plain.potentials[name])
    assert sorted(whole.states) == [0, 5, 11]
    assert np.all(whole.states[0]["lif1"].potential == 0)  # R[0] = v_init = 0
    for t in (5, 11):
        later = es.Events.concat([_steps(events.sample(b), t, steps) for b in range(2)])
        part = net.run(later, record=("spikes", "potentials"), train=True, masks=masks, initial=whole.states[t])
        for name in plain.potentials:
            assert np.array_equal(part.potentials[name], plain.potentials[name][:, t:]), (t, name)
            dense = plain.spikes[name].to_dense()[:, t:]
            assert np.array_equal(part.spikes[name].to_dense(), dense), (t, name)


def _steps(sample: es.Events, start: int, stop: int) -> es.Events:
    """Steps ``start:stop`` of a batch-1 container, from its dense form (independent of the rule's slicing)."""
    return es.Events.from_dense(sample.to_dense()[:, start:stop])


def test_initial_states_of_the_wrong_form_and_stateful_networks_are_refused():
    net = lenet()
    events = spikes(1, 4)
    states = net.run(events, checkpoints=(2,)).states[2]
    with pytest.raises(es.OptionError, match="initial must give the state of every neuron layer"):
        net.run(events, initial={k: v for k, v in states.items() if k != "lif1"})
    bad = dict(states, lif1=NeuronState(states["lif1"].potential[:, :3]))
    with pytest.raises(es.OptionError, match=r"initial\['lif1'\].potential must be"):
        net.run(events, initial=bad)
    with pytest.raises(es.OptionError, match=r"checkpoints must be steps in \[0, 4\)"):
        net.run(events, checkpoints=(4,))
    delayed = es.Network([es.Linear(3, 3, weight=np.eye(3, dtype=np.float32)), es.Delay(2), es.IF(1.0)], (3,))
    with pytest.raises(es.OptionError, match="checkpoints covers networks whose state is their neurons'"):
        delayed.run(es.Events.empty(batch=1, steps=3, shape=(3,)), checkpoints=(1,))


# ----------------------------------------------------------------- kernel
def test_the_kernel_over_segments_with_the_carry_is_one_sweep():
    rng = np.random.default_rng(0)
    steps, channels, plane = 9, 3, 4
    u = rng.normal(0.4, 0.5, (steps, channels * plane)).astype(np.float32)
    theta = np.full(channels * plane, 0.5, np.float32)
    grad = rng.normal(size=(steps, channels * plane)).astype(np.float32)
    args = (False, False, 0.9, FAST_SIGMOID, 5.0, 0.0)
    whole = surrogate_recursion(np.empty_like(grad), u, theta, grad, *args)
    carry, parts = None, []
    for t0, t1 in ((6, 9), (2, 6), (0, 2)):
        part = surrogate_recursion(np.empty_like(grad[t0:t1]), u[t0:t1], theta, grad[t0:t1], *args, carry)
        carry = part[0].copy()
        parts.insert(0, part)
    assert np.array_equal(np.concatenate(parts), whole)


# ------------------------------------------------------------- gradients
def _gradients(rule: BPTT, net: es.Network, events: es.Events, g: np.ndarray, masks: dict) -> dict:
    records, checkpoints = rule.forward_plan(net, events.steps)
    result = net.run(events, record=records, train=True, masks=masks, checkpoints=checkpoints)
    return rule.gradients(net, events, result, g)


@pytest.mark.parametrize("surrogate", [StraightThrough(), FastSigmoid(c=4.0), Triangle(width=0.5)])
def test_one_segment_over_all_steps_gives_the_bits_of_one_sweep(surrogate):
    net, events = lenet(np.float32), spikes(2, 12, np.float32)
    masks = net.dropout_masks(2, np.random.default_rng(5))
    g = np.random.default_rng(6).normal(size=(2, 3)).astype(np.float32)
    rule = BPTT(surrogate=surrogate, segment=12)
    # forward_plan takes the one sweep there (the same bits for less work): the segments' path is asked for
    one = rule.gradients(net, events, net.run(events, train=True, masks=masks, checkpoints=(0,)), g)
    assert rule.forward_plan(net, 12) == (("spikes", "potentials"), ())
    ours = _gradients(rule, net, events, g, masks)
    assert ours.keys() == one.keys()
    for key in one:
        assert np.array_equal(ours[key], one[key]), key
    ref = _gradients(BPTT(surrogate=surrogate, segment=None), net, events, g, masks)
    assert ours.keys() == ref.keys()
    for key in ref:
        assert np.array_equal(ours[key], ref[key]), key


@pytest.mark.parametrize("segment", [1, 3, 5])
@pytest.mark.parametrize("surrogate", [StraightThrough(), FastSigmoid(c=4.0)])
def test_segments_equal_the_dense_reference(segment, surrogate):
    net, events = lenet(np.float64, seed=2), spikes(2, 13, np.float64, seed=4)
    masks = net.dropout_masks(2, np.random.default_rng(7))
    g = np.random.default_rng(8).normal(size=(2, 3))
    ours = _gradients(BPTT(surrogate=surrogate, segment=segment), net, events, g, masks)
    ref = bptt_gradients(net, events.to_dense(), g, surrogate=surrogate, masks=masks)
    assert ours.keys() == ref.keys()
    assert any(np.any(v != 0) for v in ref.values())
    for d in gradient_errors(ref, ours):
        assert d.error <= GRADIENT_RTOL, str(d)


def test_a_step_in_segments_is_the_same_for_any_thread_count_and_chunk_size():
    net, events = lenet(np.float32, seed=3), spikes(4, 11, np.float32, seed=9)
    labels = np.array([0, 2, 1, 2])
    masks = net.dropout_masks(4, np.random.default_rng(1))
    rule = BPTT(surrogate=FastSigmoid(c=4.0), segment=4)
    runs = []
    for threads, chunk in ((1, 4), (2, 4), (2, 1), (3, 2)):
        es.set_threads(threads)
        runs.append(local_chunks(net, rule, CrossEntropy(), events, labels, masks, chunk).grads)
    for other in runs[1:]:
        for key in runs[0]:
            assert np.array_equal(other[key], runs[0][key]), key


def test_networks_beyond_the_segments_record_every_potential():
    recurrent = es.Network([es.Linear(3, 4), es.Recurrent(es.IF(1.0), es.Linear(4, 4)), es.Linear(4, 2),
                            es.Readout(leak=1.0)], (3,))
    clamped = es.Network([es.Linear(3, 4), es.IF(1.0, v_min=-1.0), es.Linear(4, 2), es.Readout(leak=1.0)], (3,))
    net = lenet()
    for rule, network in ((BPTT(), recurrent), (BPTT(), clamped), (BPTT(detach_reset=False), net),
                          (BPTT(segment=None), net)):
        assert rule.forward_plan(network, 60) == (("spikes", "potentials"), ())
    assert BPTT(segment=25).forward_plan(net, 60) == ((), (0, 25, 50))


def test_the_segment_is_part_of_the_config_and_checked():
    rule = BPTT(surrogate=FastSigmoid(c=3.0), segment=7)
    assert rule.config()["segment"] == 7
    assert rule_from_config(rule.config()) == rule
    assert rule_from_config({"name": "bptt", "segment": None}).segment is None
    for bad in (0, -3, 2.5, True, "10"):
        with pytest.raises(es.OptionError, match="segment must be a number of steps"):
            BPTT(segment=bad)
