"""The fused bptt neuron backward (eventsim.kernels.surrogate_recursion) computes today's numbers.

The NumPy path of the ``bptt`` rule computes sigma with the surrogate's
``derivative``, the carry ``(1 - s) * scale`` (hard reset) or ``scale``
(soft), and solves the recurrence with ``reverse_recursion``. The kernel
computes all of it in one sweep from the recorded potentials; E must be the
same bits, and so must the whole rule's gradients with the kernel on and off.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
import eventsim.learning.rules as rules
from eventsim.kernels import reverse_recursion, surrogate_recursion
from eventsim.layout import to_channel_last
from eventsim.learning.rules import BPTT
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle
from eventsim.testing.strategies import Features, deep_cases, net_cases, random_events

#: Every surrogate form the kernel computes, with default and other parameters.
FUSED = (StraightThrough(), FastSigmoid(), FastSigmoid(c=0.0), FastSigmoid(c=3.0, b=0.7), Triangle(),
         Triangle(width=0.3))
#: Parameters that round to 0 or inf in float32: the kernel rounds them as NumPy does.
EXTREME = (FastSigmoid(c=2.0, b=1e-50), FastSigmoid(c=1e39), Triangle(width=1e-50), Triangle(width=1e39))
THRESHOLDS = (0.25, 0.5, 1.0, 1.5, 3.0, np.inf)


def _numpy_e(potentials, theta, grad, strict, soft, scale, surrogate):
    """E of the rule's NumPy path: sigma, the carry and the recurrence as (T, N) arrays."""
    u = to_channel_last(potentials, potentials.shape[1:])
    fired = u > theta if strict else u >= theta
    sigma = surrogate.derivative(u - theta, theta)
    carry = np.full_like(u, scale) if soft else np.logical_not(fired) * scale
    return reverse_recursion(sigma, grad, carry)


def _potentials(rng, theta_c, shape, dtype):
    """Potentials at, next to and around each channel's threshold, and far from it."""
    steps, c, h, w = shape
    near = np.where(np.isinf(theta_c), 1.0, theta_c)[None, :, None, None] * np.ones(shape)
    near = near.astype(dtype)
    ulps = rng.integers(-3, 4, size=shape)
    stepped = near.copy()
    for _ in range(3):
        stepped = np.where(ulps > 0, np.nextafter(stepped, dtype(np.inf)), stepped)
        stepped = np.where(ulps < 0, np.nextafter(stepped, dtype(-np.inf)), stepped)
        ulps = ulps - np.sign(ulps)
    choices = [
        near,
        stepped,
        near + rng.normal(0, 0.05, shape),
        rng.normal(0, 2, shape),
        rng.normal(0, 1e3, shape),
        np.zeros(shape),
    ]
    pick = rng.integers(0, len(choices), size=shape)
    return np.choose(pick, [np.asarray(a, dtype) for a in choices]).astype(dtype)


@settings(max_examples=200)
@given(
    steps=st.integers(1, 7), channels=st.integers(1, 4), h=st.integers(1, 4), w=st.integers(1, 5),
    dtype=st.sampled_from([np.float32, np.float64]), surrogate=st.sampled_from(FUSED + EXTREME),
    strict=st.booleans(), soft=st.booleans(), scale=st.sampled_from([1.0, 0.9, float(np.exp(-0.01)), 0.0]),
    thresholds=st.lists(st.sampled_from(THRESHOLDS), min_size=4, max_size=4), seed=st.integers(0, 2**32 - 1),
)
def test_kernel_e_is_the_numpy_paths_bit_for_bit(steps, channels, h, w, dtype, surrogate, strict, soft, scale,
                                                 thresholds, seed):
    rng = np.random.default_rng(seed)
    theta_c = np.array(thresholds[:channels], dtype)
    potentials = _potentials(rng, theta_c, (steps, channels, h, w), dtype)
    theta = np.tile(theta_c, h * w)
    grad = rng.normal(size=(steps, channels * h * w)).astype(dtype)
    grad[rng.random(grad.shape) < 0.2] = 0  # zeros, and -0 after the products
    scale = dtype(scale)

    with np.errstate(all="ignore"):  # the extreme parameters divide by 0
        expected = _numpy_e(potentials, theta, grad, strict, soft, scale, surrogate)
    out = np.full_like(grad, np.nan)
    got = surrogate_recursion(out, to_channel_last(potentials, (channels, h, w)), theta, grad, strict, soft, scale,
                              surrogate.kernel_code, *surrogate.kernel_parameters())
    assert got is out and got.dtype == dtype
    assert np.array_equal(got.view(np.uint8), expected.view(np.uint8)), (got, expected)


