"""The conformance suite: generated cases, a candidate, eventsim, and a report.

:func:`conform` runs three kinds of cases through a candidate
(:mod:`eventsim.testing.protocol`) and compares every one with eventsim
(:mod:`eventsim.testing.compare`):

- ``dyadic forward``: dyadic weights, spikes and potentials equal bit for bit;
- ``float forward``: general float weights, within the rounding bound;
- ``bptt gradients``: float64 networks, several surrogates, ``detach_reset``
  on and off, gradients within ``GRADIENT_RTOL`` of their scale (compare.py).

The rounding bound does not model the state options, recurrent blocks and
delays (``STATE_FEATURES``); cases with float weights leave them out, and
they are compared on dyadic cases, exactly.

Cases come from hypothesis (:mod:`eventsim.testing.strategies`), so the first
failure is shrunk to a minimal case before it is reported, with a token that
replays it (:mod:`eventsim.testing.replay`). Conformance cases have no dropout
(the forward pass is inference).

A candidate declines a case it cannot express by raising
:class:`~eventsim.testing.protocol.Unsupported` from ``build``, ``run`` or
``gradients``. A declined case counts as a passing example for hypothesis:
it is never shrunk towards, and it spends one of the ``examples`` of its kind
(rejecting it instead would make a candidate that declines most cases run
many times longer, until hypothesis gives up on the filter). The report
counts declined cases per reason; a run in which no case at all was
compared is not a pass.

:func:`check_case` is the single-case check every kind is made of, and
:func:`assert_conforms` the pytest-first form of :func:`conform`.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import numpy as np
from hypothesis import HealthCheck, Phase, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from hypothesis.errors import Flaky

from eventsim.errors import OptionError
from eventsim.extras import missing_extra
from eventsim.testing.compare import (
    ForwardComparison, GradientComparison, compare_forward, compare_gradients, reference_gradients, reference_records,
)
from eventsim.testing.protocol import Candidate, GradientRequest, Unsupported
from eventsim.testing.replay import case_token
from eventsim.testing.strategies import POOL_KINDS, STATE_FEATURES, Features, NetCase, deep_cases, net_cases

KINDS = ("dyadic forward", "float forward", "bptt gradients")
#: Declined reasons a report lists per kind; the rest are summed into one line.
SHOWN_REASONS = 8


def candidate_spec(candidate: Any) -> str:
    """``module:Class`` of a candidate whose class ``eventsim conform --candidate`` can import, else a placeholder."""
    cls = type(candidate)
    if cls.__module__ == "__main__" or "<locals>" in cls.__qualname__:
        return "<module:factory>"
    return f"{cls.__module__}:{cls.__qualname__}"


@dataclass(frozen=True)
class CaseFailure:
    """A failing case: the case, and the comparison or the error that failed it.

    ``token`` rebuilds the case exactly (:mod:`eventsim.testing.replay`);
    ``str()`` ends with the commands that replay it through the candidate.
    """

    kind: str
    case: NetCase | None
    comparison: ForwardComparison | GradientComparison | None = None
    error: str | None = None
    gradient_request: GradientRequest | None = None
    candidate: str = "<module:factory>"

    @property
    def request(self) -> str | None:
        """The gradient request, as the report prints it (None for forward cases)."""
        r = self.gradient_request
        return None if r is None else f"surrogate {r.surrogate!r}, detach_reset={r.detach_reset}"

    @property
    def token(self) -> str | None:
        """The replay token of the case (None when there is no single case, e.g. a flaky candidate)."""
        return None if self.case is None else case_token(self.case, self.kind, self.gradient_request)

    def reproducer(self) -> str:
        """How to run this case again: the command line and the Python call."""
        token = self.token
        if token is None:
            return ""
        return (f"reproduce: eventsim conform --candidate {self.candidate} --replay {token}\n"
                f"   Python: print(eventsim.testing.replay({token!r}, candidate))")

    def __str__(self) -> str:
        lines = [f"FAILURE in {self.kind}" + (f"; the shrunk case:\n{_indent(self.case.describe())}" if self.case else "")]
        if self.request:
            lines.append(f"  gradient request: {self.request}")
        if self.error:
            lines.append(f"  the candidate failed: {self.error}")
        if self.comparison is not None:
            lines.append(_indent(str(self.comparison)))
        if self.case is not None:
            lines.append(_indent(self.reproducer()))
        return "\n".join(lines)


@dataclass(frozen=True)
class CaseOutcome:
    """What :func:`check_case` found on one case.

    ``status``: ``"conforms"``, ``"not comparable"`` (forward conforms up to
    a permitted spike flip; gradients are then not compared), ``"declined"``
    (the candidate raised :class:`Unsupported`; ``reason`` is its message) or
    ``"fails"`` (``failure`` says how).
    """

    kind: str
    status: str
    failure: CaseFailure | None = None
    reason: str | None = None
    comparison: ForwardComparison | GradientComparison | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("conforms", "not comparable")

    def __str__(self) -> str:
        if self.failure is not None:
            return str(self.failure)
        if self.status == "declined":
            return f"{self.kind}: the candidate declined the case: {self.reason}"
        return f"{self.kind}: {self.status}" + (f"\n{_indent(str(self.comparison))}" if self.comparison else "")


@dataclass(frozen=True)
class KindReport:
    """How the cases of one kind went: counted before the first failure, if any.

    ``declined`` counts the declined cases by the candidate's reason.
    """

    kind: str
    examples: int
    passed: int = 0
    not_comparable: int = 0
    failure: CaseFailure | None = None
    skipped: str | None = None
    declined: Counter = field(default_factory=Counter)

    @property
    def ok(self) -> bool:
        return self.failure is None

    @property
    def compared(self) -> int:
        """Cases compared (conforming, up to a flip or not), the failing one included."""
        return self.passed + self.not_comparable + (self.failure is not None and self.failure.case is not None)

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.kind:16s} skipped: {self.skipped}"
        n_declined = sum(self.declined.values())
        if not self.failure and not self.passed + self.not_comparable and n_declined:
            lines = [f"{self.kind:16s} every case declined ({n_declined}): nothing was compared"]
        else:
            partly = f", {self.not_comparable} compared up to a permitted spike flip" if self.not_comparable else ""
            verdict = f"FAILED after {self.passed} conforming cases" if self.failure else f"{self.passed} cases conform"
            declined = f", {n_declined} declined" if n_declined else ""
            lines = [f"{self.kind:16s} {verdict}{partly}{declined}"]
        reasons = self.declined.most_common()
        for reason, n in reasons[:SHOWN_REASONS]:
            lines.append(f"    declined {n} x: {reason}")
        if len(reasons) > SHOWN_REASONS:
            rest = sum(n for _, n in reasons[SHOWN_REASONS:])
            lines.append(f"    declined {rest} x: {len(reasons) - SHOWN_REASONS} other reasons")
        return "\n  ".join(lines)


@dataclass(frozen=True)
class ConformanceReport:
    """The result of :func:`conform`; ``str()`` is the readable report, ``ok`` the verdict.

    ``ok`` needs no failure and at least one compared case: a candidate that
    declines everything has shown nothing. ``shards`` > 1: a campaign run in
    that many shards, their seeds derived from ``seed``
    (:mod:`eventsim.testing.shards`).
    """

    candidate: str
    features: Features
    seed: int
    kinds: list = field(default_factory=list)
    shards: int = 1

    @property
    def compared(self) -> int:
        return sum(k.compared for k in self.kinds)

    @property
    def declined(self) -> Counter:
        """Declined cases by reason, over every kind."""
        return sum((k.declined for k in self.kinds), Counter())

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.kinds) and self.compared > 0

    @property
    def failures(self) -> list[CaseFailure]:
        return [k.failure for k in self.kinds if k.failure is not None]

    def __str__(self) -> str:
        verdict = "CONFORMS" if self.ok else "DOES NOT CONFORM"
        if not self.compared and self.declined:
            verdict += ": the candidate declined every case, nothing was compared"
        lines = [f"eventsim conformance of {self.candidate!r}: {verdict}",
                 f"  features: {self.features.describe()}; seed {self.seed}"
                 + (f" split into {self.shards} shards (eventsim.testing.shards)" if self.shards > 1 else "")]
        lines += ["  " + str(k) for k in self.kinds]
        lines += [str(f) for f in self.failures]
        return "\n".join(lines)


class _Failed(Exception):
    """Raised inside the hypothesis test so that the failing case is shrunk."""

    def __init__(self, failure: CaseFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


class NoGradients(OptionError):
    """A gradient check asked of a candidate whose models have no ``gradients`` method."""


def default_surrogates() -> tuple:
    """The surrogates gradient cases draw from by default: every kind, default and other parameters."""
    from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle

    return (StraightThrough(), FastSigmoid(), FastSigmoid(c=2.0, b=0.5), ArcTan(), Sigmoid(alpha=1.0),
            Triangle(width=0.5))


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


# ================================================================ one case
def check_case(candidate: Candidate, case: NetCase, *, request: GradientRequest | None = None,
               exact: bool | None = None) -> CaseOutcome:
    """Compare ``candidate`` with eventsim on one case (the check every conformance kind is made of).

    Parameters
    ----------
    candidate : Candidate
        ``build(network) -> model`` (:mod:`eventsim.testing.protocol`).
    case : NetCase
        A generated case (:func:`~eventsim.testing.strategies.net_cases`), or
        one read from a replay token.
    request : GradientRequest, optional
        Also compare the ``bptt`` gradients of this request (float64
        networks), after the forward pass conforms without a flip.
    exact : bool, optional
        Demand equality; by default on dyadic cases (``case.weights``).

    Returns
    -------
    CaseOutcome
        Conforms, not comparable (a permitted spike flip), declined (the
        candidate raised :class:`Unsupported`) or fails, with the failure
        and its replay token.

    Raises
    ------
    NoGradients
        ``request`` was given and the candidate's model has no ``gradients``.
    """
    exact = case.weights == "dyadic" if exact is None else bool(exact)
    kind = "bptt gradients" if request is not None else ("dyadic forward" if exact else "float forward")
    spec = candidate_spec(candidate)

    def failed(comparison=None, error: str | None = None) -> CaseOutcome:
        failure = CaseFailure(kind, case, comparison, error, request, spec)
        return CaseOutcome(kind, "fails", failure, comparison=comparison)

    try:
        model = candidate.build(case.network)
        if request is not None and not callable(getattr(model, "gradients", None)):
            raise NoGradients(f"the candidate's model ({type(model).__name__}) has no gradients() method; "
                              "check the forward pass only (request=None)")
        records = model.run(case.spikes)
    except Unsupported as exc:
        return CaseOutcome(kind, "declined", reason=str(exc) or type(exc).__name__)
    except NoGradients:
        raise
    except Exception as exc:
        return failed(error=f"{type(exc).__name__}: {exc}")
    try:
        forward = compare_forward(case.network, case.spikes, records, exact=exact,
                                  reference=reference_records(case.network, case.spikes))
    except Exception as exc:  # records of a wrong shape, dtype or value: the error names the layer
        return failed(error=f"{type(exc).__name__}: {exc}")
    if not forward.ok:
        return failed(forward)
    if request is None or forward.flips:
        return CaseOutcome(kind, "not comparable" if forward.flips else "conforms", comparison=forward)
    reference = reference_gradients(case.network, case.spikes, request)
    try:
        comparison = compare_gradients(case.network, reference, model.gradients(case.spikes, request))
    except Unsupported as exc:
        return CaseOutcome(kind, "declined", reason=str(exc) or type(exc).__name__)
    except Exception as exc:
        return failed(error=f"{type(exc).__name__}: {exc}")
    if comparison.ok:
        return CaseOutcome(kind, "conforms", comparison=comparison)
    from eventsim.testing.backward import locate

    return failed(replace(comparison, backward=locate(case.network, case.spikes, request, model)))


# ================================================================ the suite
def conform(
    candidate: Candidate,
    *,
    features: Features | None = None,
    examples: int = 30,
    seed: int | None = 0,
    gradients: bool = True,
    surrogates: tuple | None = None,
    database: Any = None,
) -> ConformanceReport:
    """Test ``candidate`` against eventsim on generated cases.

    Parameters
    ----------
    candidate : Candidate
        ``build(network) -> model``; ``model.run(spikes)`` and optionally
        ``model.gradients(spikes, request)`` (:mod:`eventsim.testing.protocol`).
    features : Features, optional
        What to generate; by default the candidate's ``features`` attribute,
        else everything (:class:`~eventsim.testing.strategies.Features`).
        Dropout is never generated (conformance runs are inference).
    examples : int
        Cases per kind (dyadic forward, float forward, bptt gradients),
        declined ones included.
    seed : int or None
        Seeds hypothesis: the same seed gives the same cases. None draws a
        fresh seed, which the report prints so that the run can be repeated.
    gradients : bool
        Also compare ``bptt`` gradients (float64 networks) when the
        candidate's models have ``gradients``.
    surrogates : tuple of eventsim.learning.surrogates objects, optional
        The surrogates gradient cases draw from; by default ``features.surrogate_set()``.
    database : None, str, os.PathLike or hypothesis ExampleDatabase
        Where hypothesis keeps failing cases (a directory, or a database
        object): they are tried first on the next run, whatever the seed,
        until they pass. None (default): no database, runs depend on the
        seed alone.

    Returns
    -------
    ConformanceReport
        Per kind, the conforming and declined cases and the first failure
        shrunk to a minimal case, with the first divergence and its replay token.
    """
    features, surrogates = checked_options(candidate, features, examples, surrogates)
    if seed is None:
        seed = fresh_seed()
    database = _database(database)
    name = candidate_name(candidate)
    kinds = []
    for i, kind in enumerate(KINDS):
        skipped = _skipped(kind, features, gradients)
        if skipped:
            kinds.append(KindReport(kind, int(examples), skipped=skipped))
            continue
        strategy, check = _plans(kind, candidate, features, surrogates)
        key = f"{name}|{kind}|{features.describe()}".encode()
        kinds.append(_run(kind, strategy, check, int(examples), int(seed) + i, database, key))
    return ConformanceReport(name, features, int(seed), kinds)


def checked_options(candidate: Candidate, features: Features | None, examples: int,
                    surrogates: tuple | None) -> tuple[Features, tuple]:
    """The features (the candidate's by default, without dropout) and surrogates a run of :func:`conform` uses;
    :class:`OptionError` for bad ones."""
    if features is None:
        features = getattr(candidate, "features", None) or Features()
    if not isinstance(features, Features):
        raise OptionError(f"features must be an eventsim.testing.Features, got {type(features).__name__}")
    if int(examples) < 1:
        raise OptionError(f"examples must be >= 1, got {examples!r}")
    from eventsim.learning.surrogates import Surrogate

    surrogates = features.surrogate_set() if surrogates is None else tuple(surrogates)
    if not surrogates or not all(isinstance(s, Surrogate) for s in surrogates):
        raise OptionError("surrogates must be a non-empty tuple of eventsim.learning.surrogates objects")
    return features.without("dropout"), surrogates


def fresh_seed() -> int:
    """A seed for a run asked with ``seed=None`` (printed in its report, so the run can be repeated)."""
    return int.from_bytes(os.urandom(4), "little")


def candidate_name(candidate: Candidate) -> str:
    """The name a report gives ``candidate``: its ``name`` attribute, else its class's name."""
    return str(getattr(candidate, "name", type(candidate).__name__))


def assert_conforms(candidate: Candidate, **options: Any) -> ConformanceReport:
    """:func:`conform`, failing the calling test with the full report when the candidate does not conform.

    Takes the options of :func:`conform` (``features``, ``examples``,
    ``seed``, ``gradients``, ``surrogates``, ``database``); returns the
    report when it conforms. The AssertionError's message is the report,
    replay tokens included, so a test log holds everything needed to
    reproduce the failure.
    """
    report = conform(candidate, **options)
    if not report.ok:
        raise AssertionError("\n" + str(report))
    return report


def _database(database: Any) -> Any:
    if database is None:
        return None
    from hypothesis.database import DirectoryBasedExampleDatabase, ExampleDatabase

    if isinstance(database, ExampleDatabase):
        return database
    if isinstance(database, (str, os.PathLike)):
        return DirectoryBasedExampleDatabase(os.fspath(database))
    raise OptionError(f"database must be None, a directory or a hypothesis ExampleDatabase, "
                      f"got {type(database).__name__}")


def load_candidate(spec: str) -> Candidate:
    """The candidate named ``"module:attribute"`` (the ``eventsim conform --candidate`` syntax).

    The module is imported with the current directory searched first (as
    ``python -m`` does). The attribute is a candidate object (anything with a
    ``build`` method), or a class or factory function called without
    arguments to make one.
    """
    import importlib
    import os
    import sys

    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise OptionError(f"--candidate must be module:factory (e.g. mypackage.tests:make_candidate), got {spec!r}")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        missing = missing_extra(exc, f"the candidate's module {module_name!r}")
        if missing is not None:  # an optional package it imports, e.g. torch: say how to install it
            raise missing from exc
        raise OptionError(f"cannot import the candidate's module {module_name!r}: {exc}") from exc
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise OptionError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if isinstance(obj, type) or not hasattr(obj, "build"):
        if not callable(obj):
            raise OptionError(f"{spec} is neither a candidate (with a build method) nor a factory")
        obj = obj()
    if not callable(getattr(obj, "build", None)):
        raise OptionError(f"{spec} gave a {type(obj).__name__}, which has no build(network) method")
    return obj


def _skipped(kind: str, features: Features, gradients: bool) -> str | None:
    if kind == "dyadic forward" and "dyadic" not in features.weights:
        return "no dyadic weights in the features"
    if kind == "float forward" and "float" not in features.weights:
        return "no float weights in the features"
    if kind == "bptt gradients":
        if not gradients:
            return "not asked for"
        if np.dtype(np.float64) not in features.dtypes:
            return "gradients are compared on float64 networks only and the features exclude float64"
    return None


def _plans(kind: str, candidate, features: Features, surrogates) -> tuple[Any, Callable]:
    """The strategy of a kind's cases, and the check of one case (a :class:`CaseOutcome`)."""
    if kind != "bptt gradients":
        weights = kind.split()[0]

        def check_forward(case: NetCase) -> CaseOutcome:
            return check_case(candidate, case)

        return st.tuples(net_cases(features=_judged(features, weights), weights=weights)), check_forward

    f64 = features.without("float32")
    cases = st.sampled_from(sorted(f64.weights)).flatmap(lambda w: _gradient_cases(_judged(f64, w), w))

    def check_gradients(case: NetCase, surrogate, detach: bool) -> CaseOutcome:
        request = GradientRequest(
            grad_output=np.random.default_rng(case.seed + 1).normal(size=(case.batch,) + case.network.output_shape),
            surrogate=surrogate, detach_reset=detach)
        return check_case(candidate, case, request=request)

    return st.tuples(cases, st.sampled_from(surrogates), st.sampled_from(features.detach_values)), check_gradients


def _judged(features: Features, weights: str) -> Features:
    """The features cases of ``weights`` are generated with: float cases are judged by the rounding bound
    (compare.py), which does not model the state features; those are compared on dyadic cases, exactly."""
    return features if weights == "dyadic" else features.without(*STATE_FEATURES)


def _gradient_cases(features: Features, weights: str):
    flat_or_maps = net_cases(features=features, weights=weights)
    deep = features.layers >= {"conv", "linear"} and features.layers & {*POOL_KINDS, "residual"}
    return st.one_of(flat_or_maps, deep_cases(features=features, weights=weights)) if deep else flat_or_maps


def _run(kind: str, strategy, check: Callable, examples: int, seed: int, database, key: bytes) -> KindReport:
    """Run ``check`` on ``examples`` cases under hypothesis; shrink and keep the first failure."""
    counts = {"passed": 0, "not_comparable": 0}
    declined: Counter = Counter()
    failing = []
    no_gradients = []

    def cases(args):
        if no_gradients:
            return
        try:
            outcome = check(*args)
        except NoGradients:
            no_gradients.append(True)
            return
        if outcome.failure is not None:
            failing.append(True)
            raise _Failed(outcome.failure)
        if failing:  # shrinking: only the cases before the first failure are counted
            return
        if outcome.status == "declined":
            declined[outcome.reason] += 1
        else:
            counts["passed" if outcome.status == "conforms" else "not_comparable"] += 1

    # Distinguishes the kinds, candidates and features in the database, which
    # would otherwise key every run by this one inner function's source.
    cases._hypothesis_internal_add_digest = key
    phases = (Phase.explicit, Phase.generate, Phase.shrink) + ((Phase.reuse,) if database is not None else ())
    test = settings(max_examples=examples, database=database, deadline=None, verbosity=Verbosity.quiet,
                    suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
                    phases=phases)(hypothesis_seed(seed)(given(strategy)(cases)))
    try:
        test()
    except _Failed as exc:
        return KindReport(kind, examples, failure=exc.failure, declined=declined, **counts)
    except Flaky as exc:
        message = f"the candidate gave different results on the same case ({type(exc).__name__})"
        return KindReport(kind, examples, failure=CaseFailure(kind, None, error=message), declined=declined,
                          **counts)
    if no_gradients:
        return KindReport(kind, examples, skipped="the candidate's models have no gradients(); forward only")
    return KindReport(kind, examples, declined=declined, **counts)
