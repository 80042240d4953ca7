"""The comparison of eventsim.testing.compare on planted differences.

A candidate's records are eventsim's own records with one planted change: a
flipped spike, a potential one ulp off, a potential moved by more or less
than the rounding bound. The comparison must name exactly the planted
position. The bound itself is checked against an independent, more precise
computation: the same float32 network run in float64 (weights and inputs
exactly representable in both) stays within it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.errors import LayerError, OptionError
from eventsim.testing import LayerRecord, compare_forward, compare_gradients, forward_bounds, reference_records
from eventsim.testing.strategies import Features, net_cases

NO_DROPOUT = Features().without("dropout")
#: Leaks exact in float32, so that a float32 network and its float64 copy have the same numbers.
DYADIC_LEAKS = Features(layers=NO_DROPOUT.layers, leaks=(1.0, 0.5, 0.75, 0.875, 0.9375))


def _copy(records: dict) -> dict:
    return {k: LayerRecord(r.outputs.copy(), None if r.potentials is None else r.potentials.copy())
            for k, r in records.items()}


def _neuron_position(data, records: dict):
    names = [k for k, r in records.items() if r.potentials is not None]
    assume(names)
    name = data.draw(st.sampled_from(names))
    shape = records[name].outputs.shape
    pos = tuple(data.draw(st.integers(0, n - 1)) for n in shape)
    return name, pos


def _at(d) -> tuple:
    return (d.layer, (d.step - 1, d.sample, *d.neuron))


@given(case=net_cases(features=NO_DROPOUT), data=st.data())
def test_a_flipped_spike_is_found_where_it_was_planted(case, data):
    ref = reference_records(case.network, case.spikes)
    name, pos = _neuron_position(data, ref)
    cand = _copy(ref)
    cand[name].outputs[pos] = 1 - cand[name].outputs[pos]
    found = compare_forward(case.network, case.spikes, cand, exact=True, reference=ref)
    assert not found.ok
    assert found.divergence.kind == "output" and _at(found.divergence) == (name, pos)
    assert found.divergence.reference_output == ref[name].outputs[pos]
    assert "output differs" in str(found) and repr(name) in str(found)


@given(case=net_cases(features=NO_DROPOUT), data=st.data(), up=st.booleans())
def test_a_potential_one_ulp_off_is_found_in_a_dyadic_case(case, data, up):
    ref = reference_records(case.network, case.spikes)
    name, pos = _neuron_position(data, ref)
    cand = _copy(ref)
    u = cand[name].potentials
    u[pos] = np.nextafter(u[pos], u.dtype.type(np.inf if up else -np.inf))
    found = compare_forward(case.network, case.spikes, cand, exact=True, reference=ref)
    assert found.divergence.kind == "potential" and _at(found.divergence) == (name, pos)
    assert found.divergence.candidate_potential == u[pos]


@settings(max_examples=25)
@given(case=net_cases(features=NO_DROPOUT, weights="float"), data=st.data())
def test_a_float_potential_fails_beyond_the_bound_and_passes_within(case, data):
    ref = reference_records(case.network, case.spikes)
    name, _ = _neuron_position(data, ref)
    bounds = forward_bounds(case.network, case.spikes, ref)[name]
    movable = np.argwhere(bounds > 4 * np.spacing(np.abs(ref[name].potentials)))  # a move the dtype can hold
    assume(movable.size)
    pos = tuple(int(i) for i in movable[data.draw(st.integers(0, len(movable) - 1))])
    bound, u_ref = bounds[pos], ref[name].potentials[pos]
    sign = data.draw(st.sampled_from([-1.0, 1.0]))
    outside, inside = _copy(ref), _copy(ref)
    outside[name].potentials[pos] = u_ref + sign * 2 * bound
    inside[name].potentials[pos] = u_ref + sign * bound / 2
    found = compare_forward(case.network, case.spikes, outside, exact=False, reference=ref)
    assert found.divergence.kind == "potential" and _at(found.divergence) == (name, pos)
    assert compare_forward(case.network, case.spikes, inside, exact=False, reference=ref).ok
    assert not compare_forward(case.network, case.spikes, inside, exact=True, reference=ref).ok


@settings(max_examples=25)
@given(case=net_cases(features=NO_DROPOUT, weights="float"), data=st.data())
def test_a_float_spike_flip_is_permitted_only_near_the_threshold(case, data):
    ref = reference_records(case.network, case.spikes)
    name, pos = _neuron_position(data, ref)
    bound = forward_bounds(case.network, case.spikes, ref)[name][pos]
    cand = _copy(ref)
    cand[name].outputs[pos] = 1 - cand[name].outputs[pos]
    found = compare_forward(case.network, case.spikes, cand, exact=False, reference=ref)
    first = found.divergence or found.flips[0]
    assert _at(first) == (name, pos)
    near = abs(first.reference_potential - first.threshold) <= bound
    assert (first.kind == "flip") == near and found.ok == near


def test_a_flip_at_the_threshold_is_permitted_in_a_float_case_and_not_in_a_dyadic_one():
    layers = [es.Linear(1, 1, weight=np.array([[0.5]], np.float32)), es.IF(0.5)]
    network = es.Network(layers, (1,))
    spikes = np.ones((3, 1, 1), np.float32)
    ref = reference_records(network, spikes)
    assert ref["if1"].potentials[0, 0, 0] == 0.5 and ref["if1"].outputs[0, 0, 0] == 0
    cand = _copy(ref)
    cand["if1"].outputs[0, 0, 0] = 1
    loose = compare_forward(network, spikes, cand, exact=False, reference=ref)
    assert loose.ok and [_at(f) for f in loose.flips] == [("if1", (0, 0, 0))]
    assert "not comparable" in str(loose)
    assert compare_forward(network, spikes, cand, exact=True, reference=ref).divergence.kind == "output"


@settings(max_examples=30)
@given(case=net_cases(features=DYADIC_LEAKS, weights="float", dtypes=st.just(np.float32)))
def test_float32_records_stay_within_the_bound_of_a_float64_run(case):
    """The same network in float64 is (nearly) exact: float32 records must lie within the bound of it."""
    layers = copy.deepcopy(case.layers)
    for layer in es.Network(layers, case.input_shape, dtype=np.float32).walk():
        for what in ("weight", "bias"):
            if getattr(layer, what, None) is not None:
                setattr(layer, what, getattr(layer, what).astype(np.float64))
    wide = es.Network(layers, case.input_shape, dtype=np.float64)
    precise = reference_records(wide, case.spikes.astype(np.float64))
    as32 = {k: LayerRecord(r.outputs.astype(np.float32),
                           None if r.potentials is None else r.potentials.astype(np.float32))
            for k, r in precise.items()}
    found = compare_forward(case.network, case.spikes, as32, exact=False)
    assert found.ok, str(found)


# ------------------------------------------------------------------ bad records
def _small():
    layers = [es.Linear(2, 3, weight=np.full((3, 2), 0.5, np.float32)), es.LIF(0.5, leak=0.5),
              es.Linear(3, 2, weight=np.ones((2, 3), np.float32)), es.Readout()]
    network = es.Network(layers, (2,))
    spikes = np.ones((4, 2, 2), np.float32)
    return network, spikes, reference_records(network, spikes)


def test_a_missing_neuron_layer_is_named():
    network, spikes, ref = _small()
    cand = _copy(ref)
    del cand["lif1"]
    with pytest.raises(LayerError, match="'lif1'.*no record"):
        compare_forward(network, spikes, cand, exact=True)
    cand = _copy(ref)
    cand["readout1"] = LayerRecord(cand["readout1"].outputs)
    with pytest.raises(LayerError, match="'readout1'.*no potentials"):
        compare_forward(network, spikes, cand, exact=True)


@pytest.mark.parametrize("change, message", [
    (lambda r: LayerRecord(r.outputs[:, :1], r.potentials), r"shape \(4, 1, 3\), expected .* \(4, 2, 3\)"),
    (lambda r: LayerRecord(r.outputs, r.potentials.astype(np.float64)), "potentials are float64, expected float32"),
    (lambda r: LayerRecord(r.outputs, np.where(np.arange(3) == 2, np.nan, r.potentials).astype(np.float32)),
     r"not finite at step 1, sample 0, neuron \(2,\)"),
    (lambda r: LayerRecord(list(r.outputs), r.potentials), "must be a numpy array, got list"),
])
def test_bad_records_are_named(change, message):
    network, spikes, ref = _small()
    cand = _copy(ref)
    cand["lif1"] = change(cand["lif1"])
    with pytest.raises(LayerError, match="'lif1'.*" + message):
        compare_forward(network, spikes, cand, exact=True)


def test_an_unknown_layer_is_named():
    network, spikes, ref = _small()
    with pytest.raises(LayerError, match="lif9"):
        compare_forward(network, spikes, {**_copy(ref), "lif9": ref["lif1"]}, exact=True)


# -------------------------------------------------------------------- gradients
def test_the_worst_gradient_entry_is_named():
    network, spikes, _ = _small()
    wide = es.Network([es.Linear(2, 3, weight=np.full((3, 2), 0.5)), es.LIF(0.5, leak=0.5), es.Readout()], (2,),
                      dtype=np.float64)
    reference = {"fc1.weight": np.array([[1.0, -4.0], [2.0, 0.5], [0.0, 3.0]])}
    cand = {"fc1.weight": reference["fc1.weight"].copy()}
    assert compare_gradients(wide, reference, cand).ok
    cand["fc1.weight"][2, 1] += 4e-8
    found = compare_gradients(wide, reference, cand)
    assert not found.ok and found.worst.key == "fc1.weight" and found.worst.index == (2, 1)
    assert found.worst.error == pytest.approx(1e-8) and found.worst.largest == 4.0
    assert "'fc1.weight', index (2, 1)" in str(found)
    with pytest.raises(LayerError, match="miss \\['fc1.weight'\\]"):
        compare_gradients(wide, reference, {})
    with pytest.raises(LayerError, match="'fc1'.*not finite at index \\(0, 0\\)"):
        compare_gradients(wide, reference, {"fc1.weight": np.full((3, 2), np.nan)})
    with pytest.raises(LayerError, match="'fc1'.*float64 array of shape \\(3, 2\\), got float32"):
        compare_gradients(wide, reference, {"fc1.weight": np.zeros((3, 2), np.float32)})
    with pytest.raises(OptionError, match="float64 networks only"):
        compare_gradients(network, {}, {})


def test_an_array_of_rounding_noise_is_judged_against_the_network_gradient_scale():
    net = es.Network([es.Linear(2, 2, weight=np.full((2, 2), 0.5), bias=np.zeros(2)), es.Readout()], (2,),
                     dtype=np.float64)
    reference = {"fc1.weight": np.array([[1.0, -2.0], [0.5, 0.25]]), "fc1.bias": np.array([6.7e-16, 0.0])}
    noise = {"fc1.weight": reference["fc1.weight"].copy(), "fc1.bias": np.array([5.6e-16, 1.1e-16])}
    found = compare_gradients(net, reference, noise)
    assert found.ok, str(found)  # errors of ~1e-16 against a gradient scale of 2
    # A real error in a small array still fails: the bias is 1e-3 of the largest entry, off by 1 %.
    small = {"fc1.weight": reference["fc1.weight"], "fc1.bias": np.array([2e-3, 0.0])}
    wrong = {"fc1.weight": reference["fc1.weight"].copy(), "fc1.bias": np.array([2.02e-3, 0.0])}
    found = compare_gradients(net, small, wrong)
    assert not found.ok and found.worst.key == "fc1.bias" and found.worst.error == pytest.approx(1e-2)


def test_a_network_whose_gradients_all_cancel_to_noise_conforms():
    net = es.Network([es.Linear(2, 1, weight=np.full((1, 2), 0.5), bias=np.zeros(1)), es.Readout()], (2,),
                     dtype=np.float64)
    reference = {"fc1.weight": np.array([[8.9e-16, 0.0]]), "fc1.bias": np.array([0.0])}
    assert compare_gradients(net, reference, {"fc1.weight": np.zeros((1, 2)), "fc1.bias": np.zeros(1)}).ok
    found = compare_gradients(net, reference, {"fc1.weight": np.array([[1e-9, 0.0]]), "fc1.bias": np.zeros(1)})
    assert not found.ok and found.worst.key == "fc1.weight"
