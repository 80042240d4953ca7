"""Every adapter eventsim ships passes ``eventsim conform`` on the features it declares, and its matrix rows go
as it declares them.

200 cases of each kind, as the command line runs them: dyadic forward
(bit for bit) and float forward (within the rounding bound), float32 and
float64, and bptt gradients in float64 with the framework's own surrogates
and reset convention (snnTorch detaches its reset, Norse does not). Norse
runs in eventsim's "euler" arithmetic form, with leaks whose 1 / (1 - lam)
is no power of two among them.

Then every row of each adapter's ``MATRIX_ROWS`` (eventsim/testing/matrix_rows.py)
with a few cases per kind, as the conformance matrix runs it.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

pytest.importorskip("torch")

from eventsim.cli import main  # noqa: E402
from eventsim.testing.conform import load_candidate  # noqa: E402

EXAMPLES = 200
ADAPTERS = [("eventsim.testing.snntorch_adapter:SnnTorchCandidate", "snntorch"),
            ("eventsim.testing.norse_adapter:NorseCandidate", "norse.torch")]


@pytest.mark.parametrize("spec, framework", ADAPTERS, ids=["snntorch", "norse"])
def test_a_shipped_adapter_conforms_from_the_command_line(spec, framework, capsys):
    pytest.importorskip(framework)
    features = load_candidate(spec).features
    assert features.dtypes == {np.dtype(np.float32), np.dtype(np.float64)}
    assert main(["conform", "--candidate", spec, "--examples", str(EXAMPLES)]) == 0
    out = capsys.readouterr().out
    assert "CONFORMS" in out and "DOES NOT CONFORM" not in out, out
    for kind in ("dyadic forward", "float forward", "bptt gradients"):
        line = re.search(rf"{kind} +(\d+) cases conform(?:, (\d+) compared up to a permitted spike flip)?", out)
        assert line is not None, out
        assert int(line.group(1)) + int(line.group(2) or 0) == EXAMPLES, out


# ------------------------------------------------------------------ the matrix rows
# Each adapter's rows (eventsim/testing/matrix_rows.py), as the matrix runs them: float32 then float64,
# gradients in float64, here with a few cases per kind so that a framework release that changes its
# semantics fails the suite. A conforming row must conform; a row with an expected divergence must show
# one (its features are chosen so that the first few cases do).
ROW_EXAMPLES = 10
DIVERGING_EXAMPLES = 20
MODULES = [("eventsim.testing.snntorch_adapter", "snntorch"), ("eventsim.testing.norse_adapter", "norse.torch")]


def _rows(expected: bool) -> list:
    import importlib

    params = []
    for module, framework in MODULES:
        adapter = importlib.import_module(module)
        params += [pytest.param(adapter, framework, row, id=f"{framework.split('.')[0]}: {row.name}")
                   for row in adapter.MATRIX_ROWS if (row.expected is not None) == expected]
    return params


def _reports(adapter, row, examples: int) -> list:
    from eventsim.testing.conform import conform

    return [conform(adapter.candidate(**row.options), features=row.features.set(f"dtypes={dtype}"),
                    examples=examples, seed=0, gradients=row.gradients and dtype == "float64")
            for dtype in ("float32", "float64")]


@pytest.mark.parametrize("adapter, framework, row", _rows(expected=False))
def test_a_conforming_row_conforms(adapter, framework, row):
    pytest.importorskip(framework)
    reports = _reports(adapter, row, ROW_EXAMPLES)
    for report in reports:
        assert not report.failures, str(report)
    assert sum(report.compared for report in reports) > 0, "\n".join(map(str, reports))


@pytest.mark.parametrize("adapter, framework, row", _rows(expected=True))
def test_a_row_with_an_expected_divergence_shows_it(adapter, framework, row):
    pytest.importorskip(framework)
    reports = _reports(adapter, row, DIVERGING_EXAMPLES)
    assert any(report.failures for report in reports), "\n".join(map(str, reports))
