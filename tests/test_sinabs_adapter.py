"""sinabs against eventsim: the adapter, its matrix rows, and the divergences they classify.

Each conforming row runs the conformance suite with a small example count
(the matrix runs 200); each row with an Expected must show its divergence,
and each divergence is checked against something independent of the
adapter: sinabs's own functions on hand-picked values and closed forms,
or, for a convention, eventsim with the flags the row names, which must
then conform.
"""

from __future__ import annotations

import importlib
from dataclasses import replace
from functools import cache

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("sinabs")

import eventsim as es  # noqa: E402
from eventsim.learning.surrogates import ArcTan, StraightThrough  # noqa: E402
from eventsim.testing import GradientRequest, Unsupported, check_case, conform  # noqa: E402
from eventsim.testing.matrix_rows import Row  # noqa: E402
from eventsim.testing.sinabs_adapter import MATRIX_ROWS, candidate  # noqa: E402
from eventsim.testing.sinabs_reproducers import membrane_reset_drift, sum_pool_zero_window_gradient  # noqa: E402

EXAMPLES = 10
ROWS = {row.name: row for row in MATRIX_ROWS}


def _conform(row: Row, dtype, examples: int = EXAMPLES):
    """What the matrix runs for ``row`` in one dtype (gradients in float64 only)."""
    features = replace(row.features, dtypes=frozenset({np.dtype(dtype)}))
    return conform(candidate(**row.options), features=features, examples=examples,
                   gradients=row.gradients and dtype == np.float64)


def _row(start: str) -> str:
    """The name of the one row whose name starts with ``start``."""
    (name,) = [name for name in ROWS if name.startswith(start)]
    return name


def test_rows_have_unique_names_and_every_defect_a_reproducer_that_resolves():
    assert len(ROWS) == len(MATRIX_ROWS)
    for row in MATRIX_ROWS:
        if row.expected is not None and row.expected.kind == "defect":
            module, _, function = row.expected.reproducer.partition(":")
            assert callable(getattr(importlib.import_module(module), function))


@pytest.mark.parametrize("row", [row for row in MATRIX_ROWS if row.expected is None], ids=lambda row: row.name)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_conforming_row_conforms(row, dtype):
    report = _conform(row, dtype)
    assert report.ok, str(report)
    assert not report.declined, str(report)


@cache
def _float64_report(name: str):
    """The matrix's float64 run of the row named ``name`` (once per session: several tests read it)."""
    return _conform(ROWS[name], np.float64)


def _first_failure(name: str):
    report = _float64_report(name)
    assert not report.ok, f"row {name!r} was expected to diverge:\n{report}"
    return report.failures[0]


@pytest.mark.parametrize("row", [row for row in MATRIX_ROWS if row.expected is not None], ids=lambda row: row.name)
def test_a_row_with_an_expected_divergence_shows_it(row):
    """Rows that compare gradients diverge there alone (their forward pass conforms); the others in the forward
    pass, dyadic or float."""
    _first_failure(row.name)
    kinds = {failure.kind for failure in _float64_report(row.name).failures}
    assert kinds == {"bptt gradients"} if row.gradients else kinds <= {"dyadic forward", "float forward"}


# ------------------------------------------------------------------ defects
def test_membrane_reset_adds_its_value_at_every_step():
    """The reproducer's neuron never spikes and gets no input: closed form v[k] = k r, where it should be 0."""
    lines = membrane_reset_drift(steps=3, reset_value=-0.5)
    assert "spikes:                       [0.0, 0.0, 0.0]" in lines
    assert "v_mem after each step:        [-0.5, -1.0, -1.5]" in lines


def test_the_membrane_reset_row_diverges_at_a_neuron_that_did_not_spike():
    failure = _first_failure(_row("MembraneReset(r)"))
    first = failure.comparison.divergence
    (layer,) = [layer for layer in failure.case.network.layers if layer.name == first.layer]
    assert layer.v_reset != 0.0
    assert first.kind == "potential" and first.step >= 2


