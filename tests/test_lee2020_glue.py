"""The work around the kernels of a training step: per-sample streams, reused accumulators, their sum, the map.

Each piece against an independent reference: NumPy's sequential ``np.add.at``
and ``np.nonzero`` for the summed inputs and the frames of counts,
:func:`eventsim.learning.chunks.tree_sum` (the definition of the order of a
sum over samples) for the kernel that sums accumulators, a network that has
never run for the accumulators that are reused, the general ``lif_window``
for its plain variant, and the NumPy expressions of ``lee2020``'s neuron
derivative for its one-pass kernel. Float values, so that another order of
summation would show.
"""

from __future__ import annotations

import copy
import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim import kernels
from eventsim.learning.chunks import tree_sum, tree_sum_rows
from eventsim.learning.rules import BPTT, Lee2020, Lee2020Code, _lee2020_delta, leak_correction
from eventsim.learning.surrogates import FastSigmoid
from eventsim.testing.strategies import net_cases, random_events
from eventsim.threads import ordered_map

seeds = st.integers(0, 2**32 - 1)
dtypes = st.sampled_from([np.float32, np.float64])


@pytest.fixture(autouse=True)
def default_threads():
    yield
    es.set_threads(None)


def _spread(rng: np.random.Generator, shape, dtype) -> np.ndarray:
    """Normal values over twelve orders of magnitude: sums that depend on their order."""
    return (rng.normal(size=shape) * 10.0 ** rng.integers(-6, 6, size=shape)).astype(dtype)


@given(seed=seeds, dtype=dtypes, batch=st.integers(1, 4), steps=st.integers(1, 6), n=st.integers(1, 20))
def test_event_totals_add_in_the_order_the_events_are_stored(seed, dtype, batch, steps, n):
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((batch, steps, n)) < 0.5, _spread(rng, (batch, steps, n), dtype), 0).astype(dtype)
    events = es.Events.from_dense(dense)
    expected = np.zeros((batch, n), dtype)
    sample = np.repeat(np.arange(batch * steps), np.diff(events.indptr)) // steps
    np.add.at(expected, (sample, events.index), events.value)  # unbuffered: one addition per event, in order
    assert events.totals().tobytes() == expected.tobytes()
    one = np.zeros((1, n), dtype)
    kernels.event_totals(one, events.sample_rows(batch - 1), events.index, events.value, steps)
    assert one.tobytes() == expected[-1:].tobytes()


@given(seed=seeds, dtype=dtypes, n=st.integers(1, 300), density=st.sampled_from([0.0, 0.05, 0.5, 1.0]))
def test_a_row_of_values_becomes_one_frame_of_its_nonzero_entries(seed, dtype, n, density):
    rng = np.random.default_rng(seed)
    row = np.where(rng.random((1, n)) < density, _spread(rng, (1, n), dtype), 0).astype(dtype)
    indptr, index, value = kernels.currents_to_events(row, 1, None)
    (expected,) = np.nonzero(row[0])
    np.testing.assert_array_equal(indptr, [0, expected.shape[0]])
    np.testing.assert_array_equal(index, expected)
    assert value.tobytes() == row[0, expected].tobytes()


@given(seed=seeds, dtype=dtypes, n=st.integers(1, 40), rows=st.integers(1, 40), cols=st.integers(1, 7),
       split=st.floats(0, 1))
def test_tree_sum_rows_adds_as_tree_sum_and_clears_the_rows_it_read(seed, dtype, n, rows, cols, split):
    rng = np.random.default_rng(seed)
    parts = _spread(rng, (n + 2, rows, cols), dtype)
    parts[rng.random((n + 2, rows)) < 0.4] = 0  # rows a sample never touched
    expected = tree_sum([p.copy() for p in parts[:n]], lambda a, b: a + b)
    out = np.full((cols, rows), np.nan, dtype)
    work = parts.copy()
    middle = int(split * rows)  # two ranges: the result does not depend on the split
    finite = tree_sum_rows(work, n, out, 0, middle, True) & tree_sum_rows(work, n, out, middle, rows, True)
    assert finite
    assert out.T.tobytes() == expected.tobytes()
    assert not work[:n].any() and not np.signbit(work[:n]).any()
    assert work[n:].tobytes() == parts[n:].tobytes()


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
def test_tree_sum_rows_tells_a_sum_that_is_not_finite(bad):
    parts = np.ones((3, 2, 2))
    parts[1, 1, 0] = bad
    out = np.empty((2, 2))
    assert tree_sum_rows(parts.copy(), 3, out, 0, 1, False)
    assert not tree_sum_rows(parts, 3, out, 0, 2, False)


CASES = net_cases(weights="float", hard_zero=True)
RULES = (Lee2020(), Lee2020Code(), BPTT(surrogate=FastSigmoid(c=4.0), detach_reset=False))


@settings(max_examples=15, deadline=None)
@given(case=CASES, sizes=st.sampled_from([(3, 5), (5, 3), (4, 4)]), threads=st.sampled_from([1, 2]))
def test_reused_accumulators_give_the_gradients_of_a_network_that_never_ran(case, sizes, threads):
    """A second call reuses the first one's accumulators (for more or fewer samples): nothing of it is left."""
    es.set_threads(threads)
    rng = np.random.default_rng(case.seed + 5)
    shape = case.network.input_shape
    batches = [random_events(rng, b, case.steps, shape, case.density, case.dtype) for b in sizes]
    records = sorted({r for rule in RULES for r in rule.records})
    fresh = copy.deepcopy(case.network)
    for rule in RULES:
        for events in batches:
            result = case.network.run(events, record=records)
            grad_output = rng.normal(size=(events.batch,) + case.network.output_shape)
            reused = rule.gradients(case.network, events, result, grad_output)
        expected = rule.gradients(fresh, events, fresh.run(events, record=records), grad_output)
        assert reused.keys() == expected.keys()
        for key in expected:
            assert reused[key].tobytes() == expected[key].tobytes(), f"{rule.name} {key}"


