"""PNG figures of a run, a report and a training log (``eventsim plot``).

Three figures, each as a function that builds a matplotlib ``Figure`` (to
inspect or show in a notebook) and one that writes it to a PNG file:

- :func:`raster_figure` / :func:`plot_raster`: the spike raster of one sample,
  one panel per event stream (the input, then every layer that can emit
  events), with the data behind it from :func:`raster_panels`;
- :func:`firing_rates_figure` / :func:`plot_firing_rates`: per-layer firing
  rates and SynOps from a report dict (``report.json`` of ``eventsim train``
  or ``eventsim eval``);
- :func:`curves_figure` / :func:`plot_curves`: loss and accuracy per epoch
  from the trainer's metrics (a list of dicts, or its JSON-lines log, read by
  :func:`read_metrics`), of one run or of several side by side;
- :func:`gradient_flow_figure` / :func:`plot_gradient_flow`: mean gradient
  magnitude per layer (``eventsim inspect --grad-flow``), one line per
  surrogate slope.

matplotlib is the optional ``plot`` extra: it is imported inside the
functions that draw, never when this module is imported. Figures are built
with the object-oriented API on an Agg canvas, not through pyplot, so no
backend is selected, no window opens and no global figure state is kept.
PNG files are written atomically: to a temporary file in the same folder,
then renamed onto the target, so a failure never leaves a torn file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from math import prod
from numbers import Real
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from eventsim.atomic import atomic_path
from eventsim.errors import DataError, OptionError
from eventsim.events import Events
from eventsim.extras import require
from eventsim.layers import Readout
from eventsim.reading import parse_json, read_json, read_text
from eventsim.network import Network

if TYPE_CHECKING:  # matplotlib is optional; only the annotations name it
    from matplotlib.figure import Figure

#: Name of the input's panel in a raster.
INPUT = "input"
#: Resolution of the PNG files, dots per inch.
DPI = 120


# ================================================================= matplotlib
def _new_figure(width: float, height: float) -> Figure:
    """An empty figure on an Agg canvas, or MissingExtraError naming the extra to install."""
    require("matplotlib", "drawing figures (eventsim.plots)")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def check_png_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, or OptionError unless it ends in ``.png``: checked before any work that feeds it."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise OptionError(f"figures are written as PNG; give a path ending in .png, got {str(path)!r}")
    return path


def _save_png(fig: Figure, path: str | os.PathLike) -> Path:
    """Write ``fig`` as a PNG to ``path`` atomically, creating its folder; returns the path."""
    path = check_png_path(path)
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        fig.savefig(f, format="png", dpi=DPI)
    return path


# ===================================================================== raster
@dataclass(frozen=True)
class RasterPanel:
    """The events of one stream of one sample, as drawn in a raster panel.

    Attributes
    ----------
    name : str
        ``"input"`` or the layer's name.
    shape : tuple of int
        Shape of the stream's neuron array.
    steps : int
        Number of steps of the run.
    step, neuron : (n_events,) int64
        Step and flat neuron index (C order of ``shape``) of every event.
    value : (n_events,) float
        The value each event carries.
    """

    name: str
    shape: tuple[int, ...]
    steps: int
    step: np.ndarray
    neuron: np.ndarray
    value: np.ndarray

    @property
    def neurons(self) -> int:
        return prod(self.shape)

    @property
    def n_events(self) -> int:
        return int(self.neuron.shape[0])


def _panel(name: str, events: Events) -> RasterPanel:
    """The panel of a batch-1 container."""
    step = np.repeat(np.arange(events.steps, dtype=np.int64), np.diff(events.indptr))
    return RasterPanel(name, events.shape, events.steps, step, events.index.astype(np.int64), events.value)


def raster_panels(network: Network, events: Events, *, sample: int = 0) -> list[RasterPanel]:
    """Run ``network`` on one sample and return its event streams, in network order.

    The run is an inference run (no dropout) recording ``"spikes"``. The
    streams are the input and every layer that can emit events; a
    :class:`~eventsim.layers.Readout` never fires and has no panel, while a
    spiking layer that stayed silent has an empty one.

    Parameters
    ----------
    network : Network
    events : Events
        Input of any batch size; only sample ``sample`` is run.
    sample : int
        Which sample of ``events``.
    """
    one = events.sample(sample)
    result = network.run(one, record=("spikes",))
    readouts = {layer.name for layer in network.walk() if isinstance(layer, Readout)}
    return [_panel(INPUT, one)] + [
        _panel(name, spikes) for name, spikes in result.spikes.items() if name not in readouts
    ]


def raster_figure(network: Network, events: Events, *, sample: int = 0, title: str | None = None) -> Figure:
    """The spike raster of one sample: one panel per stream of :func:`raster_panels`.

    Each panel has the step on x, the flat neuron index on y and one dot per
    event (negative values in red, as signed input can carry), and is titled
    with the stream's name, shape, events and neurons. ``title`` defaults to
    ``"sample <sample>"``.
    """
    panels = raster_panels(network, events, sample=sample)
    fig = _new_figure(9.0, 0.6 + 1.9 * len(panels))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, p in zip(axes, panels):
        colors = np.where(p.value > 0, "black", "tab:red")
        ax.scatter(p.step, p.neuron, s=3, c=colors, marker="s", linewidths=0)
        # Fixed limits so that a silent layer still shows its extent.
        ax.set_xlim(-0.5, p.steps - 0.5)
        ax.set_ylim(-0.5, p.neurons - 0.5)
        ax.set_title(f"{p.name} {p.shape}: {p.n_events} events, {p.neurons} neurons", fontsize=9, loc="left")
        ax.set_ylabel("neuron")
    axes[-1].set_xlabel("step")
    fig.suptitle(title if title is not None else f"sample {sample}")
    return fig


def plot_raster(
    network: Network, events: Events, path: str | os.PathLike, *, sample: int = 0, title: str | None = None
) -> Path:
    """Write the spike raster of :func:`raster_figure` to the PNG file ``path``; returns it."""
    return _save_png(raster_figure(network, events, sample=sample, title=title), path)


# ================================================================ JSON files
def _number(v: object) -> float | None:
    """``v`` as a float, or None unless it is a real number (not a bool) that a float can hold."""
    if not isinstance(v, Real) or isinstance(v, bool):
        return None
    try:
        return float(v)
    except OverflowError:  # a JSON integer with hundreds of digits
        return None


# =============================================================== firing rates
def _per_layer(report: Mapping[str, Any], key: str, meaning: str, where: str = "") -> dict[str, float]:
    """``report[key]``, checked to be a mapping of layer name to finite number; DataError prefixed by ``where``."""
    at = f"{where}: " if where else ""
    if not isinstance(report, Mapping):
        raise DataError(f"{at}a report must be a dict (report.json), got {type(report).__name__}")
    if key not in report:
        raise DataError(f"{at}the report has no {key!r} ({meaning}); it has {sorted(map(str, report))}")
    values = report[key]
    if not isinstance(values, Mapping):
        raise DataError(f"{at}report[{key!r}] must map layer names to numbers, got {type(values).__name__}")
    numbers = {str(layer): _number(v) for layer, v in values.items()}
    for layer, v in values.items():
        if numbers[str(layer)] is None or not np.isfinite(numbers[str(layer)]):
            raise DataError(f"{at}report[{key!r}][{layer!r}] must be a finite number, got {v!r}")
    return numbers


def read_report(path: str | os.PathLike) -> dict:
    """Read a report (``report.json`` of ``eventsim train`` or ``eventsim eval``), checked to hold what
    :func:`firing_rates_figure` draws.

    Raises
    ------
    DataError
        Naming the file: not UTF-8 text, not JSON, not an object, or a
        missing or malformed ``firing_rate`` or ``synops_per_sample``; a run
        folder may come from anyone, so its files are checked like input.
    """
    path = Path(path)
    report = read_json(path)
    for key, meaning in _REPORT_KEYS:
        _per_layer(report, key, meaning, str(path))
    return report


#: What a report must hold for its figure: key and meaning.
_REPORT_KEYS = (("firing_rate", "mean events per neuron per step, per layer"),
                ("synops_per_sample", "SynOps per sample, per weighted layer"))


def firing_rates_figure(report: Mapping[str, Any]) -> Figure:
    """Horizontal bars of per-layer firing rates and SynOps per sample from a report.

    Parameters
    ----------
    report : dict
        With ``"firing_rate"`` (mean events per neuron per step, by layer name,
        in network order; at least one layer) and ``"synops_per_sample"``
        (by weighted layer). Other keys are ignored.

    Raises
    ------
    DataError (a ValueError)
        A missing key, a value that is not a layer-to-number mapping, or no
        firing rates at all.
    """
    rates, synops = (_per_layer(report, key, meaning) for key, meaning in _REPORT_KEYS)
    if not rates:
        raise DataError("report['firing_rate'] is empty: there is no layer to plot")
    fig = _new_figure(10.0, 1.2 + 0.35 * max(len(rates), len(synops)))
    for ax, values, label in zip(
        fig.subplots(1, 2),
        (rates, synops),
        ("firing rate (events / neuron / step)", "SynOps per sample"),
    ):
        bars = ax.barh(list(values), list(values.values()))
        ax.bar_label(bars, fmt="%.3g", fontsize=8, padding=2)
        ax.invert_yaxis()  # first layer on top, as the network reads
        ax.set_xlabel(label)
        ax.margins(x=0.15)  # room for the labels at the end of the bars
    return fig


def plot_firing_rates(report: Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write :func:`firing_rates_figure` of ``report`` to the PNG file ``path``; returns it."""
    return _save_png(firing_rates_figure(report), path)


