"""The kit's pytest-first API and its bookkeeping: declined cases, replay tokens, seeds, the database,
the float32-rounding note and the pytest plugin's lightness.

Candidates that decline are in tests/declining_candidates.py, planted defects in
tests/broken_candidates.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import eventsim as es
from eventsim.cli import main
from eventsim.errors import OptionError
from eventsim.testing import (
    Features, LayerRecord, assert_conforms, case_token, check_case, compare_forward, conform, read_token,
    reference_records, replay,
)
from eventsim.testing.strategies import NetCase

TESTS = Path(__file__).parent
LINEAR = Features(layers={"linear"}).without("float")


def _case(network: es.Network, spikes: np.ndarray, weights: str = "dyadic") -> NetCase:
    steps, batch = spikes.shape[:2]
    return NetCase(seed=0, dtype=network.dtype.type, input_shape=network.input_shape, layers=network.layers,
                   batch=batch, steps=steps, density=1.0, weights=weights, network=network,
                   events=es.Events.from_dense(np.ascontiguousarray(spikes.swapaxes(0, 1))))


class Reference:
    """eventsim as a candidate, with an optional change to one layer's potentials."""

    name = "reference"

    def __init__(self, change=None):
        self.change = change

    def build(self, network):
        candidate = self

        class Model:
            def run(self, spikes):
                records = reference_records(network, spikes)
                return candidate.change(records) if candidate.change else records

        return Model()


