"""Fuzzing the run-folder files eventsim reads: ``job.json`` and ``prepared.json``.

Mutated valid files (fields replaced by any JSON value, deleted, added; the
whole document replaced; bytes flipped) must give a job that is valid
(JSON-ready, every field of its type) or an eventsim error naming the file;
never another exception (tests/fuzzing.py). HYPOTHESIS_PROFILE=campaign runs
10,000 cases per test.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, fields

from hypothesis import given
from hypothesis import strategies as st

from eventsim.learning.runs import Job, make_trainer, saved_job
from fuzzing import untrusted

#: Any JSON value, the awkward ones (huge and negative numbers, NaN, inf, nesting) included.
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.integers(-(10**400), 10**400)
    | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=6,
)
#: Values a field might plausibly hold: small numbers and the names of the registries.
plausible = (st.integers(-3, 100) | st.floats(-1.0, 10.0) | st.none() | st.booleans()
             | st.sampled_from(["nmnist", "mnist", "lee2020-lenet5", "ngu2022-mnist", "bptt", "lee2020", "lee_mse",
                                "cross_entropy", "spike_count_mse", "adamw", "sgd", "count", "direct",
                                "unit-currents", "batch", "lif1", "fast_sigmoid", "arctan"]))
VALID_JOBS = [asdict(Job()), asdict(Job(dataset="mnist", model="lee2020-resnet7", rule="bptt",
                                         loss="cross_entropy", encoding="direct", leak=1.0, width=0.25,
                                         calibrate="max-current", tune_slope=True, norm="batch_time"))]
FIELDS = [f.name for f in fields(Job)]


@st.composite
def mutated_documents(draw, valid: list[dict], names: list[str]) -> bytes:
    """A valid document with a few mutations, serialised; sometimes with flipped bytes."""
    doc = dict(draw(st.sampled_from(valid)))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["replace", "replace", "delete", "add", "whole"]))
        if kind == "replace":
            name = draw(st.sampled_from(names))
            inner = doc.get(name)
            if isinstance(inner, dict) and inner and draw(st.booleans()):  # one entry of an object field
                doc[name] = {**inner, draw(st.sampled_from(sorted(inner))): draw(plausible | json_values)}
            else:
                doc[name] = draw(plausible | json_values)
        elif kind == "delete" and doc:
            doc.pop(draw(st.sampled_from(sorted(doc))))
        elif kind == "add":
            doc[draw(st.text(max_size=8))] = draw(json_values)
        else:  # "whole": another document altogether
            doc = draw(json_values)
            break
    raw = bytearray(json.dumps(doc).encode())
    for _ in range(draw(st.sampled_from([0, 0, 0, 1, 2]))):
        if raw:
            raw[draw(st.integers(0, len(raw) - 1))] = draw(st.integers(0, 255))
    return bytes(raw)


def check_job(job: Job) -> None:
    """A job that loaded is JSON-ready and reloads as itself."""
    doc = asdict(job)
    json.dumps(doc, allow_nan=False)
    assert Job.from_dict(doc) == job
    for name in ("steps", "batch_size", "epochs", "seed", "train_limit", "test_limit"):
        assert type(doc[name]) is int and doc[name] >= 0
    assert type(doc["lr"]) is float and math.isfinite(doc["lr"])


@given(raw=mutated_documents(VALID_JOBS, FIELDS))
def test_fuzzed_job_json(tmp_path_factory, raw):
    folder = tmp_path_factory.mktemp("job")
    (folder / "job.json").write_bytes(raw)

    untrusted("job.json", lambda: saved_job(folder), check_job)


VALID_PREPARED = [
    {"calibration_samples": 64, "thresholds": {"lif1": 1.5, "lif2": 0.75, "lif3": 2.0}},
    {"calibration_samples": 32, "scales": {"conv1": 0.5, "fc1": 2.0},
     "surrogate": {"name": "fast_sigmoid", "c": 3.0},
     "slope_tuning": {"slope": 3.0, "ratio": 1.01, "converged": True, "history": [[1.0, 0.5]]}},
]
PREPARED_FIELDS = ["calibration_samples", "scales", "thresholds", "surrogate", "slope_tuning"]


@given(raw=mutated_documents(VALID_PREPARED, PREPARED_FIELDS))
def test_fuzzed_prepared_json(tmp_path_factory, raw):
    folder = tmp_path_factory.mktemp("prepared")
    (folder / "prepared.json").write_bytes(raw)
    job = Job(rule="bptt")  # LeNet5: spiking layers lif1, lif2, lif3
    assert untrusted("prepared.json", lambda: make_trainer(job, folder, None)) in {"ok", "CheckpointError"}