def test_lee2020_names_the_sample_whose_summed_input_overflows():
    network = es.Network([es.Linear(2, 1, weight=np.full((1, 2), 1e-30, np.float32)), es.Readout()], (2,),
                         dtype=np.float32)
    big = np.float32(3e38)
    dense = np.zeros((2, 2, 2), np.float32)
    dense[1, :, 1] = big  # sample 1, input 1, at both steps: 6e38 overflows float32
    events = es.Events.from_dense(dense)
    result = network.run(events, record=Lee2020.records)
    with pytest.raises(es.EventsError, match=r"sample 1 at position \(1,\).*not finite.*float32"):
        Lee2020().gradients(network, events, result, np.ones((2, 1)))


@given(seed=seeds, dtype=dtypes, channels=st.integers(1, 4), plane=st.integers(1, 6), steps=st.integers(1, 30),
       gain=st.sampled_from([1.0, 0.37]))
def test_the_one_pass_lee2020_derivative_is_the_numpy_expression(seed, dtype, channels, plane, steps, gain):
    rng = np.random.default_rng(seed)
    n = channels * plane
    lam = float(rng.uniform(0.5, 1.0))
    counts = rng.integers(0, steps + 1, size=n).astype(dtype)  # C order
    traces = np.where(counts > 0, counts * rng.uniform(lam ** (steps - 1), 1, size=n), 0).astype(dtype)
    theta = rng.uniform(0.2, 3.0, size=channels).astype(dtype)
    theta[rng.random(channels) < 0.2] = np.inf
    grad = _spread(rng, (1, n), dtype)
    per_neuron = np.tile(theta, plane)  # channel-last, one threshold per neuron

    def channel_last(a):
        return a.reshape(channels, plane).T.reshape(1, n)

    g = np.dtype(dtype).type(gain)
    expected = grad * (g * leak_correction(channel_last(counts), channel_last(traces), lam) / per_neuron)
    got = _lee2020_delta(grad, counts, traces, per_neuron, np.dtype(dtype).type(np.log(lam)), g, channels, False)
    assert got.tobytes() == expected.tobytes()
    pooled = _lee2020_delta(grad, counts, counts, counts, np.dtype(dtype).type(0), g, channels, True)
    assert pooled.tobytes() == (grad * (channel_last(counts) > 0)).tobytes()


@given(seed=seeds, dtype=dtypes, soft=st.booleans(), strict=st.booleans(), clear=st.booleans(),
       delayed=st.booleans())
def test_plain_lif_window_is_lif_window_with_its_defaults(seed, dtype, soft, strict, clear, delayed):
    rng = np.random.default_rng(seed)
    steps, channels, plane = 7, 3, 5
    n = channels * plane
    cur = np.where(rng.random((steps, n)) < 0.5, rng.normal(0.6, 0.8, (steps, n)), 0).astype(dtype)
    theta = rng.uniform(0.3, 1.5, channels).astype(dtype)
    f = np.dtype(dtype).type
    args = (theta, f(0.9), soft, f(0.0), strict)
    results = []
    for plain in (True, False):
        v, u = np.linspace(-0.3, 0.3, n).astype(dtype), cur.copy()
        counts, traces = np.zeros(n, dtype), np.zeros(n, dtype)
        fired = np.zeros(n, bool) if delayed else None
        if plain:
            out = kernels.plain_lif_window(v, u, *args, counts, traces, f(1.25), fired, clear)
        else:
            out = kernels.lif_window(v, u, *args, counts, traces, f(1.25), fired, clear, 0, f(1.0), None, f(0.0),
                                     f(1.0), None, None, None, None)
        results.append([v, u, counts, traces, fired, *out])
    for mine, general in zip(*results):
        assert np.asarray(mine).tobytes() == np.asarray(general).tobytes()


def test_ordered_map_runs_every_item_once_and_raises_the_first_failure_in_order():
    es.set_threads(3)
    ran, lock = [], threading.Lock()

    def work(i):
        with lock:
            ran.append(i)
        if i in (7, 4):
            raise ValueError(f"item {i}")
        return i * i

    with pytest.raises(ValueError, match="item 4"):
        ordered_map(work, range(12))
    assert sorted(ran) == list(range(12))
    assert ordered_map(lambda i: i * i, range(12)) == [i * i for i in range(12)]


def test_ordered_map_spreads_uneven_items_over_the_threads():
    """A thread held by a long item does not hold up the others: they take the rest."""
    es.set_threads(2)
    release = threading.Event()
    seen = []

    def work(i):
        if i == 0:
            assert release.wait(10), "the other thread never finished the short items"
        else:
            seen.append(threading.get_ident())
            if len(seen) == 5:
                release.set()
        return i

    assert ordered_map(work, range(6)) == list(range(6))
    assert len(set(seen)) == 1


def test_ordered_map_threads_take_the_items_in_the_order_given():
    """The first items taken are the first of ``order``; the results stay in the items' order."""
    es.set_threads(2)
    started, lock, both = [], threading.Lock(), threading.Barrier(2, timeout=10)

    def work(i):
        with lock:
            started.append(i)
            first_two = len(started) <= 2
        if first_two:
            both.wait()  # neither thread takes a third item before both took one
        return -i

    order = [5, 2, 7, 0, 1, 3, 4, 6]
    assert ordered_map(work, range(8), order) == [-i for i in range(8)]
    assert set(started[:2]) == {5, 2} and sorted(started) == list(range(8))
    with pytest.raises(ValueError, match="permutation"):
        ordered_map(work, range(3), [0, 0, 1])
