"""The conformance matrix runner (eventsim.testing.matrix): verdicts, JSON, the page, the command.

A stand-in framework (tests/matrix_adapter.py) declares rows with known
outcomes: TorchCandidate conforms, a planted defect (firing on U == theta)
diverges where it is expected and where it is not, and a row expects a
divergence that never comes.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from eventsim.cli import main  # noqa: E402
from eventsim.testing import matrix as matrix_module  # noqa: E402
from eventsim.testing.matrix import Framework, conformance_page, run_matrix  # noqa: E402
from eventsim.testing.matrix_rows import Expected  # noqa: E402

STAND_IN = Framework("stand-in", "matrix_adapter", "torch", "torch", "pip install torch")
ABSENT = Framework("absent", "matrix_adapter", "no_such_package_xyz", "no-such-package", "pip install nothing")


@pytest.fixture(scope="module")
def matrix():
    return run_matrix((STAND_IN, ABSENT), examples=15, seed=1, progress=None)


def verdicts(matrix, framework="stand-in"):
    return {r.row.name: r.verdict for r in matrix.rows if r.framework == framework}


def test_each_row_gets_the_verdict_its_outcome_and_expectation_give(matrix):
    assert verdicts(matrix) == {"IF, strict": "conforms", "IF, fires on equal": "defect",
                                "IF, unexpected": "diverges", "IF, expects in vain": "expected divergence not seen",
                                "IF on a GPU": "not run"}
    assert set(verdicts(matrix, "absent").values()) == {"not installed"}
    assert not matrix.ok  # the unexpected divergence and the missing one fail the matrix


def test_a_divergence_carries_its_shrunk_case_and_replay_token(matrix):
    from eventsim.testing.replay import replay

    row = next(r for r in matrix.rows if r.row.name == "IF, unexpected")
    cell = next(c for c in row.cells if c.outcome == "diverges")
    assert cell.token and "FAILURE" in cell.divergence
    assert not replay(cell.token, matrix_module.importlib.import_module("matrix_adapter").candidate(planted=True)).ok


def test_the_json_result_and_the_page_hold_every_row(matrix, tmp_path):
    data = json.loads(json.dumps(matrix.to_json()))
    assert data["examples"] == 15 and len(data["rows"]) == 10
    defect = next(r for r in data["rows"] if r["row"] == "IF, fires on equal")
    assert defect["expected"]["kind"] == "defect"
    assert defect["reproducer_output"] == ["U = theta = 1.0: the framework fires (it compares U >= theta)"]
    page = conformance_page(matrix, (STAND_IN, ABSENT))
    assert "| stand-in | IF, strict | ok 15 |" in page
    assert "framework defect" in page and "U = theta = 1.0" in page and "pip install nothing" in page


def test_a_defect_needs_a_reproducer():
    with pytest.raises(Exception, match="reproducer"):
        Expected("defect", "no reproducer given")


def test_the_command_writes_the_page_and_the_json_and_exits_1_on_an_unexpected_outcome(tmp_path, monkeypatch):
    monkeypatch.setattr(matrix_module, "FRAMEWORKS", (STAND_IN,))
    page, result = tmp_path / "conformance.md", tmp_path / "conformance.json"
    status = main(["conform-matrix", "--examples", "5", "--markdown", str(page), "--json", str(result)])
    assert status == 1
    assert "## The matrix" in page.read_text()
    assert json.loads(result.read_text())["rows"][0]["row"] == "IF, strict"


def test_an_unknown_framework_is_one_line(capsys):
    assert main(["conform-matrix", "--only", "nosuch"]) == 2
    assert "unknown framework" in capsys.readouterr().err
