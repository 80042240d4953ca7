"""Inference over a dataset in chunks, here or on a cluster: what every chunk counted, and their total.

:func:`evaluate` and :func:`eventsim.learning.report.evaluation_report` read
one :class:`Tally`. A chunk's tally holds integer counts (spikes, SynOps,
input events, the confusion of labels and predictions) and the per-sample
losses; the total adds the counts and concatenates the losses in sample
order, so a report is the same whatever the chunks and wherever they ran
(on a cluster: docs/cluster.md).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from eventsim.events import Events
from eventsim.network import Network
from eventsim.learning.chunks import chunk_bounds
from eventsim.learning.losses import Loss
from eventsim.learning.steps import batch_of


@dataclass
class Tally:
    """What inference over some samples counted.

    ``losses``, ``labels`` and ``predictions`` are per sample, in sample
    order; ``spikes``, ``synops`` and ``pool_ops`` are totals per layer.
    """

    losses: np.ndarray
    labels: np.ndarray
    predictions: np.ndarray
    input_events: int
    steps: int
    spikes: dict[str, int] = field(default_factory=dict)
    synops: dict[str, int] = field(default_factory=dict)
    pool_ops: dict[str, int] = field(default_factory=dict)

    @property
    def samples(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> int:
        return int(np.sum(self.labels == self.predictions))

    @classmethod
    def total(cls, parts: Sequence["Tally"]) -> "Tally":
        """The tally of all ``parts`` (in sample order)."""
        out = cls(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("losses", "labels", "predictions")),
                  input_events=sum(p.input_events for p in parts), steps=parts[0].steps)
        for what in ("spikes", "synops", "pool_ops"):
            merged: dict[str, int] = getattr(out, what)
            for p in parts:
                for name, count in getattr(p, what).items():
                    merged[name] = merged.get(name, 0) + count
        return out


def tally(network: Network, loss: Loss, data: Sequence[tuple[Events, int]], indices: Sequence[int]) -> Tally:
    """Run ``network`` (inference: no dropout, running statistics) on the samples ``indices`` of ``data``."""
    events, labels = batch_of(data, indices)
    result = network.run(events, record=("counts",) if loss.reads == "counts" else ())
    losses, _ = loss.sample_losses(network, result, labels)
    counts = {what: {name: int(per_sample.sum()) for name, per_sample in source.items()}
              for what, source in (("spikes", result.events), ("synops", result.synops),
                                   ("pool_ops", result.pool_ops))}
    return Tally(losses, labels, loss.predictions(network, result), int(events.event_counts().sum()),
                 events.steps, **counts)


def tally_dataset(network: Network, loss: Loss, data: Sequence[tuple[Events, int]], *, batch_size: int = 32,
                  cluster: Any = None) -> Tally:
    """:func:`tally` over all of ``data`` in chunks of ``batch_size``; on ``cluster``'s workers when given.

    On a cluster, ``data`` goes to every worker once for the cluster's
    lifetime (:meth:`eventsim.cluster.Cluster.share` with ``keep``), the
    network with its current weights once per call.
    """
    chunks = [np.arange(lo, hi) for lo, hi in chunk_bounds(len(data), batch_size)]
    if cluster is None:
        parts = [tally(network, loss, data, idx) for idx in chunks]
    else:
        shared_net, shared_data = cluster.share(network), cluster.share(data, keep=True)
        parts = cluster.map(tally, [(shared_net, loss, shared_data, idx) for idx in chunks], what="evaluation chunk")
    return Tally.total(parts)


def evaluate(network: Network, data: Sequence[tuple[Events, int]], loss: Loss, *, batch_size: int = 32,
             cluster: Any = None) -> dict[str, float]:
    """Mean loss and accuracy of ``network`` on ``data`` (inference: no dropout); on ``cluster`` when given."""
    if len(data) == 0:
        return {"loss": 0.0, "accuracy": 0.0}
    t = tally_dataset(network, loss, data, batch_size=batch_size, cluster=cluster)
    return {"loss": float(np.sum(t.losses) / t.samples), "accuracy": t.correct / t.samples}
