"""Conformance campaigns in shards: independently seeded parts of one run, on a cluster or in this process.

docs/cluster.md. A campaign of ``examples`` cases per kind with the seed
``seed`` is cut into ``S = ceil(examples / shard_examples)`` shards. Shard
``k`` (0 to S-1) checks ``examples // S`` cases per kind, one more when
``k < examples % S``, with the seed

    ``int(numpy.random.SeedSequence(seed, spawn_key=(k,)).generate_state(1)[0])``

the first word of the ``k``-th child of ``numpy.random.SeedSequence(seed)``
(:meth:`~numpy.random.SeedSequence.spawn`): the shards draw independent
streams of cases, and none repeats the seed of another shard's kind
(:func:`~eventsim.testing.conform` seeds kind ``i`` with ``seed + i``).

Each shard is one :func:`~eventsim.testing.conform` run of the candidate,
rebuilt where the shard runs from its ``module:factory`` spec
(:func:`~eventsim.testing.conform.load_candidate`: the module must be
importable there), so hypothesis shrinks a shard's failures on the worker
that found them. The campaign's report adds the shards' counts (compared and
declined cases, by kind and reason) and keeps, for each kind, the failure of
the first shard that has one; its replay token reproduces it on one machine,
without a cluster (``eventsim conform --candidate SPEC --replay TOKEN``).

The shards depend on ``seed``, ``examples`` and ``shard_examples`` alone, so
the report is the same whatever the number of workers, and
:func:`conform_shards` without a cluster gives it too, in this process.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any, Sequence, TextIO

import numpy as np

from eventsim.errors import OptionError
from eventsim.progress import progress_bar
from eventsim.testing.conform import (
    KINDS, ConformanceReport, KindReport, candidate_name, checked_options, conform, fresh_seed, load_candidate,
)
from eventsim.testing.strategies import Features

#: Cases per kind in a shard unless a campaign says otherwise: a task of a few
#: seconds to a minute, so that the shards spread over many workers while each
#: shard's fixed costs (the candidate, hypothesis's first cases) stay small.
SHARD_EXAMPLES = 25


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of a campaign: ``examples`` cases per kind drawn with ``seed``."""

    index: int
    examples: int
    seed: int


def plan_shards(examples: int, seed: int, shard_examples: int = SHARD_EXAMPLES) -> list[Shard]:
    """The shards of a campaign of ``examples`` cases per kind with ``seed`` (module docstring)."""
    for what, value in (("examples", examples), ("shard_examples", shard_examples)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise OptionError(f"{what} must be a whole number >= 1, got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise OptionError(f"seed must be a whole number >= 0 or None, got {seed!r}")
    count = math.ceil(examples / shard_examples)
    base, extra = divmod(int(examples), count)
    return [Shard(k, base + (k < extra), int(np.random.SeedSequence(int(seed), spawn_key=(k,)).generate_state(1)[0]))
            for k in range(count)]


def run_shard(spec: str, shard: Shard, features: Features, gradients: bool, surrogates: tuple) -> ConformanceReport:
    """One shard: :func:`~eventsim.testing.conform` of the candidate ``spec`` with the shard's seed and cases."""
    from hypothesis.errors import HypothesisDeprecationWarning

    with warnings.catch_warnings():
        # On a Dask worker the worker's own threads draw from the `random` module while hypothesis generates,
        # which hypothesis takes for a strategy using it. The cases come from hypothesis's own seeded
        # generator, so the warning says nothing about them.
        warnings.filterwarnings("ignore", "Do not use the `random` module", HypothesisDeprecationWarning)
        return conform(load_candidate(spec), features=features, examples=shard.examples, seed=shard.seed,
                       gradients=gradients, surrogates=surrogates)


def merge_kind(kind: str, examples: int, parts: Sequence[KindReport], spec: str) -> KindReport:
    """One kind over every shard (in shard order): the counts added, the first failure kept.

    The failure's reproducer names ``spec``, the candidate the shards were run with.
    """
    skipped = next((p.skipped for p in parts if p.skipped), None)
    if skipped:
        return KindReport(kind, examples, skipped=skipped)
    failure = next((p.failure for p in parts if p.failure is not None), None)
    return KindReport(kind, examples, passed=sum(p.passed for p in parts),
                      not_comparable=sum(p.not_comparable for p in parts),
                      failure=None if failure is None else replace(failure, candidate=spec),
                      declined=sum((p.declined for p in parts), Counter()))


def merge_shards(reports: Sequence[ConformanceReport], *, spec: str, examples: int, seed: int) -> ConformanceReport:
    """The report of a campaign from its shards' reports, in shard order."""
    kinds = [merge_kind(kind, examples, [r.kinds[i] for r in reports], spec) for i, kind in enumerate(KINDS)]
    return ConformanceReport(reports[0].candidate, reports[0].features, seed, kinds, shards=len(reports))


def conform_shards(
    spec: str,
    *,
    features: Features | None = None,
    examples: int = 30,
    seed: int | None = 0,
    gradients: bool = True,
    surrogates: tuple | None = None,
    shard_examples: int = SHARD_EXAMPLES,
    cluster: Any = None,
    progress: TextIO | str | None = None,
) -> ConformanceReport:
    """Test the candidate ``spec`` against eventsim in shards, on ``cluster``'s workers or in this process.

    Parameters
    ----------
    spec : str
        ``module:factory`` of the candidate (:func:`~eventsim.testing.conform.load_candidate`),
        importable here and on every worker.
    features, examples, seed, gradients, surrogates
        As for :func:`~eventsim.testing.conform` (``examples``: cases per
        kind over the whole campaign; ``seed`` None draws one, which the
        report prints).
    shard_examples : int
        Cases per kind in a shard at most (module docstring).
    cluster : eventsim.cluster.Cluster, optional
        Run the shards on its workers, one task each; None: here, one after another.
    progress : text stream, "stderr" or None
        A bar counting the finished shards, with the shards that found a
        failure and the workers alive (:func:`eventsim.progress.progress_bar`).

    Returns
    -------
    ConformanceReport
        The shards' counts added, each kind's first failure in shard order,
        shrunk where it was found and replayable on one machine.
    """
    candidate = load_candidate(spec)  # here first: a wrong spec fails before any work is sent
    features, surrogates = checked_options(candidate, features, examples, surrogates)
    seed = fresh_seed() if seed is None else seed
    shards = plan_shards(examples, seed, shard_examples)
    calls = [(spec, shard, features, bool(gradients), surrogates) for shard in shards]
    failing: set[int] = set()
    with progress_bar(len(shards), f"conformance of {candidate_name(candidate)}, {examples} cases per kind", progress,
                      unit="shards") as bar:
        def finished(i: int, report: ConformanceReport) -> None:
            if report.failures:
                failing.add(i)
            bar.set_postfix({"failing shards": len(failing),
                             **({} if cluster is None else {"workers": cluster.alive()})}, refresh=False)
            bar.update()

        if cluster is None:
            reports = []
            for i, call in enumerate(calls):
                reports.append(run_shard(*call))
                finished(i, reports[-1])
        else:
            reports = cluster.map(run_shard, calls, what="conformance shard", on_result=finished)
    return merge_shards(reports, spec=spec, examples=int(examples), seed=int(seed))
