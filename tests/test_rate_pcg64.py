"""Rate coding on NumPy's PCG64 draws only the numbers it compares, and they are NumPy's.

References, all NumPy's own: ``Generator(PCG64(...)).random`` for the
stream and the state it leaves, ``PCG64.advance`` for the jumps of the
ladder, and the documented definition of the spikes written out here
(``sign(x) * 1[|scale * x| > rng.random((B, steps, *shape))]``). Generators
on other bit generators, or of other types, must take NumPy's own path.
"""

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsim import Events, OptionError
from eventsim.encoders.pcg64 import _LADDER, MULTIPLIER, has_numpy_pcg64, random_at
from eventsim.encoders.rate import rate

STATES = st.integers(0, 2**128 - 1)
INCREMENTS = st.integers(0, 2**127 - 1).map(lambda k: 2 * k + 1)  # NumPy's increments are odd
SEEDS = st.one_of(st.integers(0, 2**128 - 1), st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 10**6)))
SHAPES = st.sampled_from([(1,), (7,), (3, 5), (2, 4, 6), (1, 28, 28)])
ZERO_SHARES = st.sampled_from([0.0, 0.5, 0.8, 0.95, 1.0])


def generator_at(state: int, inc: int, has_uint32: int = 0, uinteger: int = 0) -> np.random.Generator:
    """A Generator on PCG64 whose state is set to the given integers."""
    bit_generator = np.random.PCG64()
    bit_generator.state = {"bit_generator": "PCG64", "state": {"state": state, "inc": inc},
                           "has_uint32": has_uint32, "uinteger": uinteger}
    return np.random.Generator(bit_generator)


def signed_images(seed: int, batch: int, shape: tuple, zero_share: float) -> np.ndarray:
    """Inputs in [-1, 1] with a share of exact zeros (most pixels of a digit are 0), and some +-1."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (batch, *shape))
    x[rng.random(x.shape) < 0.05] = 1.0
    x[rng.random(x.shape) < 0.05] = -1.0
    x[rng.random(x.shape) < zero_share] = 0.0
    return x


def defined_events(x: np.ndarray, steps: int, u: np.ndarray, scale: float, dtype) -> Events:
    """The documented spikes ``sign(x) * 1[|scale * x| > u]`` for ``u`` of shape ``(B, steps, *shape)``."""
    p = np.abs(scale * x)[:, None]
    return Events.from_dense((np.sign(x)[:, None] * (p > u)).astype(dtype))


def assert_same_events(a: Events, b: Events) -> None:
    assert (a.batch, a.steps, a.shape) == (b.batch, b.steps, b.shape)
    for field in ("indptr", "index", "value"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field


def assert_same_state(a: np.random.Generator, b: np.random.Generator) -> None:
    """Equal ``bit_generator.state`` dicts (MT19937's holds an array), and so the same numbers next."""
    def same(x, y):
        if isinstance(x, dict):
            return isinstance(y, dict) and x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return np.array_equal(x, y)

    assert same(a.bit_generator.state, b.bit_generator.state)
    np.testing.assert_array_equal(a.random(5), b.random(5))


# ----------------------------------------------------------------- the stream

@given(state=STATES, inc=INCREMENTS, steps=st.integers(1, 4), n=st.integers(1, 3000), data=st.data())
def test_drawn_numbers_are_numpys_at_their_places_and_the_state_is_numpys_after(state, inc, steps, n, data):
    """Any subset of places, from any state: NumPy's j-th number at place j, NumPy's state after all of them."""
    density = data.draw(st.sampled_from([0.0, 0.001, 0.05, 0.5, 1.0]))
    picked = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1))).random(n) < density
    columns = np.flatnonzero(picked)
    numpy, ours = generator_at(state, inc), generator_at(state, inc)
    expected = numpy.random((steps, n))
    out = np.full((steps, n), -1.0)
    random_at(ours, columns, out)
    np.testing.assert_array_equal(out[:, columns], expected[:, columns])
    assert (out[:, ~picked] == -1.0).all()  # the others are left as they were
    assert_same_state(ours, numpy)


