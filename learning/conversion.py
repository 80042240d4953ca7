"""ANN-to-SNN conversion: thresholds balanced on calibration data.

Ngu & Lee 2022 (extraction ``ngu2022-cnn-snn-conversion.md``, Sec. 2.2-2.3):
the trained ANN's weights are used unchanged in an SNN of soft-reset IF
neurons (docs/semantics.md, "Neurons": ``R = U - theta * s``) whose last layer
integrates without firing (a :class:`~eventsim.layers.Readout`; the
prediction is the argmax of its potential). Only the thresholds are set,
layer after layer in network order, each from the instantaneous input
currents ``I[t]`` the layer receives on calibration data while the layers
before it already spike with their final thresholds (Algorithm 2).

Methods (each named):

- ``"channel"`` (Algorithm 2): one threshold per output channel, the maximum
  of I over samples, positions and steps 1..T. A flat (fully connected)
  hidden layer gets one threshold for the layer, as in the authors' code.
- ``"layer"``: one threshold per layer, the maximum over all its channels.
- ``"percentile"``: per channel, the ``percentile`` (e.g. 99.9) of I instead
  of the maximum (robust normalisation, Rueckauer et al. 2017).

A channel whose statistic is <= 0 never receives positive current on the
calibration data; it gets an infinite threshold (it never fires) rather than
a threshold of 0, with which a soft-reset IF neuron under ">=" would fire at
every step. ``alpha`` then scales every threshold of every layer (Ngu & Lee
2022, Sec. 4.1.3: alpha < 1 raises firing rates at short latencies); the
paper leaves open whether during or after calibration: eventsim scales after.
"""

from __future__ import annotations

import copy
from typing import Any, TextIO

import numpy as np

from eventsim.encoders.direct import direct
from eventsim.encoders.rate import rate
from eventsim.errors import OptionError, check_choice
from eventsim.events import Events
from eventsim.layers import LIF
from eventsim.learning.calibration import layer_by_layer
from eventsim.network import Network
from eventsim.progress import progress_bar

METHODS = ("channel", "layer", "percentile")
INPUT_MODES = ("direct", "rate")


def channel_statistic(currents: np.ndarray, method: str, percentile: float = 99.9) -> np.ndarray:
    """Per-channel maximum or percentile of currents ``(B, T, C, ...)``; flat layers reduce to one value."""
    b, t = currents.shape[:2]
    if currents.ndim == 3:  # flat layer: one threshold for the layer
        per_channel = currents.reshape(1, -1)
    else:
        c = currents.shape[2]
        per_channel = np.moveaxis(currents.reshape(b, t, c, -1), 2, 0).reshape(c, -1)
    if method == "percentile":
        return np.percentile(per_channel, percentile, axis=1)
    stat = per_channel.max(axis=1)
    return np.full_like(stat, stat.max()) if method == "layer" else stat


def balance_thresholds(
    network: Network,
    calibration: Events,
    *,
    method: str = "channel",
    percentile: float = 99.9,
    alpha: float = 1.0,
) -> dict[str, np.ndarray]:
    """Set the threshold of every spiking layer from calibration data, layer by layer.

    Parameters
    ----------
    network : Network
        Trained weights; spiking layers are meant to be soft-reset IF neurons.
    calibration : Events
        Calibration input with the T of inference (thresholds depend on T).
    method : {"channel", "layer", "percentile"}
    percentile : float
        For ``method="percentile"``, in (0, 100].
    alpha : float
        Factor in (0, 1] applied to all thresholds at the end.

    Returns
    -------
    dict
        The thresholds set, by layer name (one per channel; infinite for a
        channel that never received positive current).
    """
    check_choice("threshold balancing method", method, METHODS)
    if not 0 < percentile <= 100:
        raise OptionError(f"percentile must be in (0, 100], got {percentile!r}")
    if not 0 < alpha <= 1:
        raise OptionError(f"alpha must be in (0, 1], got {alpha!r}")
    thresholds: dict[str, np.ndarray] = {}
    neurons: list[LIF] = []

    def adjust(name, neuron, synapses, currents):
        stat = channel_statistic(currents, method, percentile)
        theta = np.where(stat > 0, stat, np.inf)
        channels = network.shapes[name][1][0] if len(network.shapes[name][1]) == 3 else 1
        neuron.threshold = np.broadcast_to(theta, (channels,)).copy() if channels > 1 else float(theta[0])
        thresholds[name] = np.atleast_1d(np.asarray(neuron.threshold, np.float64)).copy()
        neurons.append(neuron)

    layer_by_layer(network, calibration, adjust)
    if alpha != 1:
        for name, neuron in zip(thresholds, neurons):
            neuron.threshold = np.asarray(neuron.threshold) * alpha
            thresholds[name] = thresholds[name] * alpha
    return thresholds


