"""SpikingJelly 2.0 against eventsim: the adapter and its rows of the conformance matrix.

The neuron-level equivalences are tested in tests/test_arithmetic_forms.py,
tests/test_dense_forms.py and tests/test_dense_state.py (LIFNode computes the
divide forms bit for bit, its v_reset is also the rest potential,
NonSpikingLIFNode is a Readout in "euler-divide", the product form rounds
differently). Here: every matrix row on a few cases (conforming rows
conform; the convention and rounding rows diverge, and conform once the
eventsim flags of their Expected are set), the potentials the adapter
reports where SpikingJelly's reset discards them, its declines, its
surrogates against eventsim's formulas, and the GPU rows where a GPU exists.
"""

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
sj_surrogate = pytest.importorskip("spikingjelly.activation_based.surrogate")

import eventsim as es  # noqa: E402
from eventsim.errors import OptionError  # noqa: E402
from eventsim.learning.surrogates import FastSigmoid, StraightThrough  # noqa: E402
from eventsim.testing import Unsupported, check_case, conform  # noqa: E402
from eventsim.testing.spikingjelly_adapter import (  # noqa: E402
    MATRIX_ROWS, PLIF_LEAKS, SURROGATES, _spikingjelly_surrogate, candidate,
)

EXAMPLES = 10
CPU_ROWS = [row for row in MATRIX_ROWS if row.device == "cpu"]


def _row(kind: str):
    return next(row for row in CPU_ROWS if row.expected is not None and row.expected.kind == kind)


# ==================================================================== matrix rows
@pytest.mark.parametrize("row", [row for row in CPU_ROWS if row.expected is None], ids=lambda row: row.name)
def test_a_conforming_row_conforms_on_a_few_cases(row):
    report = conform(candidate(**row.options), features=row.features, examples=EXAMPLES, gradients=row.gradients)
    assert report.ok, str(report)
    assert all(kind.compared > 0 for kind in report.kinds if not kind.skipped), str(report)


def _with_layers(case, rewrite):
    """``case`` with every LIF layer (not a Readout) replaced by ``rewrite(layer)``."""
    layers = [rewrite(layer) if isinstance(layer, es.LIF) and not isinstance(layer, es.Readout) else layer
              for layer in case.network.layers]
    return replace(case, layers=layers, network=es.Network(layers, case.input_shape, dtype=case.network.dtype))


def _diverges(row):
    """The first failure of ``row`` on a few cases, a divergence of the potentials (not an error)."""
    report = conform(candidate(**row.options), features=row.features, examples=EXAMPLES, gradients=False)
    assert not report.ok, str(report)
    failure = report.failures[0]
    assert failure.error is None and failure.comparison.divergence.kind == "potential", str(failure)
    return failure


def test_the_rest_potential_convention_row_diverges_and_conforms_with_its_flags():
    """LIFNode(v_reset=r) rests and starts at r: eventsim's LIF(v_reset=r) differs, LIF(v_reset=r, v_rest=r)
    is the same neuron, for the row's candidate and for the default one (which declines the first)."""
    row = _row("convention")
    failure = _diverges(row)
    divergence = failure.comparison.divergence
    assert divergence.step == 1 and divergence.reference_potential != divergence.candidate_potential
    flagged = _with_layers(failure.case, lambda layer: es.LIF(
        layer.threshold, leak=layer.leak, arithmetic=layer.arithmetic, reset=layer.reset, v_reset=layer.v_reset,
        v_rest=layer.v_reset, strict=layer.strict, name=layer.name))
    for sj in (candidate(**row.options), candidate()):
        outcome = check_case(sj, flagged)
        assert outcome.status == "conforms", str(outcome)
    assert check_case(candidate(), failure.case).status == "declined"