# ============================================================ training curves
_REQUIRED = ("epoch", "train_loss", "train_accuracy")
_OPTIONAL = ("eval_loss", "eval_accuracy")


def _check_record(record: object, where: str) -> dict:
    """``record`` as a dict, or DataError naming ``where`` unless it has the numbers a curve needs."""
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: a metrics record must be a dict, got {type(record).__name__}")
    missing = [k for k in _REQUIRED if k not in record]
    if missing:
        raise DataError(f"{where}: the metrics record has no {missing}; it has {sorted(map(str, record))}")
    for k in _REQUIRED + _OPTIONAL:
        v = record.get(k, 0)
        # NaN and inf losses and accuracies are kept: a diverged run is exactly what one wants to see.
        # An epoch is a place on the x axis, which must be finite.
        number = _number(v)
        if number is None or (k == "epoch" and not np.isfinite(number)):
            raise DataError(f"{where}: {k!r} must be a {'finite ' if k == 'epoch' else ''}number, got {v!r}")
    return dict(record)


def read_metrics(path: str | os.PathLike) -> list[dict]:
    """Read a metrics log: one JSON object per line, one line per epoch (blank lines skipped).

    Raises
    ------
    DataError (a ValueError)
        A file that is not UTF-8 text, a line that is not JSON or a record
        without ``epoch``, ``train_loss`` or ``train_accuracy`` as numbers,
        naming the file and the line; or a log with no record.
    """
    path = Path(path)
    records = []
    for number, line in enumerate(read_text(path).split("\n"), 1):
        if line.strip():
            where = f"{path}, line {number}"
            records.append(_check_record(parse_json(line, where), where))
    if not records:
        raise DataError(f"{path}: the metrics log has no records")
    return records


