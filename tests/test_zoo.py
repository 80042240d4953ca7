"""The model zoo: every model builds and runs, paper numbers, init, overrides, plain-data configs."""

import json
import math

import numpy as np
import pytest
from scipy.stats import chi2

import eventsim as es
from eventsim.errors import LayerError, OptionError
from eventsim.layers import Weighted
from eventsim.learning.init import default_kappa
from eventsim.learning.zoo import MODELS, build_model, build_network, describe

CASES = [(name, inp) for name, config in MODELS.items() for inp in config["inputs"]]


def _weights(net):
    return [layer for layer in net.walk() if isinstance(layer, Weighted)]


def _weight_count(net):
    return sum(math.prod(layer.weight_shape) for layer in _weights(net))


def _classes(config):
    """The out size of the config's last fc entry (written in the config, not inferred)."""
    return [entry[1] for entry in config["layers"] if entry[0] == "fc"][-1]


@pytest.mark.parametrize("name, inp", CASES)
def test_every_model_builds_and_runs(name, inp):
    rng = np.random.default_rng(0)
    net = build_model(name, input=inp, rng=rng)
    assert net.input_shape == MODELS[name]["inputs"][inp]
    classes = _classes(MODELS[name])
    assert net.output_shape == (classes,)
    x = es.Events.from_dense((rng.random((1, 2) + net.input_shape) < 0.2).astype(np.float32))
    result = net.run(x, record=("counts",), train=True, rng=rng)  # train: dropout layers draw masks too
    last = net.layers[-1]
    out = result.output if isinstance(last, es.Readout) else result.counts[last.name]
    assert out.shape == (1, classes)
    assert np.all(np.isfinite(out))


# ANN MACs derived in the Lee et al. 2020 extraction (docs: /work/shared/papers/lee2020-spike-bp.md, Sec. 7),
# independent of this code.
@pytest.mark.parametrize("name, inp, macs", [
    ("lee2020-vgg9", "cifar10", 194_717_696),
    ("lee2020-resnet9", "cifar10", 299_575_296),
    ("lee2020-resnet11", "cifar10", 607_856_640),
    ("lee2020-lenet5", "mnist", 5_784_000),
])
def test_ann_macs_match_the_paper_extraction(name, inp, macs):
    assert sum(build_model(name, input=inp).ann_macs().values()) == macs


def test_vgg9_macs_per_layer():
    per_layer = build_model("lee2020-vgg9").ann_macs()
    assert list(per_layer.values()) == [
        1_769_472, 37_748_736, 18_874_368, 37_748_736, 18_874_368, 37_748_736, 37_748_736, 4_194_304, 10_240,
    ]


def test_lenet5_fan_in_and_weight_count():
    # Tsoukas 2023 extraction, Table 4.2: N-MNIST 50*8*8 = 3200 inputs to the FC and 668,000 weights;
    # MNIST 50*7*7 = 2450 and 517,500.
    nmnist = build_model("lee2020-lenet5", input="nmnist")
    assert nmnist.shapes["fc1"][0] == (3200,)
    assert nmnist.layers[0].weight_shape == (20, 2, 5, 5)
    assert _weight_count(nmnist) == 668_000
    mnist = build_model("lee2020-lenet5", input="mnist")
    assert mnist.shapes["fc1"][0] == (2450,)
    assert _weight_count(mnist) == 517_500


def test_default_input_is_the_first():
    assert build_model("lee2020-lenet5").input_shape == (2, 34, 34)
    assert build_model("syed2021-4layer", input=(2, 34, 34)).shapes["fc1"][0] == (64 * 8 * 8,)


def _assert_variance(w, variance, p=1e-6):
    """n s^2 / sigma^2 ~ chi2(n) for n draws of mean 0: a two-sided bound of probability 1 - p."""
    stat = float(np.sum(w.astype(np.float64) ** 2)) / variance
    assert chi2.ppf(p / 2, w.size) < stat < chi2.ppf(1 - p / 2, w.size)


