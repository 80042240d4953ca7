"""One optimizer step on a batch computed in fixed chunks, in this process or on a cluster.

docs/cluster.md. A step splits its batch into chunks of ``chunk_size``
consecutive samples (a power of two; :mod:`eventsim.learning.chunks`). Each
chunk runs forward (training mode) and backward on its own, with:

- the dropout masks drawn for the whole batch first
  (:meth:`eventsim.Network.dropout_masks`), each chunk getting its rows, so
  the masks are those of one run of the batch;
- the loss averaged over the whole batch (``batch=``), so the chunks'
  gradients add up to the batch's;
- input-current batch norm taking its statistics over the chunk: the chunk
  is the norm's batch (docs/semantics.md, "Input-current batch norm");
  the running statistics take the average of the chunks' statistics.

The chunk gradients are then summed in the fixed tree of
:func:`eventsim.learning.chunks.tree_sum`, which is also the order a chunk
sums its own samples in: so for a network without norms, the weights after a
step do not depend on the chunk size, and for any network they do not
depend on where, or on how many workers, the chunks were computed.
"""

from __future__ import annotations

import copy
import time
import weakref
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from eventsim.errors import OptionError
from eventsim.events import Events
from eventsim.network import PER_STEP_RECORDS, Network
from eventsim.norm import apply_running_statistics, normed_layers, run_moments
from eventsim.threads import get_threads, ordered_map
from eventsim.learning.chunks import TreeSum, chunk_bounds, tree_sum
from eventsim.learning.losses import Loss
from eventsim.learning.optimizers import Optimizer
from eventsim.learning.parameters import load_parameters, parameters
from eventsim.learning.rules import Rule, _finite

#: How many times a step on a cluster sends its inputs again after workers that held them left.
SEND_AGAIN = 3

#: Samples per chunk unless a run says otherwise: a unit of work small enough
#: to spread a batch of 32 over 4 workers, large enough for a chunk's own
#: threads (eventsim.threads) and its norm statistics.
DEFAULT_CHUNK = 8


@dataclass
class StepResult:
    """What one optimizer step saw."""

    loss: float
    correct: int
    samples: int


@dataclass
class ChunkResult:
    """What the training run of one chunk hands back: small, no per-step arrays.

    Attributes
    ----------
    grads : dict
        The chunk's share of the batch gradient, by parameter key.
    losses : (n,) float64
        The per-sample losses ``l_b``.
    correct : int
        Samples predicted right.
    moments : list of dict
        Per chunk, per normalised layer: the mean and unbiased variance of
        the chunk's input currents (:func:`eventsim.norm.run_moments`).
    seconds : list of float
        Per chunk, the time it took where it ran (for benchmarks; no number depends on it).

    The result of consecutive chunks (:func:`merge`) has the same form.
    """

    grads: dict[str, np.ndarray]
    losses: np.ndarray
    correct: int
    moments: list[dict[str, tuple[np.ndarray, np.ndarray]]]
    seconds: list[float]