def test_the_product_form_rounding_row_diverges_and_conforms_in_the_subtract_divide_form():
    """LIFNode(decay_input=False) is v - v/tau + x: eventsim's product form lam v + x differs by an ulp on a
    dyadic case; arithmetic="subtract-divide" is the same operations."""
    row = _row("rounding")
    failure = _diverges(row)
    flagged = _with_layers(failure.case, lambda layer: es.LIF(
        layer.threshold, leak=layer.leak, arithmetic="subtract-divide", reset=layer.reset, v_reset=layer.v_reset,
        strict=layer.strict, name=layer.name))
    for sj in (candidate(**row.options), candidate()):
        outcome = check_case(sj, flagged)
        assert outcome.status == "conforms", str(outcome)
    divergence = failure.comparison.divergence
    ours, theirs = divergence.reference_potential, divergence.candidate_potential
    assert ours != theirs and np.isclose(ours, theirs, rtol=1e-6, atol=0)  # rounding, not another neuron


def test_the_rows_name_each_gpu_implementation_and_float32_for_the_kernels():
    gpu = {row.options["implementation"]: row for row in MATRIX_ROWS if row.device == "cuda"}
    assert set(gpu) == {"torch", "triton", "cuda"}
    for implementation in ("triton", "cuda"):
        assert gpu[implementation].features.dtypes == {np.dtype(np.float32)}
        assert not gpu[implementation].gradients
    assert len({row.name for row in MATRIX_ROWS}) == len(MATRIX_ROWS)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("row", [row for row in MATRIX_ROWS if row.device == "cuda"], ids=lambda row: row.name)
def test_a_gpu_row_conforms_on_a_few_cases(row):
    try:
        sj = candidate(**row.options)
    except OptionError as exc:  # e.g. native kernels not built
        pytest.skip(str(exc))
    report = conform(sj, features=row.features, examples=EXAMPLES, gradients=row.gradients)
    assert report.ok, str(report)


# ==================================================================== potentials
def _run(layer, currents, step_mode: str):
    """The adapter's spikes and potentials of one neuron layer fed ``currents`` (T values, one neuron)."""
    network = es.Network([layer], (1,), dtype=np.float64)
    record = candidate(step_mode=step_mode).build(network).run(np.reshape(currents, (-1, 1, 1)))[layer.name]
    return record.outputs.ravel(), record.potentials.ravel()


@pytest.mark.parametrize("step_mode", ["s", "m"])
@pytest.mark.parametrize("layer, currents, spikes, potentials", [
    # IF, theta 0.5, fires on U >= theta, hard reset to 0: the U of a step that fires is not SpikingJelly's v
    (es.IF(0.5, strict=False), [0.75, 0.5, 0.25, 0.25], [1, 1, 0, 1], [0.75, 0.5, 0.25, 0.5]),
    # soft reset: R = U - theta
    (es.IF(0.5, reset="soft", strict=False), [0.75, 0.5, 0.25, 0.0], [1, 1, 1, 0], [0.75, 0.75, 0.5, 0.0]),
    # LIFNode(tau=2, v_reset=-0.5): U = R + (x - (R + 0.5)) / 2 from R = -0.5; reset to -0.5
    (es.LIF(0.5, leak=0.5, arithmetic="euler-divide", v_reset=-0.5, v_rest=-0.5, strict=False), [2.0, 1.0, 0.0],
     [1, 0, 0], [0.5, 0.0, -0.25]),
])
def test_potentials_where_spikingjelly_resets_are_the_charge_before_the_reset(layer, currents, spikes, potentials,
                                                                             step_mode):
    got_spikes, got_potentials = _run(layer, currents, step_mode)
    np.testing.assert_array_equal(got_spikes, spikes)
    np.testing.assert_array_equal(got_potentials, potentials)


# ==================================================================== declines
def _net(neuron, inputs: int = 3, outputs: int = 2) -> es.Network:
    return es.Network([es.Linear(inputs, outputs, weight=np.ones((outputs, inputs))), neuron], (inputs,),
                      dtype=np.float64)