def _metrics(metrics: Sequence[Mapping[str, Any]] | str | os.PathLike) -> list[dict]:
    if isinstance(metrics, (str, os.PathLike)):
        return read_metrics(metrics)
    records = [_check_record(r, f"metrics[{i}]") for i, r in enumerate(metrics)]
    if not records:
        raise DataError("metrics is empty: there is no epoch to plot")
    return records


def curves_figure(
    metrics: Sequence[Mapping[str, Any]] | str | os.PathLike | Mapping[str, Sequence[Mapping[str, Any]] | str | os.PathLike],
) -> Figure:
    """Loss and accuracy (in %) against epoch, for training and, where evaluated, evaluation.

    Parameters
    ----------
    metrics : list of dict, or path, or dict of them by run name
        One dict per epoch with ``epoch``, ``train_loss``, ``train_accuracy``
        (a fraction) and optionally ``eval_loss``, ``eval_accuracy``, as the
        trainer returns them; or the path of its JSON-lines log. A dict maps
        run names to such metrics, to compare runs in one figure.

    Raises
    ------
    DataError (a ValueError)
        No records, or a record without one of the required keys.
    """
    runs = dict(metrics) if isinstance(metrics, Mapping) else {"": metrics}
    records = {name: _metrics(m) for name, m in runs.items()}
    fig = _new_figure(10.0, 4.0)
    from matplotlib.ticker import (
        MaxNLocator,  # after _new_figure has checked that matplotlib is there
    )

    for ax, what, scale, label in zip(fig.subplots(1, 2), ("loss", "accuracy"), (1, 100), ("loss", "accuracy (%)")):
        for i, (name, recs) in enumerate(records.items()):
            for split, style in (("train", "o-"), ("eval", "s--")):
                key = f"{split}_{what}"
                # Evaluation may be missing from some epochs: plot the ones that have it.
                have = [r for r in recs if key in r]
                if have:
                    ax.plot([r["epoch"] for r in have], [scale * r[key] for r in have], style, color=f"C{i}",
                            label=f"{name} {split}".strip(), markersize=3)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(label)
        ax.set_title(f"{what} per epoch")
        ax.legend()
    return fig