def test_kernel_e_follows_the_potentials_and_the_recurrence():
    """A closed form: one neuron, theta 1, FastSigmoid c=1 (b = 1/theta), hard reset, leak 1/2.

    U = (1, 0, 3): sigma = (1, 1/4, 1/9), spikes (>=) at steps 0 and 2, so
    E[2] = G[2]/9, E[1] = G[1]/4 + E[2]/2, E[0] = G[0] (the carry after a spike is 0).
    """
    potentials = np.array([1.0, 0.0, 3.0]).reshape(3, 1)
    grad = np.array([[2.0], [4.0], [9.0]])
    e = surrogate_recursion(np.empty((3, 1)), potentials, np.array([1.0]), grad, False, False, 0.5,
                            FastSigmoid.kernel_code, *FastSigmoid(c=1.0).kernel_parameters())
    assert e[:, 0].tolist() == [2.0, 1.0 + 0.5, 1.0]


def test_only_the_surrogates_with_a_kernel_form_name_one():
    assert {type(s).kernel_code for s in FUSED} == {0, 1, 2}
    assert ArcTan.kernel_code is None and Sigmoid.kernel_code is None

    class Narrower(FastSigmoid):  # its own bump: the kernel's form would be wrong
        def _bump(self, x, theta):
            return 2 * super()._bump(x, theta)

    assert Narrower.kernel_code is None


STATE = Features(thresholds=(0.5, 1.0, 1.5, np.inf), detach_reset="on").including(
    "synaptic", "clamp", "multispike", "recurrent", "reset_delayed", "input_gain")
CASES = st.one_of(net_cases(weights="float"), deep_cases(weights="float"), net_cases(weights="float", features=STATE))


def _kernel_layers(network: es.Network) -> int:
    """How many neuron layers the kernel differentiates: spiking and pooling, fed forward, without a clamp."""
    recurrent = {id(layer.neuron) for layer in network.walk() if isinstance(layer, es.Recurrent)}
    count = 0
    for layer in network.walk():
        neuron = layer.neuron if isinstance(layer, es.SpikingAvgPool) else layer
        if (isinstance(neuron, es.LIF) and not isinstance(neuron, es.Readout) and id(neuron) not in recurrent
                and neuron.v_min == -np.inf):
            count += 1
    return count


@settings(max_examples=60)
@given(case=CASES, surrogate=st.sampled_from(FUSED + (ArcTan(),)), train=st.booleans())
def test_rule_gradients_are_the_numpy_paths_bit_for_bit(case, surrogate, train):
    rng = np.random.default_rng(case.seed)
    grad_output = rng.normal(size=(case.batch,) + case.network.output_shape)
    result = case.network.run(case.events, record=BPTT.records, train=train, rng=np.random.default_rng(1))
    calls = []

    def spy(*args):
        calls.append(args[0].shape)
        return surrogate_recursion(*args)

    numpy_path = BPTT(surrogate=surrogate)
    numpy_path._fused = False
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(rules, "surrogate_recursion", spy)
        expected = numpy_path.gradients(case.network, case.events, result, grad_output)
        assert not calls
        got = BPTT(surrogate=surrogate).gradients(case.network, case.events, result, grad_output)
    fused = surrogate.kernel_code is not None
    assert len(calls) == (case.batch * _kernel_layers(case.network) if fused else 0)
    assert got.keys() == expected.keys()
    for key in got:
        assert np.array_equal(got[key].view(np.uint8), expected[key].view(np.uint8)), key


@settings(max_examples=15)
@given(case=st.one_of(net_cases(weights="float"), deep_cases(weights="float")), batch=st.integers(3, 5))
def test_fused_gradients_are_bit_identical_for_one_and_two_threads(case, batch):
    rng = np.random.default_rng(case.seed + 1)
    events = random_events(rng, batch, case.steps, case.network.input_shape, case.density, case.dtype)
    grad_output = rng.normal(size=(batch,) + case.network.output_shape)
    result = case.network.run(events, record=BPTT.records)
    rule = BPTT(surrogate=FastSigmoid())
    try:
        runs = []
        for threads in (1, 2):
            es.set_threads(threads)
            runs.append(rule.gradients(case.network, events, result, grad_output))
    finally:
        es.set_threads(None)
    for key in runs[0]:
        assert np.array_equal(runs[0][key], runs[1][key]), key