def mask_rows(masks: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    """The rows ``start:stop`` of every dropout mask of a batch."""
    return {name: m[start:stop] for name, m in masks.items()}


#: What a forward run records per step: T x neurons arrays, and the spikes of every step, per sample.
PER_STEP = frozenset({"spikes", *PER_STEP_RECORDS})


def one_sample_at_a_time(network: Network, rule: Rule) -> bool:
    """Whether a chunk runs forward and backward one sample per task instead of the whole chunk at once.

    So when the rule reads per-step records (``bptt``, ``lee2020-code``),
    whose memory is T x neurons per sample, and the network has no
    input-current norm (whose batch statistics tie the chunk's samples
    together): then only one sample's records per thread are alive at once,
    and the numbers are those of chunks of one sample, which are those of
    any chunk size (:func:`merge`).
    """
    return bool(PER_STEP & set(rule.records)) and not normed_layers(network)


def chunk_result(network: Network, rule: Rule, loss: Loss, events: Events, labels: np.ndarray, *,
                 batch: int, masks: dict[str, np.ndarray]) -> ChunkResult:
    """Forward in training mode with ``masks``, the loss as a share of a batch of ``batch``, the gradients by ``rule``."""
    started = time.perf_counter()
    if one_sample_at_a_time(network, rule) and len(labels) > 1:
        # The samples' tasks run on the thread pool; each one's forward and
        # backward then run inside it, one after the other (eventsim.threads).
        # Their gradients go into merge's tree as they come, so that a few
        # samples' gradients are held at once, not the chunk's.
        grads = TreeSum(len(labels), _added_into)

        def sample(b: int) -> tuple[np.ndarray, int]:
            part = chunk_result(network, rule, loss, events.samples(b, b + 1), labels[b : b + 1], batch=batch,
                                masks=mask_rows(masks, b, b + 1))
            grads.put(b, part.grads)
            return part.losses, part.correct

        done = ordered_map(sample, range(len(labels)), events.busiest_first())
        return ChunkResult(grads.total(), np.concatenate([losses for losses, _ in done]),
                           sum(correct for _, correct in done), [{}], [time.perf_counter() - started])
    records, checkpoints = rule.forward_plan(network, events.steps)
    records = set(records) | ({"counts"} if loss.reads == "counts" else set())
    result = network.run(events, record=records, train=True, masks=masks, checkpoints=checkpoints)
    moments = run_moments(network, result)
    losses, grad_output = loss.sample_losses(network, result, labels, batch=batch)
    grads = rule.gradients(network, events, result, grad_output)
    correct = int(np.sum(loss.predictions(network, result) == labels))
    return ChunkResult(grads, losses, correct, [moments], [time.perf_counter() - started])


def _added_into(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``a + b`` per parameter, written into ``a`` (the bits of ``a[k] + b[k]``)."""
    for key, value in b.items():
        a[key] += value
    return a


def merge(parts: Sequence[ChunkResult]) -> ChunkResult:
    """The results of consecutive chunks as one: the gradients summed in the fixed tree, the rest in order.

    The parts must be aligned subtrees of the batch's tree (single chunks,
    or groups of a power-of-two number of chunks starting at a multiple of
    it): then merging groups of merged chunks gives the bits of merging the
    chunks (:mod:`eventsim.learning.chunks`).
    """
    grads = tree_sum([p.grads for p in parts], lambda a, b: {k: a[k] + b[k] for k in a})
    return ChunkResult(grads, np.concatenate([p.losses for p in parts]), sum(p.correct for p in parts),
                       [m for p in parts for m in p.moments], [t for p in parts for t in p.seconds])


def apply_step(network: Network, optimizer: Optimizer, step: ChunkResult, *, lr: float) -> StepResult:
    """A step's merged chunks: update the running statistics, take one optimizer step with the gradients."""
    grads = _finite(network, step.grads)
    apply_running_statistics(network, step.moments)
    optimizer.step(parameters(network), grads, lr=lr)
    return StepResult(float(np.sum(step.losses) / len(step.losses)), step.correct, len(step.losses))


def local_chunks(network: Network, rule: Rule, loss: Loss, events: Events, labels: np.ndarray,
                 masks: dict[str, np.ndarray], chunk_size: int, *, batch: int | None = None) -> ChunkResult:
    """Every chunk of the samples ``events`` one after the other in this process, merged.

    ``batch`` is the size of the step's batch when ``events`` is a group of
    its chunks (by default the samples given are the whole batch).
    """
    n = len(labels)
    with network.frozen():  # the optimizer changes the network after the merge, not before
        return merge([chunk_result(network, rule, loss, events.samples(lo, hi), labels[lo:hi], batch=batch or n,
                                   masks=mask_rows(masks, lo, hi))
                      for lo, hi in chunk_bounds(n, chunk_size)])


def batch_of(data: Sequence[tuple[Events, int]], indices: Sequence[int]) -> tuple[Events, np.ndarray]:
    """Stack the samples ``indices`` of ``data`` into one batch.

    A dataset with a method ``read_batch(indices) -> (Events, labels)``
    that may be called from several threads at once (such as
    :class:`eventsim.datasets.mnist.CodedImages`, which codes images when
    they are read) gets one call per thread on the thread pool
    (:mod:`eventsim.threads`), each for a run of consecutive samples, so the
    coding runs in parallel; the runs are stacked in order. Any other dataset
    is read item by item, in order, in the calling thread, since its items
    may depend on that order (a transform drawing from a global generator).
    """
    indices = [int(i) for i in indices]
    read_batch = getattr(data, "read_batch", None)
    if read_batch is None or not indices:
        samples = [data[i] for i in indices]
        for i, (events, _) in zip(indices, samples):
            if not isinstance(events, Events) or events.batch != 1:
                raise OptionError(f"dataset item {i} must be (Events of batch 1, label), got {type(events).__name__}")
        return Events.concat([s[0] for s in samples]), np.array([int(s[1]) for s in samples], np.int64)
    runs = np.array_split(np.array(indices, np.int64), min(get_threads(), len(indices)))
    parts = list(ordered_map(read_batch, runs))
    for run, (events, labels) in zip(runs, parts):
        if not isinstance(events, Events) or events.batch != len(run) or np.shape(labels) != (len(run),):
            raise OptionError(f"{type(data).__name__}.read_batch of {len(run)} samples must give (Events of batch "
                              f"{len(run)}, {len(run)} labels), got {type(events).__name__}")
    if len(parts) == 1:  # one thread: the part is the batch (a copy would only fault its pages in)
        return parts[0][0], np.asarray(parts[0][1]).astype(np.int64)
    return Events.concat([part[0] for part in parts]), np.concatenate([part[1] for part in parts]).astype(np.int64)


# ------------------------------------------------------------------ a cluster
def remote_chunks(network: Network, params: dict[str, np.ndarray], data: Any, indices: np.ndarray,
                  masks: dict[str, np.ndarray], rule: Rule, loss: Loss, batch: int, chunk_size: int) -> ChunkResult:
    """A group of consecutive chunks on a worker, merged: the worker's own copy of the network takes ``params``,
    its copy of the data gives the samples ``indices``.

    The network and the data were sent to the worker once
    (:meth:`eventsim.cluster.Cluster.share`) and stay there, with the
    compiled kernels, for the whole run (the tasks of a worker run one at a
    time: :meth:`eventsim.cluster.Cluster.map`). The shared network itself
    is never changed (:func:`own_copy`).
    """
    network = own_copy(network)
    load_parameters(network, params)
    events, labels = batch_of(data, indices)
    return local_chunks(network, rule, loss, events, labels, masks, chunk_size, batch=batch)


#: This process's copies of the networks its tasks were sent, by the id of the network sent.
_own_copies: dict[int, Network] = {}


def own_copy(network: Network) -> Network:
    """This process's copy of a network shared with it, made at the first call and kept while ``network`` lives.

    Dask may send a worker's replica of a shared input to another worker
    at any time (one that lost its replica, or was started after another
    died), while a task is using it: a task that loaded its parameters into
    the shared network, or built its plan in it, would have a half-changed
    network pickled, and Dask leaves a task whose input failed to arrive
    waiting for ever. The tasks change only their own copy. The copy is made
    once: the parameters come with each task, but anything else changed in a
    network after it was shared (a threshold, a layer's options) needs the
    network shared again, as a new value.
    """
    key = id(network)
    mine = _own_copies.get(key)
    if mine is None:
        mine = _own_copies[key] = copy.deepcopy(network)
        weakref.finalize(network, _own_copies.pop, key, None)  # before the id can be reused
    return mine


def group_size(chunks: int, workers: int) -> int:
    """The fewest chunks per task, a power of two, that spread ``chunks`` chunks over ``workers`` tasks."""
    group = 1
    while group * max(1, workers) < chunks:
        group *= 2
    return group


class ClusterChunks:
    """The chunks of every step of a training run on a cluster; the network and the data sent once.

    Parameters
    ----------
    cluster : eventsim.cluster.Cluster
    network : Network
        Its structure (and options) go to the workers once; each step sends
        the current parameters.
    data : sequence of (Events, label)
        The training set, sent to every worker once (a reader over a shared
        folder sends only its paths; an encoded set in memory is shipped).
    """

    def __init__(self, cluster: Any, network: Network, data: Any) -> None:
        self.cluster = cluster
        self._values = (network, data)
        self._share()

    def _share(self, again: bool = False) -> None:
        network, data = self._values
        self.network = self.cluster.share(network)
        self.data = self.cluster.share(data, keep=True, again=again)

    def run(self, params: dict[str, np.ndarray], indices: np.ndarray, masks: dict[str, np.ndarray], rule: Rule,
            loss: Loss, chunk_size: int, *, what: str = "group of chunks") -> ChunkResult:
        """The step on the batch ``indices`` of the data, its chunks computed on the workers, merged.

        One task per worker connected: a group of ``2^k`` consecutive chunks
        (the fewest that spread the batch over the workers), which the
        worker merges, so each worker sends back one gradient. Any grouping
        gives the same bits (:func:`merge`); a worker lost midway has its
        group computed again elsewhere.
        """
        from eventsim.cluster import LostInputs

        attempts = 0
        while True:
            shared = self.cluster.share(params)
            batch = len(indices)
            group = group_size(len(chunk_bounds(batch, chunk_size)), self.cluster.alive())
            calls = [(self.network, shared, self.data, indices[lo:hi], mask_rows(masks, lo, hi), rule, loss, batch,
                      chunk_size) for lo, hi in chunk_bounds(batch, group * chunk_size)]
            try:
                return merge(self.cluster.map(remote_chunks, calls, what=what))
            except LostInputs:
                # A worker that held the inputs left while they were sent: the tasks are pure,
                # so sending everything again and computing the step again gives the same bits.
                attempts += 1
                if attempts > SEND_AGAIN:
                    raise
                self._share(again=True)
