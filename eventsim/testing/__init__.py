"""The oracle kit: test another SNN implementation against eventsim.

A *candidate* (:mod:`~eventsim.testing.protocol`) builds its own model from an
eventsim :class:`~eventsim.Network` and reports spikes and potentials (and,
optionally, ``bptt`` gradients). :func:`conform` generates networks and inputs
(:mod:`~eventsim.testing.strategies`), runs them through the candidate and
through eventsim, and compares (:mod:`~eventsim.testing.compare`): exactly on
dyadic cases, within a rounding bound on float cases. A failure is shrunk to a
minimal case and reported with its first divergence (layer, step, sample,
neuron, both potentials, the threshold; for gradients the first layer and
step of the backward pass, :mod:`~eventsim.testing.backward`) and a token
that replays it (:mod:`~eventsim.testing.replay`). :func:`assert_conforms`
and :func:`check_case` are the pytest-first forms, and the ``pytest_eventsim``
plugin gives a fixture and a marker. docs/testing.md is the guide.

Needs hypothesis (the ``test`` extra, :mod:`eventsim.extras`); nothing here imports torch.
"""

from eventsim.testing.compare import (
    GRADIENT_RTOL,
    Divergence,
    ForwardComparison,
    GradientComparison,
    GradientDivergence,
    compare_forward,
    compare_gradients,
    forward_bounds,
    reference_gradients,
    reference_records,
)
from eventsim.testing.backward import BackwardDivergence, compare_potential_gradients, reference_potential_gradients
from eventsim.testing.conform import (
    CaseFailure, CaseOutcome, ConformanceReport, KindReport, assert_conforms, check_case, conform, default_surrogates,
)
from eventsim.testing.protocol import Candidate, GradientRequest, LayerRecord, Model, Unsupported
from eventsim.testing.replay import case_token, read_token, replay
from eventsim.testing.shards import conform_shards
from eventsim.testing.strategies import FEATURE_NAMES, Features, NetCase, deep_cases, dyadic, net_cases, random_events

__all__ = [
    "FEATURE_NAMES",
    "GRADIENT_RTOL",
    "BackwardDivergence",
    "Candidate",
    "CaseFailure",
    "CaseOutcome",
    "ConformanceReport",
    "Divergence",
    "Features",
    "ForwardComparison",
    "GradientComparison",
    "GradientDivergence",
    "GradientRequest",
    "KindReport",
    "LayerRecord",
    "Model",
    "NetCase",
    "Unsupported",
    "assert_conforms",
    "case_token",
    "check_case",
    "compare_forward",
    "compare_gradients",
    "compare_potential_gradients",
    "conform",
    "conform_shards",
    "deep_cases",
    "default_surrogates",
    "dyadic",
    "forward_bounds",
    "net_cases",
    "random_events",
    "read_token",
    "reference_gradients",
    "reference_potential_gradients",
    "reference_records",
    "replay",
]