@given(seed=SEEDS, skipped=st.integers(0, 5000))
def test_a_number_after_a_skip_is_numpys_number_at_that_place(seed, skipped):
    """Drawing only number j (j = ``skipped``) gives NumPy's j-th number of the stream seeded alike."""
    expected = np.random.Generator(np.random.PCG64(seed)).random(skipped + 1)[-1]
    out = np.zeros((1, skipped + 1))
    random_at(np.random.Generator(np.random.PCG64(seed)), np.array([skipped]), out)
    assert out[0, skipped] == expected


def test_a_long_skip_lands_where_numpys_advance_does():
    """2^20 - 1 numbers skipped, then one drawn: NumPy's ``advance`` (its own jump) then one draw."""
    n = 2**20
    numpy = np.random.Generator(np.random.PCG64(11))
    numpy.bit_generator.advance(n - 1)
    out = np.zeros((1, n))
    random_at(np.random.Generator(np.random.PCG64(11)), np.array([n - 1]), out)
    assert out[0, n - 1] == numpy.random()


@pytest.mark.parametrize("k", range(_LADDER.shape[0]))
def test_each_rung_of_the_jump_ladder_is_numpys_advance_by_a_power_of_two(k):
    """From state 0 with increment 1, ``advance(2^k)`` lands on ``S_{2^k}``; from 1, on ``A_{2^k} + S_{2^k}``."""
    def advanced(state):
        bit_generator = generator_at(state, 1).bit_generator
        bit_generator.advance(2**k)
        return bit_generator.state["state"]["state"]

    a_hi, a_lo, s_hi, s_lo = (int(v) for v in _LADDER[k])
    s = advanced(0)
    assert (s_hi << 64 | s_lo) == s
    assert (a_hi << 64 | a_lo) == (advanced(1) - s) % 2**128 == pow(MULTIPLIER, 2**k, 2**128)


def test_the_buffered_half_of_a_64_bit_draw_is_kept():
    """``has_uint32`` and ``uinteger`` (NumPy's pending 32-bit half) are not touched, as ``random`` leaves them."""
    numpy, ours = generator_at(5, 7, 1, 123456789), generator_at(5, 7, 1, 123456789)
    numpy.random((3, 10))
    random_at(ours, np.array([0, 4, 9]), np.empty((3, 10)))
    assert_same_state(ours, numpy)
    assert ours.bit_generator.state["has_uint32"] == 1 and ours.bit_generator.state["uinteger"] == 123456789


# ------------------------------------------------------------- coded events