def plot_curves(
    metrics: Sequence[Mapping[str, Any]] | str | os.PathLike | Mapping[str, Sequence[Mapping[str, Any]] | str | os.PathLike],
    path: str | os.PathLike,
) -> Path:
    """Write :func:`curves_figure` of ``metrics`` to the PNG file ``path``; returns it."""
    return _save_png(curves_figure(metrics), path)


def gradient_flow_figure(flows: Mapping[str, Any], *, title: str | None = None) -> Figure:
    """Mean ``|dL/dW|`` per weighted layer (log scale), one line per entry of ``flows``.

    Parameters
    ----------
    flows : dict
        Label (e.g. ``"gamma = 1"``) to a gradient-flow measurement with
        ``layers``, ``magnitudes`` and ``ratio`` (an
        :class:`eventsim.learning.gradient_flow.GradientFlow`); all over the
        same layers.
    """
    if not flows:
        raise ValueError("flows is empty: there is no measurement to plot")
    layers = next(iter(flows.values())).layers
    if any(tuple(f.layers) != tuple(layers) for f in flows.values()):
        raise ValueError("the gradient-flow measurements are over different layers")
    fig = _new_figure(max(6.0, 0.45 * len(layers) + 3), 4.5)
    ax = fig.subplots()
    x = np.arange(len(layers))
    for i, (label, flow) in enumerate(flows.items()):
        mags = np.asarray(flow.magnitudes, np.float64)
        shown = np.where(mags > 0, mags, np.nan)  # a layer without gradient has no place on a log axis
        ax.semilogy(x, shown, "o-", color=f"C{i}", markersize=4, label=f"{label} (ratio {flow.ratio:.3g})")
    half = len(layers) // 2
    ax.axvspan(-0.5, half - 0.5, color="0.92", zorder=0, label="first half")
    ax.set_xticks(x)
    ax.set_xticklabels(layers, rotation=60, ha="right", fontsize=8)
    ax.set_xlabel("weighted layer (input side left)")
    ax.set_ylabel("mean |dL/dW|")
    ax.set_title(title or "gradient magnitude by layer")
    ax.legend(fontsize=8)
    return fig


def plot_gradient_flow(flows: Mapping[str, Any], path: str | os.PathLike, *, title: str | None = None) -> Path:
    """Write :func:`gradient_flow_figure` of ``flows`` to the PNG file ``path``; returns it."""
    return _save_png(gradient_flow_figure(flows, title=title), path)
