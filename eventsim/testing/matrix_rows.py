"""What a framework adapter declares for the conformance matrix: its rows and their expected outcomes.

docs/conformance.md. An adapter module (``eventsim/testing/<framework>_adapter.py``)
takes part in the matrix by defining:

- ``candidate(**options)``: a candidate (:mod:`eventsim.testing.protocol`)
  configured by a row's ``options`` (a reset mechanism, a backend, a step
  mode, ...);
- ``MATRIX_ROWS``: a tuple of :class:`Row`, one per convention or feature set
  the framework offers;

and one line in :data:`eventsim.testing.matrix.FRAMEWORKS`. Every row runs
the conformance suite (:func:`eventsim.testing.conform.conform`) in float32
and in float64, gradients in float64.

A row that does not conform says why in its :class:`Expected`: a documented
convention the framework follows and eventsim can state (the eventsim
flags that reproduce it), a rounding form (an ``arithmetic`` eventsim
computes literally), or a defect of the framework, with a reproducer that
uses the framework alone, so that it can be reported upstream.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from eventsim.errors import OptionError
from eventsim.testing.strategies import Features

#: How a row that does not conform is classified (docs/conformance.md).
CLASSES = ("convention", "rounding", "defect")


@dataclass(frozen=True)
class Expected:
    """Why a row is expected to diverge from eventsim.

    Attributes
    ----------
    kind : {"convention", "rounding", "defect"}
    note : str
        What differs, in one or two sentences, with its source (the
        framework's code or docs, by file and version).
    flags : str
        For a convention or a rounding form: the eventsim options that
        reproduce the framework (e.g. ``LIF(..., reset_delayed=True)``), or
        "" where eventsim has none.
    reproducer : str
        For a defect: ``"module:function"`` of a function that shows it with
        the framework alone (no eventsim) and returns the lines it printed.
    """

    kind: str
    note: str
    flags: str = ""
    reproducer: str = ""

    def __post_init__(self) -> None:
        if self.kind not in CLASSES:
            raise OptionError(f"Expected.kind must be one of {CLASSES}, got {self.kind!r}")
        if self.kind == "defect" and not self.reproducer:
            raise OptionError(f"a defect needs a framework-only reproducer ('module:function'): {self.note!r}")


@dataclass(frozen=True)
class Row:
    """One line of a framework's part of the matrix.

    Attributes
    ----------
    name : str
        What the row tests, in the framework's terms (e.g. ``"IAF,
        MembraneSubtract"``).
    features : Features
        What the row's cases may contain.
    options : dict
        Keyword arguments of the adapter's ``candidate(**options)``.
    expected : Expected or None
        None: the row is expected to conform.
    gradients : bool
        Whether the row compares ``bptt`` gradients (the framework's autograd).
    device : str
        "cpu", or "cuda" for a GPU backend (not run on a machine without one).
    """

    name: str
    features: Features
    options: dict = field(default_factory=dict)
    expected: Expected | None = None
    gradients: bool = True
    device: str = "cpu"
