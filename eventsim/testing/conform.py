"""The conformance suite: generated cases, a candidate, eventsim, and a report.

:func:`conform` runs three kinds of cases through a candidate
(:mod:`eventsim.testing.protocol`) and compares every one with eventsim
(:mod:`eventsim.testing.compare`):

- ``dyadic forward``: dyadic weights, spikes and potentials equal bit for bit;
- ``float forward``: general float weights, within the rounding bound;
- ``bptt gradients``: float64 networks, several surrogates, ``detach_reset``
  on and off, gradients within ``GRADIENT_RTOL`` of their scale (compare.py).

Cases come from hypothesis (:mod:`eventsim.testing.strategies`), so the first
failure is shrunk to a minimal case before it is reported. Conformance cases
have no dropout (the forward pass is inference).
"""

from __future__ import annotations

from dataclasses import dataclass, field
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
from eventsim.testing.protocol import Candidate, GradientRequest
from eventsim.testing.strategies import POOL_KINDS, Features, NetCase, deep_cases, net_cases

KINDS = ("dyadic forward", "float forward", "bptt gradients")


@dataclass(frozen=True)
class CaseFailure:
    """A shrunk failing case: the case, and the comparison or the error that failed it."""

    kind: str
    case: NetCase | None
    comparison: ForwardComparison | GradientComparison | None = None
    error: str | None = None
    request: str | None = None

    def __str__(self) -> str:
        lines = [f"FAILURE in {self.kind}" + (f"; the shrunk case:\n{_indent(self.case.describe())}" if self.case else "")]
        if self.request:
            lines.append(f"  gradient request: {self.request}")
        if self.error:
            lines.append(f"  the candidate failed: {self.error}")
        if self.comparison is not None:
            lines.append(_indent(str(self.comparison)))
        return "\n".join(lines)


@dataclass(frozen=True)
class KindReport:
    """How the cases of one kind went: counted before the first failure, if any."""

    kind: str
    examples: int
    passed: int = 0
    not_comparable: int = 0
    failure: CaseFailure | None = None
    skipped: str | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None

    def __str__(self) -> str:
        if self.skipped:
            return f"{self.kind:16s} skipped: {self.skipped}"
        partly = f", {self.not_comparable} compared up to a permitted spike flip" if self.not_comparable else ""
        verdict = f"FAILED after {self.passed} conforming cases" if self.failure else f"{self.passed} cases conform"
        return f"{self.kind:16s} {verdict}{partly}"


@dataclass(frozen=True)
class ConformanceReport:
    """The result of :func:`conform`; ``str()`` is the readable report, ``ok`` the verdict."""

    candidate: str
    features: Features
    seed: int
    kinds: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.kinds)

    @property
    def failures(self) -> list[CaseFailure]:
        return [k.failure for k in self.kinds if k.failure is not None]

    def __str__(self) -> str:
        verdict = "CONFORMS" if self.ok else "DOES NOT CONFORM"
        lines = [f"eventsim conformance of {self.candidate!r}: {verdict}",
                 f"  features: {self.features.describe()}; seed {self.seed}"]
        lines += ["  " + str(k) for k in self.kinds]
        lines += [str(f) for f in self.failures]
        return "\n".join(lines)


class _Failed(Exception):
    """Raised inside the hypothesis test so that the failing case is shrunk."""

    def __init__(self, failure: CaseFailure) -> None:
        super().__init__(str(failure))
        self.failure = failure


def default_surrogates() -> tuple:
    """The surrogates gradient cases draw from by default: every kind, default and other parameters."""
    from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle

    return (StraightThrough(), FastSigmoid(), FastSigmoid(c=2.0, b=0.5), ArcTan(), Sigmoid(alpha=1.0),
            Triangle(width=0.5))


class _NoGradients(Exception):
    """The candidate's model has no ``gradients`` method: compared on the forward pass only."""


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())


