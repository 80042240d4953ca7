"""Neurons without current are only leaked, later: the numbers stay those of the full update, bit for bit.

A neuron layer of the plain kind reads, at each step, only the blocks of
neurons a synapse flagged as reached (kernels.flagged_lif_window); the other
blocks owe steps of leak, applied when they are next read. The references:
the same kernel's full update (kernels.plain_lif_window, itself checked
against the stepwise recursion in test_kernels.py), and the dense twin
(eventsim.dense.run_dense) for whole networks. A run that records the
potentials takes the full update, so comparing a run with and without that
record compares the two paths on the same network.
"""

from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim import kernels, stages
from eventsim.dense import run_dense
from eventsim.testing.strategies import DTYPES, dyadic, net_cases, random_events

seeds = st.integers(0, 2**32 - 1)


#: The kernels that skip silent blocks: the window's (after a scatter kernel) and the stepwise ones.
SKIPPING = ("flagged_lif_window", "conv_lif_window", "pool_lif_window", "linear_lif_window")


@contextmanager
def skipped_blocks():
    """Count, by kernel, the calls of the skipping kernels and the (step, block) pairs they only leaked."""
    seen = {"calls": 0, "skipped": 0, **{name: 0 for name in SKIPPING}}
    originals = {name: getattr(kernels, name) for name in SKIPPING}

    def counting(name):
        def run(*args):
            out = originals[name](*args)
            seen["calls"] += 1
            seen[name] += 1
            seen["skipped"] += out[4]
            return out
        return run

    for name in SKIPPING:
        setattr(kernels, name, counting(name))
    try:
        yield seen
    finally:
        for name, original in originals.items():
            setattr(kernels, name, original)


@pytest.fixture(autouse=True)
def always_skip(monkeypatch):
    """Every window of a layer that can skip does, whatever its share of flagged blocks (SILENT_SHARE)."""
    monkeypatch.setattr(stages, "SILENT_SHARE", 1.0)


def assert_same_bits(a: np.ndarray, b: np.ndarray, what: str) -> None:
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), f"{what} differs"


@given(seed=seeds, dtype=DTYPES, steps=st.integers(1, 40), c=st.integers(1, 4), hw=st.integers(1, 9),
       shift=st.integers(0, 6), leak=st.sampled_from([1.0, 0.5, 0.875, 0.99, 0.0]), soft=st.booleans(),
       strict=st.booleans(), v_reset=st.sampled_from([0.0, -0.5, 0.25, 2.0]), v_init=st.sampled_from([0.0, 0.5, 3.0]),
       density=st.sampled_from([0.0, 0.05, 0.3, 1.0]), extra=st.sampled_from([0.0, 0.2]),
       gain=st.sampled_from([1.0, 0.75, -1.0]))
def test_flagged_window_equals_the_full_update(seed, dtype, steps, c, hw, shift, leak, soft, strict, v_reset, v_init,
                                               density, extra, gain):
    """Sparse currents, flags where they are (and some where they are not), potentials that may start or be
    reset at or above theta (soft remainders, v_reset above theta), a negative gain (whose g * 0 is -0): every
    output and state bit is the same."""
    rng = np.random.default_rng(seed)
    n, block = c * hw * hw, 1 << shift
    blocks = (n + block - 1) // block
    reached = rng.random((steps, blocks)) < density
    cur = np.where(np.repeat(reached, block, axis=1)[:, :n], dyadic(rng, (steps, n), dtype, scale=4), dtype(0))
    flags = (reached | (rng.random(reached.shape) < extra)).astype(np.uint8)
    theta = rng.choice([0.5, 1.0, 1.5, np.inf], size=c).astype(dtype)
    args = (theta, dtype(leak), soft, dtype(v_reset), strict)
    v, counts, traces = (np.full(n, v_init, dtype) for _ in range(3))
    counts[:], traces[:] = 0, rng.integers(0, 3, n)
    fv, fcur, fcounts, ftraces = v.copy(), cur.copy(), counts.copy(), traces.copy()
    want = kernels.plain_lif_window(v, cur, *args, counts, traces, dtype(gain), None, True)
    got = kernels.flagged_lif_window(fv, fcur, flags, shift, *args, fcounts, ftraces, dtype(gain))
    for a, b, what in zip(got[:3], want[:3], ("indptr", "index", "value")):
        assert_same_bits(a, b, what)
    assert got[3] == want[3]
    for a, b, what in ((fv, v, "potential"), (fcounts, counts, "counts"), (ftraces, traces, "traces"),
                       (fcur, cur, "buffer")):
        assert_same_bits(a, b, what)
    assert not fcur.any() and not flags.any()  # left zeroed for the next window
    assert got[4] <= steps * blocks - np.count_nonzero(reached)


def test_silent_blocks_are_skipped_in_a_sparse_conv_network():
    """The fast path runs where it should: most blocks of a sparse conv layer are only leaked."""
    rng = np.random.default_rng(3)
    dtype = np.float32
    net = es.Network([es.Conv2d(2, 16, 3, padding=1, name="conv"), es.LIF(threshold=0.75, leak=0.9375, name="lif"),
                      es.SumPool(2, name="pool"), es.LIF(threshold=1.0, leak=1.0, name="lif2")], (2, 24, 24), dtype=dtype)
    net.layers[0].weight = dyadic(rng, (16, 2, 3, 3), dtype)
    events = random_events(rng, 2, 30, (2, 24, 24), 0.01, dtype)
    with skipped_blocks() as seen:
        got = net.run(events, record=("spikes", "counts", "traces"))
    assert seen["conv_lif_window"] == seen["pool_lif_window"] == 2 and seen["skipped"] > 0  # the stepwise kernels
    ref = run_dense(net, events.to_dense())
    full = net.run(events, record=("spikes", "counts", "traces", "potentials"))
    for name in ("lif", "lif2"):
        np.testing.assert_array_equal(got.spikes[name].to_dense(), ref.outputs[name])
        assert_same_bits(got.counts[name], full.counts[name], f"counts of {name}")
        assert_same_bits(got.traces[name], full.traces[name], f"traces of {name}")


