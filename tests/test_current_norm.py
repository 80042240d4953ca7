"""Input-current batch norm (eventsim.norm; Ledinauskas et al. 2020, Sec. 2.6).

The event-driven run against the dense twin, the bptt gradients against
PyTorch autograd (TorchCandidate), folding, the running statistics against
NumPy, threads, checkpoints, refusals and NIR export.

Float cases compare potentials within ``FLOAT_TOL`` of the layer's largest
|U|. Derivation: every value here is a sum of at most a few hundred float64
terms of order one (weights and currents ~ N(0, 1), T <= 5 steps), so two
summation orders differ by at most ``gamma_n sum|x_i|`` (Higham, Lemma 3.1),
below 1e-12 of the magnitudes; the statistics (n <= 1000 values) and the
affine ``k I + c`` add as much again. ``1e-9`` leaves a factor of a hundred
for accumulation over steps and layers, while any semantic difference
(biased vs unbiased variance with n <= 1000, the wrong axes, a missing
term) moves potentials by 1e-3 or more. With continuous random values a
spike sits within 1e-9 of its threshold with negligible probability, so
spikes are demanded equal.
"""

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.dense import run_dense
from eventsim.errors import LayerError, OptionError
from eventsim.learning import surrogates as sg
from eventsim.learning.checkpoint import load_checkpoint
from eventsim.learning.losses import LeeMSE
from eventsim.learning.optimizers import SGD
from eventsim.learning.parameters import load_parameters, load_statistics, parameters, statistics
from eventsim.learning.rules import BPTT, Lee2020, Lee2020Code
from eventsim.learning.trainer import Trainer
from eventsim.folding import fold_norms
from eventsim.norm import CurrentNorm, update_running_statistics
from eventsim.testing.compare import GRADIENT_RTOL, gradient_errors

FLOAT_TOL = 1e-9
BATCH, STEPS = 3, 5


# ================================================================ networks
def _weights(rng, shape, dyadic):
    if dyadic:  # k / 8 with |k| <= 8: every sum below is exact in float64
        return rng.integers(-8, 9, size=shape) / 8.0
    return rng.normal(0.0, 1.0, size=shape)


def _neuron(kind, reset, norm):
    if kind == "if":
        return es.IF(1.0, reset=reset, norm=norm)
    return es.LIF(1.0, leak=0.75, reset=reset, norm=norm)


def _network(seed, *, stats="batch_time", arch="conv", neuron="lif", reset="hard", dyadic=False):
    """A float64 network whose every spiking layer has a norm; arch "conv" (conv + fc) or "res" (residual block)."""
    rng = np.random.default_rng(seed)

    def conv(cin, cout, bias=True):
        return es.Conv2d(cin, cout, 3, padding=1, weight=_weights(rng, (cout, cin, 3, 3), dyadic),
                         bias=_weights(rng, (cout,), dyadic) if bias else None)

    def spiking():
        return _neuron(neuron, reset, CurrentNorm(stats))

    if arch == "conv":
        layers = [conv(2, 3), spiking(), es.Flatten(), es.Linear(48, 5, weight=_weights(rng, (5, 48), dyadic)),
                  spiking(), es.Linear(5, 3, weight=_weights(rng, (3, 5), dyadic)), es.Readout()]
    else:
        block = es.Residual([conv(3, 3), spiking(), conv(3, 3, bias=False)], spiking())
        layers = [conv(2, 3), spiking(), block, es.Flatten(),
                  es.Linear(48, 3, weight=_weights(rng, (3, 48), dyadic)), es.Readout()]
    network = es.Network(layers, (2, 4, 4), np.float64)
    for layer in network.walk():
        norm = getattr(layer, "norm", None)
        if norm is not None:
            c = norm.channels
            if dyadic:
                _dyadic_norm(rng, norm)
            else:
                norm.scale, norm.shift = rng.uniform(0.5, 2.0, c), rng.normal(0.0, 1.0, c)
                norm.running_mean, norm.running_var = rng.normal(0.0, 1.0, c), rng.uniform(0.5, 3.0, c)
    return network


