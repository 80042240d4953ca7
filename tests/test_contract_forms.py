"""The tolerance contract for the arithmetic forms (docs/testing.md, "The tolerance contract").

The float bound of :mod:`eventsim.testing.compare` is checked against an
independent, more precise computation: the same float32 network run in
float64, with weights, inputs and every neuron constant (lam, g, k = 1 - lam,
d = 1 / (1 - lam)) exactly representable in both dtypes, so that the float64
run computes the same mathematics with 2^29 times smaller roundings. A
correct float32 implementation of a form must lie within the bound of it.

Hand-built cases show where a bound that ignores the form, or underflow, is
wrong: an Euler form with a small leak rounds relative to |R|, not to
lam |R| (docs/semantics.md, "Numerics"), and a product or quotient that
underflows errs absolutely, by up to half the smallest subnormal. The bound
is also not loose: a leak one part in 10^4 off fails it.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventsim as es
from eventsim.errors import LayerError
from eventsim.norm import CurrentNorm
from eventsim.testing import LayerRecord, compare_forward, forward_bounds, reference_records
from eventsim.testing.strategies import Features, net_cases

FORMS = ("product", "euler", "euler-divide", "subtract-divide")
SMALL_LEAK = 2.0**-10  # k = 1 - 2^-10, exact in float32: the Euler form rounds only where the leak's effect is
#: leak -> d = 1.0 / (1.0 - leak) in float64, exactly a float32 number: 1 + 2^-10, 1.5 and float32(1.1) (whose
#: reciprocals round) and 2 (exact). The leaks are float64 neighbours of 1 - 1/d, found by search.
DIVIDE_LEAKS = {0.0009756097560975564: 1.0009765625, 0.33333333333333337: 1.5,
                0.09090911061310519: float(np.float32(1.1)), 0.5: 2.0}
#: Leaks whose constants are the same numbers in float32 and float64, per form: the product form's lam
#: (and gain 1 - lam) dyadic; the Euler form's k = 1.0 - leak a float32 number; the divide forms' d.
EXACT_LEAKS = {
    "product": (SMALL_LEAK, 0.0625, 0.5, 0.75, 0.9375),
    "euler": tuple(1.0 - float(np.float32(k)) for k in (1 - SMALL_LEAK, 0.9, 0.5, 0.3, 0.1, 0.001)),
    "euler-divide": tuple(DIVIDE_LEAKS),
    "subtract-divide": tuple(DIVIDE_LEAKS),
}
NO_DROPOUT = Features().without("dropout")
#: The constants each form's forward step computes with (docs/semantics.md, "Arithmetic forms").
USED_CONSTANTS = {"product": ("leak", "gain"), "euler": ("gain",), "euler-divide": ("divisor",),
                  "subtract-divide": ("divisor",)}


def float64_run(network: es.Network, spikes: np.ndarray) -> dict[str, LayerRecord]:
    """The records of ``network`` (float32) computed in float64, then rounded to float32 (a candidate's records)."""
    layers = copy.deepcopy(network.layers)
    wide = es.Network(layers, network.input_shape, dtype=np.float64)
    for layer in wide.walk():
        for what in ("weight", "bias"):
            if getattr(layer, what, None) is not None:
                setattr(layer, what, getattr(layer, what).astype(np.float64))
    precise = reference_records(wide, spikes.astype(np.float64))
    return {k: LayerRecord(r.outputs.astype(np.float32), None if r.potentials is None else r.potentials.astype(
        np.float32)) for k, r in precise.items()}


def worst_fraction(network: es.Network, spikes: np.ndarray, records: dict[str, LayerRecord]) -> float:
    """The largest ``|candidate - eventsim| / bound`` over every compared potential and output."""
    reference = reference_records(network, spikes)
    bounds = forward_bounds(network, spikes, reference)
    worst = 0.0
    for name, ref in reference.items():
        ours = ref.outputs if ref.potentials is None else ref.potentials
        theirs = records[name].outputs if ref.potentials is None else records[name].potentials
        diff = np.abs(theirs.astype(np.float64) - ours.astype(np.float64))
        with np.errstate(divide="ignore", invalid="ignore"):
            worst = max(worst, float(np.nanmax(np.where(diff > 0, diff / bounds[name], 0.0), initial=0.0)))
    return worst


def test_the_leaks_give_the_same_constants_in_float32_and_float64():
    """What the float64 comparison relies on: every constant of every form is the same number in both dtypes."""
    for form, leaks in EXACT_LEAKS.items():
        for leak in leaks:
            layer = es.LIF(1.0, leak=leak, arithmetic=form)
            narrow, wide = layer.constants((1,), np.dtype(np.float32)), layer.constants((1,), np.dtype(np.float64))
            for used in USED_CONSTANTS[form]:
                assert float(getattr(narrow, used)) == float(getattr(wide, used)), (form, leak, used)
    for leak, d in DIVIDE_LEAKS.items():
        assert 1.0 / (1.0 - leak) == d


# ================================================================ hand-built
def decaying_readout(form: str, leak: float, dtype=np.float32) -> tuple[es.Network, np.ndarray]:
    """16 readouts charged once by float weights, then decaying with no input: U[t] = lam^(t-1) U[1]."""
    weight = np.random.default_rng(5).normal(0, 1, (16, 1)).astype(dtype)
    network = es.Network([es.Linear(1, 16, weight=weight), es.Readout(leak=leak, arithmetic=form)], (1,), dtype=dtype)
    spikes = np.zeros((4, 1, 1), dtype)
    spikes[0] = 1
    return network, spikes


@pytest.mark.parametrize("form, leak", [("euler", SMALL_LEAK), ("euler-divide", 0.0009756097560975564),
                                        ("subtract-divide", 0.0009756097560975564)])
def test_a_small_leak_in_an_euler_form_stays_within_the_bound_of_a_float64_run(form, leak):
    """With no input, ``R + k (0 - R)`` rounds ``k R`` (about |R|) and cancels to lam R: an error near u |R|,
    2^10 times the product form's u lam |R|. A bound built on lam |R| refuses this correct float32 run."""
    network, spikes = decaying_readout(form, leak)
    found = compare_forward(network, spikes, float64_run(network, spikes), exact=False)
    assert found.ok, str(found)


@pytest.mark.parametrize("form", ["euler", "euler-divide", "subtract-divide"])
def test_the_product_forms_bound_does_not_cover_an_euler_form(form):
    """The same exact recursion computed in the product form has a bound that the Euler form's rounding exceeds."""
    leak = SMALL_LEAK if form == "euler" else 0.0009756097560975564
    network, spikes = decaying_readout(form, leak)
    as_product = es.Network([copy.deepcopy(network.layers[0]),
                             es.Readout(leak=leak, input_gain=network.layers[1].input_gain)], (1,))
    error = np.abs(reference_records(network, spikes)["readout1"].potentials.astype(np.float64)
                   - float64_run(network, spikes)["readout1"].potentials)
    bound = forward_bounds(network, spikes, reference_records(network, spikes))["readout1"]
    product_bound = forward_bounds(as_product, spikes, reference_records(as_product, spikes))["readout1"]
    assert np.all(error <= bound)
    assert np.any(error > product_bound)


def test_an_underflowing_product_is_within_the_bound():
    """Products of half the smallest subnormal round to 0 (ties to even) in float32; in float64 they sum to it.

    ``fl(w x)`` errs by up to half the smallest subnormal whatever |w x| is
    (Higham, Sec. 2.1): the synapse's two products and the leak product of a
    subnormal leak (lam = 2^-149, float32's smallest subnormal).
    """
    tiny = float(np.finfo(np.float32).smallest_subnormal)
    weight = np.array([[tiny, tiny], [1.0, tiny]], np.float32)
    network = es.Network([es.Linear(2, 2, weight=weight), es.Readout(leak=tiny)], (2,))
    spikes = np.array([[[0.5, 0.5]], [[0.5, 0.0]], [[0.0, 0.5]]], np.float32)
    records = float64_run(network, spikes)
    ours = reference_records(network, spikes)["readout1"].potentials
    assert ours[0, 0, 0] == 0 and records["readout1"].potentials[0, 0, 0] == tiny  # the products did underflow
    assert ours[2, 0, 1] == 0 and records["readout1"].potentials[2, 0, 1] == tiny  # lam * 0.5 + tiny * 0.5
    found = compare_forward(network, spikes, records, exact=False)
    assert found.ok, str(found)


@pytest.mark.parametrize("form", FORMS)
def test_a_leak_one_part_in_ten_thousand_off_fails_the_bound(form):
    """The bound is rounding, not slack: the float64 run of a network whose leak is off by 1e-4 fails it."""
    leak = EXACT_LEAKS[form][-2]
    rng = np.random.default_rng(3)
    weight = rng.normal(0, 1, (8, 4)).astype(np.float32)
    spikes = (rng.random((12, 2, 4)) < 0.5).astype(np.float32)

    def network(lam):
        return es.Network([es.Linear(4, 8, weight=weight), es.Readout(leak=lam, arithmetic=form)], (4,))

    found = compare_forward(network(leak), spikes, float64_run(network(leak * (1 - 1e-4)), spikes), exact=False)
    assert not found.ok and found.divergence.kind == "potential"


def test_a_network_with_an_input_current_norm_is_refused_naming_the_layer():
    """The bound does not model the norm's ``k I + c``: no silent, unfounded bound."""
    network = es.Network([es.Linear(2, 2, weight=np.ones((2, 2), np.float32)), es.IF(norm=CurrentNorm())], (2,))
    spikes = np.ones((2, 1, 2), np.float32)
    with pytest.raises(LayerError, match="'if1'.*input-current norm.*fold_norms"):
        forward_bounds(network, spikes, reference_records(network, spikes))


# ======================================================= generated networks
@pytest.mark.parametrize("form", FORMS)
@given(data=st.data())
def test_float32_networks_in_each_form_stay_within_the_bound_of_a_float64_run(form, data):
    features = Features(layers=NO_DROPOUT.layers, leaks=EXACT_LEAKS[form], arithmetic={form})
    case = data.draw(net_cases(features=features, weights="float", dtypes=st.just(np.float32)))
    found = compare_forward(case.network, case.spikes, float64_run(case.network, case.spikes), exact=False)
    assert found.ok, str(found)


@st.composite
def long_runs(draw):
    """Linear -> LIF -> Linear -> Readout in one form, float32: up to 200 steps, weights and thresholds up to 10^3.

    Every reset, ``reset_delayed`` for the product form, and a leak of 0 for
    the Euler form (k = 1, the end of its range): what generated conformance
    cases, with their 12 steps and order-one weights, do not reach.
    """
    form = draw(st.sampled_from(FORMS))
    leaks = st.sampled_from(EXACT_LEAKS[form] + ((0.0,) if form == "euler" else ()))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_in, hidden, steps = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 200))
    scale = draw(st.sampled_from([1.0, 30.0, 1000.0]))
    reset = draw(st.sampled_from(["hard", "soft"]))
    lif = es.LIF(draw(st.sampled_from([0.5, 1.0, 5.0])) * scale, leak=draw(leaks), reset=reset,
                 v_reset=draw(st.sampled_from([0.0, -0.5, 0.25])) * scale if reset == "hard" else 0.0,
                 arithmetic=form, reset_delayed=form == "product" and draw(st.booleans()))
    layers = [es.Linear(n_in, hidden, weight=rng.normal(0, scale, (hidden, n_in)).astype(np.float32),
                        bias=rng.normal(0, scale, hidden).astype(np.float32)), lif,
              es.Linear(hidden, 3, weight=rng.normal(0, 1, (3, hidden)).astype(np.float32)),
              es.Readout(leak=draw(leaks), arithmetic=form)]
    spikes = (rng.random((steps, 2, n_in)) < draw(st.sampled_from([0.1, 0.5, 1.0]))).astype(np.float32)
    return es.Network(layers, (n_in,)), spikes


@given(case=long_runs())
def test_long_runs_with_large_potentials_stay_within_the_bound_of_a_float64_run(case):
    network, spikes = case
    found = compare_forward(network, spikes, float64_run(network, spikes), exact=False)
    assert found.ok, str(found)