def test_sum_pool_gradient_is_zero_for_a_window_without_input():
    lines = sum_pool_zero_window_gradient()
    assert "input all 0.0: output 0.0, d output / d input [0.0, 0.0, 0.0, 0.0]" in lines
    assert "input all 0.25: output 1.0, d output / d input [1.0, 1.0, 1.0, 1.0]" in lines


def test_the_sum_pool_row_diverges_on_a_network_with_a_sum_pool():
    failure = _first_failure(_row("SumPool2d in the gradient"))
    assert any(isinstance(layer, es.SumPool) for layer in failure.case.network.walk())


# ------------------------------------------------------------------ conventions, with their flags
def _with_options(network: es.Network, **options) -> es.Network:
    """``network`` with every IF layer rebuilt with ``options`` added (the flags of a convention)."""
    def rebuilt(layer):
        if type(layer) is not es.IF:
            return layer
        return es.IF(layer.threshold, reset=layer.reset, v_reset=layer.v_reset, strict=layer.strict, name=layer.name,
                     **options)

    return es.Network([rebuilt(layer) for layer in network.layers], network.input_shape, dtype=network.dtype)


@pytest.mark.parametrize("start, flags", [("MultiSpike (sinabs's default)", {"max_spikes": None}),
                                          ("min_v_mem for eventsim's", {"v_min": -0.25})])
def test_a_convention_row_diverges_and_conforms_with_its_flags(start, flags):
    row = ROWS[_row(start)]
    assert row.expected.kind == "convention"
    case = _first_failure(row.name).case
    outcome = check_case(candidate(**row.options), replace(case, network=_with_options(case.network, **flags)))
    assert outcome.status == "conforms", str(outcome)


def test_the_multispike_row_diverges_where_the_potential_holds_two_thresholds():
    first = _first_failure(_row("MultiSpike (sinabs's default)")).comparison.divergence
    assert first.candidate_output == np.floor(first.reference_potential / first.threshold) >= 2


def test_sinabs_clamp_passes_no_gradient_where_v_equals_min_v_mem():
    """torch's relu'(0) = 0 in lif_forward_single's relu(v - min_v_mem) + min_v_mem; eventsim's clamp passes the
    gradient where it did not hold v (its contract: c = 0 only where R < v_min)."""
    from sinabs.layers.functional.lif import lif_forward_single

    v = torch.tensor([-0.25, 0.0], dtype=torch.float64, requires_grad=True)
    _, state = lif_forward_single(torch.zeros(2, dtype=torch.float64), 1.0, None, {"v_mem": v}, 1.0, None, None,
                                  None, min_v_mem=-0.25, norm_input=False)
    state["v_mem"].sum().backward()
    assert v.grad.tolist() == [0.0, 1.0]


def test_sinabs_hard_reset_is_detached_and_its_soft_reset_is_not():
    """d v_after / d spikes: 0 through MembraneReset's (spikes == 0).float(), -theta through MembraneSubtract."""
    from sinabs.activation import MembraneReset, MembraneSubtract

    for reset, expected in ((MembraneReset(), 0.0), (MembraneSubtract(), -0.5)):
        spikes = torch.tensor([1.0], requires_grad=True)
        state = reset(spikes, {"v_mem": torch.tensor([0.75], requires_grad=True)}, torch.tensor(0.5))
        (grad,) = torch.autograd.grad(state["v_mem"].sum(), spikes, allow_unused=True)
        assert (0.0 if grad is None else grad.item()) == expected


def test_the_adapter_declines_the_reset_gradient_sinabs_does_not_compute():
    network = es.Network([es.Linear(2, 2, weight=np.eye(2)), es.IF(0.5, strict=False, name="if1")], (2,),
                         dtype=np.float64)
    model = candidate().build(network)
    spikes = np.ones((3, 1, 2))
    with pytest.raises(Unsupported, match="'if1'.*MembraneReset detaches"):
        model.gradients(spikes, GradientRequest(np.ones((1, 2)), StraightThrough(), detach_reset=False))
    with pytest.raises(Unsupported, match="straight_through"):
        model.gradients(spikes, GradientRequest(np.ones((1, 2)), ArcTan(), detach_reset=True))