@given(seed=SEEDS, images=st.integers(0, 2**32 - 1), batch=st.integers(1, 3), shape=SHAPES,
       steps=st.integers(1, 6), zero_share=ZERO_SHARES, scale=st.sampled_from([1.0, 0.5]),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_events_are_the_documented_draw_and_the_generator_ends_where_numpys_call_does(
        seed, images, batch, shape, steps, zero_share, scale, dtype):
    x = signed_images(images, batch, shape, zero_share)
    numpy, ours = np.random.default_rng(seed), np.random.default_rng(seed)
    u = numpy.random((batch, steps, *shape))
    assert_same_events(rate(x, steps, rng=ours, scale=scale, dtype=dtype), defined_events(x, steps, u, scale, dtype))
    assert_same_state(ours, numpy)


@given(seed=st.integers(0, 2**32 - 1), batch=st.integers(1, 4), shape=SHAPES, steps=st.integers(1, 6),
       zero_share=ZERO_SHARES)
def test_a_generator_per_sample_draws_each_samples_documented_numbers(seed, batch, shape, steps, zero_share):
    x = signed_images(seed, batch, shape, zero_share)
    numpy = [np.random.default_rng((seed, b)) for b in range(batch)]
    ours = [np.random.default_rng((seed, b)) for b in range(batch)]
    u = np.stack([g.random((steps, *shape)) for g in numpy])
    assert_same_events(rate(x, steps, rng=ours, scale=0.5), defined_events(x, steps, u, 0.5, np.float32))
    for a, b in zip(ours, numpy):
        assert_same_state(a, b)


@pytest.mark.parametrize("fill", [0.0, 0.3, -0.7, 1.0])
def test_all_zero_and_all_nonzero_images(fill):
    x = np.full((2, 28, 28), fill)
    numpy, ours = np.random.default_rng(3), np.random.default_rng(3)
    u = numpy.random((2, 9, 28, 28))
    events = rate(x, 9, rng=ours)
    assert_same_events(events, defined_events(x, 9, u, 1.0, np.float32))
    assert (events.index.size == 0) == (fill == 0.0)
    assert_same_state(ours, numpy)


@given(seed=st.integers(0, 2**32 - 1), draws=st.lists(st.integers(0, 3), min_size=1, max_size=12),
       shape=SHAPES, steps=st.integers(1, 5), zero_share=ZERO_SHARES)
def test_a_list_naming_generators_several_times_draws_as_their_calls_in_turn(seed, draws, shape, steps, zero_share):
    """Sample b draws from generator ``draws[b]`` of four: each goes on where its previous sample left it."""
    x = signed_images(seed, len(draws), shape, zero_share)
    numpy = [np.random.default_rng((seed, g)) for g in range(4)]
    ours = [np.random.default_rng((seed, g)) for g in range(4)]
    u = np.stack([numpy[g].random((steps, *shape)) for g in draws])
    events = rate(x, steps, rng=[ours[g] for g in draws], scale=0.5, dtype=np.float64)
    assert_same_events(events, defined_events(x, steps, u, 0.5, np.float64))
    for a, b in zip(ours, numpy):
        assert_same_state(a, b)


def test_a_batch_of_many_generators_with_all_zero_images_among_them():
    """64 generators, every third image all zero (no events, its generator still advanced by T * n)."""
    x = signed_images(4, 64, (28, 28), 0.8)
    x[::3] = 0.0
    numpy = [np.random.default_rng((9, b)) for b in range(64)]
    ours = [np.random.default_rng((9, b)) for b in range(64)]
    u = np.stack([g.random((11, 28, 28)) for g in numpy])
    events = rate(x, 11, rng=ours, scale=0.5)
    assert_same_events(events, defined_events(x, 11, u, 0.5, np.float32))
    assert all(events.sample(b).index.size == 0 for b in range(0, 64, 3))
    for a, b in zip(ours, numpy):
        assert_same_state(a, b)


def test_one_generator_for_a_large_batch_draws_the_batchs_numbers_in_one_stream():
    x = signed_images(6, 40, (28, 28), 0.8)
    numpy, ours = np.random.default_rng(12), np.random.default_rng(12)
    u = numpy.random((40, 13, 28, 28))
    assert_same_events(rate(x, 13, rng=ours), defined_events(x, 13, u, 1.0, np.float32))
    assert_same_state(ours, numpy)


@pytest.mark.parametrize("pending", [(0, 0), (1, 2**31 + 5)])
def test_a_generator_after_coding_draws_what_numpys_draws_with_every_method(pending):
    """After coding, integers, normals, 32-bit halves (the buffered ``uinteger`` included) are NumPy's."""
    x = signed_images(1, 3, (28, 28), 0.8)
    numpy, ours = generator_at(2**100 + 3, 2**90 + 1, *pending), generator_at(2**100 + 3, 2**90 + 1, *pending)
    numpy.random((3, 7, 28, 28))
    rate(x, 7, rng=[ours] * 3)
    np.testing.assert_array_equal(ours.integers(0, 2**32, 9, dtype=np.uint32),
                                  numpy.integers(0, 2**32, 9, dtype=np.uint32))
    np.testing.assert_array_equal(ours.standard_normal(9), numpy.standard_normal(9))
    np.testing.assert_array_equal(ours.integers(0, 2**63, 9), numpy.integers(0, 2**63, 9))
    assert_same_state(ours, numpy)


def test_a_list_mixing_pcg64_with_other_generators_codes_each_samples_documented_draw():
    make = [lambda: np.random.default_rng(1), OTHER_GENERATORS["Philox"], lambda: np.random.default_rng(2)]
    x = signed_images(3, 3, (28, 28), 0.8)
    numpy, ours = [m() for m in make], [m() for m in make]
    u = np.stack([g.random((5, 28, 28)) for g in numpy])
    assert_same_events(rate(x, 5, rng=ours, scale=0.5), defined_events(x, 5, u, 0.5, np.float32))
    for a, b in zip(ours, numpy):
        assert_same_state(a, b)


def test_coding_releases_the_generators_locks():
    """NumPy's own draws take the lock again after coding (a lock left held would hang them; refused here)."""
    generators = [np.random.default_rng(b) for b in range(3)]
    rate(signed_images(0, 3, (5,), 0.5), 4, rng=generators)
    assert all(g.bit_generator.lock.acquire(blocking=False) for g in generators)


def test_threads_coding_from_shared_generators_in_opposite_orders_neither_hang_nor_lose_draws():
    """Each call holds every generator it draws from: two threads naming g, h and h, g take turns.

    Whatever the turns, each generator ends advanced by all the numbers of
    all the calls (a draw lost to a race would leave it short).
    """
    g, h = np.random.default_rng(1), np.random.default_rng(2)
    x = signed_images(5, 2, (28, 28), 0.8)

    def code(order):
        for _ in range(30):
            rate(x, 6, rng=order)

    threads = [threading.Thread(target=code, args=(order,)) for order in ([g, h], [h, g])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    for ours, seed in ((g, 1), (h, 2)):
        numpy = np.random.default_rng(seed)
        numpy.random((2 * 30, 6, 28, 28))
        assert_same_state(ours, numpy)


class PCG64Subclass(np.random.PCG64):
    pass


class GeneratorSubclass(np.random.Generator):
    pass


OTHER_GENERATORS = {
    "PCG64DXSM": lambda: np.random.Generator(np.random.PCG64DXSM(5)),
    "Philox": lambda: np.random.Generator(np.random.Philox(5)),
    "MT19937": lambda: np.random.Generator(np.random.MT19937(5)),
    "SFC64": lambda: np.random.Generator(np.random.SFC64(5)),
    "PCG64 subclass": lambda: np.random.Generator(PCG64Subclass(5)),
    "Generator subclass": lambda: GeneratorSubclass(np.random.PCG64(5)),
}


def test_only_a_plain_generator_on_plain_pcg64_takes_the_pcg64_path():
    assert has_numpy_pcg64(np.random.default_rng(5)) and has_numpy_pcg64(np.random.Generator(np.random.PCG64(5)))
    assert not any(has_numpy_pcg64(make()) for make in OTHER_GENERATORS.values())


@pytest.mark.parametrize("name", OTHER_GENERATORS)
def test_other_generators_code_their_own_documented_draw(name):
    x = signed_images(2, 3, (28, 28), 0.8)
    numpy, ours = OTHER_GENERATORS[name](), OTHER_GENERATORS[name]()
    u = numpy.random((3, 7, 28, 28))
    assert_same_events(rate(x, 7, rng=ours, scale=0.5), defined_events(x, 7, u, 0.5, np.float32))
    assert_same_state(ours, numpy)


@pytest.mark.parametrize("columns", [[3, 1], [2, 2], [-1, 4], [0, 10]])
def test_columns_out_of_order_or_range_are_refused_and_the_generator_is_untouched(columns):
    generator, untouched = np.random.default_rng(8), np.random.default_rng(8)
    with pytest.raises(OptionError, match=r"random_at: columns must be strictly ascending indices in \[0, 10\)"):
        random_at(generator, np.array(columns), np.zeros((2, 10)))
    assert_same_state(generator, untouched)


def test_an_other_output_or_generator_is_refused():
    with pytest.raises(OptionError, match=r"random_at: out must be a \(T, n\) float64 array"):
        random_at(np.random.default_rng(), np.array([0]), np.zeros((2, 3), np.float32))
    with pytest.raises(OptionError, match="random_at: generator must be a numpy.random.Generator on"):
        random_at(np.random.Generator(np.random.Philox(1)), np.array([0]), np.zeros((2, 3)))
