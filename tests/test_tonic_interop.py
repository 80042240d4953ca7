"""tonic's events and frames as eventsim events (eventsim.datasets.tonic_events).

References: a histogram of the events written here with NumPy from the
binning rule (docs/semantics.md, "Events"), and, where tonic is installed,
tonic's own ToFrame on the same events. Bad input raises eventsim's errors
naming the field, the event and the sensor.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import eventsim as es
from eventsim.datasets import TonicSamples, from_tonic
from eventsim.errors import EventsError, OptionError

DVS_DTYPE = np.dtype([("x", np.int16), ("y", np.int16), ("p", bool), ("t", np.int64)])  # tonic's DVS layout
AUDIO_DTYPE = np.dtype([("t", np.int64), ("x", np.int64), ("p", np.int64)])  # tonic's SHD layout, no y


def recording(rng: np.random.Generator, n: int, sensor: tuple[int, int, int], dtype=DVS_DTYPE,
              span_us: int = 50_000) -> np.ndarray:
    """``n`` events with sorted times on ``sensor`` (W, H, P), in ``dtype``'s fields."""
    events = np.zeros(n, dtype)
    events["t"] = np.sort(rng.integers(0, span_us, n))
    events["x"] = rng.integers(0, sensor[0], n)
    if "y" in dtype.names:
        events["y"] = rng.integers(0, sensor[1], n)
    events["p"] = rng.integers(0, sensor[2], n) if sensor[2] > 1 else 1  # tonic's SHD: p = 1 on one channel
    return events


def histogram(events: np.ndarray, sensor: tuple[int, int, int], steps: int) -> np.ndarray:
    """Counts (T, P, H, W) with T bins of (t_last - t_first) // T us from the first event, the tail dropped."""
    width, height, polarities = sensor
    t = events["t"].astype(np.int64)
    step = (t - t[0]) // ((t[-1] - t[0]) // steps)
    keep = step < steps
    y = events["y"][keep] if "y" in events.dtype.names else 0
    p = events["p"][keep].astype(int) if polarities > 1 else 0
    out = np.zeros((steps, polarities, height, width))
    np.add.at(out, (step[keep], p, y, events["x"][keep]), 1)
    return out


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(2, 300), steps=st.integers(1, 12),
       one_dimensional=st.booleans())
def test_count_binning_equals_a_histogram_and_tonic_to_frame(seed, n, steps, one_dimensional):
    rng = np.random.default_rng(seed)
    sensor = (7, 1, 1) if one_dimensional else (5, 3, 2)
    events = recording(rng, n, sensor, AUDIO_DTYPE if one_dimensional else DVS_DTYPE)
    if (events["t"][-1] - events["t"][0]) // steps < 1:
        return  # too short a recording for that many steps: refused (test_a_window_too_short_is_refused)
    ours = from_tonic(events, sensor_size=sensor, steps=steps, values="count", dtype=np.float64)
    assert ours.shape == (sensor[2], sensor[1], sensor[0]) and ours.steps == steps
    dense = ours.to_dense()[0]
    np.testing.assert_array_equal(dense, histogram(events, sensor, steps))
    np.testing.assert_array_equal(from_tonic(events, sensor_size=sensor, steps=steps).to_dense()[0], dense > 0)
    try:
        import tonic.transforms as transforms
    except ImportError:
        return
    frames = transforms.ToFrame(sensor_size=sensor, n_time_bins=steps)(events.copy())
    np.testing.assert_array_equal(dense.reshape(frames.shape), frames)


def test_a_fixed_window_equals_tonic_time_slices():
    transforms = pytest.importorskip("tonic.transforms")
    rng = np.random.default_rng(3)
    sensor = (700, 1, 1)
    events = recording(rng, 2000, sensor, AUDIO_DTYPE, span_us=1_500_000)
    ours = from_tonic(events, sensor_size=sensor, steps=100, start_us=0, end_us=1_400_000, values="count")
    frames = transforms.ToFrame(sensor_size=sensor, time_window=14_000, start_time=0, end_time=1_400_000)(events.copy())
    assert frames.shape == (100, 1, 700)
    np.testing.assert_array_equal(ours.to_dense()[0][:, :, 0], frames)
    assert ours.n_events < len(events)  # the events after 1.4 s are dropped, as tonic drops them


