"""The oracle kit: test another SNN implementation against eventsim.

A *candidate* (:mod:`~eventsim.testing.protocol`) builds its own model from an
eventsim :class:`~eventsim.Network` and reports spikes and potentials (and,
optionally, ``bptt`` gradients). :func:`conform` generates networks and inputs
(:mod:`~eventsim.testing.strategies`), runs them through the candidate and
through eventsim, and compares (:mod:`~eventsim.testing.compare`): exactly on
dyadic cases, within a rounding bound on float cases. A failure is shrunk to a
minimal case and reported with its first divergence (layer, step, sample,
neuron, both potentials, the threshold). docs/testing.md is the guide.

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
from eventsim.testing.conform import CaseFailure, ConformanceReport, KindReport, conform, default_surrogates
from eventsim.testing.protocol import Candidate, GradientRequest, LayerRecord, Model, Unsupported
from eventsim.testing.strategies import FEATURE_NAMES, Features, NetCase, deep_cases, dyadic, net_cases, random_events

__all__ = [
    "FEATURE_NAMES",
    "GRADIENT_RTOL",
    "Candidate",
    "CaseFailure",
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
    "compare_forward",
    "compare_gradients",
    "conform",
    "deep_cases",
    "default_surrogates",
    "dyadic",
    "forward_bounds",
    "net_cases",
    "random_events",
    "reference_gradients",
    "reference_records",
]
