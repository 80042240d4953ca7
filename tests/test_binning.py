"""Binning recordings into steps (eventsim.encoders.binning): properties and errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventsim as es
from eventsim.encoders.binning import bin_events
from eventsim.datasets import NMNIST
from shared_data import data_root

H, W = 5, 7


@st.composite
def recordings(draw, min_size=1):
    n = draw(st.integers(min_size, 60))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rec = np.empty(n, [("x", np.int16), ("y", np.int16), ("t", np.int64), ("p", np.int8)])
    rec["x"], rec["y"], rec["p"] = rng.integers(0, W, n), rng.integers(0, H, n), rng.integers(0, 2, n)
    rec["t"] = np.sort(draw(st.integers(0, 10**6)) + rng.integers(0, draw(st.integers(1, 10**5)), n))
    return rec


def _window_mask(rec, start, step_us, steps):
    return (rec["t"] >= start) & (rec["t"] < start + steps * step_us)


@given(rec=recordings(), steps=st.integers(1, 40))
def test_counts_sum_to_the_events_in_the_window(rec, steps):
    span = int(rec["t"][-1] - rec["t"][0])
    if span < steps:
        with pytest.raises(es.OptionError, match="too short"):
            bin_events(rec, sensor=(H, W), steps=steps, values="count")
        return
    counts = bin_events(rec, sensor=(H, W), steps=steps, values="count").to_dense()[0]
    inside = _window_mask(rec, rec["t"][0], span // steps, steps)
    assert counts.sum() == inside.sum()
    for e in np.flatnonzero(inside)[:5]:  # each event lands at its own pixel, polarity and step
        step = (rec["t"][e] - rec["t"][0]) // (span // steps)
        assert counts[step, rec["p"][e], rec["y"][e], rec["x"][e]] >= 1
    binary = bin_events(rec, sensor=(H, W), steps=steps).to_dense()[0]
    np.testing.assert_array_equal(binary, (counts > 0).astype(np.float32))


@given(rec=recordings(), step_us=st.integers(1, 5000))
def test_step_length_mode_keeps_every_event(rec, step_us):
    counts = bin_events(rec, sensor=(H, W), step_us=step_us, values="count")
    assert counts.steps == (rec["t"][-1] - rec["t"][0]) // step_us + 1
    assert counts.to_dense().sum() == rec.shape[0]


@given(rec=recordings(), offset=st.integers(-50, 50), steps=st.integers(1, 10), step_us=st.integers(1, 100))
def test_explicit_window(rec, offset, steps, step_us):
    start = int(rec["t"][0]) + offset
    counts = bin_events(rec, sensor=(H, W), steps=steps, step_us=step_us, start_us=start, values="count")
    assert counts.steps == steps
    assert counts.to_dense().sum() == _window_mask(rec, start, step_us, steps).sum()


def test_binary_binning_keeps_every_samples_first_event():
    data = NMNIST(data_root(), "test")
    for i in range(len(data)):
        rec, _ = data[i]
        frames = bin_events(rec, sensor=(34, 34), steps=100).to_dense()[0]
        first = rec[0]
        assert frames[0, first["p"], first["y"], first["x"]] == 1, f"sample {i}"


def test_empty_recording():
    rec = np.zeros(0, [("x", int), ("y", int), ("t", int), ("p", int)])
    assert bin_events(rec, sensor=(H, W), steps=4).n_events == 0
    with pytest.raises(es.OptionError, match="empty recording needs steps"):
        bin_events(rec, sensor=(H, W), step_us=10)


@pytest.mark.parametrize("field,value,match", [("x", W, "x = 7 is outside"), ("y", -1, "y = -1"), ("p", 2, "p = 2")])
def test_events_outside_the_sensor_are_refused(field, value, match):
    rec = np.zeros(3, [("x", int), ("y", int), ("t", int), ("p", int)])
    rec["t"] = [0, 5, 10]
    rec[field][1] = value
    with pytest.raises(es.EventsError, match=f"event 1: {match}"):
        bin_events(rec, sensor=(H, W), steps=2)


@pytest.mark.parametrize("kwargs,match", [
    ({}, "give steps="), ({"steps": 0}, "positive integer"), ({"steps": 2, "values": "sum"}, "unknown values"),
    ({"steps": 2, "dtype": np.int32}, "float32 or float64"), ({"steps": 2, "start_us": 20, "end_us": 10}, "ends"),
])
def test_bad_options(kwargs, match):
    rec = np.zeros(2, [("x", int), ("y", int), ("t", int), ("p", int)])
    rec["t"] = [0, 10]
    with pytest.raises(es.OptionError, match=match):
        bin_events(rec, sensor=(H, W), **kwargs)
