"""Resuming from a checkpoint whose fields load but do not fit a run.

load_checkpoint promises types (config and rng_state are dicts, history a
list of dicts); what the trainer then reads from them (the two generator
states, the interrupted epoch's partial sums, the optimizer's buffers) must
be checked too, so a foreign or edited checkpoint gives a CheckpointError
naming the file, never a KeyError or a silently wrong resume.
"""

import json

import h5py
import pytest

import eventsim as es
from eventsim.learning import Lee2020
from test_trainer import dataset, make_trainer


def crashed_run(tmp_path):
    """A run stopped inside its second epoch (so its history has an in-progress entry)."""
    trainer = make_trainer(tmp_path, Lee2020(), checkpoint_every=1)
    trainer.epochs = 1
    trainer.fit(dataset())
    return tmp_path / "run.h5"


def edit_json_attr(path, name, edit):
    with h5py.File(path, "r+") as f:
        value = json.loads(f.attrs[name])
        f.attrs[name] = json.dumps(edit(value))


EDITS = {
    "no epoch_start state": ("rng_state", lambda s: {"current": s["current"]}),
    "no current state": ("rng_state", lambda s: {"epoch_start": s["epoch_start"]}),
    "epoch_start not a state": ("rng_state", lambda s: {**s, "epoch_start": 5}),
    "current of another generator": ("rng_state", lambda s: {**s, "current": {"bit_generator": "Nope"}}),
    "partial epoch without its sums": ("history", lambda h: h + [{"epoch": 2, "in_progress": True}]),
    "partial sums of the wrong type": ("history", lambda h: h + [{"epoch": 2, "in_progress": True, "loss": "x",
                                                                  "correct": [], "seen": None, "seconds": {}}]),
}


@pytest.mark.parametrize("case", sorted(EDITS))
def test_a_checkpoint_whose_fields_do_not_fit_a_run_is_named(tmp_path, case):
    path = crashed_run(tmp_path)
    edit_json_attr(path, *EDITS[case])
    with pytest.raises(es.CheckpointError, match="run.h5"):
        make_trainer(tmp_path, Lee2020()).resume(path)


def test_an_optimizer_state_that_does_not_fit_names_the_checkpoint(tmp_path):
    path = crashed_run(tmp_path)
    with h5py.File(path, "r+") as f:
        f["optimizer"].attrs["keys"] = json.dumps(["step", "m/nothing"] + json.loads(f["optimizer"].attrs["keys"])[2:])
    with pytest.raises(es.CheckpointError, match="run.h5"):
        make_trainer(tmp_path, Lee2020()).resume(path)
