"""docs/testing.md runs: its candidate conforms, its pytest file passes through the plugin, its features build.

The code blocks of the guide are executed as they stand, so the guide cannot
drift from the kit. A copy of the doc's candidate with the leak applied to the
input as well must be caught, and the doc's pytest file, run by pytest in a
fresh process (the plugin loaded from its entry point, as in a framework's own
suite), must fail when its framework fires on ``>=``: the doc's examples are
real tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from eventsim.testing import Features, conform

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _namespace() -> dict:
    """The guide's candidate and features (the pytest file runs in its own process)."""
    namespace: dict = {"__name__": "docs_testing"}
    for block in _blocks():
        if "def test_" not in block:
            exec(compile(block, str(DOC), "exec"), namespace)
    return namespace


def _pytest_file(tmp_path: Path, code: str) -> subprocess.CompletedProcess:
    path = tmp_path / "test_tinysnn_conformance.py"
    path.write_text(code)
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", path.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=600)


def test_the_guide_has_the_candidate_the_pytest_file_and_the_features():
    blocks = _blocks()
    assert len(blocks) == 3
    assert "class NumpyCandidate" in blocks[0] and "def test_tinysnn_conforms(conformance)" in blocks[1]
    assert len(blocks[0].splitlines()) <= 60


def test_the_guide_pytest_file_runs_through_the_plugin_and_catches_a_defect(tmp_path):
    code = _blocks()[1]
    done = _pytest_file(tmp_path, code)
    assert done.returncode == 0 and "1 passed" in done.stdout, done.stdout + done.stderr
    fires_on_equal = code.replace("(v > self.threshold)", "(v >= self.threshold)")
    assert fires_on_equal != code
    done = _pytest_file(tmp_path, fires_on_equal)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DOES NOT CONFORM" in done.stdout and "output differs" in done.stdout
    assert "eventsim conform --candidate test_tinysnn_conformance:TinySNNCandidate --replay es1." in done.stdout


def test_the_guide_candidate_conforms():
    namespace = _namespace()
    report = conform(namespace["NumpyCandidate"](), examples=20)
    assert report.ok and report.kinds[2].skipped, str(report)
    assert namespace["snn_framework"].layers == Features().layers - {"residual", "spiking_avg"}
    assert namespace["hard_reset_only"].resets == {"hard"} and namespace["with_conventions"].reset_delayed


def test_the_guide_candidate_with_a_leaky_input_is_caught():
    namespace = _namespace()
    correct = namespace["neurons"]

    def leaky_input(layer, current):
        return correct(layer, current * np.asarray(layer.leak, current.dtype))

    namespace["neurons"] = leaky_input  # the name NumpyModel.run calls
    report = conform(namespace["NumpyCandidate"](), examples=20)
    assert not report.ok
    d = report.failures[0].comparison.divergence
    assert d.kind == "potential" and d.step >= 1