# ------------------------------------------------------------------ rounding
def test_sinabs_clamp_rounds_a_potential_above_it():
    """relu(v - m) + m in float32: v = 2^-30 with m = -1 becomes (1 + 2^-30) - 1 = 0."""
    from sinabs.layers.functional.lif import lif_forward_single

    v = torch.tensor([2.0**-30], dtype=torch.float32)
    _, state = lif_forward_single(torch.zeros(1), 1.0, None, {"v_mem": v}, 1.0, None, None, None, min_v_mem=-1.0,
                                  norm_input=False)
    assert state["v_mem"].item() == 0.0
    failure = _first_failure(_row("min_v_mem with potentials"))
    assert failure.comparison.divergence.kind == "potential"


def test_sinabs_spikes_are_float32_in_a_float64_network_and_round_its_gradients():
    from sinabs.activation import MultiSpike, SingleExponential

    spikes = MultiSpike.apply(torch.tensor([2.5], dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64),
                              SingleExponential())
    assert spikes.dtype == torch.float32 and spikes.item() == 2.0
    assert "exactly eventsim's rounded to float32" in str(_first_failure(_row("float32 spikes")))


# ------------------------------------------------------------------ the neuron against closed forms
@pytest.mark.parametrize("current, steps", [(0.75, 8), (2.5, 5), (1.0, 4)])
def test_multispike_soft_reset_emits_every_threshold_crossed(current, steps):
    """docs/semantics.md: a soft-reset IF neuron under a constant current I with no bound emits floor(T I / theta)
    spikes in all (>=), here through sinabs's IAF with MultiSpike and MembraneSubtract."""
    network = es.Network([es.IF(0.5, reset="soft", strict=False, max_spikes=None, name="if1")], (1,))
    records = candidate().build(network).run(np.full((steps, 1, 1), current, dtype=np.float32))
    assert records["if1"].outputs.sum() == np.floor(steps * current / 0.5)


def _one_layer(neuron: es.LIF, *before) -> es.Network:
    return es.Network([*before, es.Linear(2, 2, weight=np.eye(2)), neuron], (2,))


@pytest.mark.parametrize("network, reason", [
    (_one_layer(es.IF(1.0, name="if1")), r"'if1'.*strict=True"),
    (_one_layer(es.IF(1.0, strict=False, reset_delayed=True, name="if1")), r"'if1'.*reset_delayed"),
    (_one_layer(es.LIF(1.0, leak=0.5, strict=False, v_rest=0.25, name="lif1")), r"'lif1'.*rest potential"),
    (_one_layer(es.IF(1.0, strict=False, synapse_leak=0.5, name="if1")), r"'if1'.*synaptic current"),
    (_one_layer(es.LIF(1.0, leak=0.5, strict=False, arithmetic="euler", name="lif1")), r"'lif1'.*'euler'"),
    (_one_layer(es.LIF(1.0, leak=0.5, strict=False, input_gain=0.25, name="lif1")), r"'lif1'.*input_gain 0.25"),
    # float32: eventsim's gain fl(1 - leak) is not sinabs's 1 - fl(leak) (0.009950167 against 0.009950161)
    (_one_layer(es.LIF(1.0, leak=float(np.exp(-0.01)), input_gain=1 - float(np.exp(-0.01)), strict=False,
                       name="lif1")), r"'lif1'.*1 - alpha_mem"),
    (_one_layer(es.IF(np.inf, reset="soft", strict=False, name="if1")), r"'if1'.*infinite threshold"),
    (_one_layer(es.IF(1.0, strict=False, name="if1"), es.Delay(1, name="delay1")), r"'delay1'"),
])
def test_the_adapter_declines_what_sinabs_has_not_naming_the_layer(network, reason):
    with pytest.raises(Unsupported, match=reason):
        candidate().build(network)
