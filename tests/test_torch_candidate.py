"""The PyTorch reference candidate keeps the candidate protocol and eventsim's numbers.

On random dyadic networks (every layer kind, both resets, strict and >=,
input gains, delayed resets, dropout masks of a training run) its records
equal eventsim's event-driven :meth:`Network.run` bit for bit, in float32 and
float64; the two override points change what they should; bad input is
refused with an error naming what is wrong; and the module imports without
torch. Its gradients against eventsim's rules: tests/test_gradients_torch.py.
"""

import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import eventsim as es  # noqa: E402
from eventsim.layers import Layer  # noqa: E402
from eventsim.learning import surrogates as sg  # noqa: E402
from eventsim.learning.parameters import parameters  # noqa: E402
from eventsim.testing.protocol import Candidate, GradientRequest, Model  # noqa: E402
from eventsim.testing.strategies import Features, deep_cases, net_cases  # noqa: E402
from eventsim.testing.torch_candidate import TorchCandidate  # noqa: E402

OPTIONS = Features().including("input_gain", "reset_delayed")
CASES = st.one_of(net_cases(features=OPTIONS), deep_cases(features=OPTIONS))


def eventsim_records(network, events, **run_options):
    """eventsim's spikes and potentials, time-major, by layer name."""
    result = network.run(events, record=("spikes", "potentials"), **run_options)
    out = {}
    for name, spikes in result.spikes.items():
        u = result.potentials.get(name)
        out[name] = (spikes.to_dense().swapaxes(0, 1), None if u is None else u.swapaxes(0, 1))
    return out, result


def assert_records_equal(records, reference, dtype):
    assert list(records) == list(reference)
    for name, (outputs, potentials) in reference.items():
        record = records[name]
        assert record.outputs.dtype == dtype, name
        np.testing.assert_array_equal(record.outputs, outputs, err_msg=f"outputs of {name}")
        if potentials is None:
            assert record.potentials is None, name
        else:
            assert record.potentials.dtype == dtype, name
            np.testing.assert_array_equal(record.potentials, potentials, err_msg=f"potentials of {name}")


@given(case=CASES, train_seed=st.one_of(st.none(), st.integers(0, 2**16)))
def test_run_equals_eventsim_bit_for_bit(case, train_seed):
    train = train_seed is not None
    reference, result = eventsim_records(case.network, case.events, train=train,
                                         rng=np.random.default_rng(train_seed) if train else None)
    records = TorchCandidate().build(case.network).run(case.spikes, masks=result.masks if train else None)
    assert_records_equal(records, reference, case.dtype)


@settings(max_examples=15)
@given(case=net_cases(dtypes=st.just(np.float32), features=OPTIONS.without("leak")))
def test_dtype_override_computes_in_float64(case):
    # Without leaks and with dyadic gains every value is exact in both dtypes.
    reference, _ = eventsim_records(case.network, case.events)
    records = TorchCandidate(dtype=torch.float64).build(case.network).run(case.spikes)
    as64 = {name: (o.astype(np.float64), None if u is None else u.astype(np.float64)) for name, (o, u) in
            reference.items()}
    assert_records_equal(records, as64, np.float64)


def test_candidate_and_model_keep_the_protocol():
    candidate = TorchCandidate()
    net = es.Network([es.Linear(2, 3, weight=np.ones((3, 2), np.float32), bias=np.zeros(3, np.float32)),
                      es.LIF(1.0, leak=0.5)], (2,))
    model = candidate.build(net)
    assert isinstance(candidate, Candidate) and isinstance(model, Model)
    assert candidate.name == "torch-cpu"
    request = GradientRequest(np.ones((4, 3)), sg.FastSigmoid())
    grads = model.gradients(np.ones((5, 4, 2), np.float32), request)
    assert grads.keys() == parameters(net).keys()
    assert all(grads[k].dtype == np.float32 and grads[k].shape == p.shape for k, p in parameters(net).items())


def test_features_say_what_conform_may_generate():
    assert TorchCandidate().features.input_gain and TorchCandidate().features.reset_delayed
    lee = TorchCandidate(rule="lee2020-code").features
    assert lee.resets == {"hard"} and not lee.v_reset


# ------------------------------------------------------------- override points
def _one_if():
    """Linear(1 -> 1, w = 0.5, no bias) -> IF(theta 1, strict, soft); unit input at 4 steps.

    U = 0.5, 1.0 (= theta: no spike), 1.5 (fires), 0.5 + 0.5 = 1.0.
    """
    layers = [es.Linear(1, 1, weight=np.array([[0.5]], np.float32)), es.IF(1.0, reset="soft")]
    return es.Network(layers, (1,)), np.ones((4, 1, 1), np.float32)


