"""The event container: exact dense round trips and clear errors on malformed input."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsim import Events, EventsError
from eventsim.testing.strategies import DTYPES, random_events


@given(seed=st.integers(0, 2**32 - 1), dtype=DTYPES, batch=st.integers(1, 3), steps=st.integers(1, 6),
       shape=st.sampled_from([(5,), (2, 3, 4), (1, 1, 1)]), density=st.floats(0, 1))
def test_dense_round_trip_is_exact(seed, dtype, batch, steps, shape, density):
    rng = np.random.default_rng(seed)
    dense = np.where(rng.random((batch, steps) + shape) < density, rng.normal(size=(batch, steps) + shape), 0)
    dense = dense.astype(dtype)
    ev = Events.from_dense(dense)
    assert ev.dtype == dtype
    assert ev.n_events == np.count_nonzero(dense)
    np.testing.assert_array_equal(ev.to_dense(), dense)
    # the CSR rows hold exactly the nonzeros of each (sample, step)
    for b in range(batch):
        for t in range(steps):
            idx, val = ev.row(b, t)
            flat = dense[b, t].ravel()
            assert set(idx.tolist()) == set(np.flatnonzero(flat).tolist())
            np.testing.assert_array_equal(val, flat[idx])


@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 4), steps=st.integers(1, 5))
def test_coo_concat_sample_agree_with_dense(seed, batch, steps):
    rng = np.random.default_rng(seed)
    ev = random_events(rng, batch, steps, (2, 3, 3), 0.3, np.float32)
    dense = ev.to_dense()
    b, t, *pos = np.nonzero(dense)
    neuron = np.ravel_multi_index(pos, (2, 3, 3))
    perm = rng.permutation(len(b))  # from_coo must not depend on event order across rows
    again = Events.from_coo(b[perm], t[perm], neuron[perm], dense[(b, t, *pos)][perm],
                            batch=batch, steps=steps, shape=(2, 3, 3))
    np.testing.assert_array_equal(again.to_dense(), dense)
    parts = [ev.sample(i) for i in range(batch)]
    np.testing.assert_array_equal(Events.concat(parts).to_dense(), dense)
    for i, part in enumerate(parts):
        np.testing.assert_array_equal(part.to_dense()[0], dense[i])
    np.testing.assert_array_equal(ev.totals(), dense.sum(axis=1))
    np.testing.assert_array_equal(ev.event_counts(), np.count_nonzero(dense.reshape(batch, -1), axis=1))
    order = ev.busiest_first()  # descending counts, ties in sample order
    counts = np.count_nonzero(dense.reshape(batch, -1), axis=1)
    assert sorted(order.tolist()) == list(range(batch))
    assert all((counts[a], -a) > (counts[b], -b) for a, b in zip(order[:-1], order[1:]))


def test_arrays_are_read_only():
    ev = Events.from_dense(np.ones((1, 2, 3), np.float32))
    with pytest.raises(ValueError):
        ev.value[0] = 0


def test_astype_keeps_events_and_refuses_underflow():
    ev = Events.from_dense(np.full((1, 2, 3), 0.5, np.float64))
    assert ev.astype(np.float32).dtype == np.float32
    np.testing.assert_array_equal(ev.astype(np.float32).to_dense(), ev.to_dense().astype(np.float32))
    tiny = Events.from_dense(np.full((1, 1, 1), 1e-300))
    with pytest.raises(EventsError, match="infinite or zero"):
        tiny.astype(np.float32)


def _make(indptr, index, value, batch=1, steps=2, shape=(4,)):
    return Events(np.asarray(indptr), np.asarray(index), np.asarray(value), batch=batch, steps=steps, shape=shape)


@pytest.mark.parametrize(
    "args, message",
    [
        (([0, 1], [0], np.ones(1, np.float32)), "indptr has 2 entries"),
        (([1, 1, 1], [0], np.ones(1, np.float32)), "must start at 0"),
        (([0, 2, 1], [0, 1], np.ones(2, np.float32)), "decreases at sample 0, step 1"),
        (([0, 1, 1], [0, 1], np.ones(2, np.float32)), "ends at 1 but there are 2 events"),
        (([0, 1, 2], [0, 4], np.ones(2, np.float32)), "neuron 4 at sample 0, step 1 is outside the 4 neurons"),
        (([0, 1, 2], [0, -1], np.ones(2, np.float32)), "neuron -1 at sample 0, step 1"),
        (([0, 1, 2], [0, 1], np.array([1, np.nan], np.float32)), "nan at sample 0, step 1, neuron 1 is not finite"),
        (([0, 1, 2], [0, 1], np.array([np.inf, 1], np.float32)), "inf at sample 0, step 0"),
        (([0, 1, 2], [0, 1], np.array([1, 0], np.float32)), "zero at sample 0, step 1"),
        (([0, 2, 2], [3, 3], np.ones(2, np.float32)), "neuron 3 appears twice at sample 0, step 0"),
        (([0, 1, 2], [0, 1], np.ones(2, np.int64)), "must be float32 or float64"),
        (([0, 1, 2], [0.0, 1.0], np.ones(2, np.float32)), "index must be a 1-D integer array"),
        (([0, 1, 2], [0, 1], np.ones(3, np.float32)), "index has 2 entries but Events.value has 3"),
    ],
)
def test_malformed_containers_are_named(args, message):
    with pytest.raises(EventsError, match=message.replace("(", r"\(")):
        _make(*args)


def test_malformed_shape_and_sizes():
    with pytest.raises(EventsError, match="positive sizes"):
        Events.empty(batch=1, steps=1, shape=(0, 3))
    with pytest.raises(EventsError, match="batch and steps must be >= 1"):
        _make([0], [], np.zeros(0, np.float32), steps=0)


def test_from_coo_steps_and_samples_in_range():
    one = np.ones(1, np.float32)
    with pytest.raises(EventsError, match="step 5 of event 0 is outside"):
        Events.from_coo([0], [5], [0], one, batch=1, steps=5, shape=(3,))
    with pytest.raises(EventsError, match="sample 2 of event 0 is outside"):
        Events.from_coo([2], [0], [0], one, batch=2, steps=5, shape=(3,))
    with pytest.raises(EventsError, match="neuron must be a 1-D integer array"):
        Events.from_coo([0], [0], [0.5], one, batch=1, steps=1, shape=(3,))


def test_from_dense_refuses_non_finite_and_integers():
    x = np.zeros((1, 2, 3, 3), np.float32)
    x[0, 1, 2, 0] = np.nan
    with pytest.raises(EventsError, match=r"sample 0, step 1, position \(2, 0\)"):
        Events.from_dense(x)
    with pytest.raises(EventsError, match="float32 or float64"):
        Events.from_dense(np.ones((1, 2, 3), np.int32))
    with pytest.raises(EventsError, match="shape"):
        Events.from_dense(np.ones((2, 3), np.float32))


def test_concat_refuses_mismatched_parts():
    a = Events.empty(batch=1, steps=2, shape=(3,))
    b = Events.empty(batch=1, steps=3, shape=(3,))
    with pytest.raises(EventsError, match="part 1 has steps=3"):
        Events.concat([a, b])


def test_a_range_of_steps_of_one_sample_is_those_steps_of_its_dense_form():
    rng = np.random.default_rng(3)
    dense = (rng.random((1, 7, 2, 3)) < 0.3) * rng.choice([-1.5, 2.0], size=(1, 7, 2, 3))
    ev = Events.from_dense(dense)
    part = ev.step_range(2, 6)
    assert part.batch == 1 and part.steps == 4
    np.testing.assert_array_equal(part.to_dense(), dense[:, 2:6])
    with pytest.raises(EventsError, match="one sample"):
        Events.from_dense(np.ones((2, 3, 1))).step_range(0, 1)
    with pytest.raises(EventsError, match="non-empty range"):
        ev.step_range(5, 5)