def test_a_candidate_declining_half_of_the_cases_conforms_and_the_report_counts_the_reasons(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(TESTS))
    code = main(["conform", "--candidate", "declining_candidates:DeclinesHalf", "--examples", "20",
                 "--without", "float", "--no-gradients"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "CONFORMS" in out and "declined" in out
    from declining_candidates import DeclinesHalf

    report = conform(DeclinesHalf(), features=DeclinesHalf().features.without("float"), examples=20,
                     gradients=False)  # what the command line ran
    dyadic = report.kinds[0]
    declined = sum(dyadic.declined.values())
    assert report.ok and 0 < declined < 20 and dyadic.passed + dyadic.not_comparable + declined == 20
    assert set(dyadic.declined) <= {"no convolutions on Tuesdays", "no linear layers on Tuesdays"}
    for reason, n in dyadic.declined.items():
        assert f"declined {n} x: {reason}" in out


def test_a_candidate_declining_every_case_does_not_conform(capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.syspath_prepend(str(TESTS))
    code = main(["conform", "--candidate", "declining_candidates:DeclinesAll", "--examples", "5"])
    out = capsys.readouterr().out
    assert code == 1, out
    assert "declined every case, nothing was compared" in out
    assert "every case declined (5)" in out and "declined 5 x: this framework supports nothing yet" in out


def test_a_declined_case_is_never_a_failure_and_never_shrunk_towards():
    """A candidate that declines hard reset, where the shrinker would go (the first reset it draws), and
    fails every case with a ``>=`` neuron: the shrunk failure keeps its soft resets."""

    def spiking(network):
        return [n for n in network.walk() if isinstance(n, es.LIF) and not isinstance(n, es.Readout)]

    def wrong_outputs(records):
        first = next(iter(records))
        records[first] = LayerRecord(records[first].outputs + 1, records[first].potentials)
        return records

    class Picky:
        name = "picky"

        def build(self, network):
            from eventsim.testing import Unsupported

            if any(n.reset == "hard" for n in spiking(network)):
                raise Unsupported("hard reset")
            broken = any(not n.strict for n in spiking(network))
            return Reference(wrong_outputs if broken else None).build(network)

    report = conform(Picky(), features=LINEAR, examples=40, gradients=False)
    failure = report.kinds[0].failure
    assert failure is not None and failure.error is None, str(report)
    neurons = spiking(failure.case.network)
    assert neurons and all(n.reset == "soft" for n in neurons) and any(not n.strict for n in neurons)
    assert "hard reset" not in str(failure)


def test_assert_conforms_fails_with_the_full_report_and_returns_it_when_conforming():
    report = assert_conforms(Reference(), features=LINEAR, examples=5, gradients=False)
    assert report.ok
    def off_by_one_ulp(records):
        first = next(name for name, r in records.items() if r.potentials is not None)
        r = records[first]
        records[first] = LayerRecord(r.outputs, np.nextafter(r.potentials, np.inf))
        return records

    with pytest.raises(AssertionError) as caught:
        assert_conforms(Reference(off_by_one_ulp), features=LINEAR, examples=5, gradients=False)
    text = str(caught.value)
    assert "DOES NOT CONFORM" in text and "potential differs" in text and "--replay es1." in text


def test_check_case_and_replay_give_the_same_comparison_as_the_report():
    def wrong_leak(records):
        return {name: LayerRecord(r.outputs, None if r.potentials is None else r.potentials * 0.5)
                for name, r in records.items()}

    report = conform(Reference(wrong_leak), features=LINEAR, examples=10, gradients=False)
    failure = report.failures[0]
    outcome = replay(failure.token, Reference(wrong_leak))
    assert outcome.status == "fails" and str(outcome.failure.comparison) == str(failure.comparison)
    case, kind, request = read_token(failure.token)
    assert kind == "dyadic forward" and request is None
    assert np.array_equal(case.spikes, failure.case.spikes) and repr(case.network) == repr(failure.case.network)
    for a, b in zip(case.network.walk(), failure.case.network.walk()):
        for what in ("weight", "bias"):
            assert np.array_equal(getattr(a, what, None), getattr(b, what, None))
    assert check_case(Reference(), case).status == "conforms"
    assert replay(failure.token, Reference()).ok


def test_a_token_round_trips_every_layer_kind_and_option_bit_for_bit():
    rng = np.random.default_rng(3)
    main_path = [es.Conv2d(2, 3, 3, padding=1, weight=rng.normal(size=(3, 2, 3, 3))),
                 es.LIF(np.array([0.5, 1.0, 1.5]), leak=float(np.exp(-0.01)), reset="soft", strict=False,
                        input_gain=0.3, reset_delayed=True),
                 es.Conv2d(3, 2, 3, padding=1, stride=2, weight=rng.normal(size=(2, 3, 3, 3)),
                           bias=rng.normal(size=2))]
    net = es.Network([
        es.IF(0.75, v_reset=-0.5), es.Residual(main_path, es.IF(1.0), skip=es.Identity(2)),
        es.SpikingAvgPool(1), es.MaxPool(1), es.SumPool(1), es.AvgPool(1, stride=1), es.Flatten(),
        es.Linear(18, 4, weight=rng.normal(size=(4, 18))), es.Readout(leak=0.5, input_gain=0.25),
    ], input_shape=(2, 5, 5), dtype=np.float64)
    spikes = (rng.random((4, 2, 2, 5, 5)) < 0.3).astype(np.float64)
    case = _case(net, spikes, "float")
    again, kind, _ = read_token(case_token(case, "float forward"))
    assert kind == "float forward" and repr(again.network) == repr(net)
    for a, b in zip(again.network.walk(), net.walk()):
        for what in ("weight", "bias", "_threshold"):
            x, y = getattr(a, what, None), getattr(b, what, None)
            assert np.array_equal(x, y) and np.asarray(x).dtype == np.asarray(y).dtype
    ours, theirs = reference_records(again.network, again.spikes), reference_records(net, spikes)
    assert all(np.array_equal(ours[k].potentials, theirs[k].potentials) for k in ours if ours[k].potentials is not None)


@pytest.mark.parametrize("token, message", [
    ("hello", "not a replay token"),
    ("es1.eNqrVkr", "damaged or incomplete"),
])
def test_a_bad_token_is_one_clear_line(token, message, capsys, monkeypatch):
    with pytest.raises(OptionError, match=message):
        read_token(token)
    monkeypatch.syspath_prepend(str(TESTS))
    assert main(["conform", "--candidate", "test_conform_api:Reference", "--replay", token]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_the_same_seed_gives_the_same_cases_and_a_random_seed_is_printed():
    def changed(records):
        first = next(iter(records))
        records[first] = LayerRecord(records[first].outputs * 0 + 1, records[first].potentials)
        return records

    a = conform(Reference(changed), features=LINEAR, examples=5, seed=7, gradients=False)
    b = conform(Reference(changed), features=LINEAR, examples=5, seed=7, gradients=False)
    assert a.failures[0].token == b.failures[0].token
    fresh = conform(Reference(), features=LINEAR, examples=2, seed=None, gradients=False)
    assert f"seed {fresh.seed}" in str(fresh)
    again = conform(Reference(), features=LINEAR, examples=2, seed=fresh.seed, gradients=False)
    assert again.seed == fresh.seed


def test_the_database_replays_a_stored_failure_first(tmp_path):
    """Found once with one seed, a failure stored in the database is found again with any seed and one example,
    where that seed alone finds nothing."""
    class RareBug:
        """Diverges only when the network's first Linear layer has exactly 5 outputs."""

        name = "rare"

        def build(self, network):
            fc = next(layer for layer in network.walk() if isinstance(layer, es.Linear))
            if fc.out_features != 5:
                return Reference().build(network)
            return Reference(lambda r: {k: LayerRecord(v.outputs, None if v.potentials is None else v.potentials + 1)
                                        for k, v in r.items()}).build(network)

    seed_alone = conform(RareBug(), features=LINEAR, examples=1, seed=1, gradients=False)
    assert seed_alone.ok  # seed 1's single case does not have 5 outputs
    found = conform(RareBug(), features=LINEAR, examples=60, seed=0, gradients=False, database=tmp_path)
    assert not found.ok
    again = conform(RareBug(), features=LINEAR, examples=1, seed=1, gradients=False, database=str(tmp_path))
    assert not again.ok and again.failures[0].token == found.failures[0].token
    with pytest.raises(OptionError, match="database must be"):
        conform(RareBug(), features=LINEAR, examples=1, database=3)


def test_a_candidate_value_that_is_eventsims_rounded_to_float32_is_named_so():
    """The shipped adapters' old defect: float64 weights passed through float32 (0.1 -> 0.10000000149011612)."""
    net = es.Network([es.Linear(1, 1, weight=np.array([[0.1]])), es.LIF(1.0, leak=0.5)], input_shape=(1,),
                     dtype=np.float64)
    spikes = np.ones((2, 1, 1))

    def rounded_weights(records):
        return {k: LayerRecord(v.outputs, v.potentials.astype(np.float32).astype(np.float64))
                for k, v in records.items()}

    comparison = compare_forward(net, spikes, Reference(rounded_weights).build(net).run(spikes), exact=False)
    assert not comparison.ok
    assert "exactly eventsim's rounded to float32" in str(comparison)
    off = compare_forward(net, spikes, Reference(lambda r: {k: LayerRecord(v.outputs, v.potentials * 1.01)
                                                          for k, v in r.items()}).build(net).run(spikes),
                          exact=False)
    assert not off.ok and "float32" not in str(off)


def test_the_pytest_plugin_loads_without_importing_eventsim():
    code = ("import sys, pytest_eventsim; "
            "heavy = [m for m in ('eventsim', 'numba', 'hypothesis', 'numpy', 'torch') if m in sys.modules]; "
            "print(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    from importlib.metadata import entry_points

    assert any(e.value == "pytest_eventsim" for e in entry_points(group="pytest11"))


PLUGIN_OPTIONS = '''
import pytest


@pytest.mark.eventsim_conformance(examples=50, gradients=False)
class TestOptions:
    @pytest.mark.eventsim_conformance(examples=7)
    def test_the_closest_marker_wins_and_the_command_line_overrides(self, conformance):
        assert conformance.options == {"examples": 7, "gradients": False}
        assert conformance.overrides == {"examples": 3, "seed": None, "database": "db"}
'''


def test_the_plugin_merges_marker_and_command_line_options(tmp_path):
    (tmp_path / "test_options.py").write_text(PLUGIN_OPTIONS)
    run = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_options.py"]
    done = subprocess.run(run + ["--eventsim-examples", "3", "--eventsim-seed", "random", "--eventsim-database", "db"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    done = subprocess.run(run + ["--eventsim-seed", "soon"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode != 0 and "--eventsim-seed must be an integer or 'random', got 'soon'" in done.stderr


def test_the_fixture_checks_one_case_from_a_token():
    from pytest_eventsim import Conformance

    def halved(records):
        return {k: LayerRecord(v.outputs, None if v.potentials is None else v.potentials * 0.5)
                for k, v in records.items()}

    token = conform(Reference(halved), features=LINEAR, examples=10, gradients=False).failures[0].token
    conformance = Conformance({}, {})
    assert conformance.case(Reference(), token).status == "conforms"
    with pytest.raises(AssertionError, match="potential differs"):
        conformance.case(Reference(halved), token)
    with pytest.raises(AssertionError, match="DOES NOT CONFORM"):
        conformance(Reference(halved), features=LINEAR, examples=3, gradients=False)


def _two_layer_gradient_case():
    from eventsim.learning.surrogates import FastSigmoid
    from eventsim.testing import GradientRequest

    rng = np.random.default_rng(5)
    net = es.Network([es.Linear(4, 3, weight=rng.normal(size=(3, 4))), es.LIF(0.5, leak=0.75),
                      es.Linear(3, 2, weight=rng.normal(size=(2, 3))), es.Readout(leak=0.5)],
                     input_shape=(4,), dtype=np.float64)
    spikes = (rng.random((6, 2, 4)) < 0.5).astype(np.float64)
    request = GradientRequest(grad_output=rng.normal(size=(2, 2)), surrogate=FastSigmoid())
    return net, spikes, request


def test_a_gradient_rounded_to_float32_is_named_so():
    from eventsim.testing import compare_gradients, reference_gradients

    net, spikes, request = _two_layer_gradient_case()
    reference = reference_gradients(net, spikes, request)
    rounded = {k: v.astype(np.float32).astype(np.float64) for k, v in reference.items()}
    comparison = compare_gradients(net, reference, rounded)
    assert not comparison.ok and "exactly eventsim's rounded to float32" in str(comparison)
    assert comparison.first_layer == "fc2"  # the output's layer: nothing above it


@pytest.mark.parametrize("seed", range(5))
def test_the_backward_divergence_named_is_the_first_in_backward_order(seed):
    """Two planted errors in dL/dU: the one reported is at the later step, at the same step in the later layer,
    then the lower sample and neuron."""
    from eventsim.testing import compare_potential_gradients, reference_potential_gradients

    net, spikes, request = _two_layer_gradient_case()
    reference = reference_potential_gradients(net, spikes, request)
    rng = np.random.default_rng(seed)
    names = list(reference)
    planted = []
    candidate = {k: v.copy() for k, v in reference.items()}
    for _ in range(2):
        name = names[rng.integers(len(names))]
        at = tuple(int(rng.integers(n)) for n in reference[name].shape)
        candidate[name][at] += 1.0
        planted.append((-at[0], -names.index(name), at[1:], name, at))
    *_, name, at = min(planted)
    d = compare_potential_gradients(net, reference, candidate)
    assert (d.layer, d.step, d.sample, d.neuron) == (name, at[0] + 1, at[1], at[2:])
    assert d.candidate == d.reference + 1.0
    assert compare_potential_gradients(net, reference, reference) is None
    assert d.path == (() if d.layer == "readout1" else ("fc2",))
