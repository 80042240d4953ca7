"""A stand-in framework adapter for tests/test_conform_matrix.py: TorchCandidate and a planted defect.

It declares one row that conforms, one whose planted divergence is expected
(a "defect" with a reproducer), one whose divergence is not expected, and
one that expects a divergence the candidate does not have.
"""

from broken_candidates import FiresOnEqual

from eventsim.testing.matrix_rows import Expected, Row
from eventsim.testing.strategies import Features
from eventsim.testing.torch_candidate import TorchCandidate

SMALL = Features(layers=frozenset({"linear"}), neurons=frozenset({"if"}), weights=frozenset({"dyadic"}))


def candidate(planted: bool = False):
    return FiresOnEqual() if planted else TorchCandidate()


def reproducer() -> list[str]:
    return ["U = theta = 1.0: the framework fires (it compares U >= theta)"]


MATRIX_ROWS = (
    Row("IF, strict", SMALL.without(">="), gradients=False),
    Row("IF, fires on equal", SMALL.without(">="), {"planted": True}, gradients=False,
        expected=Expected("defect", "It fires on U == theta.", reproducer="matrix_adapter:reproducer")),
    Row("IF, unexpected", SMALL.without(">="), {"planted": True}, gradients=False),
    Row("IF, expects in vain", SMALL.without(">="), gradients=False,
        expected=Expected("convention", "Resets to 0.5.", flags="IF(v_reset=0.5)")),
    Row("IF on a GPU", SMALL, gradients=False, device="cuda"),
)
