"""What a run folder records is what the run did: evaluation every epoch, the data folder it was trained with."""

from __future__ import annotations

import json
import shutil

import pytest

from eventsim.cli import main
from eventsim.learning.runs import JOB
from shared_data import data_root

QUICK = ["--steps", "4", "--train-limit", "20", "--test-limit", "10", "--batch-size", "10", "--epochs", "1"]


@pytest.fixture()
def run(tmp_path, monkeypatch, capsys):
    """A one-epoch run trained on a copy of the data in a folder only its run folder knows."""
    data = tmp_path / "own-data"
    shutil.copytree(data_root() / "NMNIST", data / "NMNIST")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("EVENTSIM_DATA", raising=False)
    out = tmp_path / "run"
    assert main(["train", "nmnist", "--data", str(data), "--out", str(out), *QUICK]) == 0
    capsys.readouterr()
    return out


def test_eval_each_epoch_is_what_the_run_did(run):
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("eval_accuracy" in m for m in metrics)  # a 10-sample test set is evaluated after every epoch
    assert json.loads((run / JOB).read_text())["eval_each_epoch"] is True


def test_a_run_recorded_as_not_evaluating_each_epoch_still_resumes(run):
    job = json.loads((run / JOB).read_text())
    (run / JOB).write_text(json.dumps({**job, "eval_each_epoch": False}))  # what older versions wrote
    assert main(["train", "nmnist", "--out", str(run), "--resume", "--epochs", "2"]) == 0
    assert json.loads((run / JOB).read_text())["eval_each_epoch"] is True


def test_eval_and_plot_use_the_runs_data_folder_and_say_where_they_wrote(run, capsys):
    assert main(["eval", str(run)]) == 0  # neither --data nor EVENTSIM_DATA: the run's own folder
    assert f"report: {run / 'report-test.json'}" in capsys.readouterr().err
    pytest.importorskip("matplotlib")
    assert main(["plot", str(run)]) == 0
    assert (run / "plots" / "raster.png").exists()


def test_a_run_folder_from_another_machine_falls_back_to_the_usual_data_search(run, monkeypatch, capsys):
    # data.json names a folder of the machine the run was trained on; copied
    # elsewhere it does not exist there, and EVENTSIM_DATA finds the data.
    (run / "data.json").write_text(json.dumps({"folder": str(run.parent / "gone")}))
    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    assert main(["eval", str(run)]) == 0