def _dyadic_norm(rng, norm):
    """k = 2^j exactly and c dyadic: a = 2^j * sqrt(var + eps) in float64 makes a / sqrt(var + eps) exact."""
    c = norm.channels
    var = rng.uniform(0.5, 3.0, c)
    power = 2.0 ** rng.integers(-1, 2, size=c)
    norm.running_var = var
    norm.running_mean = rng.integers(-8, 9, size=c) / 4.0
    norm.scale = power * np.sqrt(var + norm.eps)
    norm.shift = rng.integers(-8, 9, size=c) / 4.0


def _events(seed):
    rng = np.random.default_rng(seed + 1)
    return es.Events.from_dense((rng.random((BATCH, STEPS, 2, 4, 4)) < 0.4).astype(np.float64))


def _neuron_names(network):
    return [layer.name for layer in network.walk() if isinstance(layer, es.LIF)]


def _assert_same_potentials(network, ours, theirs, tol):
    """Potentials within ``tol`` of each layer's largest |U|, spikes (U > theta) equal."""
    for layer in network.walk():
        if isinstance(layer, es.LIF):
            u, v = ours[layer.name], theirs[layer.name]
            assert np.abs(u - v).max() <= tol * max(1.0, float(np.abs(u).max())), (layer.name, np.abs(u - v).max())
            if not isinstance(layer, es.Readout):
                assert np.array_equal(u > layer.threshold, v > layer.threshold), layer.name


# ================================================================ forward
@settings(max_examples=12)
@given(seed=st.integers(0, 2**20), stats=st.sampled_from(("batch_time", "batch")), train=st.booleans(),
       arch=st.sampled_from(("conv", "res")), reset=st.sampled_from(("hard", "soft")))
def test_event_run_equals_dense_twin(seed, stats, train, arch, reset):
    network = _network(seed, stats=stats, arch=arch, reset=reset)
    events = _events(seed)
    result = network.run(events, train=train, record=("potentials",))
    dense = run_dense(network, events.to_dense(), train=train)
    _assert_same_potentials(network, result.potentials, dense.potentials, FLOAT_TOL)
    assert np.abs(result.output - dense.readout).max() <= FLOAT_TOL * max(1.0, np.abs(dense.readout).max())
    if train:
        assert set(result.norm_stats) == set(dense.norm_stats)
        for name, (mean, var) in dense.norm_stats.items():
            np.testing.assert_allclose(result.norm_stats[name].mean, mean, rtol=0, atol=FLOAT_TOL)
            np.testing.assert_allclose(result.norm_stats[name].var, var, rtol=FLOAT_TOL, atol=FLOAT_TOL)
    else:
        assert result.norm_stats == {}


def test_batch_time_statistics_depend_on_every_step():
    """With batch x time statistics the first steps of a longer run differ; at inference they do not."""
    network = _network(3)
    events = _events(3)
    short = es.Events.from_dense(events.to_dense()[:, :3])
    for train in (False, True):
        long_u = network.run(events, train=train, record=("potentials",)).potentials["lif1"][:, :3]
        short_u = network.run(short, train=train, record=("potentials",)).potentials["lif1"]
        assert np.array_equal(long_u, short_u) == (not train)


# ================================================================ backward
SURROGATES = (sg.StraightThrough(), sg.FastSigmoid(c=2.0), sg.ArcTan(alpha=2.0), sg.Sigmoid(alpha=4.0))


def _bptt_against_torch(network, events, surrogate, detach_reset, seed):
    from eventsim.testing.protocol import GradientRequest
    from eventsim.testing.torch_candidate import TorchCandidate

    rule = BPTT(surrogate=surrogate, detach_reset=detach_reset)
    result = network.run(events, record=rule.records, train=True)
    grad_output = np.random.default_rng(seed + 2).normal(size=result.output.shape)
    ours = rule.gradients(network, events, result, grad_output)
    spikes = np.swapaxes(events.to_dense(), 0, 1)
    model = TorchCandidate().build(network)
    records = model.run(spikes, train=True)
    for name in _neuron_names(network)[:-1]:  # the same forward: no spike flip
        assert np.array_equal(records[name].outputs, np.swapaxes(result.spikes[name].to_dense(), 0, 1)), name
    theirs = model.gradients(spikes, GradientRequest(grad_output, surrogate, detach_reset), train=True)
    return ours, theirs


