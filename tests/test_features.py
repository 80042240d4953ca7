"""Features: every switch bounds what is generated, from Python and from the command line.

The property: for any Features value (drawn at random), every generated case
stays within it: its layer kinds, neuron kinds and options, thresholds,
leaks, gains, dtype, weight kind and input values. Then the settings only
conform reads (detach_reset, surrogates) reach the candidate's gradient
requests, and ``Features.set`` / ``--set`` parse values and refuse bad ones
in one line.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.cli import main
from eventsim.errors import OptionError
from eventsim.layers import ARITHMETIC, form_gain
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, Triangle
from eventsim.testing.strategies import (
    LAYER_KINDS, LEAK_VALUES, THRESHOLD_VALUES, Features, deep_cases, net_cases,
)

POOLS = {es.SpikingAvgPool: "spiking_avg", es.AvgPool: "avg", es.SumPool: "sum", es.MaxPool: "max"}


def subset(items, min_size=1):
    return st.lists(st.sampled_from(sorted(items)), min_size=min_size, unique=True)


@st.composite
def feature_sets(draw) -> Features:
    """Random Features that can generate something."""
    layers = set(draw(subset(LAYER_KINDS, 0))) | {draw(st.sampled_from(["conv", "linear"]))}
    if "residual" in layers:
        layers.add("conv")
    euler = draw(st.booleans())
    leaks = draw(subset(LEAK_VALUES + (0.9, 2 / 3)))  # 1/(1 - lam) = 10, 3: not powers of two
    if euler:
        leaks = [v for v in leaks if v < 1] or [0.9]
    return Features(
        layers=layers, neurons={"lif"} if euler else draw(subset({"lif", "if"})),
        resets=draw(subset({"hard", "soft"})), v_reset=draw(st.booleans()), comparisons=draw(subset({">", ">="})),
        per_channel=draw(st.booleans()), thresholds=draw(subset(THRESHOLD_VALUES + (3.0,))), leaks=leaks,
        bias=draw(st.booleans()), readout=draw(st.booleans()), input_gain=not euler and draw(st.booleans()),
        euler_gain=euler, reset_delayed=draw(st.booleans()), dtypes=draw(subset({"float32", "float64"})),
        binary_input=draw(st.booleans()), arithmetic=draw(subset(ARITHMETIC)),
    )


def assert_within(case, features: Features) -> None:
    network = case.network
    assert np.dtype(network.dtype) in features.dtypes
    values = np.unique(case.spikes)
    assert set(values) <= ({0.0, 1.0} if features.binary_input else set(values)), values
    for layer in network.walk():
        if isinstance(layer, (es.Conv2d, es.Linear)):
            assert ("conv" if isinstance(layer, es.Conv2d) else "linear") in features.layers or (
                isinstance(layer, es.Conv2d) and "residual" in features.layers)
            assert layer.bias is None or features.bias, layer
        elif type(layer) in POOLS:
            assert POOLS[type(layer)] in features.layers, layer
        elif isinstance(layer, (es.Residual, es.Dropout)):
            assert type(layer).__name__.lower() in features.layers, layer
        if isinstance(layer, es.LIF):
            assert_neuron(layer, network.shapes[layer.name][1], features)


def assert_neuron(layer: es.LIF, shape, features: Features) -> None:
    assert layer.leak in features.leaks or (layer.leak == 1.0 and not isinstance(layer, es.Readout)), layer
    assert layer.arithmetic in features.arithmetic or (layer.arithmetic == "product" and layer.leak == 1.0), layer
    if layer.arithmetic != "product":  # the form implies its gain and an immediate reset
        assert layer.input_gain == form_gain(layer.arithmetic, layer.leak) and not layer.reset_delayed, layer
    if isinstance(layer, es.Readout):
        assert features.readout
        assert layer.arithmetic != "product" or layer.input_gain == (1.0 - layer.leak if features.euler_gain
                                                                      else 1.0), layer
        return
    assert ("if" if layer.leak == 1.0 else "lif") in features.neurons or layer.leak in features.leaks, layer
    assert layer.reset in features.resets and (layer.v_reset == 0.0 or features.v_reset), layer
    assert (">" if layer.strict else ">=") in features.comparisons, layer
    assert layer.reset_delayed is False or features.reset_delayed, layer
    theta = np.unique(layer.thresholds(shape))
    assert set(theta) <= set(features.thresholds), layer
    assert len(theta) == 1 or features.per_channel, layer
    if layer.arithmetic != "product":
        return
    if features.euler_gain:
        assert layer.input_gain == 1.0 - layer.leak, layer
    elif not features.input_gain:
        assert layer.input_gain == 1.0, layer


@settings(max_examples=60)
@given(data=st.data(), features=feature_sets())
def test_every_generated_case_stays_within_its_features(data, features):
    weights = data.draw(st.sampled_from(sorted(features.weights)))
    case = data.draw(net_cases(features=features, weights=weights))
    assert case.weights == weights
    assert_within(case, features)
    if features.layers >= {"conv", "linear"} and features.layers & {*POOLS.values(), "residual"}:
        assert_within(data.draw(deep_cases(features=features, weights=weights)), features)


@settings(max_examples=15)
@given(case=net_cases(features=Features(neurons={"lif"}, leaks=(0.5, 0.75), euler_gain=True, binary_input=True)))
def test_euler_gain_ties_every_gain_to_its_leak(case):
    """The Euler form U + (I - U) dt/tau has gain dt/tau = 1 - lam; the SpikingAvgPool's IF keeps 1."""
    for layer in case.network.walk():
        if isinstance(layer, es.SpikingAvgPool):
            assert layer.neuron.input_gain == 1.0
        elif isinstance(layer, es.LIF):
            assert layer.leak in (0.5, 0.75) and layer.input_gain == 1.0 - layer.leak


