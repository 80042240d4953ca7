"""The trainer: bit-identical resume, metrics log, progress, clear errors.

An interrupted run (a crash inside an epoch, or between epochs) resumed from
its last checkpoint must end with exactly the weights, optimizer state and
metrics of the run that was never interrupted; dropout makes this depend on
the random state being restored too.
"""

from __future__ import annotations

import io
import json
from contextlib import contextmanager

import numpy as np
import pytest

import eventsim as es
import eventsim.learning.trainer as trainer_module
from eventsim.learning import (
    BPTT, Adam, Constant, CrossEntropy, Lee2020, LeeMSE, MultiStep, Trainer, init_lee2020, parameters,
)
from eventsim.learning.checkpoint import load_checkpoint
from eventsim.testing.strategies import random_events

TIMING = ("seconds", "samples_per_s")


def dataset(n=12, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    return [(random_events(rng, 1, steps, (2, 6, 6), 0.3, np.float32, values=(1.0,)), int(rng.integers(3)))
            for _ in range(n)]


def network(seed):
    net = es.Network([
        es.Conv2d(2, 4, 3, padding=1), es.LIF(0.5, tau=10.0), es.Dropout(0.25), es.SpikingAvgPool(2),
        es.Flatten(), es.Linear(4 * 3 * 3, 3), es.Readout(tau=10.0),
    ], (2, 6, 6))
    init_lee2020(net, np.random.default_rng(seed))
    return net


def make_trainer(tmp_path, rule, *, seed_net=0, **kw):
    net = network(seed_net)
    opts = dict(rule=rule, loss=LeeMSE(), optimizer=Adam(3e-3), schedule=MultiStep(3e-3, [2], 0.5),
                batch_size=5, epochs=3, seed=7, checkpoint=tmp_path / "run.h5", progress=None)
    opts.update(kw)
    return Trainer(net, **opts)


def strip_timing(history):
    return [{k: v for k, v in h.items() if k not in TIMING} for h in history]


class Crash(Exception):
    pass


@contextmanager
def crash_at_step(monkeypatch, n):
    """Make the ``n``-th training step (from 1) raise :class:`Crash` while the block runs."""
    real_step, calls = trainer_module.apply_step, {"n": 0}

    def crashing_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise Crash
        return real_step(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "apply_step", crashing_step)
    try:
        with pytest.raises(Crash):
            yield
    finally:
        monkeypatch.setattr(trainer_module, "apply_step", real_step)


@pytest.mark.parametrize("crash_at,every", [(5, 2), (6, None), (7, 1)])
@pytest.mark.parametrize("rule", [Lee2020(), BPTT()], ids=lambda r: r.name)
def test_resume_after_crash_is_bit_identical(tmp_path, monkeypatch, rule, crash_at, every):
    data = dataset()
    reference = make_trainer(tmp_path / "a", rule, checkpoint=tmp_path / "a.h5")
    reference.fit(data)

    interrupted = make_trainer(tmp_path, rule, checkpoint_every=every)
    with crash_at_step(monkeypatch, crash_at):
        interrupted.fit(data)

    resumed = make_trainer(tmp_path, rule, seed_net=99, checkpoint_every=every)  # other initial weights
    resumed.resume()
    assert resumed.step < reference.step  # it really resumes from the middle
    resumed.fit(data)

    ref_params, got = parameters(reference.network), parameters(resumed.network)
    for key in ref_params:
        np.testing.assert_array_equal(got[key], ref_params[key], err_msg=key)
    for key, value in reference.optimizer.state_dict().items():
        np.testing.assert_array_equal(resumed.optimizer.state_dict()[key], value, err_msg=key)
    assert strip_timing(resumed.history) == strip_timing(reference.history)


def test_metrics_log_and_checkpoint_contents(tmp_path):
    data = dataset()
    stream = io.StringIO()
    t = make_trainer(tmp_path, Lee2020(), log=tmp_path / "metrics.jsonl", progress=stream)
    history = t.fit(data, eval_data=data[:4])
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == history and len(lines) == 3
    assert {"epoch", "step", "lr", "train_loss", "train_accuracy", "eval_loss", "eval_accuracy"} <= set(lines[0])
    assert [h["lr"] for h in history] == [3e-3, 3e-3, 1.5e-3]  # MultiStep halves at epoch 2
    out = stream.getvalue()
    assert "epoch 3/3" in out and "samples/s" in out and "12/12" in out
    ckpt = load_checkpoint(tmp_path / "run.h5")
    assert (ckpt.epoch, ckpt.step) == (3, 9)
    assert ckpt.config["rule"] == {"name": "lee2020"} and ckpt.config["batch_size"] == 5
    for key, value in parameters(t.network).items():
        np.testing.assert_array_equal(ckpt.params[key], value)


class Terminal(io.StringIO):
    """A stream that says it is a terminal, as an interactive session's stderr does."""

    def isatty(self):
        return True


def test_progress_redraws_one_line_on_a_terminal_stderr_with_the_epochs_figures(tmp_path, monkeypatch):
    # The default ("stderr") must be the stderr of the moment, and a terminal one gets a bar redrawn in place.
    terminal = Terminal()
    monkeypatch.setattr("sys.stderr", terminal)
    make_trainer(tmp_path, Lee2020(), epochs=1, progress="stderr").fit(dataset(), eval_data=dataset(4))
    out = terminal.getvalue()
    assert out.count("\r") > 1  # redrawn in place, not one new line per update
    last = out.split("\r")[-1]
    assert last.endswith("\n") and last.count("\n") == 1  # the epoch's final state stays, on its own line
    assert "epoch 1/1" in last and "12/12" in last and "samples/s" in last
    for figure in ("loss=", "acc=", "eval_acc="):
        assert figure in last


def test_no_progress_writes_nothing(tmp_path, capfd):
    make_trainer(tmp_path, Lee2020(), epochs=1, progress=None).fit(dataset(), eval_data=dataset(4))
    assert capfd.readouterr() == ("", "")


def test_resume_refuses_a_different_configuration(tmp_path):
    data = dataset()
    make_trainer(tmp_path, Lee2020(), epochs=1).fit(data)
    other = make_trainer(tmp_path, Lee2020(), loss=CrossEntropy())
    with pytest.raises(es.CheckpointError, match="loss"):
        other.resume()


def test_resume_with_a_milestone_after_the_epochs_trained_is_the_run_with_it_from_the_start(tmp_path):
    data = dataset()
    reference = make_trainer(tmp_path / "a", BPTT(), checkpoint=tmp_path / "a.h5", schedule=MultiStep(3e-3, [2], 0.5))
    reference.fit(data)
    make_trainer(tmp_path, BPTT(), schedule=Constant(3e-3), epochs=2).fit(data)
    resumed = make_trainer(tmp_path, BPTT(), seed_net=99, schedule=MultiStep(3e-3, [2], 0.5))
    resumed.resume()
    resumed.fit(data)
    for key, value in parameters(reference.network).items():
        np.testing.assert_array_equal(parameters(resumed.network)[key], value, err_msg=key)
    assert strip_timing(resumed.history) == strip_timing(reference.history)
    assert [h["lr"] for h in resumed.history] == [3e-3, 3e-3, 1.5e-3]
    assert load_checkpoint(tmp_path / "run.h5").config["schedule"]["milestones"] == [2]


@pytest.mark.parametrize("milestone", [1, 2])
def test_resume_refuses_a_schedule_that_changes_an_epoch_begun(tmp_path, monkeypatch, milestone):
    data = dataset()
    if milestone == 1:  # two epochs finished
        make_trainer(tmp_path, Lee2020(), schedule=Constant(3e-3), epochs=2).fit(data)
    else:  # a crash in the middle of the third epoch (steps 7-9)
        with crash_at_step(monkeypatch, 8):
            make_trainer(tmp_path, Lee2020(), schedule=Constant(3e-3), checkpoint_every=1).fit(data)
    with pytest.raises(es.CheckpointError, match="schedule"):
        make_trainer(tmp_path, Lee2020(), schedule=MultiStep(3e-3, [milestone], 0.5)).resume()


def test_resume_from_a_foreign_file_names_it(tmp_path):
    path = tmp_path / "notes.h5"
    path.write_text("not a checkpoint")
    with pytest.raises(es.CheckpointError, match="notes.h5"):
        make_trainer(tmp_path, Lee2020()).resume(path)


def test_bad_dataset_items_are_named(tmp_path):
    data = dataset()
    data[3] = (np.zeros((6, 2, 6, 6), np.float32), 1)
    with pytest.raises(es.OptionError, match="dataset item 3"):
        make_trainer(tmp_path, Lee2020(), batch_size=12).fit(data)
