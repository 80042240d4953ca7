"""The eventsim command end to end: train, --resume, eval, inspect, plot on a few dozen samples."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eventsim.cli import main
from shared_data import data_root

QUICK = ["--steps", "6", "--train-limit", "40", "--test-limit", "20", "--batch-size", "10", "--milestones"]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_train_resume_eval_inspect_plot(env, capsys):
    out = env / "run"
    assert main(["train", "nmnist", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    # the resumed run adds an epoch, with a learning-rate drop the first epoch did not have; the options
    # not given (steps, limits, batch size) are the run's own, not the defaults
    assert main(["train", "nmnist", "--out", str(out), "--epochs", "2", "--resume", "--milestones", "1"]) == 0
    job = json.loads((out / "job.json").read_text())
    assert (job["steps"], job["train_limit"], job["batch_size"]) == (6, 40, 10)
    metrics = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in metrics] == [1, 2]
    assert metrics[1]["lr"] == pytest.approx(metrics[0]["lr"] * job["lr_factor"])
    capsys.readouterr()
    assert main(["train", "nmnist", "--out", str(out), "--epochs", "3", "--resume", *QUICK]) == 2
    assert "schedule" in capsys.readouterr().err  # dropping it again would change the second epoch
    assert json.loads((out / "job.json").read_text())["milestones"] == [1]  # the refused job is not recorded
    report = json.loads((out / "report.json").read_text())
    assert report["samples"] == 20 and report["epochs"] == 2
    per_class = [c for c in report["per_class"] if c["support"]]
    weighted = sum(c["accuracy"] * c["support"] for c in per_class) / report["samples"]
    assert weighted == pytest.approx(report["accuracy"])
    assert report["balanced_accuracy"] == pytest.approx(np.mean([c["accuracy"] for c in per_class]))
    assert np.sum(report["confusion"]) == report["samples"]
    assert report["synops_total_per_sample"] == pytest.approx(sum(report["synops_per_sample"].values()))
    assert report["ann_macs_total"] == sum(report["ann_macs"].values())
    assert set(report["synops_per_sample"]) == set(report["ann_macs"])

    capsys.readouterr()
    assert main(["eval", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"] == report["accuracy"]  # same weights, same test samples
    assert (out / "report-test.json").exists()

    assert main(["inspect", "lee2020-lenet5", "--input", "nmnist"]) == 0
    assert "3200" in capsys.readouterr().out  # the FC fan-in of the N-MNIST LeNet5

    pytest.importorskip("matplotlib")
    assert main(["plot", str(out)]) == 0
    for name in ("raster.png", "firing_rates.png", "curves.png"):
        assert (out / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_errors_a_person_can_act_on(env, capsys, monkeypatch):
    out = env / "run"
    assert main(["train", "nmnist", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    capsys.readouterr()
    assert main(["train", "nmnist", "--out", str(out), "--epochs", "1", *QUICK]) == 2
    assert "--resume" in capsys.readouterr().err  # a finished run is not overwritten
    assert main(["train", "nmnist", "--out", str(out), "--resume", "--lr", "0.5", *QUICK]) == 2
    assert "lr" in capsys.readouterr().err
    assert main(["train", "mnist", "--out", str(out), "--resume"]) == 2
    assert "holds a nmnist run" in capsys.readouterr().err
    assert main(["train", "nmnist", "--model", "nosuchnet", "--out", str(env / "x"), *QUICK]) == 2
    assert "lee2020-lenet5" in capsys.readouterr().err  # the choices are listed
    monkeypatch.setenv("EVENTSIM_DATA", str(env / "empty"))
    assert main(["train", "nmnist", "--out", str(env / "y"), *QUICK]) == 2
    assert "download=True" in capsys.readouterr().err or "NMNIST" in capsys.readouterr().err


def test_job_defaults_depend_on_the_dataset():
    from eventsim.learning.runs import Job

    assert (Job().steps, Job().epochs, Job().milestones) == (30, 12, [10])
    mnist = Job(dataset="mnist")
    assert (mnist.steps, mnist.epochs, mnist.milestones) == (50, 3, [2])
    assert Job(dataset="mnist", steps=20, milestones=[]).steps == 20  # given values win
    with pytest.raises(Exception, match="unknown dataset"):
        Job(dataset="cifar")


def test_convert_end_to_end(env, capsys):
    out = env / "convert"
    args = ["convert", "--out", str(out), "--epochs", "1", "--train-limit", "200", "--test-limit", "50",
            "--calibration-samples", "50", "--steps", "8", "4", "--alpha", "1", "0.5"]
    assert main(args) == 0
    report = json.loads((out / "conversion.json").read_text())
    assert [(r["steps"], r["alpha"]) for r in report["sweep"]] == [(8, 1.0), (8, 0.5), (4, 1.0), (4, 0.5)]
    assert report["test_samples"] == 50 and 0 <= report["ann"]["accuracy"] <= 1
    assert all(r["synops_per_sample"] > 0 for r in report["sweep"])
    assert main(args) == 0  # a second call loads the trained ANN instead of training it again
    assert "trained with" not in capsys.readouterr().err
