"""The pytest plugin of eventsim's oracle kit: the ``conformance`` fixture and its marker.

Registered as a ``pytest11`` entry point, so a framework's test suite gets it
by installing eventsim (with its ``test`` extra)::

    @pytest.mark.eventsim_conformance(examples=50)
    def test_my_framework_conforms(conformance):
        conformance(MyCandidate())        # fails the test with the full report

``conformance(candidate, **options)`` is
:func:`eventsim.testing.assert_conforms`; ``conformance.case(candidate,
case_or_token)`` checks one case (:func:`eventsim.testing.check_case`, or a
replay token). Options, from weakest to strongest: the defaults of
:func:`eventsim.testing.conform`, the marker's keywords (the closest marker
wins), the keywords of the call, and the command line's
``--eventsim-examples``, ``--eventsim-seed`` (an integer or ``random``) and
``--eventsim-database`` (a directory for hypothesis' example database),
which let one run scale up or reseed every conformance test without editing
them. ``-m eventsim_conformance`` selects the marked tests.

pytest loads this module in every session of an environment where eventsim
is installed, eventsim's own included, so it imports nothing but pytest when
loaded: eventsim (and with it Numba and hypothesis) is imported when a test
asks for the fixture. It is a top-level package for the same reason:
importing ``eventsim.anything`` runs ``eventsim/__init__.py``, which loads
the simulator.
"""

from __future__ import annotations

from typing import Any

import pytest

MARKER = "eventsim_conformance"
_OVERRIDES = pytest.StashKey[dict]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("eventsim", "eventsim conformance (the oracle kit)")
    group.addoption("--eventsim-examples", type=int, default=None, metavar="N",
                    help="cases per kind in every conformance test (overrides markers and calls)")
    group.addoption("--eventsim-seed", default=None, metavar="SEED",
                    help="hypothesis seed of every conformance test: an integer or 'random'")
    group.addoption("--eventsim-database", default=None, metavar="DIR",
                    help="hypothesis example database for conformance tests: failing cases are retried first")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(**options): options of the 'conformance' fixture (features, examples, seed, "
                   "gradients, surrogates, database), as eventsim.testing.conform takes them")
    config.stash[_OVERRIDES] = _command_line(config)  # a bad option stops the session before any test runs


def _command_line(config: pytest.Config) -> dict[str, Any]:
    options: dict[str, Any] = {}
    if config.getoption("eventsim_examples") is not None:
        options["examples"] = config.getoption("eventsim_examples")
    seed = config.getoption("eventsim_seed")
    if seed is not None:
        try:
            options["seed"] = None if seed == "random" else int(seed)
        except ValueError:
            raise pytest.UsageError(f"--eventsim-seed must be an integer or 'random', got {seed!r}") from None
    if config.getoption("eventsim_database") is not None:
        options["database"] = config.getoption("eventsim_database")
    return options


class Conformance:
    """What the ``conformance`` fixture gives: the oracle with this test's options.

    ``options``: the marker's keywords; ``overrides``: the command line's,
    which win over a call's keywords.
    """

    def __init__(self, options: dict[str, Any], overrides: dict[str, Any]) -> None:
        self.options, self.overrides = options, overrides

    def __call__(self, candidate: Any, **options: Any) -> Any:
        """Run the conformance suite; fail the test with the full report unless the candidate conforms."""
        __tracebackhide__ = True
        from eventsim.testing import assert_conforms

        return assert_conforms(candidate, **{**self.options, **options, **self.overrides})

    def case(self, candidate: Any, case: Any, **options: Any) -> Any:
        """Check one case (a NetCase or a replay token); fail the test with the comparison unless it conforms."""
        __tracebackhide__ = True
        from eventsim.testing import check_case, read_token

        if isinstance(case, str):
            case, _, request = read_token(case)
            options.setdefault("request", request)
        outcome = check_case(candidate, case, **options)
        if not outcome.ok:
            raise AssertionError("\n" + str(outcome))
        return outcome


@pytest.fixture
def conformance(request: pytest.FixtureRequest) -> Conformance:
    """eventsim's oracle for this test: ``conformance(candidate)`` (see the module docstring)."""
    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # the closest marker is applied last
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keywords only (examples=..., features=...)")
        options.update(marker.kwargs)
    return Conformance(options, request.config.stash[_OVERRIDES])