def encode_images(images: np.ndarray, steps: int, mode: str, rng: np.random.Generator | None, dtype) -> Events:
    """Images in [0, 1] as SNN input: ``"direct"`` (the pixel as current every step) or ``"rate"`` (Bernoulli)."""
    check_choice("input mode", mode, INPUT_MODES)
    if mode == "direct":
        return direct(images, steps, dtype=dtype)
    return rate(images, steps, rng=rng, dtype=dtype)


def snn_accuracy(network: Network, images: np.ndarray, labels: np.ndarray, *, steps: int, mode: str = "direct",
                 batch_size: int = 100, seed: int = 0, progress: TextIO | str | None = None) -> dict[str, float]:
    """Test accuracy (argmax of the readout) and SynOps per sample of the converted network."""
    rng = np.random.default_rng(seed) if mode == "rate" else None
    # in a with block: an interrupted run ends the bar's line before its error message is printed
    with progress_bar(len(images), f"SNN T={steps}", progress) as bar:
        correct, synops = 0, 0
        for first in range(0, len(images), batch_size):
            x = encode_images(images[first : first + batch_size], steps, mode, rng, network.dtype)
            result = network.run(x)
            correct += int(np.sum(np.argmax(result.output, axis=1) == labels[first : first + batch_size]))
            synops += int(result.total_synops().sum())
            bar.set_postfix({"acc": 100 * correct / min(len(images), first + batch_size)}, refresh=False)
            bar.update(x.batch)
    return {"accuracy": correct / len(images), "synops_per_sample": synops / len(images)}


def sweep_point(network: Network, calibration_images: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
                steps: int, alpha: float, method: str, mode: str, batch_size: int, seed: int,
                progress: TextIO | str | None = None) -> dict:
    """One row of :func:`conversion_sweep`: a copy of ``network`` calibrated at T = ``steps`` and ``alpha``, tested.

    ``network`` itself is not changed, so a row depends on its arguments
    alone, wherever and in whatever order the rows are computed.
    """
    network = copy.deepcopy(network)
    calibration = encode_images(calibration_images, steps, "direct", None, network.dtype)
    balance_thresholds(network, calibration, method=method, alpha=alpha)
    result = snn_accuracy(network, test_images, test_labels, steps=steps, mode=mode, batch_size=batch_size, seed=seed,
                          progress=progress)
    return {"steps": steps, "alpha": alpha, "method": method, "mode": mode, **result}


def conversion_sweep(
    network: Network,
    calibration_images: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    *,
    steps: list[int],
    alphas: list[float] = (1.0,),
    method: str = "channel",
    mode: str = "direct",
    batch_size: int = 100,
    seed: int = 0,
    progress: TextIO | str | None = None,
    cluster: Any = None,
) -> list[dict]:
    """Accuracy against latency: for every T (and alpha), calibrate at that T, then test.

    Calibration uses direct input (the paper and its code calibrate with
    analog input whatever the test input); each T gets its own thresholds,
    since hidden-layer thresholds depend on T (Ngu & Lee 2022, Sec. 3.2).
    Every (T, alpha) is calibrated and tested on its own copy of ``network``
    (:func:`sweep_point`), which keeps its weights and thresholds.

    ``cluster`` (an :class:`eventsim.cluster.Cluster`) computes the rows on
    its workers, one task per (T, alpha), the network and the images sent to
    each worker once: the rows are the same as without it (docs/cluster.md).
    """
    grid = [(t, alpha) for t in steps for alpha in alphas]
    if cluster is None:
        return [sweep_point(network, calibration_images, test_images, test_labels, t, alpha, method, mode,
                            batch_size, seed, progress) for t, alpha in grid]
    shared = [cluster.share(x) for x in (network, calibration_images, test_images, test_labels)]
    calls = [(*shared, t, alpha, method, mode, batch_size, seed) for t, alpha in grid]
    with progress_bar(len(grid) * len(test_images), f"SNN sweep, {len(grid)} (T, alpha)", progress) as bar:
        def finished(i: int, row: dict) -> None:
            bar.set_postfix({"T": row["steps"], "alpha": row["alpha"], "acc": 100 * row["accuracy"],
                             "workers": cluster.alive()}, refresh=False)
            bar.update(len(test_images))

        return cluster.map(sweep_point, calls, what="sweep point", on_result=finished)