@settings(max_examples=16)
@given(seed=st.integers(0, 2**20), stats=st.sampled_from(("batch_time", "batch")),
       arch=st.sampled_from(("conv", "res")), neuron=st.sampled_from(("if", "lif")),
       reset=st.sampled_from(("hard", "soft")), surrogate=st.sampled_from(SURROGATES), detach_reset=st.booleans())
def test_bptt_gradients_equal_torch_autograd(seed, stats, arch, neuron, reset, surrogate, detach_reset):
    pytest.importorskip("torch")
    network = _network(seed, stats=stats, arch=arch, neuron=neuron, reset=reset)
    ours, theirs = _bptt_against_torch(network, _events(seed), surrogate, detach_reset, seed)
    assert set(ours) == set(parameters(network)) == set(theirs)
    assert any(key.endswith(".norm.scale") for key in ours) and any(key.endswith(".norm.shift") for key in ours)
    worst = max(gradient_errors(ours, theirs), key=lambda d: d.error)
    assert worst.error <= GRADIENT_RTOL, str(worst)


def test_norm_gradients_are_not_trivial():
    """The comparison above sees real gradients: the norm's scale and shift gradients are far from 0."""
    pytest.importorskip("torch")
    network = _network(11)
    ours, _ = _bptt_against_torch(network, _events(11), sg.FastSigmoid(c=2.0), True, 11)
    for name in ("lif1", "lif2"):
        assert np.abs(ours[f"{name}.norm.scale"]).max() > 1e-3
        assert np.abs(ours[f"{name}.norm.shift"]).max() > 1e-3


# ================================================================ folding
@settings(max_examples=10)
@given(seed=st.integers(0, 2**20), arch=st.sampled_from(("conv", "res")), reset=st.sampled_from(("hard", "soft")))
def test_folding_is_exact_on_dyadic_cases(seed, arch, reset):
    network = _network(seed, arch=arch, reset=reset, dyadic=True)
    folded = fold_norms(network)
    assert not any(getattr(layer, "norm", None) for layer in folded.walk())
    assert any(getattr(layer, "norm", None) for layer in network.walk())  # the original keeps its norms
    events = _events(seed)
    ours = network.run(events, record=("potentials", "spikes"))
    theirs = folded.run(events, record=("potentials", "spikes"))
    for name in _neuron_names(network):
        assert np.array_equal(ours.potentials[name], theirs.potentials[name]), name
    assert np.array_equal(ours.output, theirs.output)


@settings(max_examples=10)
@given(seed=st.integers(0, 2**20), arch=st.sampled_from(("conv", "res")))
def test_folding_float_cases_within_rounding(seed, arch):
    network = _network(seed, arch=arch)
    events = _events(seed)
    ours = network.run(events, record=("potentials",))
    theirs = fold_norms(network).run(events, record=("potentials",))
    _assert_same_potentials(network, ours.potentials, theirs.potentials, FLOAT_TOL)


def test_folding_needs_a_weighted_synapse():
    network = es.Network([es.AvgPool(2), es.IF(norm=CurrentNorm())], (1, 4, 4), np.float64)
    with pytest.raises(LayerError, match="if1.norm.*weighted synapse"):
        fold_norms(network)


