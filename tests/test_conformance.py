"""The conformance suite on the PyTorch candidate, correct and with planted defects.

TorchCandidate must conform: exactly on dyadic cases, within the rounding
bound on float cases, and in its ``bptt`` gradients. Each broken candidate of
tests/broken_candidates.py must be caught, and the first divergence the report
names must be a position where the planted defect acts (judged from eventsim's
own records there).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

import broken_candidates as broken  # noqa: E402
from eventsim.cli import main  # noqa: E402
from eventsim.testing import (  # noqa: E402
    BackwardDivergence, ForwardComparison, GradientComparison, conform, reference_records,
)
from eventsim.testing.strategies import Features  # noqa: E402
from eventsim.testing.torch_candidate import TorchCandidate  # noqa: E402

TESTS = Path(__file__).parent
EVERYTHING = Features().including("input_gain", "reset_delayed")
#: Planted defects are looked for on dyadic cases only, where every one must show (and shrinking is cheaper).
DYADIC = Features().without("float")


def test_the_torch_candidate_conforms():
    report = conform(TorchCandidate(), features=EVERYTHING, examples=25)
    assert report.ok, str(report)
    assert [k.kind for k in report.kinds] == ["dyadic forward", "float forward", "bptt gradients"]
    for kind in report.kinds:
        assert kind.skipped is None and kind.passed + kind.not_comparable == 25
    assert report.kinds[0].not_comparable == 0  # dyadic cases never flip
    assert "CONFORMS" in str(report)


@pytest.mark.parametrize("defect", [broken.FiresOnEqual, broken.ResetOneStepLate, broken.LeakOnInput,
                                    broken.ResetNotLeaked, broken.ResetToZero])
def test_a_forward_defect_is_caught_where_it_acts(defect):
    report = conform(defect(), features=DYADIC, examples=15, gradients=False)
    assert not report.ok
    dyadic = report.kinds[0]
    assert dyadic.failure is not None, str(report)
    failure = dyadic.failure
    assert isinstance(failure.comparison, ForwardComparison)
    d = failure.comparison.divergence
    reference = reference_records(failure.case.network, failure.case.spikes)
    assert defect.acts_at(d, reference, failure.case.network), str(report)
    text = str(report)
    assert f"layer {d.layer!r}" in text and f"step {d.step} of" in text and f"neuron {d.neuron}" in text
    assert f"seed={failure.case.seed}" in text and "DOES NOT CONFORM" in text


#: Linear pools between weighted layers, where a wrong pooling adjoint changes a weight gradient.
POOLS = Features(layers={"conv", "linear", "sum", "avg", "spiking_avg"}).without("float")


@pytest.mark.parametrize("defect, features, examples", [
    (broken.SteeperSurrogate, DYADIC, 10),
    (broken.PoolDropsZeroWindows, POOLS, 20),
    (broken.ResetNotDetached, DYADIC, 15),
])
def test_a_backward_defect_is_located_where_it_acts(defect, features, examples):
    report = conform(defect(), features=features, examples=examples)
    assert report.kinds[0].ok, str(report)  # the forward pass is untouched
    failure = report.kinds[2].failure
    assert failure is not None and isinstance(failure.comparison, GradientComparison), str(report)
    d = failure.comparison.backward
    assert isinstance(d, BackwardDivergence), str(report)
    reference = reference_records(failure.case.network, failure.case.spikes)
    assert defect.acts_at_backward(d, failure, reference), str(report)
    text = str(report)
    assert f"at layer {d.layer!r}" in text and f"step {d.step} of {d.steps}" in text
    assert f"eventsim {d.reference!r}, candidate {d.candidate!r}" in text
    assert "first diverging layer from the output" in text and failure.token in text


def test_a_wrong_surrogate_slope_is_caught_in_the_gradients():
    report = conform(broken.SteeperSurrogate(), features=DYADIC, examples=10)
    forward, gradients = report.kinds[0], report.kinds[2]
    assert forward.ok and forward.passed == 10  # the forward pass is untouched
    failure = gradients.failure
    assert isinstance(failure.comparison, GradientComparison) and not failure.comparison.ok
    assert "straight_through" not in failure.request  # the defect cannot act on a constant surrogate
    assert failure.comparison.worst.key in str(report)


def test_the_cli_exits_1_on_a_divergence_and_0_when_conforming(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    assert main(["conform", "--candidate", "broken_candidates:FiresOnEqual", "--examples", "8", "--no-gradients"]) == 1
    out = capsys.readouterr().out
    assert "DOES NOT CONFORM" in out and "output differs: layer" in out
    good = ["--candidate", "eventsim.testing.torch_candidate:TorchCandidate", "--examples", "4",
            "--without", "residual", "float32"]
    assert main(["conform", *good]) == 0
    out = capsys.readouterr().out
    assert "CONFORMS" in out and "residual" not in out.split("features:")[1].split("\n")[0]


def test_the_cli_replays_a_reported_case(capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    report = conform(broken.FiresOnEqual(), features=DYADIC, examples=8, gradients=False)
    failure = report.failures[0]
    assert f"eventsim conform --candidate broken_candidates:FiresOnEqual --replay {failure.token}" in str(report)
    assert main(["conform", "--candidate", "broken_candidates:FiresOnEqual", "--replay", failure.token]) == 1
    out = capsys.readouterr().out
    assert all(line in out for line in str(failure.comparison.divergence).splitlines())
    good = "eventsim.testing.torch_candidate:TorchCandidate"
    assert main(["conform", "--candidate", good, "--replay", failure.token]) == 0
    assert "dyadic forward: conforms" in capsys.readouterr().out


def test_the_eventsim_command_runs_conform():
    done = subprocess.run([sys.executable, "-m", "eventsim.cli", "conform", "--candidate",
                           "broken_candidates:LeakOnInput", "--examples", "10", "--no-gradients"],
                          cwd=TESTS, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr
    assert "potential differs" in done.stdout


@pytest.mark.parametrize("args, message", [
    (["--candidate", "no_such_module:x"], "cannot import"),
    (["--candidate", "broken_candidates"], "module:factory"),
    (["--candidate", "broken_candidates:Missing"], "no attribute 'Missing'"),
    (["--candidate", "broken_candidates:FiresOnEqual", "--without", "wings"], "unknown feature 'wings'"),
])
def test_cli_usage_errors_exit_2(args, message, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    assert main(["conform", *args]) == 2
    assert message in capsys.readouterr().err
