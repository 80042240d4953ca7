"""The batch runs on several threads, and nothing depends on how many.

eventsim.threads: samples run in parallel, and every sum over samples is taken
in sample order, so a run and every rule's gradients are bit-identical with
1, 2 or 3 threads. Float (not dyadic) weights make sums depend on their
order, so a reordering would show.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.learning.rules import BPTT, Lee2020, Lee2020Code
from eventsim.learning.surrogates import FastSigmoid
from eventsim.network import RECORDS
from eventsim.testing.strategies import deep_cases, net_cases, random_events
from eventsim.threads import ENV_VAR, ordered_map

THREAD_COUNTS = (1, 2, 3)
CASES = st.one_of(net_cases(weights="float", hard_zero=True), deep_cases(weights="float", hard_zero=True))
RULES = (Lee2020(), Lee2020Code(), BPTT(surrogate=FastSigmoid(c=4.0), detach_reset=False), BPTT(surrogate=FastSigmoid(c=4.0)))


@pytest.fixture(autouse=True)
def default_threads():
    yield
    es.set_threads(None)


def _bigger_batch(case, batch: int) -> es.Events:
    """The case's input distribution with more samples than threads."""
    rng = np.random.default_rng(case.seed + 1)
    return random_events(rng, batch, case.steps, case.network.input_shape, case.density, case.dtype)


def _per_thread_count(fn) -> list:
    out = []
    for n in THREAD_COUNTS:
        es.set_threads(n)
        out.append(fn())
    return out


def _assert_identical(a, b, what: str) -> None:
    assert a.dtype == b.dtype, what
    assert np.array_equal(a, b), f"{what} differs between thread counts"


@settings(max_examples=25, deadline=None)
@given(case=CASES, batch=st.integers(4, 7), train=st.booleans())
def test_run_is_bit_identical_for_any_thread_count(case, batch, train):
    events = _bigger_batch(case, batch)

    def run():
        rng = np.random.default_rng(case.seed + 2)
        return case.network.run(events, record=RECORDS, train=train, rng=rng)

    first, *others = _per_thread_count(run)
    for other in others:
        if first.output is not None:
            _assert_identical(first.output, other.output, "output")
        for record in ("synops", "pool_ops", "events", "counts", "traces", "potentials", "currents", "masks"):
            mine, theirs = getattr(first, record), getattr(other, record)
            assert mine.keys() == theirs.keys(), record
            for name in mine:
                _assert_identical(mine[name], theirs[name], f"{record}[{name}]")
        for name, spikes in first.spikes.items():
            _assert_identical(spikes.indptr, other.spikes[name].indptr, f"spikes[{name}] rows")
            _assert_identical(spikes.index, other.spikes[name].index, f"spikes[{name}] indices")
            _assert_identical(spikes.value, other.spikes[name].value, f"spikes[{name}] values")


@settings(max_examples=25, deadline=None)
@given(case=CASES, batch=st.integers(4, 7), train=st.booleans())
def test_every_rules_gradients_are_bit_identical_for_any_thread_count(case, batch, train):
    events = _bigger_batch(case, batch)
    rng = np.random.default_rng(case.seed + 3)
    grad_output = rng.normal(size=(batch,) + case.network.output_shape)
    records = sorted({r for rule in RULES for r in rule.records})
    es.set_threads(1)
    result = case.network.run(events, record=records, train=train, rng=np.random.default_rng(case.seed + 2))
    for rule in RULES:
        first, *others = _per_thread_count(lambda: rule.gradients(case.network, events, result, grad_output))
        for other in others:
            assert first.keys() == other.keys()
            for key in first:
                _assert_identical(first[key], other[key], f"{rule.name} {key}")


def test_samples_run_concurrently():
    """With 2 threads, two samples are in flight at once: each waits for the other."""
    es.set_threads(2)
    meet = threading.Barrier(2, timeout=10)
    assert list(ordered_map(lambda i: (meet.wait(), i)[1], range(2))) == [0, 1]


def test_results_come_back_in_order_and_a_map_inside_a_map_runs_serially():
    es.set_threads(3)
    inner = lambda i: list(ordered_map(lambda j: 10 * i + j, range(4)))  # noqa: E731
    assert list(ordered_map(inner, range(5))) == [[10 * i + j for j in range(4)] for i in range(5)]


@pytest.mark.parametrize("bad", [0, -2, 1.5, "2", True, [2]])
def test_set_threads_rejects_what_is_not_a_positive_integer(bad):
    with pytest.raises(es.OptionError, match=r"set_threads\(n\) must be a positive integer"):
        es.set_threads(bad)


def test_get_threads_follows_set_threads_then_the_environment(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "3")
    assert es.get_threads() == 3
    es.set_threads(np.int64(2))
    assert es.get_threads() == 2
    es.set_threads(None)
    monkeypatch.delenv(ENV_VAR)
    assert es.get_threads() >= 1


@pytest.mark.parametrize("raw", ["zero", "0", "-1", "2.5"])
def test_a_bad_environment_variable_is_named(monkeypatch, raw):
    monkeypatch.setenv(ENV_VAR, raw)
    with pytest.raises(es.OptionError, match=ENV_VAR):
        es.get_threads()
