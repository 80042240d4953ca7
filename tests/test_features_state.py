"""The state features: synaptic currents, rest, initial potential, clamp, several spikes, recurrence, delays.

Each is a switch of ``Features``, off by default, named in FEATURE_NAMES:
every generated case stays within the switches that are on (and draws
dyadic constants, a reset_delayed layer with none but the synaptic
current); conform keeps them to dyadic cases, which the comparison judges
exactly (the float rounding bound refuses them, naming the layer); the
shipped adapters declare none and decline each at build; a reported
synaptic current is compared, and a wrong one reported as such.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_features import assert_within, feature_sets

import eventsim as es
from eventsim.errors import LayerError
from eventsim.testing.compare import compare_forward, forward_bounds, recorded_layers
from eventsim.testing.protocol import LayerRecord, Unsupported
from eventsim.testing.strategies import (
    FEATURE_NAMES, INIT_VALUES, MAX_DELAY, MAX_SPIKES, REST_VALUES, STATE_FEATURES, SYNAPSE_GAINS, SYNAPSE_LEAKS,
    V_MIN_VALUES, Features, deep_cases, net_cases,
)

ALL_STATE = Features().including(*STATE_FEATURES)


@st.composite
def state_feature_sets(draw) -> Features:
    """Random Features (tests/test_features.py) with a random subset of the state switches on."""
    on = draw(st.lists(st.sampled_from(STATE_FEATURES), unique=True))
    return draw(feature_sets()).including(*on)


def assert_state_within(case, features: Features) -> None:
    for layer in case.network.walk():
        if isinstance(layer, es.Recurrent):
            assert features.recurrent, layer
            connection = layer.connection
            if isinstance(connection, es.Conv2d):  # stride 1, "same" padding, C -> C
                k = connection.kernel_size[0]
                assert k in (1, 3) and connection.stride == (1, 1) and connection.padding == (k // 2, k // 2)
        elif isinstance(layer, es.Delay):
            assert features.delay and 0 <= np.min(layer.steps) and np.max(layer.steps) <= MAX_DELAY, layer
        elif isinstance(layer, es.LIF):
            assert_state_options(layer, features)


def assert_state_options(layer: es.LIF, features: Features) -> None:
    if layer.synapse_leak is None:
        assert layer.synapse_gain == 1.0, layer
    else:
        assert features.synaptic and layer.synapse_leak in SYNAPSE_LEAKS and layer.synapse_gain in SYNAPSE_GAINS
    assert layer.v_rest in REST_VALUES and (layer.v_rest == 0.0 or features.rest), layer
    assert layer.v_init == layer.v_rest or (features.v_init and layer.v_init in INIT_VALUES), layer
    if layer.v_min != -np.inf:  # drawn, or lowered to v_init, which is at most v_init
        assert features.clamp and (layer.v_min in V_MIN_VALUES or layer.v_min == layer.v_init), layer
    assert layer.max_spikes in MAX_SPIKES and (layer.max_spikes == 1 or features.multispike), layer
    if layer.reset_delayed:
        assert set(layer.extended) <= {"a synaptic current"}, layer


@settings(max_examples=60)
@given(data=st.data(), features=state_feature_sets())
def test_every_generated_case_stays_within_its_state_features(data, features):
    weights = data.draw(st.sampled_from(sorted(features.weights)))
    case = data.draw(net_cases(features=features, weights=weights))
    assert_within(case, features)
    assert_state_within(case, features)
    if features.layers >= {"conv", "linear"} and features.layers & {"avg", "sum", "max", "spiking_avg", "residual"}:
        deep = data.draw(deep_cases(features=features, weights=weights))
        assert_within(deep, features)
        assert_state_within(deep, features)


def test_together_the_switches_generate_every_feature():
    seen: set = set()

    # Derandomized: whether 150 random cases happen to hold every feature is chance (about one run in
    # eight lacked a per-neuron delay); fixed draws make it a fact about the strategies.
    @settings(max_examples=150, database=None, derandomize=True)
    @given(case=net_cases(features=ALL_STATE))
    def collect(case):
        for layer in case.network.walk():
            seen.update({type(layer).__name__} | set(getattr(layer, "extended", ())))
            if isinstance(layer, es.Recurrent):
                seen.add(f"recurrent {type(layer.connection).__name__}")
            if isinstance(layer, es.Delay):
                seen.add(f"delay {np.ndim(layer.steps)}")

    collect()
    assert {"recurrent Linear", "recurrent Conv2d", "delay 0", "delay 1", "delay 3", "a synaptic current",
            "a rest potential", "an initial potential", "a lower clamp v_min", "several spikes per step"} <= seen, seen


def test_the_switches_are_off_by_default_and_each_name_turns_one_on_or_off():
    assert set(STATE_FEATURES) <= set(FEATURE_NAMES)
    assert not any(getattr(Features(), name) for name in STATE_FEATURES)
    for name in STATE_FEATURES:
        one = Features().including(name)
        assert [n for n in STATE_FEATURES if getattr(one, n)] == [name]
        assert not getattr(ALL_STATE.without(name), name) and all(
            getattr(ALL_STATE.without(name), n) for n in STATE_FEATURES if n != name)
    assert Features().set("recurrent=on", "delay=yes").recurrent and "recurrent=True" in ALL_STATE.describe()


@settings(max_examples=30)
@given(features=state_feature_sets(), data=st.data())
def test_declining_a_feature_removes_it_from_every_case(features, data):
    name = data.draw(st.sampled_from(STATE_FEATURES))
    case = data.draw(net_cases(features=features.without(name)))
    assert_state_within(case, features.without(name))


# ------------------------------------------------------------------- conform
class _DecliningRecorder:
    """Declines every case, keeping the networks conform generated for it, by weight kind."""

    name = "recorder"

    def __init__(self, features: Features) -> None:
        self.features, self.seen = features, []

    def build(self, network):
        self.seen.append(network)
        raise Unsupported("records only")


def _has_state(network) -> bool:
    return any(isinstance(layer, (es.Recurrent, es.Delay)) or getattr(layer, "extended", None)
               for layer in network.walk())


def test_conform_generates_the_state_features_on_dyadic_cases_only():
    from eventsim.testing import conform

    dyadic, floats = (_DecliningRecorder(ALL_STATE.without(other)) for other in ("float", "dyadic"))
    for candidate in (dyadic, floats):
        report = conform(candidate, examples=25, gradients=False)
        assert not report.ok and report.compared == 0
    assert any(_has_state(n) for n in dyadic.seen)
    assert len(floats.seen) == 25 and not any(_has_state(n) for n in floats.seen)


# ----------------------------------------------------------------- adapters
#: Each state option, with the words the adapter's reason names it by (LIF.extended).
OPTIONS = [(dict(synapse_leak=0.5), "synaptic", "synaptic current"), (dict(v_rest=0.25), "rest", "rest potential"),
           (dict(v_init=0.5), "v_init", "initial potential"), (dict(v_min=-1.0), "clamp", "clamp"),
           (dict(max_spikes=2), "multispike", "several spikes")]


@pytest.mark.parametrize("spec, framework, neuron", [
    ("eventsim.testing.snntorch_adapter:SnnTorchCandidate", "snntorch", dict(leak=0.5)),
    ("eventsim.testing.norse_adapter:NorseCandidate", "norse.torch", dict(leak=0.5, arithmetic="euler")),
], ids=["snntorch", "norse"])
def test_the_shipped_adapters_decline_each_state_feature_their_framework_lacks(spec, framework, neuron):
    """``neuron``: options the adapter supports, so that the state option alone is what it declines."""
    pytest.importorskip(framework)
    from eventsim.testing.conform import load_candidate

    candidate = load_candidate(spec)
    x = np.ones((3, 1, 2), np.float32)

    def eye():
        return es.Linear(2, 2, weight=np.eye(2, dtype=np.float32))

    assert candidate.build(es.Network([eye(), es.LIF(1.0, **neuron)], (2,))).run(x)  # supported as it is
    declined = 0
    for options, feature, words in OPTIONS:
        network = es.Network([eye(), es.LIF(1.0, **neuron, **options)], (2,))
        # An option the framework has is built as the framework computes it (the matrix rows judge it);
        # one it lacks is declined, naming the option.
        try:
            candidate.build(network).run(x)
        except Unsupported as exc:
            assert words in str(exc)
            declined += 1
        else:
            assert getattr(candidate.features, feature) or feature in ("synaptic",), options
    assert declined  # each adapter leaves some out: the declines are tested
    if not candidate.features.delay:
        with pytest.raises(Unsupported):
            candidate.build(es.Network([es.Delay(1), eye(), es.LIF(1.0, **neuron)], (2,))).run(x)


# ---------------------------------------------------------- the comparison
def _synaptic_case():
    pytest.importorskip("torch")
    from eventsim.testing.torch_candidate import TorchCandidate

    w = np.array([[0.5, -0.25], [0.75, 0.5]], np.float32)
    network = es.Network([es.Linear(2, 2, weight=w), es.LIF(0.5, leak=0.75, synapse_leak=0.5)], (2,))
    spikes = np.ones((5, 1, 2), np.float32)
    return network, spikes, TorchCandidate().build(network).run(spikes)


def test_a_wrong_synaptic_current_is_reported_as_such_before_the_potential():
    network, spikes, reference = _synaptic_case()
    assert reference["lif1"].synaptic is not None
    assert compare_forward(network, spikes, reference, exact=True, reference=reference).ok
    wrong = reference["lif1"].synaptic.copy()
    wrong[2, 0, 1] += 0.125
    got = {"lif1": LayerRecord(reference["lif1"].outputs, reference["lif1"].potentials, wrong)}
    comparison = compare_forward(network, spikes, got, exact=True, reference=reference)
    d = comparison.divergence
    assert d.kind == "synaptic" and (d.layer, d.step, d.neuron) == ("lif1", 3, (1,))
    assert d.candidate_synaptic - d.reference_synaptic == 0.125 and "synaptic current differs" in str(comparison)
    quiet = {"lif1": LayerRecord(reference["lif1"].outputs, reference["lif1"].potentials)}
    assert compare_forward(network, spikes, quiet, exact=True, reference=reference).ok  # J is optional


def test_a_synaptic_current_reported_for_a_layer_without_one_is_refused():
    network, spikes, reference = _synaptic_case()
    plain = {"lif1": LayerRecord(reference["lif1"].outputs, reference["lif1"].potentials)}
    extra = {"lif1": LayerRecord(reference["lif1"].outputs, reference["lif1"].potentials, reference["lif1"].synaptic)}
    with pytest.raises(LayerError, match="has no synaptic current"):
        compare_forward(network, spikes, extra, exact=True, reference=plain)


@pytest.mark.parametrize("layers, name, what", [
    ([es.Recurrent(es.IF(1.0), es.Linear(2, 2))], "rec1", "a recurrent connection"),
    ([es.Delay(1), es.IF(1.0)], "delay1", "a delay"),
    ([es.LIF(1.0, leak=0.5, synapse_leak=0.5, v_rest=0.25)], "lif1", "a synaptic current, a rest potential"),
    ([es.IF(1.0, max_spikes=None)], "if1", "several spikes per step"),
])
def test_the_float_bound_refuses_what_it_does_not_model_naming_the_layer(layers, name, what):
    network = es.Network(layers, (2,))
    with pytest.raises(LayerError, match=name) as info:
        forward_bounds(network, np.ones((3, 1, 2), np.float32), {})
    assert what in str(info.value) and "dyadic" in str(info.value)


def test_recorded_layers_name_the_recurrent_neuron_and_the_delay_not_the_synapses_of_the_stage():
    network = es.Network([es.Linear(2, 3), es.Recurrent(es.IF(1.0), es.Linear(3, 3)), es.Delay(2), es.Linear(3, 2),
                          es.Delay(1), es.IF(1.0)], (2,))
    assert list(recorded_layers(network)) == ["rec1.if1", "delay1", "fc2", "delay2", "if1"]


@settings(max_examples=30)
@given(case=net_cases(features=ALL_STATE))
def test_the_torch_candidate_reports_exactly_the_recorded_layers(case):
    pytest.importorskip("torch")
    from eventsim.testing.torch_candidate import TorchCandidate

    records = TorchCandidate().build(case.network).run(case.spikes)
    assert list(records) == list(recorded_layers(case.network))
    for name, layer in recorded_layers(case.network).items():
        neuron = layer.neuron if isinstance(layer, es.SpikingAvgPool) else layer
        has_current = isinstance(neuron, es.LIF) and neuron.synapse_leak is not None
        assert (records[name].synaptic is not None) == has_current, name
