"""Fuzzing the run-folder files ``eventsim plot`` reads: ``report.json`` and ``metrics.jsonl``.

A run folder may come from anyone. Mutated files (bytes flipped, inserted,
cut; JSON values replaced by any JSON, keys deleted) must give a figure or a
DataError naming the file (tests/fuzzing.py); the campaign profile runs
10,000 cases per reader (docs/safety.md).
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from eventsim import plots
from eventsim.errors import DataError
from fuzzing import untrusted

pytest.importorskip("matplotlib")

#: What eventsim train writes, cut to the keys the figures read and a few others.
REPORT = {
    "split": "test", "samples": 20, "accuracy": 0.1,
    "firing_rate": {"lif1": 0.12, "pool1": 0.05, "lif2": 0.03, "readout1": 0.0},
    "synops_per_sample": {"conv1": 1.5e6, "conv2": 8.0e4, "fc1": 0.0},
    "per_class": [{"class": 0, "support": 2, "accuracy": 0.5}],
}
METRICS = [
    {"epoch": 1, "step": 4, "lr": 0.003, "train_loss": 0.5, "train_accuracy": 0.1, "seconds": 1.4,
     "eval_loss": 0.5, "eval_accuracy": 0.1},
    {"epoch": 2, "step": 8, "lr": 0.003, "train_loss": 0.45, "train_accuracy": 0.2, "seconds": 0.4},
]

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(min_value=10**300) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated_json(draw, value):
    """``value`` with a few of its parts replaced by any JSON, or deleted."""
    for _ in range(draw(st.integers(0, 3))):
        path, node = [], value
        while isinstance(node, (dict, list)) and node and draw(st.booleans()):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else range(len(node))))
            path.append(key)
            node = node[key]
        value = _replaced(value, path, draw(st.one_of(JSON, st.just(_DELETE))))
    return value


_DELETE = object()


def _replaced(value, path, new):
    if not path:
        return {} if new is _DELETE else new
    head, rest = path[0], path[1:]
    copy = dict(value) if isinstance(value, dict) else list(value)
    if not rest and new is _DELETE:
        del copy[head]
    else:
        copy[head] = _replaced(copy[head], rest, new)
    return copy


@st.composite
def mutated_bytes(draw, data: bytes):
    """``data`` with bytes flipped, inserted or deleted, and perhaps cut short."""
    raw = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(raw)))
        kind = draw(st.sampled_from(("flip", "insert", "delete")))
        if kind == "insert" or at == len(raw):
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "flip":
            raw[at] ^= draw(st.integers(1, 255))
        else:
            del raw[at: at + draw(st.integers(1, 8))]
    if draw(st.booleans()):
        raw = raw[: draw(st.integers(0, len(raw)))]
    return bytes(raw)


def as_lines(records) -> bytes:
    items = records if isinstance(records, list) else [records]
    return "".join(json.dumps(r) + "\n" for r in items).encode()


def reports():
    return st.one_of(mutated_json(REPORT).map(lambda r: json.dumps(r).encode()),
                     mutated_bytes(json.dumps(REPORT, indent=2).encode()))


def metric_logs():
    return st.one_of(mutated_json(METRICS).map(as_lines), mutated_bytes(as_lines(METRICS)))


def is_figure(result) -> None:
    assert len(result.axes) == 2


@given(content=reports())
def test_report_json(tmp_path_factory, content):
    path = tmp_path_factory.getbasetemp() / "report.json"
    path.write_bytes(content)
    outcome = untrusted("plot report.json", lambda: plots.firing_rates_figure(plots.read_report(path)), is_figure)
    assert outcome in ("ok", "DataError")


@given(content=metric_logs())
def test_metrics_jsonl(tmp_path_factory, content):
    path = tmp_path_factory.getbasetemp() / "metrics.jsonl"
    path.write_bytes(content)
    outcome = untrusted("plot metrics.jsonl", lambda: plots.curves_figure(plots.read_metrics(path)), is_figure)
    assert outcome in ("ok", "DataError")


def test_the_errors_name_the_file(tmp_path):
    path = tmp_path / "report.json"
    path.write_bytes(b"\x00")
    with pytest.raises(DataError, match=str(path)):
        plots.read_report(path)
