"""What a trained network does on a split: accuracy, confusion, spikes, SynOps, energy, time.

:func:`evaluation_report` runs a network over a dataset (inference: no
dropout) and returns a JSON-ready dict, the ``report.json`` of a run:

- ``accuracy``: correct / samples; ``per_class``: accuracy and support of
  every class (their support-weighted mean is ``accuracy``);
  ``balanced_accuracy``: their plain mean; ``confusion[true][predicted]``;
  ``loss``: the mean loss.
- ``input_events_per_sample``; ``spikes_per_sample[layer]``: events each
  layer emits per sample (spikes for spiking layers); ``firing_rate[layer]``:
  the same per neuron and per step.
- ``synops_per_sample[layer]`` (exact, see docs/semantics.md "Counting") and
  their sum ``synops_total_per_sample``; ``pool_ops_per_sample``.
- ``ann_macs[layer]`` and ``ann_macs_total``: the same network as a dense
  ANN; ``energy``: SynOps x E_AC against MACs x E_MAC (preset ``fp32`` by
  default, Lee et al. 2020 Sec. 5.7), and their ratio.
- ``wall_seconds``, ``samples_per_s``, ``steps``, ``samples``.
"""

from __future__ import annotations

import time
from math import prod
from typing import Any, Sequence

import numpy as np

from eventsim.counting import estimate_energy
from eventsim.events import Events
from eventsim.network import Network
from eventsim.learning.losses import Loss
from eventsim.learning.tally import tally_dataset


def evaluation_report(
    network: Network,
    data: Sequence[tuple[Events, int]],
    loss: Loss,
    *,
    batch_size: int = 32,
    classes: int | None = None,
    energy_model: str = "fp32",
    cluster: Any = None,
) -> dict:
    """Run ``network`` over ``data`` and report (see the module docstring); on ``cluster``'s workers when given."""
    if len(data) == 0:
        raise ValueError("cannot report on an empty dataset")
    classes = classes or int(prod(network.output_shape))
    start = time.perf_counter()
    t = tally_dataset(network, loss, data, batch_size=batch_size, cluster=cluster)
    seconds = time.perf_counter() - start
    confusion = np.zeros((classes, classes), np.int64)
    np.add.at(confusion, (t.labels, t.predictions), 1)
    spikes, synops, pool_ops, steps, input_events = t.spikes, t.synops, t.pool_ops, t.steps, t.input_events
    n = len(data)
    support = confusion.sum(axis=1)
    correct = np.diag(confusion)
    per_class = [
        {"class": k, "support": int(support[k]), "accuracy": float(correct[k] / support[k]) if support[k] else None}
        for k in range(classes)
    ]
    present = [c["accuracy"] for c in per_class if c["accuracy"] is not None]
    macs = network.ann_macs()
    synops_mean = {k: v / n for k, v in synops.items()}
    energy = estimate_energy(sum(synops_mean.values()), sum(macs.values()), energy_model)
    shapes = {name: out for name, (_, out) in network.shapes.items()}
    return {
        "samples": n,
        "steps": steps,
        "accuracy": float(correct.sum() / n),
        "balanced_accuracy": float(np.mean(present)),
        "loss": float(np.sum(t.losses) / n),
        "per_class": per_class,
        "confusion": confusion.tolist(),
        "input_events_per_sample": input_events / n,
        "spikes_per_sample": {k: v / n for k, v in spikes.items()},
        "firing_rate": {k: v / n / (prod(shapes[k]) * steps) for k, v in spikes.items()},
        "synops_per_sample": synops_mean,
        "synops_total_per_sample": float(sum(synops_mean.values())),
        "pool_ops_per_sample": {k: v / n for k, v in pool_ops.items()},
        "ann_macs": macs,
        "ann_macs_total": int(sum(macs.values())),
        "energy": {
            "model": energy_model,
            "snn_joules_per_sample": energy.snn_joules,
            "ann_joules_per_sample": energy.ann_joules,
            "ann_over_snn": energy.ann_over_snn,
        },
        "wall_seconds": seconds,
        "samples_per_s": n / seconds if seconds > 0 else 0.0,
    }