def test_frames_become_events_as_they_are():
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 3, (6, 2, 4, 5)).astype(np.int16)
    counts = from_tonic(frames, sensor_size=(5, 4, 2), values="count")
    np.testing.assert_array_equal(counts.to_dense()[0], frames)
    np.testing.assert_array_equal(from_tonic(frames, sensor_size=(5, 4, 2)).to_dense()[0], frames > 0)
    audio = rng.integers(0, 3, (6, 1, 9))  # tonic's frames of events without y: (T, P, W)
    np.testing.assert_array_equal(from_tonic(audio, sensor_size=(9, 1, 1), values="count").to_dense()[0],
                                  audio[:, :, None, :])


def test_tonic_frames_of_a_recording_equal_its_binned_events():
    transforms = pytest.importorskip("tonic.transforms")
    events = recording(np.random.default_rng(5), 500, (6, 4, 2))
    frames = transforms.ToFrame(sensor_size=(6, 4, 2), n_time_bins=9)(events)
    from_frames = from_tonic(frames, sensor_size=(6, 4, 2), values="count")
    from_events = from_tonic(events, sensor_size=(6, 4, 2), steps=9, values="count")
    for a, b in ((from_frames.indptr, from_events.indptr), (from_frames.value, from_events.value)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.sort(from_frames.index), np.sort(from_events.index))


def bad(events: np.ndarray, **changes) -> np.ndarray:
    out = events.copy()
    for field, (i, value) in changes.items():
        out[field][i] = value
    return out


EVENTS = recording(np.random.default_rng(6), 20, (8, 6, 2))


@pytest.mark.parametrize("events, options, match", [
    (EVENTS[["x", "y", "p"]], {}, r"need fields \['t', 'x', 'y', 'p'\]; \['t'\] missing"),
    (EVENTS[["t", "x", "p"]], {}, r"\['y'\] missing"),
    (bad(EVENTS, x=(3, 8)), {}, r"event 3: x = 8 is outside the sensor's \[0, 8\)"),
    (bad(EVENTS, y=(4, -1)), {}, r"event 4: y = -1 is outside"),
    (EVENTS, {"sensor_size": (8, 6, 1)}, "single-polarity sensor"),
    (bad(EVENTS, t=(0, -5)), {"start_us": 0, "end_us": 100}, "event 0: t = -5 us is negative"),
    (bad(EVENTS, t=(5, 0)), {}, "event 5: t = 0 us is earlier than the event before"),
    (EVENTS.astype([("x", float), ("y", float), ("p", float), ("t", float)]), {}, None),
    (bad(EVENTS.astype([("x", float), ("y", np.int16), ("p", bool), ("t", np.int64)]), x=(2, 1.5)), {},
     r"event 2: x = 1.5 is not a whole number"),
    (EVENTS.reshape(4, 5), {}, "1-D structured array"),
])
def test_bad_events_are_refused_by_name(events, options, match):
    kwargs = {"sensor_size": (8, 6, 2), "steps": 4, **options}
    if match is None:  # whole floats are read as the integers they are
        np.testing.assert_array_equal(from_tonic(events, **kwargs).to_dense(), from_tonic(EVENTS, **kwargs).to_dense())
        return
    with pytest.raises(EventsError, match=match):
        from_tonic(events, **kwargs)


def test_unsorted_times_are_fine_in_a_given_window():
    shuffled = EVENTS[np.random.default_rng(7).permutation(len(EVENTS))]
    window = {"sensor_size": (8, 6, 2), "steps": 5, "start_us": 0, "end_us": 50_000, "values": "count"}
    np.testing.assert_array_equal(from_tonic(shuffled, **window).to_dense(), from_tonic(EVENTS, **window).to_dense())


def test_a_window_too_short_is_refused():
    one = EVENTS[:1]
    with pytest.raises(OptionError, match="too short"):
        from_tonic(one, sensor_size=(8, 6, 2), steps=3)
    assert from_tonic(one, sensor_size=(8, 6, 2), steps=3, start_us=0, end_us=60_000).n_events == 1


