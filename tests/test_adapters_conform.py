"""Every adapter eventsim ships passes ``eventsim conform`` on the features it declares.

200 cases of each kind, as the command line runs them: dyadic forward
(bit for bit) and float forward (within the rounding bound), float32 and
float64, and bptt gradients in float64 with the framework's own surrogates
and reset convention (snnTorch detaches its reset, Norse does not). Norse
runs in eventsim's "euler" arithmetic form, with leaks whose 1 / (1 - lam)
is no power of two among them.
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