# ================================================================ running statistics
@pytest.mark.parametrize("stats", ["batch_time", "batch"])
def test_running_statistics_update_matches_numpy(stats):
    network = _network(5, stats=stats)
    before = {name: (layer.norm.running_mean.copy(), layer.norm.running_var.copy())
              for name, layer in ((la.name, la) for la in network.walk() if getattr(la, "norm", None))}
    for layer in network.walk():
        if getattr(layer, "norm", None):
            layer.norm.momentum = 0.25
    result = network.run(_events(5), train=True, record=("currents",))
    assert np.array_equal(network.layers[1].norm.running_mean, before["lif1"][0])  # the run changed nothing
    update_running_statistics(network, result)
    for name, (mean0, var0) in before.items():
        currents = result.currents[name]  # (B, T, C, ...) raw I
        if currents.ndim == 3:
            currents = currents[..., None, None]
        if stats == "batch_time":
            per_channel = np.moveaxis(currents, 2, 0).reshape(currents.shape[2], -1)
            mean, var = per_channel.mean(axis=1), per_channel.var(axis=1, ddof=1)
        else:
            per_step = np.moveaxis(currents, (1, 2), (0, 1)).reshape(currents.shape[1], currents.shape[2], -1)
            mean, var = per_step.mean(axis=2).mean(axis=0), per_step.var(axis=2, ddof=1).mean(axis=0)
        norm = next(la.norm for la in network.walk() if la.name == name)
        np.testing.assert_allclose(norm.running_mean, 0.75 * mean0 + 0.25 * mean, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(norm.running_var, 0.75 * var0 + 0.25 * var, rtol=1e-12, atol=1e-12)


def test_currents_record_is_the_raw_current():
    normed = _network(7)
    plain = _network(7)
    for layer in plain.walk():
        if isinstance(layer, es.LIF):
            layer.norm = None
    events = _events(7)
    ours = normed.run(events, train=True, record=("currents",)).currents["lif1"]
    assert np.array_equal(ours, plain.run(events, record=("currents",)).currents["lif1"])


def test_update_needs_a_training_run():
    network = _network(1)
    with pytest.raises(LayerError, match="lif1.norm.*training run"):
        update_running_statistics(network, network.run(_events(1)))


# ================================================================ threads
def test_same_results_for_one_and_two_threads():
    network = _network(9, arch="res", stats="batch")
    events = _events(9)
    rule = BPTT(surrogate=sg.FastSigmoid(c=2.0))
    grad_output = np.random.default_rng(0).normal(size=(BATCH, 3))
    outs = []
    try:
        for threads in (1, 2):
            es.set_threads(threads)
            result = network.run(events, train=True, record=rule.records)
            outs.append((result.output, rule.gradients(network, events, result, grad_output)))
    finally:
        es.set_threads(None)
    (out1, grads1), (out2, grads2) = outs
    assert np.array_equal(out1, out2)
    assert all(np.array_equal(grads1[k], grads2[k]) for k in grads1)


# ================================================================ checkpoints
def test_checkpoint_round_trip_keeps_norms(tmp_path):
    network = _network(2)
    path = tmp_path / "ckpt.h5"
    trainer = Trainer(network, rule=BPTT(), loss=LeeMSE(), optimizer=SGD(0.1), checkpoint=path, progress=None)
    trainer.save()
    assert load_checkpoint(path).statistics.keys() == statistics(network).keys() == {
        "lif1.norm.running_mean", "lif1.norm.running_var", "lif2.norm.running_mean", "lif2.norm.running_var"}
    fresh = _network(3)
    Trainer(fresh, rule=BPTT(), loss=LeeMSE(), optimizer=SGD(0.1), checkpoint=path, progress=None).resume()
    for ours, theirs in ((parameters(network), parameters(fresh)), (statistics(network), statistics(fresh))):
        assert all(np.array_equal(ours[k], theirs[k]) for k in ours)
    assert "lif1.norm.scale" in parameters(network)


def test_checkpoint_without_statistics_group_loads(tmp_path):
    plain = es.Network([es.Linear(4, 2, weight=np.ones((2, 4))), es.Readout()], (4,), np.float64)
    path = tmp_path / "old.h5"
    Trainer(plain, rule=BPTT(), loss=LeeMSE(), optimizer=SGD(0.1), checkpoint=path, progress=None).save()
    with h5py.File(path, "a") as f:
        del f["statistics"]  # as written before norms existed
    ckpt = load_checkpoint(path)
    assert ckpt.statistics == {}
    load_parameters(plain, ckpt.params)
    load_statistics(plain, ckpt.statistics)
    with pytest.raises(LayerError, match="missing.*lif1.norm.running_mean"):
        load_statistics(_network(0), {})


def test_train_step_updates_running_statistics():
    from eventsim.learning.trainer import train_step

    network = _network(4)
    before = network.layers[1].norm.running_var.copy()
    scale = network.layers[1].norm.scale.copy()
    train_step(network, BPTT(), LeeMSE(), SGD(0.5), _events(4), np.array([0, 1, 2]), lr=0.5,
               rng=np.random.default_rng(0))
    assert not np.array_equal(network.layers[1].norm.running_var, before)
    assert not np.array_equal(network.layers[1].norm.scale, scale)  # the optimizer trains a


# ================================================================ refusals and bad input
@pytest.mark.parametrize("rule", [Lee2020(), Lee2020Code()])
def test_lee_rules_refuse_norms(rule):
    network = _network(0)
    events = _events(0)
    result = network.run(events, train=True, record=rule.records)
    with pytest.raises(LayerError, match="'lif1'.*input-current batch norm has an exact backward for bptt only"):
        rule.gradients(network, events, result, np.zeros(result.output.shape))


def test_dense_references_and_the_ann_view_refuse_norms():
    from eventsim.learning.ann import ann_forward
    from eventsim.learning.dense import bptt_gradients

    network = _network(0)
    x = _events(0).to_dense()
    with pytest.raises(LayerError, match="'lif1'.*the dense reference gradients"):
        bptt_gradients(network, x, np.zeros((x.shape[0],) + network.output_shape), surrogate=sg.FastSigmoid())
    with pytest.raises(LayerError, match="'lif1'.*the ANN view"):
        ann_forward(network, x[:, 0])


def test_gradient_comparison_finds_the_layer_of_norm_keys():
    from eventsim.testing.compare import compare_gradients, parameter_layer

    assert parameter_layer("res1.lif2.norm.shift") == "res1.lif2"
    assert parameter_layer("res1.conv1.weight") == "res1.conv1"
    network = _network(0)
    reference = {key: np.ones_like(value) for key, value in parameters(network).items()}
    broken = dict(reference, **{"lif1.norm.scale": np.full_like(reference["lif1.norm.scale"], np.nan)})
    with pytest.raises(LayerError, match="'lif1'.*lif1.norm.scale.*not finite"):
        compare_gradients(network, reference, broken, rtol=1e-9)


def test_bptt_needs_a_training_run():
    network = _network(0)
    events = _events(0)
    rule = BPTT()
    result = network.run(events, record=rule.records)
    with pytest.raises(LayerError, match="lif2.norm.*training run"):
        rule.gradients(network, events, result, np.ones(result.output.shape))


def test_bad_options_name_the_layer():
    with pytest.raises(OptionError, match="stats"):
        CurrentNorm("time")
    with pytest.raises(OptionError, match="eps"):
        CurrentNorm(eps=0.0)
    with pytest.raises(OptionError, match="momentum"):
        CurrentNorm(momentum=1.5)
    with pytest.raises(LayerError, match="'out'.*Readout takes no"):
        es.Readout(name="out").norm = CurrentNorm()
    with pytest.raises(LayerError, match="'lif9'.*CurrentNorm or None"):
        es.LIF(leak=0.5, norm="batch", name="lif9")
    network = _network(0)
    norm = network.layers[1].norm
    with pytest.raises(LayerError, match="'lif1.norm'.*scale must be float64 of shape \\(3,\\)"):
        norm.scale = np.ones(4)
    with pytest.raises(LayerError, match="'lif1.norm'.*shift is not finite at index 1"):
        norm.shift = np.array([0.0, np.nan, 0.0])
    with pytest.raises(LayerError, match="'lif1.norm'.*running_var must be >= 0"):
        norm.running_var = np.array([1.0, -1.0, 1.0])
    layers = [es.Linear(2, 2, weight=np.ones((2, 2))), es.IF(norm=CurrentNorm())]
    es.Network(layers, (2,), np.float64)  # sizes the norm in float64
    with pytest.raises(LayerError, match="'if1.norm'.*network runs in float32"):
        es.Network(layers, (2,), np.float32)
    shared = CurrentNorm()
    with pytest.raises(LayerError, match="already the norm of another layer"):
        es.Network([es.IF(norm=shared), es.IF(norm=shared)], (2,), np.float64)
    parameters(network)["lif1.norm.scale"][0] = np.inf  # what a diverged optimizer step leaves
    with pytest.raises(LayerError, match="'lif1.norm'.*scale is not finite at index \\(0,\\)"):
        network.run(_events(0))


# ================================================================ NIR
def test_nir_export_is_the_folded_network():
    pytest.importorskip("nir")
    from eventsim.nir import to_nir

    network = _network(6, arch="res")
    ours, theirs = to_nir(network), to_nir(fold_norms(network))
    assert set(ours.nodes) == set(theirs.nodes) and ours.edges == theirs.edges
    for name, node in ours.nodes.items():
        for field, value in vars(node).items():
            other = getattr(theirs.nodes[name], field)
            if isinstance(value, np.ndarray):
                assert np.array_equal(value, other), (name, field)
    assert type(ours.nodes["res1.skip"]).__name__ == "Conv2d"  # the identity skip carries k
