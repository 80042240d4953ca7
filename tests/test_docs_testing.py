"""docs/testing.md runs: its candidate conforms, its pytest example passes, its features build.

The code blocks of the guide are executed as they stand, so the guide cannot
drift from the kit. A copy of the doc's candidate with the leak applied to the
input as well must be caught, so the doc's example is a real test.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from eventsim.testing import Features, conform

DOC = Path(__file__).resolve().parents[1] / "docs" / "testing.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def _namespace() -> dict:
    namespace: dict = {"__name__": "docs_testing"}
    for block in _blocks():
        exec(compile(block, str(DOC), "exec"), namespace)
    return namespace


def test_the_guide_has_the_candidate_the_pytest_example_and_the_features():
    blocks = _blocks()
    assert len(blocks) == 3
    assert "class NumpyCandidate" in blocks[0] and "def test_numpy_candidate_conforms" in blocks[1]
    assert len(blocks[0].splitlines()) <= 60


def test_the_guide_candidate_conforms_and_its_test_passes():
    namespace = _namespace()
    namespace["test_numpy_candidate_conforms"]()
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
