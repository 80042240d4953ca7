"""MNIST images coded on access, and a batch of them coded on the thread pool.

An item of :class:`CodedImages` is checked against the documented draw (the
uniforms of ``numpy.random.default_rng((seed, i))``, compared with the
scaled pixels); ``read_batch`` against stacking the items, and ``batch_of``
against reading the items one by one: the same events, bit for bit, on 1, 2
or 3 threads. A dataset without ``read_batch`` is read item by item, in
order, in the calling thread.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import eventsim as es
from eventsim import DataError, Events, OptionError
from eventsim.datasets.mnist import CodedImages
from eventsim.learning.steps import batch_of

THREAD_COUNTS = (1, 2, 3)
STEPS = 6


@pytest.fixture(autouse=True)
def default_threads():
    yield
    es.set_threads(None)


def images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` uint8 28 x 28 images, mostly black as digits are, with labels."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    pixels[rng.random((n, 28, 28)) < 0.8] = 0
    return pixels, rng.integers(0, 10, n)


def assert_same_events(a: Events, b: Events) -> None:
    assert (a.batch, a.steps, a.shape) == (b.batch, b.steps, b.shape)
    for field in ("indptr", "index", "value"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.dtype == y.dtype and np.array_equal(x, y), field


@pytest.mark.parametrize("scale", [1.0, 0.5])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_an_item_is_its_documented_draw(scale, dtype):
    pixels, labels = images(5)
    data = CodedImages(pixels, labels, steps=STEPS, scale=scale, seed=7, dtype=dtype)
    for i in range(len(data)):
        u = np.random.default_rng((7, i)).random((1, STEPS, 1, 28, 28))
        spikes = (scale * pixels[i] / 255.0)[None, None, None] > u
        events, label = data[i]
        assert label == labels[i]
        assert_same_events(events, Events.from_dense(spikes.astype(dtype)))


@pytest.mark.parametrize("encoding", ["rate", "direct"])
def test_read_batch_stacks_the_items(encoding):
    pixels, labels = images(9)
    data = CodedImages(pixels, labels, steps=STEPS, encoding=encoding, scale=0.5, seed=3, dtype=np.float64)
    indices = [8, 0, 3, 3, -1]
    events, got = data.read_batch(indices)
    assert_same_events(events, Events.concat([data[i][0] for i in indices]))
    assert got.dtype == np.int64 and list(got) == [int(labels[i]) for i in indices]


@pytest.mark.parametrize("encoding", ["rate", "direct"])
def test_batch_of_codes_the_same_events_on_any_number_of_threads(encoding):
    pixels, labels = images(11)
    data = CodedImages(pixels, labels, steps=STEPS, encoding=encoding, scale=0.5, seed=3)
    indices = np.array([9, 0, 4, 4, 10, 2, 7])
    expected = Events.concat([data[int(i)][0] for i in indices])
    for n in THREAD_COUNTS:
        es.set_threads(n)
        events, got = batch_of(data, indices)
        assert_same_events(events, expected)
        np.testing.assert_array_equal(got, labels[indices])


def test_a_subset_of_coded_images_reads_its_batches_as_the_images_read_one_by_one():
    """``--train-limit`` wraps the data in a Subset: its batches are still read in runs, and are its items."""
    from eventsim.learning.runs import Subset

    pixels, labels = images(12)
    data = CodedImages(pixels, labels, steps=STEPS, scale=0.5, seed=3)
    subset = Subset(data, np.array([11, 2, 5, 7, 0]))
    plain = Recorded(3)
    plain.labels = np.arange(3)
    assert hasattr(subset, "read_batch") and not hasattr(Subset(plain, np.arange(2)), "read_batch")
    es.set_threads(2)
    events, got = batch_of(subset, [4, 1, 1, 3])
    assert_same_events(events, Events.concat([data[i][0] for i in (0, 2, 2, 7)]))
    np.testing.assert_array_equal(got, labels[[0, 2, 2, 7]])


class Recorded:
    """Items of batch 1 (value i + 1 at sample i) that note which thread read them, in which order."""

    def __init__(self, n: int) -> None:
        self.items = [Events.from_dense(np.full((1, 2, 3), i + 1.0)) for i in range(n)]
        self.reads: list[tuple[list[int], str]] = []

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        self.reads.append(([i], threading.current_thread().name))
        return self.items[i], i


class RecordedBatches(Recorded):
    def read_batch(self, indices):
        self.reads.append(([int(i) for i in indices], threading.current_thread().name))
        return Events.concat([self.items[i] for i in indices]), np.asarray(indices)


def test_read_batch_is_called_on_the_pool_for_runs_of_consecutive_samples():
    data = RecordedBatches(8)
    es.set_threads(2)
    events, labels = batch_of(data, [7, 1, 2, 5, 0])
    runs = sorted(r for r, _ in data.reads)
    assert runs == [[5, 0], [7, 1, 2]]
    assert threading.current_thread().name not in {name for _, name in data.reads}
    np.testing.assert_array_equal(events.to_dense()[:, 0, 0], np.array([8.0, 2, 3, 6, 1], np.float32))
    np.testing.assert_array_equal(labels, [7, 1, 2, 5, 0])


def test_other_datasets_are_read_in_order_in_the_calling_thread():
    data = Recorded(8)
    es.set_threads(3)
    batch_of(data, [5, 1, 7, 1])
    assert data.reads == [([i], threading.current_thread().name) for i in (5, 1, 7, 1)]


class Failing(RecordedBatches):
    def read_batch(self, indices):
        if 3 in indices:
            raise DataError("image 3: unreadable")
        if 5 in indices:
            return self.items[5], np.zeros(len(indices) + 1, np.int64)  # one label too many
        return super().read_batch(indices)


@pytest.mark.parametrize("threads", THREAD_COUNTS)
def test_a_run_that_fails_on_the_pool_fails_the_batch(threads):
    data = Failing(8)
    es.set_threads(threads)
    with pytest.raises(DataError, match="image 3: unreadable"):
        batch_of(data, [0, 1, 2, 3, 4, 6])
    with pytest.raises(OptionError, match=r"Failing.read_batch of \d samples must give \(Events of batch \d"):
        batch_of(data, [0, 1, 5, 6])


class NotEvents(Recorded):
    def __getitem__(self, i: int):
        return (np.zeros(3), i) if i == 1 else super().__getitem__(i)


def test_an_item_that_is_not_events_is_named():
    with pytest.raises(OptionError, match="dataset item 1 must be"):
        batch_of(NotEvents(3), [0, 1, 2])
