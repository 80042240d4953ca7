"""Every installed framework's conforming matrix rows, with a small example count, in every CI run.

docs/conformance.md. The full matrix (200 examples per kind) is
`eventsim conform-matrix`; here each row that its adapter declares
conforming runs 5 examples per kind and dtype, so that a framework release
that changes its semantics fails eventsim's tests loudly. A framework that
is not installed skips its rows, naming it.
"""

from __future__ import annotations

import importlib

import pytest

from eventsim.testing.matrix import FRAMEWORKS, installed_version

EXAMPLES = 5


def _rows():
    for framework in FRAMEWORKS:
        adapter = importlib.import_module(framework.adapter)
        for row in adapter.MATRIX_ROWS:
            if row.expected is None and row.device == "cpu":
                yield pytest.param(framework, row, id=f"{framework.name}: {row.name}")


@pytest.mark.parametrize("framework, row", list(_rows()))
def test_a_conforming_row_conforms(framework, row):
    pytest.importorskip("torch")
    if installed_version(framework) is None:
        pytest.skip(f"needs {framework.name} ({framework.install})")
    from eventsim.testing.conform import conform

    adapter = importlib.import_module(framework.adapter)
    compared = 0
    for dtype in ("float32", "float64"):
        report = conform(adapter.candidate(**row.options), features=row.features.set(f"dtypes={dtype}"),
                         examples=EXAMPLES, seed=0, gradients=row.gradients and dtype == "float64")
        assert not report.failures, f"{framework.name} {row.name} ({dtype}):\n{report}"
        compared += report.compared
    assert compared, f"{framework.name} {row.name}: every case declined in both dtypes"  # as the matrix judges
