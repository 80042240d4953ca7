"""eventsim.plots: PNG files written atomically, rasters that show every event, clear input errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import eventsim as es
from eventsim import plots  # imports without matplotlib; drawing needs it
from eventsim.errors import MissingExtraError

pytest.importorskip("matplotlib")

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

REPORT = {
    "firing_rate": {"lif1": 0.12, "pool1": 0.05, "readout1": 0.0},
    "synops_per_sample": {"conv1": 12_345.0, "fc1": 678.0},
    "spikes_per_sample": {"lif1": 300.0, "pool1": 30.0, "readout1": 0.0},
    "accuracy": 0.5,
}

METRICS = [
    {"epoch": 1, "step": 4, "lr": 0.01, "train_loss": 1.2, "train_accuracy": 0.3, "eval_loss": 1.3,
     "eval_accuracy": 0.25, "samples_per_s": 100.0, "seconds": 1.0},
    {"epoch": 2, "step": 8, "lr": 0.01, "train_loss": 0.9, "train_accuracy": 0.5, "samples_per_s": 100.0,
     "seconds": 1.0},
    {"epoch": 3, "step": 12, "lr": 0.01, "train_loss": 0.6, "train_accuracy": 0.7, "eval_loss": 0.8,
     "eval_accuracy": 0.6, "samples_per_s": 100.0, "seconds": 1.0},
]


@pytest.fixture
def net():
    rng = np.random.default_rng(0)
    return es.Network([
        es.Conv2d(2, 4, 3, padding=1, weight=rng.normal(0, 0.5, (4, 2, 3, 3)).astype(np.float32)),
        es.LIF(0.5, tau=10.0),
        es.SpikingAvgPool(2),
        es.Flatten(),
        es.Linear(4 * 4 * 4, 3, weight=rng.normal(0, 0.5, (3, 4 * 4 * 4)).astype(np.float32)),
        es.Readout(tau=10.0),
    ], (2, 8, 8))


@pytest.fixture
def events():
    rng = np.random.default_rng(1)
    x = (rng.random((2, 10, 2, 8, 8)) < 0.3).astype(np.float32)
    x[:, :, 1] *= -1  # signed input: negative events are drawn too
    return es.Events.from_dense(x)


def assert_png(path):
    data = path.read_bytes()
    assert len(data) > len(PNG_SIGNATURE) and data.startswith(PNG_SIGNATURE)
    # nothing but the figure is left in the folder: the temporary file was renamed
    assert [p.name for p in path.parent.iterdir()] == [path.name]


# --------------------------------------------------------------------- raster
def test_raster_writes_png_in_a_new_folder(net, events, tmp_path):
    path = tmp_path / "new" / "folder" / "raster.png"
    assert plots.plot_raster(net, events, path, sample=1, title="a raster") == path
    assert_png(path)


def test_raster_panels_are_the_run_of_one_sample(net, events):
    panels = plots.raster_panels(net, events, sample=1)
    result = net.run(events.sample(1), record=("spikes",))
    assert [p.name for p in panels] == ["input", "lif1", "pool1"]  # the readout never fires: no panel
    dense = {"input": events.sample(1).to_dense()[0]} | {
        name: result.spikes[name].to_dense()[0] for name in ("lif1", "pool1")
    }
    for p in panels:
        assert p.steps == 10 and p.shape == dense[p.name].shape[1:]
        flat = dense[p.name].reshape(10, -1)
        assert p.n_events == np.count_nonzero(flat) > 0
        np.testing.assert_array_equal(flat[p.step, p.neuron], p.value)


def test_raster_draws_one_dot_per_event(net, events):
    panels = plots.raster_panels(net, events, sample=0)
    fig = plots.raster_figure(net, events, sample=0)
    assert len(fig.axes) == len(panels)
    for ax, p in zip(fig.axes, panels):
        (dots,) = ax.collections
        np.testing.assert_array_equal(dots.get_offsets(), np.column_stack([p.step, p.neuron]))
        assert ax.get_title(loc="left") == f"{p.name} {p.shape}: {p.n_events} events, {p.neurons} neurons"
    assert sum(len(ax.collections[0].get_offsets()) for ax in fig.axes) == sum(p.n_events for p in panels)


def test_silent_layer_has_an_empty_panel(net, events):
    silent = es.Events.empty(batch=1, steps=5, shape=(2, 8, 8))
    panels = plots.raster_panels(net, silent)
    assert [p.n_events for p in panels] == [0, 0, 0]
    fig = plots.raster_figure(net, silent)
    assert all(len(ax.collections[0].get_offsets()) == 0 for ax in fig.axes)
    assert fig.axes[1].get_ylim() == (-0.5, 4 * 8 * 8 - 0.5)


def test_raster_sample_out_of_range(net, events):
    with pytest.raises(ValueError, match="sample 2 is outside"):
        plots.raster_panels(net, events, sample=2)


# --------------------------------------------------------------- firing rates
def test_firing_rates_writes_png(tmp_path):
    path = tmp_path / "rates.png"
    assert plots.plot_firing_rates(REPORT, path) == path
    assert_png(path)
    fig = plots.firing_rates_figure(REPORT)
    rates, synops = fig.axes
    assert [t.get_text() for t in rates.get_yticklabels()] == list(REPORT["firing_rate"])
    assert [bar.get_width() for bar in rates.patches] == list(REPORT["firing_rate"].values())
    assert [bar.get_width() for bar in synops.patches] == list(REPORT["synops_per_sample"].values())


@pytest.mark.parametrize("key", ["firing_rate", "synops_per_sample"])
def test_report_missing_key(key, tmp_path):
    report = {k: v for k, v in REPORT.items() if k != key}
    with pytest.raises(ValueError, match=f"no '{key}'"):
        plots.plot_firing_rates(report, tmp_path / "rates.png")
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("bad, match", [
    ({"firing_rate": {}}, "empty"),
    ({"firing_rate": [0.1]}, "must map layer names"),
    ({"firing_rate": {"lif1": "high"}}, r"\['lif1'\] must be a finite number"),
    ({"synops_per_sample": {"fc1": float("nan")}}, r"\['fc1'\] must be a finite number"),
])
def test_report_bad_values(bad, match):
    with pytest.raises(ValueError, match=match):
        plots.firing_rates_figure(REPORT | bad)


def test_report_not_a_dict():
    with pytest.raises(ValueError, match="must be a dict"):
        plots.firing_rates_figure([REPORT])


# ------------------------------------------------------------------- curves
def test_curves_from_list_and_from_file_agree(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in METRICS) + "\n")  # a trailing blank line is fine
    assert plots.read_metrics(log) == METRICS
    for i, metrics in enumerate((METRICS, log, str(log))):
        path = tmp_path / "out" / f"curves{i}.png"
        assert plots.plot_curves(metrics, path) == path
    assert all(p.read_bytes().startswith(PNG_SIGNATURE) for p in (tmp_path / "out").iterdir())
    assert len(list((tmp_path / "out").iterdir())) == 3


def test_curves_plot_eval_only_where_evaluated():
    loss, accuracy = plots.curves_figure(METRICS).axes
    lines = {line.get_label(): line for line in accuracy.get_lines()}
    np.testing.assert_array_equal(lines["train"].get_xydata(), [[1, 30], [2, 50], [3, 70]])
    np.testing.assert_array_equal(lines["eval"].get_xydata(), [[1, 25], [3, 60]])
    lines = {line.get_label(): line for line in loss.get_lines()}
    np.testing.assert_array_equal(lines["eval"].get_xydata(), [[1, 1.3], [3, 0.8]])


def test_curves_without_evaluation():
    fig = plots.curves_figure([{k: r[k] for k in ("epoch", "train_loss", "train_accuracy")} for r in METRICS])
    assert [[line.get_label() for line in ax.get_lines()] for ax in fig.axes] == [["train"], ["train"]]


def test_metrics_errors(tmp_path):
    with pytest.raises(ValueError, match="metrics is empty"):
        plots.curves_figure([])
    with pytest.raises(ValueError, match=r"metrics\[1\]: the metrics record has no \['train_loss'\]"):
        plots.curves_figure([METRICS[0], {"epoch": 2, "train_accuracy": 0.5}])
    with pytest.raises(ValueError, match=r"metrics\[0\]: 'eval_accuracy' must be a number"):
        plots.curves_figure([METRICS[0] | {"eval_accuracy": None}])
    log = tmp_path / "metrics.jsonl"
    log.write_text("\n")
    with pytest.raises(ValueError, match="has no records"):
        plots.plot_curves(log, tmp_path / "curves.png")
    log.write_text(json.dumps(METRICS[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not JSON"):
        plots.read_metrics(log)
    log.write_text(json.dumps(METRICS[0]) + "\n" + json.dumps({"train_loss": 1.0}) + "\n")
    with pytest.raises(ValueError, match=r"line 2: the metrics record has no \['epoch', 'train_accuracy'\]"):
        plots.read_metrics(log)
    with pytest.raises(FileNotFoundError):
        plots.read_metrics(tmp_path / "missing.jsonl")


# ------------------------------------------------------------------- writing
def test_only_png_paths(tmp_path):
    with pytest.raises(ValueError, match="ending in .png"):
        plots.plot_curves(METRICS, tmp_path / "curves.pdf")


def test_failed_write_keeps_the_old_file(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    path = tmp_path / "curves.png"
    path.write_bytes(b"old")

    def broken(self, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", broken)
    with pytest.raises(OSError, match="disk full"):
        plots.plot_curves(METRICS, path)
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["curves.png"]


def test_missing_matplotlib_names_the_extra(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)  # importing it now fails, as when it is not installed
    with pytest.raises(MissingExtraError, match=r'pip install -e "\.\[plot\]"'):
        plots.curves_figure(METRICS)


def test_importing_eventsim_does_not_import_matplotlib():
    code = "import sys, eventsim, eventsim.plots; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