def test_set_parses_each_kind_of_field():
    f = Features().set("leaks=0.5, 0.75", "detach_reset=on", "dtypes=float32", "euler_gain=on", "neurons=lif",
                       "thresholds=1,inf", "layers=conv,linear", "comparisons=>", "binary_input=yes",
                       "surrogates=arctan,fast_sigmoid(c=25;b=1),sigmoid(alpha=25)")
    assert f.leaks == (0.5, 0.75) and f.detach_reset == "on" and f.detach_values == (True,)
    assert f.dtypes == {np.dtype(np.float32)} and f.euler_gain and f.binary_input
    assert f.neurons == {"lif"} and f.thresholds == (1.0, np.inf) and f.layers == {"conv", "linear"}
    assert f.comparisons == {">"}
    assert f.surrogates == (ArcTan(), FastSigmoid(c=25.0, b=1.0), Sigmoid(alpha=25.0))
    assert Features(detach_reset="off").detach_values == (False,)
    assert Features().detach_values == (False, True)


def test_switches_name_surrogate_kinds_and_the_new_options():
    f = Features().without("arctan", "sigmoid").including("binary_input")
    assert {s.name for s in f.surrogate_set()} == {"straight_through", "fast_sigmoid", "triangle"}
    assert f.binary_input and not Features().binary_input
    assert Features(neurons={"lif"}, leaks=(0.5,)).including("euler_gain").euler_gain
    assert Features(surrogates=(Triangle(),)).including("arctan").surrogates == (Triangle(), ArcTan())


class _Recording:
    """TorchCandidate whose models record the gradient requests conform sends."""

    def __init__(self, features: Features) -> None:
        from eventsim.testing.torch_candidate import TorchCandidate

        self.inner, self.features, self.requests = TorchCandidate(), features, []

    def build(self, network):
        model = self.inner.build(network)
        requests = self.requests

        class Model:
            run = staticmethod(model.run)

            @staticmethod
            def gradients(spikes, request):
                requests.append(request)
                return model.gradients(spikes, request)

        return Model()


@pytest.mark.parametrize("detach", ["on", "off", "either"])
def test_conform_asks_for_the_declared_reset_convention_and_surrogates(detach):
    pytest.importorskip("torch")
    from eventsim.testing import conform

    surrogates = (ArcTan(alpha=3.0), Sigmoid())
    candidate = _Recording(Features(layers={"linear"}, dtypes={"float64"}, detach_reset=detach,
                                    surrogates=surrogates))
    report = conform(candidate, examples=12)
    assert report.ok, str(report)
    assert {r.detach_reset for r in candidate.requests} == {"on": {True}, "off": {False},
                                                            "either": {True, False}}[detach]
    assert {r.surrogate for r in candidate.requests} == set(surrogates)


@pytest.mark.parametrize("assignment, message", [
    ("wings=on", "name=value with a name from layers"),
    ("leaks", "name=value"),
    ("leaks=abc", "--set leaks=abc: could not convert"),
    ("leaks=1.5", "Features.leaks: every leak factor must lie in (0, 1]"),
    ("thresholds=0", "Features.thresholds: every threshold must be > 0"),
    ("detach_reset=sometimes", "detach_reset must be one of on, off, either"),
    ("euler_gain=maybe", "--set euler_gain=maybe: a switch is on or off"),
    ("euler_gain=on", "remove 'if' from neurons and 1.0 from leaks"),
    ("surrogates=wings", "unknown surrogate 'wings'"),
    ("surrogates=arctan(alpha)", "surrogate parameter 'alpha' is not name=value"),
    ("surrogates=arctan(beta=2)", "surrogate 'arctan'"),
    ("dtypes=float16", "Features.dtypes: only float32 and float64"),
    ("layers=max", "needs 'conv' or 'linear'"),
])
def test_a_bad_setting_is_refused_in_one_line(assignment, message):
    with pytest.raises(OptionError) as info:
        Features().set(assignment)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_euler_gain_and_drawn_gains_exclude_each_other():
    with pytest.raises(OptionError, match="choose one"):
        Features(neurons={"lif"}, leaks=(0.5,), euler_gain=True, input_gain=True)


def test_the_cli_refuses_a_bad_setting_with_exit_2(capsys):
    code = main(["conform", "--candidate", "eventsim.testing.norse_adapter:NorseCandidate",
                 "--set", "detach_reset=sometimes"])
    assert code == 2
    err = capsys.readouterr().err
    assert "detach_reset must be one of on, off, either" in err and len(err.strip().splitlines()) == 1
