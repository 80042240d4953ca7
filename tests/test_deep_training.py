"""Training deep networks from the command line: width and leak of zoo models, direct coding, calibration,
slope tuning before training (kept in prepared.json and used on resume), ``eventsim inspect --grad-flow``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from eventsim import IF, Conv2d, Linear
from eventsim.cli import main
from eventsim.datasets import CodedImages
from eventsim.errors import OptionError
from eventsim.learning.runs import Job, load_run
from eventsim.learning.zoo import build_model
from shared_data import data_root

DEEP = ["--model", "lee2020-resnet9", "--rule", "bptt", "--loss", "cross_entropy", "--encoding", "direct",
        "--leak", "1", "--width", "0.125", "--steps", "3", "--train-limit", "30", "--test-limit", "10",
        "--batch-size", "10", "--milestones", "--calibration-samples", "20"]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    return tmp_path


def test_width_scales_every_conv_and_hidden_fc_but_not_the_classes():
    full = build_model("lee2020-resnet9", input=(1, 28, 28))
    narrow = build_model("lee2020-resnet9", input=(1, 28, 28), width=0.25, leak=1.0)
    pairs = list(zip(full.walk(), narrow.walk()))
    convs = [(a.out_channels, b.out_channels) for a, b in pairs if isinstance(a, Conv2d)]
    assert convs and all(b == a // 4 for a, b in convs)
    fcs = [(a.out_features, b.out_features) for a, b in pairs if isinstance(a, Linear)]
    assert fcs == [(1024, 256), (10, 10)]
    assert all(isinstance(layer, IF) for layer in narrow.walk() if type(layer).__name__ in ("IF", "LIF"))
    assert narrow.layers[-1].leak == 1.0
    with pytest.raises(OptionError, match="width"):
        build_model("lee2020-resnet9", width=0)
    with pytest.raises(OptionError, match="not both"):
        build_model("lee2020-resnet9", tau=5.0, leak=1.0)


def test_direct_coding_gives_the_pixels_as_currents_at_every_step():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (3, 28, 28), dtype=np.uint8)
    data = CodedImages(images, np.arange(3), steps=4, encoding="direct")
    events, label = data[1]
    dense = events.to_dense()
    assert label == 1 and dense.shape == (1, 4, 1, 28, 28)
    for t in range(4):
        np.testing.assert_array_equal(dense[0, t, 0], (images[1] / 255.0).astype(np.float32))
    with pytest.raises(OptionError, match="encoding"):
        CodedImages(images, np.arange(3), steps=4, encoding="poisson")


def test_job_refuses_options_that_do_not_apply():
    with pytest.raises(OptionError, match="MNIST only"):
        Job(dataset="nmnist", encoding="direct")
    with pytest.raises(OptionError, match="bptt"):
        Job(dataset="mnist", rule="lee2020", tune_slope=True)
    with pytest.raises(OptionError, match="on_count"):
        Job(dataset="mnist", rule="bptt", loss="spike_count_mse")
    with pytest.raises(OptionError, match="calibrate"):
        Job(dataset="mnist", calibrate="lsuv")


def test_tuned_slope_and_calibration_are_kept_and_used_on_resume(env, capsys):
    out = env / "deep"
    args = ["train", "mnist", "--out", str(out), *DEEP, "--calibrate", "unit-currents", "--tune-slope"]
    assert main([*args, "--epochs", "1"]) == 0
    prepared = json.loads((out / "prepared.json").read_text())
    slope = prepared["slope_tuning"]["slope"]
    assert prepared["slope_tuning"]["converged"] and abs(prepared["slope_tuning"]["ratio"] - 1) <= 0.1
    assert prepared["surrogate"] == {"name": "fast_sigmoid", "c": slope, "b": None}
    assert set(prepared["scales"]) >= {"if1", "res1.if2", "res3.if2", "if2"}
    history = prepared["slope_tuning"]["history"]
    assert [slope, prepared["slope_tuning"]["ratio"]] == history[-1]
    assert main([*args, "--epochs", "2", "--resume"]) == 0  # resumes with the tuned slope, no new tuning
    other = env / "untuned"
    assert main(["train", "mnist", "--out", str(other), *DEEP, "--calibrate", "unit-currents", "--slope", "100",
                 "--epochs", "2"]) == 0
    assert json.loads((out / "prepared.json").read_text()) == prepared
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2

    # The run's gradient flow, measured with its tuned surrogate and at given slopes.
    capsys.readouterr()
    assert main(["inspect", str(out), "--grad-flow", "--samples", "10"]) == 0
    text = capsys.readouterr().out
    assert f"fast_sigmoid c = {slope:.4g}" in text and "first-half / second-half ratio" in text
    assert main(["inspect", str(out), "--grad-flow", "--samples", "10", "--slope", "1", "100"]) == 0
    text = capsys.readouterr().out
    ratios = [float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith("first-half")]
    assert len(ratios) == 2 and ratios[0] > 1 > ratios[1]

    # The figures of both runs and of the gradient flow (the plot extra).
    pytest.importorskip("matplotlib")
    assert main(["plot", str(out), "--compare", str(other), "--out", str(env / "plots")]) == 0
    assert (env / "plots" / "curves_compared.png").stat().st_size > 10_000
    assert main(["inspect", str(out), "--grad-flow", "--samples", "10", "--slope", "1",
                 "--plot", str(env / "flow.png")]) == 0
    assert (env / "flow.png").stat().st_size > 10_000


def test_max_current_thresholds_survive_into_eval(env, capsys):
    out = env / "thresholds"
    shallow = ["--model", "syed2021-4layer", "--rule", "bptt", "--loss", "spike_count_mse", "--on-count", "2",
               "--encoding", "direct", "--leak", "1", "--steps", "16", "--train-limit", "30", "--test-limit", "10",
               "--batch-size", "10", "--milestones", "--calibration-samples", "20"]
    assert main(["train", "mnist", "--out", str(out), *shallow, "--calibrate", "max-current", "--epochs", "1"]) == 0
    thresholds = json.loads((out / "prepared.json").read_text())["thresholds"]
    _, network, _ = load_run(out)
    for layer in network.walk():
        if layer.name in thresholds:
            assert layer.threshold == thresholds[layer.name] and thresholds[layer.name] > 0
    assert set(thresholds) == {"if1", "if2", "if3", "if4"}
    # Thresholds at the maximum current silence a deep network layer by layer: the error names the layer.
    capsys.readouterr()
    assert main(["train", "mnist", "--out", str(env / "deep"), *DEEP, "--calibrate", "max-current"]) == 2
    assert "receives no positive current" in capsys.readouterr().err


def test_grad_flow_of_a_zoo_model_and_its_errors(env, capsys):
    assert main(["inspect", "syed2021-4layer", "--grad-flow", "--samples", "10", "--steps", "4",
                 "--encoding", "direct", "--slope", "3"]) == 0
    text = capsys.readouterr().out
    assert "fast_sigmoid c = 3" in text and "fc2" in text
    assert main(["inspect", "--grad-flow"]) == 2
    assert "model name or a run folder" in capsys.readouterr().err


def test_norm_option_trains_and_eval_uses_the_running_statistics(env):
    out = env / "normed"
    assert main(["train", "mnist", "--out", str(out), *DEEP, "--norm", "batch_time", "--tune-slope",
                 "--epochs", "1"]) == 0
    _, network, _ = load_run(out)
    normed = [layer for layer in network.walk() if getattr(layer, "norm", None) is not None]
    assert [layer.name for layer in normed] == ["if1", "res1.if1", "res1.if2", "res2.if1", "res2.if2", "res3.if1",
                                                "res3.if2", "if2"]
    # The checkpoint's running statistics, not the initial 0 and 1.
    assert all(not np.all(layer.norm.running_var == 1) for layer in normed)
    assert main(["eval", str(out)]) == 0
    assert main(["plot", str(out), "--compare", str(env / "nowhere")]) == 2
    with pytest.raises(OptionError, match="bptt only"):
        Job(dataset="mnist", norm="batch_time")