@pytest.mark.parametrize("name, kappa", [("lee2020-lenet5", 2.0), ("syed2021-resnet6", 1.0), ("ngu2022-mnist", 2.0)])
def test_initialisation_std_matches_kappa(name, kappa):
    net = build_model(name, rng=np.random.default_rng(1))
    assert MODELS[name]["kappa"] == kappa
    for layer in _weights(net):
        assert layer.weight.dtype == np.float32
        _assert_variance(layer.weight, kappa / layer.fan_in)


@pytest.mark.parametrize("name", list(MODELS))
def test_kappa_is_one_exactly_for_residual_models(name):
    assert MODELS[name]["kappa"] == default_kappa(build_model(name))


def test_without_rng_weights_are_unset_and_dtype_is_kept():
    assert all(layer.weight is None for layer in _weights(build_model("lee2020-resnet7")))
    net = build_model("lee2020-lenet5", dtype=np.float64, rng=np.random.default_rng(0))
    assert net.dtype == np.float64
    assert all(layer.weight.dtype == np.float64 for layer in _weights(net))


def test_same_seed_same_weights():
    a = build_model("syed2021-resnet6", rng=np.random.default_rng(5))
    b = build_model("syed2021-resnet6", rng=np.random.default_rng(5))
    for la, lb in zip(_weights(a), _weights(b)):
        assert np.array_equal(la.weight, lb.weight)


def test_unknown_model_and_input_list_the_choices():
    with pytest.raises(OptionError) as err:
        build_model("lee2020-vgg99")
    assert all(repr(name) in str(err.value) for name in MODELS)
    with pytest.raises(OptionError) as err:
        describe("nope")
    assert "'lee2020-lenet5'" in str(err.value)
    with pytest.raises(OptionError, match="'nmnist', 'mnist'"):
        build_model("lee2020-lenet5", input="cifar10")


def test_an_input_the_model_cannot_take_names_the_entry():
    # Input channels are inferred, so a grey 1x32x32 image fits VGG9; a 4x4 one is pooled away.
    assert build_model("lee2020-vgg9", input=(1, 32, 32)).layers[0].weight_shape == (64, 1, 3, 3)
    with pytest.raises(LayerError, match=r"SpikingAvgPool layer: window \(2, 2\) is larger .* \('spool', 2\)"):
        build_model("lee2020-vgg9", input=(3, 4, 4))


@pytest.mark.parametrize("name", list(MODELS))
def test_configs_are_plain_data(name):
    config = MODELS[name]
    text = json.dumps(config)
    assert set(config) == {"source", "inputs", "neuron", "layers", "notes", "kappa"}
    # After a JSON round trip (tuples become lists) the config builds the same network.
    again = build_network(json.loads(text))
    net = build_model(name)
    assert repr(again) == repr(net)
    assert again.ann_macs() == net.ann_macs()


def test_neuron_defaults_and_overrides():
    net = build_model("lee2020-vgg9", tau=20.0, threshold=0.5, dropout=0.1)
    lam = math.exp(-1 / 20)
    spiking = [layer for layer in net.walk() if type(layer) is es.LIF]
    assert len(spiking) == 8
    assert all(layer.leak == lam and layer.threshold == 0.5 and layer.reset == "hard" for layer in spiking)
    assert net.layers[-1].leak == lam
    assert {layer.p for layer in net.walk() if isinstance(layer, es.Dropout)} == {0.1}
    assert {layer.threshold_ratio for layer in net.walk() if isinstance(layer, es.SpikingAvgPool)} == {0.75}

    default = build_model("lee2020-vgg9")
    assert default.layers[1].leak == math.exp(-1 / 100) and default.layers[1].strict
    assert {layer.p for layer in default.walk() if isinstance(layer, es.Dropout)} == {0.2}


def test_dropout_zero_builds_none_and_keeps_the_other_names():
    with_dropout, without = build_model("lee2020-resnet11"), build_model("lee2020-resnet11", dropout=0.0)
    assert not any(isinstance(layer, es.Dropout) for layer in without.walk())
    names = [layer.name for layer in with_dropout.walk() if not isinstance(layer, es.Dropout)]
    assert [layer.name for layer in without.walk()] == names
    with pytest.raises(OptionError, match="no dropout layers"):
        build_model("lee2020-lenet5", dropout=0.2)
    assert build_model("lee2020-lenet5", dropout=0.0).ann_macs() == build_model("lee2020-lenet5").ann_macs()
    with pytest.raises(OptionError, match=r"\[0, 1\)"):
        build_model("lee2020-vgg9", dropout=1.0)