@pytest.mark.parametrize("neuron, problem", [
    (es.LIF(1.0, leak=0.5, arithmetic="euler-divide"), "fires on v >= v_threshold"),
    (es.LIF(np.array([1.0, 0.5]), leak=0.5, arithmetic="euler-divide", strict=False), "one float per layer"),
    (es.LIF(1.0, leak=0.5, strict=False), "arithmetic='product'"),
    (es.IF(1.0, input_gain=0.5, strict=False), "IFNode adds its input unscaled"),
    (es.LIF(1.0, leak=0.875, arithmetic="euler", strict=False), "sigmoid\\(w\\)"),
    (es.LIF(1.0, leak=0.5, arithmetic="euler-divide", strict=False, synapse_leak=0.5), "synaptic current"),
    (es.LIF(1.0, leak=0.5, arithmetic="euler-divide", strict=False, v_min=-1.0), "clamp"),
    (es.LIF(1.0, leak=0.5, arithmetic="euler-divide", strict=False, max_spikes=2), "several spikes"),
    (es.LIF(1.0, leak=0.5, arithmetic="euler-divide", strict=False, v_reset=-0.5), "rest and the initial"),
    (es.LIF(1.0, leak=0.5, arithmetic="euler-divide", strict=False, reset="soft", v_rest=0.25), "rest and the"),
    (es.LIF(1.0, leak=0.5, arithmetic="euler-divide", strict=False, v_init=0.25), "rest and the initial"),
    (es.IF(1.0, strict=False, v_reset=-0.5), "rest and the initial"),
    (es.Readout(leak=0.5, arithmetic="subtract-divide"), "non-spiking nodes compute"),
    (es.Readout(leak=0.5, arithmetic="euler-divide", v_rest=0.25), "do not take a rest potential"),
])
def test_the_adapter_declines_what_spikingjelly_cannot_compute_naming_the_layer(neuron, problem):
    net = _net(neuron)
    with pytest.raises(Unsupported, match=problem) as info:
        candidate().build(net)
    assert f"'{net.layers[1].name}'" in str(info.value)


def test_a_layer_without_a_spikingjelly_counterpart_is_declined_by_name():
    net = es.Network([es.SpikingAvgPool(2), es.Flatten(), es.Linear(4, 1, weight=np.ones((1, 4))),
                      es.IF(1.0, strict=False)], (1, 4, 4))
    with pytest.raises(Unsupported, match=f"'{net.layers[0].name}'.*no SpikingJelly counterpart"):
        candidate().build(net)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_parametric_lif_nodes_are_built_exactly_for_the_declared_leaks(dtype):
    """ParametricLIFNode's 1/tau = sigmoid(-log(init_tau - 1)) is 1 - leak to the last bit for PLIF_LEAKS only."""
    for leak in PLIF_LEAKS[1:]:
        net = es.Network([es.LIF(1.0, leak=leak, arithmetic="euler", strict=False)], (2,), dtype=dtype)
        node = candidate().build(net).neurons[0].node
        assert node.w.dtype == (torch.float64 if dtype == np.float64 else torch.float32)
        assert node.w.sigmoid().item() == dtype(1.0 - leak)
    for leak in (0.875, float(np.exp(-0.01))):
        with pytest.raises(Unsupported, match="sigmoid"):
            candidate().build(es.Network([es.LIF(1.0, leak=leak, arithmetic="euler", strict=False)], (2,),
                                         dtype=dtype))


def test_options_the_candidate_cannot_take_are_errors():
    with pytest.raises(OptionError, match="implementation 'triton' needs device='cuda'"):
        candidate(implementation="triton")
    with pytest.raises(OptionError, match="step_mode"):
        candidate(step_mode="t")
    if not torch.cuda.is_available():
        with pytest.raises(OptionError, match="no CUDA device"):
            candidate(device="cuda")


# ==================================================================== surrogates
@pytest.mark.parametrize("surrogate", SURROGATES, ids=repr)
def test_spikingjelly_surrogates_differentiate_as_the_declared_eventsim_surrogates(surrogate):
    """SpikingJelly's own backward (activation_based/surrogate.py) against eventsim's formula, float64."""
    x = torch.linspace(-3, 3, 241, dtype=torch.float64, requires_grad=True)
    _spikingjelly_surrogate(sj_surrogate, surrogate)(x).sum().backward()
    expected = surrogate.derivative(x.detach().numpy(), 1.0)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=0, atol=1e-12 * expected.max())


@pytest.mark.parametrize("surrogate", [StraightThrough(), FastSigmoid(c=10.0), FastSigmoid(c=3.0, b=1.0)], ids=repr)
def test_a_surrogate_without_a_spikingjelly_counterpart_is_declined(surrogate):
    with pytest.raises(Unsupported, match="no SpikingJelly counterpart"):
        _spikingjelly_surrogate(sj_surrogate, surrogate)