def test_neuron_step_override_changes_the_forward():
    class FiresOnEqual(TorchCandidate):
        def neuron_step(self, state, current, neuron, backward):
            return super().neuron_step(state, current, replace(neuron, strict=False), backward)

    net, x = _one_if()
    name = net.layers[1].name
    reference, _ = eventsim_records(net, es.Events.from_dense(x.swapaxes(0, 1)))
    np.testing.assert_array_equal(reference[name][0].ravel(), [0, 0, 1, 0])
    assert_records_equal(TorchCandidate().build(net).run(x), reference, np.float32)
    broken = FiresOnEqual().build(net).run(x)[name]
    np.testing.assert_array_equal(broken.outputs.ravel(), [0, 1, 0, 1])  # fires at U = theta, soft reset to 0
    np.testing.assert_array_equal(broken.potentials.ravel(), [0.5, 1.0, 0.5, 1.0])


def test_surrogate_override_changes_the_gradients():
    class SteepSurrogate(TorchCandidate):
        def surrogate_derivative(self, surrogate, u, theta):
            return 2 * super().surrogate_derivative(surrogate, u, theta)

    # One neuron layer, reset detached: every gradient is linear in sigma, so it doubles exactly.
    net, x = _one_if()
    request = GradientRequest(np.ones((1, 1)), sg.Triangle(width=2.0))
    plain = TorchCandidate().build(net).gradients(x, request)
    steep = SteepSurrogate().build(net).gradients(x, request)
    key = f"{net.layers[0].name}.weight"
    assert plain[key].item() > 0
    assert steep[key].item() == 2 * plain[key].item()


# ------------------------------------------------------------------ bad input
def test_build_rejects_an_unknown_layer_type():
    class Mystery(Layer):
        kind = "mystery"

        def output_shape(self, input_shape):
            return input_shape

    net = es.Network([Mystery(name="odd1"), es.LIF(1.0, leak=0.5)], (3,))
    with pytest.raises(es.LayerError, match="'odd1' \\(Mystery\\).*does not know"):
        TorchCandidate().build(net)


def test_bad_input_is_refused_with_a_clear_error():
    net = es.Network([es.Linear(2, 1, weight=np.ones((1, 2), np.float32)), es.Dropout(0.5, name="drop1"),
                      es.LIF(1.0, leak=0.5)], (2,))
    model = TorchCandidate().build(net)
    x = np.ones((3, 2, 2), np.float32)
    with pytest.raises(es.EventsError, match=r"\(steps, batch, \*\(2,\)\)"):
        model.run(np.ones((3, 2, 5), np.float32))
    with pytest.raises(es.EventsError, match=r"not finite at index \(1, 0, 0\)"):
        model.run(np.where(np.arange(3)[:, None, None] == 1, np.nan, x))
    with pytest.raises(es.EventsError, match="lose values"):
        model.run(np.full((3, 2, 2), 0.1, np.float64))
    with pytest.raises(es.OptionError, match="not Dropout layers.*'fc1'"):
        model.run(x, masks={"fc1": np.ones((2, 1), bool)})
    with pytest.raises(es.LayerError, match="'drop1'.*bool array of shape \\(2, 1\\)"):
        model.run(x, masks={"drop1": np.ones((3, 1), bool)})
    with pytest.raises(es.LayerError, match="grad_output must have the shape"):
        model.gradients(x, GradientRequest(np.ones((2, 2)), sg.ArcTan()))

    class Unknown:
        name = "quadratic"

    with pytest.raises(es.OptionError, match="surrogate 'quadratic'"):
        model.gradients(x, GradientRequest(np.ones((2, 1)), Unknown()))
    with pytest.raises(es.OptionError, match="dtype"):
        TorchCandidate(dtype=np.float16)
    with pytest.raises(es.OptionError, match="device"):
        TorchCandidate(device="no-such-device")


def test_module_imports_without_torch():
    # sys.modules["torch"] = None makes every `import torch` fail, as on a machine without it.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import eventsim.testing.torch_candidate as m\n"
        "try:\n    m.TorchCandidate()\n"
        "except ImportError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert 'pip install -e ".[torch]"' in out


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@settings(max_examples=10)
@given(case=CASES)
def test_cuda_equals_eventsim_bit_for_bit(case):
    reference, _ = eventsim_records(case.network, case.events)
    assert_records_equal(TorchCandidate(device="cuda").build(case.network).run(case.spikes), reference, case.dtype)