def test_ngu_neurons_are_soft_reset_if_and_tau_makes_them_lif():
    net = build_model("ngu2022-mnist")
    neurons = [layer for layer in net.walk() if isinstance(layer, es.LIF) and not isinstance(layer, es.Readout)]
    assert all(type(n) is es.IF and n.reset == "soft" and not n.strict for n in neurons)
    assert net.layers[-1].leak == 1.0
    assert [type(layer) for layer in net.layers].count(es.AvgPool) == 2
    assert all(type(n) is es.LIF for n in build_model("ngu2022-mnist", tau=50.0).walk()
               if isinstance(n, es.LIF) and not isinstance(n, es.Readout))


def test_resnet11_skips_follow_the_code():
    net = build_model("lee2020-resnet11")
    skips = [layer.skip for layer in net.layers if isinstance(layer, es.Residual)]
    assert [type(s).__name__ for s in skips] == ["Conv2d", "Conv2d", "Conv2d", "Identity"]
    assert [s.weight_shape for s in skips[:3]] == [(128, 64, 1, 1), (256, 128, 1, 1), (512, 256, 1, 1)]
    assert [s.stride for s in skips] == [(1, 1), (2, 2), (1, 1), (2, 2)]


def test_grammar_on_a_custom_config():
    config = {
        "inputs": {"tiny": [2, 8, 8]},
        "neuron": {"threshold": 1.0, "leak": 0.5, "reset": "soft", "strict": True},
        "kappa": 1.0,
        "layers": [
            ["conv", 4, 3, {"padding": 1}], ["lif"], ["maxpool", 2],
            ["res", {"main": [["conv", 4, 3, {"padding": 1}], ["lif"], ["conv", 4, 3, {"padding": 1}]]}],
            ["avgpool", 2], ["flatten"], ["fc", 3], ["readout"],
        ],
    }
    net = build_network(config, rng=np.random.default_rng(0))
    block = net.layers[3]
    assert isinstance(block.skip, es.Identity) and block.skip.stride == (1, 1)
    assert net.layers[1].leak == 0.5 and net.layers[1].reset == "soft"
    assert net.shapes["fc1"][0] == (4 * 2 * 2,)
    x = es.Events.from_dense(np.ones((1, 2, 2, 8, 8), np.float32))
    assert net.run(x).output.shape == (1, 3)


@pytest.mark.parametrize("entry, match", [
    (("pool", 2), "unknown layer kind 'pool'"),
    (("conv", 4), "takes 2 values"),
    (("conv", 4, 3, {"dilation": 2}), r"unknown options \['dilation'\]"),
    (("fc", 3), "add \\('flatten',\\)"),
    (("res", {"main": [("conv", 2, 1)], "skip": ("fc", 2)}), "skip must be"),
    ("lif", "must be a tuple or list"),
])
def test_malformed_entries_are_named(entry, match):
    config = {"inputs": {"x": (2, 4, 4)}, "neuron": MODELS["lee2020-lenet5"]["neuron"], "kappa": 2.0,
              "layers": [entry]}
    with pytest.raises(OptionError, match=match):
        build_network(config)


def test_describe_reports_layers_totals_source_and_notes():
    text = describe("lee2020-lenet5")
    assert repr(build_model("lee2020-lenet5")) in text
    total = next(line for line in text.splitlines() if line.startswith("total")).split()
    # neurons: 3 LIF layers, 2 pooling layers and the readout; synapses: the thesis's 668,000; MACs on 34x34
    assert total[1:] == [f"{20*34*34 + 20*17*17 + 50*17*17 + 50*8*8 + 200 + 10:,}", "668,000", "9,023,000"]
    assert MODELS["lee2020-lenet5"]["source"] in text
    assert all(note in text for note in MODELS["lee2020-lenet5"]["notes"])
    assert "5,784,000" in describe("lee2020-lenet5", input="mnist")