@pytest.mark.parametrize("data, options, error, match", [
    (np.zeros((3, 2, 6, 8)), {"sensor_size": (8, 6, 1)}, EventsError, r"shape \(T, 1, 6, 8\) for .*, got \(3, 2, 6, 8\)"),
    (np.zeros((3, 2, 8)), {"sensor_size": (8, 1, 1)}, EventsError, r"\(T, 1, 1, 8\) or \(T, 1, 8\) for .*, got \(3, 2, 8\)"),
    (np.zeros((3, 2, 6, 8)), {"steps": 3}, OptionError, "frames are binned already: steps"),
    (np.full((1, 2, 6, 8), np.nan), {}, EventsError, "not finite"),
    (-np.ones((1, 2, 6, 8)), {}, EventsError, "values='count'"),
    (np.array(["a"]), {}, EventsError, "must be numbers"),
    (EVENTS, {"sensor_size": (8, 6)}, OptionError, r"tonic's \(W, H, P\)"),
    (EVENTS, {"sensor_size": (8, 0, 2)}, OptionError, "positive"),
    (EVENTS, {"values": "sum"}, OptionError, "unknown values"),
])
def test_bad_frames_and_options_are_refused(data, options, error, match):
    with pytest.raises(error, match=match):
        from_tonic(data, **{"sensor_size": (8, 6, 2), **options})


class Recordings:
    """A dataset as tonic's are: a sequence of (events, target) with a sensor_size."""

    sensor_size = (4, 3, 2)

    def __init__(self, count: int, transform=None) -> None:
        rng = np.random.default_rng(8)
        self.items = [(recording(rng, 60, self.sensor_size), i % 3) for i in range(count)]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        events, target = self.items[i]
        return (events if self.transform is None else self.transform(events)), np.int64(target)


def test_tonic_samples_train_with_the_trainer():
    from eventsim.learning import Adam, CrossEntropy, Trainer
    from eventsim.learning.rules import BPTT

    data = TonicSamples(Recordings(12), steps=6)
    events, label = data[4]
    assert (events.batch, events.steps, events.shape, label) == (1, 6, (2, 3, 4), 1)
    np.testing.assert_array_equal(events.to_dense()[0], histogram(data.dataset.items[4][0], (4, 3, 2), 6) > 0)
    net = es.Network([es.Flatten(), es.Linear(24, 3), es.Readout()], input_shape=(2, 3, 4))
    net.layers[1].weight = np.random.default_rng(0).normal(0, 0.3, (3, 24)).astype(np.float32)
    before = net.layers[1].weight.copy()
    trainer = Trainer(net, rule=BPTT(), loss=CrossEntropy(), optimizer=Adam(1e-2), batch_size=4, epochs=1, progress=None)
    history = trainer.fit(data, eval_data=TonicSamples(Recordings(6), steps=6))
    assert len(history) == 1 and np.isfinite(history[0]["train_loss"]) and "eval_accuracy" in history[0]
    assert not np.array_equal(net.layers[1].weight, before)


def test_tonic_samples_take_a_tonic_transform():
    transforms = pytest.importorskip("tonic.transforms")
    framed = TonicSamples(Recordings(3, transforms.ToFrame(sensor_size=(4, 3, 2), n_time_bins=5)), values="count")
    binned = TonicSamples(Recordings(3), steps=5, values="count")
    for i in range(3):
        np.testing.assert_array_equal(framed[i][0].to_dense(), binned[i][0].to_dense())


def test_tonic_samples_name_the_bad_item():
    class Broken(Recordings):
        def __getitem__(self, i):
            events, target = super().__getitem__(i)
            return (bad(events, x=(0, 9)) if i == 2 else events), (0.5 if i == 1 else target)

    data = TonicSamples(Broken(3), steps=4)
    with pytest.raises(OptionError, match="item 1: target 0.5 is not a class index"):
        data[1]
    with pytest.raises(EventsError, match="item 2: event 0: x = 9"):
        data[2]
    with pytest.raises(IndexError):
        data[3]
    with pytest.raises(OptionError, match="no sensor_size"):
        TonicSamples([(EVENTS, 0)], steps=4)
    with pytest.raises(OptionError, match="unknown binning options"):
        TonicSamples(Recordings(1), bins=4)