def conform(
    candidate: Candidate,
    *,
    features: Features | None = None,
    examples: int = 30,
    seed: int = 0,
    gradients: bool = True,
    surrogates: tuple | None = None,
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
        Cases per kind (dyadic forward, float forward, bptt gradients).
    seed : int
        Seeds hypothesis: the same seed gives the same cases.
    gradients : bool
        Also compare ``bptt`` gradients (float64 networks) when the
        candidate's models have ``gradients``.
    surrogates : tuple of eventsim.learning.surrogates objects, optional
        The surrogates gradient cases draw from; by default ``features.surrogate_set()``.

    Returns
    -------
    ConformanceReport
        Per kind, the conforming cases and the first failure shrunk to a
        minimal case, with the first divergence.
    """
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
    features = features.without("dropout")
    name = str(getattr(candidate, "name", type(candidate).__name__))
    kinds = []
    for i, kind in enumerate(KINDS):
        skipped = _skipped(kind, candidate, features, gradients)
        if skipped:
            kinds.append(KindReport(kind, int(examples), skipped=skipped))
            continue
        strategy, check = _plans(kind, candidate, features, surrogates)
        kinds.append(_run(kind, strategy, check, int(examples), seed + i))
    return ConformanceReport(name, features, seed, kinds)


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


def _skipped(kind: str, candidate, features: Features, gradients: bool) -> str | None:
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
    """The strategy of a kind's cases, and the check of one case (raises :class:`_Failed`)."""
    if kind != "bptt gradients":
        weights = kind.split()[0]
        exact = weights == "dyadic"

        def check_forward(case: NetCase) -> bool:
            return _forward(kind, candidate, case, exact)[1]

        return st.tuples(net_cases(features=features, weights=weights)), check_forward

    f64 = features.without("float32")
    cases = st.sampled_from(sorted(f64.weights)).flatmap(lambda w: _gradient_cases(f64, w))

    def check_gradients(case: NetCase, surrogate, detach: bool) -> bool:
        request = GradientRequest(
            grad_output=np.random.default_rng(case.seed + 1).normal(size=(case.batch,) + case.network.output_shape),
            surrogate=surrogate, detach_reset=detach)
        shown = f"surrogate {surrogate!r}, detach_reset={detach}"
        model, comparable = _forward(kind, candidate, case, case.weights == "dyadic", request=shown)
        if not callable(getattr(model, "gradients", None)):
            raise _NoGradients
        if not comparable:
            return False
        reference = reference_gradients(case.network, case.spikes, request)
        try:
            comparison = compare_gradients(case.network, reference, model.gradients(case.spikes, request))
        except Exception as exc:
            raise _Failed(CaseFailure(kind, case, error=f"{type(exc).__name__}: {exc}", request=shown)) from exc
        if not comparison.ok:
            raise _Failed(CaseFailure(kind, case, comparison, request=shown))
        return True

    return st.tuples(cases, st.sampled_from(surrogates), st.sampled_from(features.detach_values)), check_gradients


def _gradient_cases(features: Features, weights: str):
    flat_or_maps = net_cases(features=features, weights=weights)
    deep = features.layers >= {"conv", "linear"} and features.layers & {*POOL_KINDS, "residual"}
    return st.one_of(flat_or_maps, deep_cases(features=features, weights=weights)) if deep else flat_or_maps


def _forward(kind: str, candidate, case: NetCase, exact: bool, request: str | None = None):
    """Build, run and compare one case; return ``(model, comparable)``: False after a permitted flip."""
    try:
        model = candidate.build(case.network)
        comparison = compare_forward(case.network, case.spikes, model.run(case.spikes), exact=exact,
                                     reference=reference_records(case.network, case.spikes))
    except Exception as exc:
        raise _Failed(CaseFailure(kind, case, error=f"{type(exc).__name__}: {exc}", request=request)) from exc
    if not comparison.ok:
        raise _Failed(CaseFailure(kind, case, comparison, request=request))
    return model, not comparison.flips


def _run(kind: str, strategy, check: Callable, examples: int, seed: int) -> KindReport:
    """Run ``check`` on ``examples`` cases under hypothesis; shrink and keep the first failure."""
    counts = {"passed": 0, "not_comparable": 0}
    failing = []
    no_gradients = []

    @settings(max_examples=examples, database=None, deadline=None, verbosity=Verbosity.quiet,
              suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
              phases=(Phase.explicit, Phase.generate, Phase.shrink))
    @hypothesis_seed(seed)
    @given(strategy)
    def cases(args):
        if no_gradients:
            return
        try:
            comparable = check(*args)
        except _Failed:
            failing.append(True)
            raise
        except _NoGradients:
            no_gradients.append(True)
            return
        if not failing:
            counts["passed" if comparable else "not_comparable"] += 1

    try:
        cases()
    except _Failed as exc:
        return KindReport(kind, examples, failure=exc.failure, **counts)
    except Flaky as exc:
        message = f"the candidate gave different results on the same case ({type(exc).__name__})"
        return KindReport(kind, examples, failure=CaseFailure(kind, None, error=message), **counts)
    if no_gradients:
        return KindReport(kind, examples, skipped="the candidate's models have no gradients(); forward only")
    return KindReport(kind, examples, **counts)