@settings(max_examples=60, deadline=None)
@given(case=net_cases(), window=st.sampled_from([None, 1, 3]), currents=st.booleans())
def test_random_networks_without_potential_records_equal_the_dense_twin(case, window, currents):
    """Random networks, windows of any length: the skipping run equals the full one and the dense twin.

    Without the currents recorded, a layer fed by one synapse runs step by step (kernels.stepwise); with
    them, the scatter fills the window's rows and kernels.flagged_lif_window reads them."""
    net, events = case.network, case.events
    got = net.run(events, record=("spikes", "counts", "traces") + (("currents",) if currents else ()), window=window)
    full = net.run(events, record=("spikes", "counts", "traces", "potentials"), window=window)
    ref = run_dense(net, events.to_dense())
    for name, spikes in got.spikes.items():
        np.testing.assert_array_equal(spikes.to_dense(), ref.outputs[name], err_msg=f"output events of {name}")
        assert_same_bits(got.counts[name], full.counts[name], f"counts of {name}")
    for name in got.traces:
        assert_same_bits(got.traces[name], full.traces[name], f"traces of {name}")
    if ref.readout is not None:
        assert_same_bits(got.output, full.output, "readout")
        np.testing.assert_array_equal(got.output, ref.readout)


def test_skipping_runs_are_bit_identical_across_thread_counts():
    rng = np.random.default_rng(5)
    dtype = np.float32
    net = es.Network([es.Conv2d(2, 8, 3, name="conv"), es.LIF(threshold=0.5, leak=0.9, name="lif"),
                      es.Flatten(), es.Linear(8 * 10 * 10, 6, name="fc"), es.LIF(leak=0.8, name="lif2")],
                     (2, 12, 12), dtype=dtype)
    net.layers[0].weight = rng.normal(0, 0.3, (8, 2, 3, 3)).astype(dtype)
    net.layers[3].weight = rng.normal(0, 0.1, (6, 800)).astype(dtype)
    events = random_events(rng, 5, 25, (2, 12, 12), 0.03, dtype)
    runs = []
    try:
        for threads in (1, 2, 3):
            es.set_threads(threads)
            runs.append(net.run(events, record=("counts", "traces")))
    finally:
        es.set_threads(None)
    for other in runs[1:]:
        for name in ("lif", "lif2"):
            assert_same_bits(other.traces[name], runs[0].traces[name], f"traces of {name}")
            assert_same_bits(other.counts[name], runs[0].counts[name], f"counts of {name}")


def test_a_window_with_many_flagged_blocks_takes_the_full_update_with_the_same_bits(monkeypatch):
    """Above SILENT_SHARE flagged (step, block) pairs the layer updates every neuron: the run does not change."""
    rng = np.random.default_rng(4)
    dtype = np.float32
    net = es.Network([es.Conv2d(2, 16, 3, padding=1, name="conv"), es.LIF(threshold=0.75, leak=0.9375, name="lif")],
                     (2, 24, 24), dtype=dtype)
    net.layers[0].weight = dyadic(rng, (16, 2, 3, 3), dtype)
    events = random_events(rng, 2, 30, (2, 24, 24), 0.01, dtype)
    record = ("spikes", "counts", "traces", "currents")  # the currents recorded: the window's path, not the stepwise one
    with skipped_blocks() as seen:
        skipping = net.run(events, record=record)
    assert seen["flagged_lif_window"] == 2 and seen["skipped"] > 0
    monkeypatch.setattr(stages, "SILENT_SHARE", 0.0)  # any flagged pair is too many
    with skipped_blocks() as seen:
        full = net.run(events, record=record)
    assert seen["calls"] == 0
    np.testing.assert_array_equal(full.spikes["lif"].to_dense(), skipping.spikes["lif"].to_dense())
    for what in ("counts", "traces"):
        assert_same_bits(getattr(full, what)["lif"], getattr(skipping, what)["lif"], what)
    monkeypatch.setattr(stages, "SILENT_SHARE", 1.0)  # skipping again: the flags went back to the pool zeroed
    again = net.run(events, record=record)
    np.testing.assert_array_equal(again.spikes["lif"].to_dense(), skipping.spikes["lif"].to_dense())


@given(seed=seeds, rows=st.integers(0, 6), cols=st.integers(0, 70), density=st.sampled_from([0.0, 0.1, 0.5, 1.0]))
def test_count_flags_counts_the_nonzero_flags(seed, rows, cols, density):
    """What decides between skipping and the full update: NumPy's count of the nonzero entries, whatever their value."""
    rng = np.random.default_rng(seed)
    flags = np.where(rng.random((rows, cols)) < density, rng.integers(1, 256, (rows, cols)), 0).astype(np.uint8)
    assert kernels.count_flags(flags) == np.count_nonzero(flags)
