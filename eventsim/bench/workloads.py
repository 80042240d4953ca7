"""The workloads of ``eventsim bench``: what one timed repetition of each (workload, system) runs.

The reference workload is Lee et al. 2020's LeNet5 for N-MNIST (the zoo's
``lee2020-lenet5``: conv 5x5 2->20 pad 2, LIF, spiking average pooling 2,
conv 5x5 20->50 pad 2, LIF, spiking average pooling 2, fc 3200->200, LIF,
fc 200->10, readout; tau = 100 steps, theta = 1, Lee's initialisation from
seed 0) on real N-MNIST recordings: the first ``batch`` training samples
taking the digits in turn, each binned into T binary steps over its whole
recording, float32 (what ``eventsim train nmnist --steps T`` feeds the
network). The input exists before the measurement and is not counted.

==================  ================  ==========================================================
workload            systems           one repetition
==================  ================  ==========================================================
lenet-nmnist-train  eventsim-lee2020  one training step (:func:`eventsim.learning.trainer.train_step`):
                    eventsim-bptt     forward with the rule's records, Lee's MSE, the rule's
                    snntorch          gradients, one Adam update; the peers: BPTT through the same
                    norse             network with the same weights, Lee's MSE, Adam
                    spikingjelly      (:mod:`eventsim.bench.peers`; each peer's readout is checked
                    sinabs            against eventsim's before it is timed)
                    pytorch
lenet-nmnist-infer  eventsim          the forward pass of the batch
                    (the peers)
conv-scatter        eventsim          the first convolution's event scatter
                                      (:func:`eventsim.kernels.conv_scatter`) of the batch, in the
                                      windows the network uses; one core
add-peak            machine           :func:`eventsim.bench.peak.add_passes`: the core's float32
                                      add throughput, the yardstick of conv-scatter; one core
nmnist-epoch-data   eventsim-lee2020  one epoch's data work on the training split (read, bin and
                                      cache every recording, load the cache, batch) against its
                                      train steps (:data:`EPOCH_STEPS_TIMED` steps timed,
                                      scaled to the epoch)
mnist-epoch-data    eventsim-lee2020  the first :data:`MNIST_BATCHES_TIMED` batches of an epoch of
                                      ``eventsim train mnist`` (rate coding when a batch is read,
                                      then its train step), coding timed apart from training
cubalif-rnn-infer   eventsim          the forward pass of the recurrent CubaLIF network
                    snntorch          (:mod:`eventsim.bench.recurrent`) on a batch of Bernoulli
                                      input of density ``Case.density``; snnTorch under
                                      ``torch.no_grad``
cubalif-rnn-train   eventsim-bptt     forward and backward: forward with bptt's records, Lee's
                    snntorch          MSE, bptt's gradients; snnTorch: forward, the same loss,
                                      autograd through RSynaptic with the same surrogate
cluster-train       process           one epoch of ``eventsim train nmnist`` on the training
                    local:1           split, in this process or on a LocalCluster of 1 or 2
                    local:2           worker processes, then steps broken down into compute,
                                      update and communication (:mod:`eventsim.bench.cluster`)
==================  ================  ==========================================================

The recurrent CubaLIF workloads (:data:`RECURRENT`) read no data: their
weights, input and labels are drawn from a fixed seed, the same in every
process. Their snnTorch records also say how far snnTorch's spike counts,
readout and gradients are from eventsim's on the same problem
(:func:`eventsim.bench.recurrent.agreement`), so that the times compare the
same computation.

Every repetition starts from the same state (fresh weights and optimizer),
so repetitions are the same work and their SynOps are counted exactly once.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from math import prod

import numpy as np

from eventsim import kernels
from eventsim.bench import peak, peer, recurrent
from eventsim.bench.cluster import cluster_epoch
from eventsim.bench.peers import PEERS
from eventsim.bench.peers.lenet import LeNet, check_readout, time_major, training_step
from eventsim.datasets import NMNIST
from eventsim.encoders.binning import bin_events
from eventsim.errors import OptionError, check_choice
from eventsim.events import Events
from eventsim.layers import Conv2d
from eventsim.learning.losses import loss_from_config, one_hot
from eventsim.learning.runs import Job, interleaved_classes
from eventsim.learning.trainer import batch_of, train_step
from eventsim.network import WINDOW_ELEMENTS, Network

#: The peer of the recurrent CubaLIF workloads.
PEER = "snntorch"
#: The systems measured on each workload, eventsim's first.
WORKLOADS: dict[str, tuple[str, ...]] = {
    "lenet-nmnist-train": ("eventsim-lee2020", "eventsim-bptt", *PEERS),
    "lenet-nmnist-infer": ("eventsim", *PEERS),
    "conv-scatter": ("eventsim",),
    "add-peak": ("machine",),
    "nmnist-epoch-data": ("eventsim-lee2020",),
    "mnist-epoch-data": ("eventsim-lee2020",),
    "cubalif-rnn-infer": ("eventsim", PEER),
    "cubalif-rnn-train": ("eventsim-bptt", PEER),
    "cluster-train": ("process", "local:1", "local:2"),
}
#: Workloads measured on one core whatever the thread setting (throughput per core).
PER_CORE = frozenset({"conv-scatter", "add-peak"})
#: Workloads that do not depend on T (measured once per run).
STEPLESS = frozenset({"add-peak"})
#: Workloads on the recurrent CubaLIF network: seeded input of density ``Case.density``, no data folder.
RECURRENT = frozenset({"cubalif-rnn-infer", "cubalif-rnn-train"})
#: Input density of the recurrent workloads: spoken-digit recordings hold 1-5 % of their channels per step.
DEFAULT_DENSITY = 0.02
#: Train steps timed by nmnist-epoch-data; the epoch's train time is scaled from them per sample.
EPOCH_STEPS_TIMED = 4
#: Batches of mnist-epoch-data: each coded (timed) and trained on (timed); the shares are of their sums.
MNIST_BATCHES_TIMED = 8


@dataclass(frozen=True)
class Case:
    """One measurement: a workload on a system at T steps with a number of threads."""

    workload: str
    system: str
    steps: int | None
    threads: int
    batch: int
    repeats: int
    data: str | None = None
    density: float = DEFAULT_DENSITY

    def __post_init__(self) -> None:
        check_choice("workload", self.workload, tuple(WORKLOADS))
        check_choice(f"system of {self.workload}", self.system, WORKLOADS[self.workload])
        for what in ("threads", "batch", "repeats") + (() if self.workload in STEPLESS else ("steps",)):
            value = getattr(self, what)
            if not isinstance(value, int) or value < 1:
                raise OptionError(f"{self.workload}: {what} must be a positive integer, got {value!r}")
        if not isinstance(self.density, (int, float)) or not 0 < self.density <= 1:
            raise OptionError(f"{self.workload}: density must be in (0, 1], got {self.density!r}")

    def identity(self) -> dict:
        """The fields every record of this case starts with (T for steps; the data folder left out;
        the input density where the workload draws its input)."""
        out = {"workload": self.workload, "system": self.system, "T": self.steps, "threads": self.threads,
               "batch": self.batch, "repeats": self.repeats}
        return {**out, "density": self.density} if self.workload in RECURRENT else out


@dataclass(frozen=True)
class Prepared:
    """A workload ready to time.

    ``fresh()`` builds the starting state of one repetition (outside the
    timing) and returns the repetition; what that returns is ignored unless
    it is a dict of measurements of its own (its ``seconds_per_sample``
    replaces the time per sample). ``samples`` is the number of samples one
    repetition processes (None: no samples); ``counts`` are operations one
    repetition performs (e.g. ``{"synops": n}``), reported per second and
    per sample. ``facts``, when given, returns what the record also states
    about the workload (activity, agreement with eventsim); the worker calls
    it after the timing and the memory reading, so that neither sees its work.
    """

    fresh: Callable[[], Callable[[], object]]
    samples: int | None
    counts: dict[str, int] = field(default_factory=dict)
    facts: Callable[[], dict] | None = None


def nmnist_batch(case: Case, job: Job) -> tuple[Events, np.ndarray]:
    """The first ``case.batch`` N-MNIST training samples (digits in turn), binned as ``job`` bins them."""
    source = NMNIST(case.data, "train")
    picked = interleaved_classes(source.labels, case.batch)
    if picked.shape[0] < case.batch:
        raise OptionError(f"batch {case.batch} is larger than the {len(source)} training samples under {source.folder}")
    parts = [bin_events(source[int(i)][0], sensor=NMNIST.sensor, steps=job.steps, values=job.binning) for i in picked]
    return Events.concat(parts), source.labels[picked]


def _job(case: Case, rule: str = "lee2020") -> Job:
    return Job(rule=rule, steps=case.steps, batch_size=case.batch)


def _network(job: Job) -> Network:
    return job.network(np.random.default_rng(job.seed))


def _training(job: Job) -> Callable[[Events, np.ndarray], object]:
    """A training step on a freshly built network, rule, loss and optimizer (``eventsim train``'s)."""
    network, rule, loss, optimizer = _network(job), job.rule_object(), loss_from_config(job.loss), job.optimizer_object()
    rng = np.random.default_rng(job.seed)
    return partial(train_step, network, rule, loss, optimizer, lr=job.lr, rng=rng)


def _eventsim_lenet(case: Case, rule: str | None) -> Prepared:
    """Lee's LeNet on eventsim: a training step by ``rule``, or inference when ``rule`` is None."""
    job = _job(case, rule or "lee2020")
    events, labels = nmnist_batch(case, job)
    synops = int(_network(job).run(events).total_synops().sum())

    def fresh() -> Callable[[], object]:
        if rule is not None:
            return partial(_training(job), events, labels)
        return partial(_network(job).run, events)

    return Prepared(fresh, case.batch, {"synops": synops})


def _peer_lenet(case: Case, train: bool) -> Prepared:
    """The same LeNet, weights and batch in a peer framework (:mod:`eventsim.bench.peers`): a BPTT step
    (Lee's MSE, Adam) or inference, once its readout on the batch has been checked against eventsim's."""
    system = PEERS[case.system]
    torch = system.require()
    torch.set_num_threads(case.threads)
    job = _job(case, "bptt")
    events, labels = nmnist_batch(case, job)
    network = _network(job)
    lenet, x = LeNet.of(network), time_major(events)
    facts = check_readout(system, system.build(lenet, case.batch), x, network.run(events).output)
    if train and system.backward_note:
        facts["backward_note"] = system.backward_note
    target = torch.from_numpy(one_hot(labels, 10, np.float32))

    def fresh() -> Callable[[], None]:
        module = system.build(lenet, case.batch)
        if train:
            return training_step(system, module, x, target, job.lr)
        laid_out = system.layout(x)

        def infer() -> None:
            with torch.no_grad():
                system.readout(module, laid_out)
        return infer

    return Prepared(fresh, case.batch, facts=lambda: facts)


def _conv_scatter(case: Case) -> Prepared:
    """The first convolution's scatter of the batch's input events, window by window as the network runs it.

    All windows add into one current buffer, allocated and touched once: the
    sums are meaningless, the adds are the same work, and neither allocation
    nor zeroing is timed.
    """
    job = _job(case)
    events, _ = nmnist_batch(case, job)
    network = _network(job)
    conv = next(layer for layer in network.walk() if isinstance(layer, Conv2d))
    (_, *in_hw), (_, *out_hw) = network.shapes[conv.name]
    weight = np.ascontiguousarray(conv.weight.transpose(1, 2, 3, 0))  # (Ci, kh, kw, Co): the kernel's layout
    n_out = prod(network.shapes[conv.name][1])
    window = max(1, min(job.steps, WINDOW_ELEMENTS // n_out))
    cur = np.zeros((window, n_out), np.float32)
    steps = job.steps

    def scatter() -> int:
        synops = 0
        for b in range(events.batch):
            for k0 in range(0, steps, window):
                k = min(window, steps - k0)
                rows = events.indptr[b * steps + k0 : b * steps + k0 + k + 1]
                synops += kernels.conv_scatter(cur[:k], rows, events.index, events.value, weight, tuple(in_hw),
                                               tuple(out_hw), conv.stride, conv.padding)
        return synops

    return Prepared(lambda: scatter, case.batch, {"synops": scatter()})


def _add_peak(case: Case) -> Prepared:
    def fresh() -> Callable[[], None]:
        acc, x, _ = peak.add_vectors()
        return partial(peak.add_passes, acc, x, peak.PASSES)

    return Prepared(fresh, None, {"adds": peak.add_vectors()[2]})


def _epoch_data(case: Case) -> Prepared:
    """An epoch of ``eventsim train nmnist`` at T steps, its data work timed apart from its train steps."""
    job = _job(case)
    source = NMNIST(case.data, "train")

    def fresh() -> Callable[[], dict]:
        step = _training(job)

        def epoch() -> dict:
            with tempfile.TemporaryDirectory() as folder:
                binned = partial(source.binned, steps=job.steps, values=job.binning, cache_folder=folder, progress=None)
                t0 = time.perf_counter()
                binned()  # read, bin, write the cache: the data work of a first epoch
                t1 = time.perf_counter()
                data = binned()  # the data work of every later epoch and run: load the cache
                t2 = time.perf_counter()
            order = np.random.default_rng(job.seed).permutation(len(data))
            batches, batching = [], 0.0
            for start in range(0, len(data), job.batch_size):
                t = time.perf_counter()
                batches.append(batch_of(data, order[start : start + job.batch_size]))
                batching += time.perf_counter() - t
            timed = batches[:EPOCH_STEPS_TIMED]
            t = time.perf_counter()
            for events, labels in timed:
                step(events, labels)
            stepping = (time.perf_counter() - t) / sum(labels.shape[0] for _, labels in timed) * len(data)
            encode, load = t1 - t0, t2 - t1
            return {
                "seconds_per_sample": (load + batching + stepping) / len(data),
                "epoch_samples": len(data),
                "encode_seconds": encode,
                "cache_load_seconds": load,
                "batching_seconds": batching,
                "train_seconds": stepping,
                "data_share": (load + batching) / (load + batching + stepping),
                "data_share_first_epoch": (encode + batching) / (encode + batching + stepping),
            }

        return epoch

    return Prepared(fresh, len(source))


def _mnist_epoch_data(case: Case) -> Prepared:
    """``eventsim train mnist`` at T steps: the first batches of an epoch coded, and trained on, timed apart."""
    job = Job(dataset="mnist", steps=case.steps, batch_size=case.batch)
    data = job.data("train", case.data, progress=None)
    order = np.random.default_rng(job.seed).permutation(len(data))[: MNIST_BATCHES_TIMED * job.batch_size]
    runs = [order[start : start + job.batch_size] for start in range(0, len(order), job.batch_size)]

    def fresh() -> Callable[[], dict]:
        step = _training(job)

        def batches() -> dict:
            coding = stepping = 0.0
            for picked in runs:
                t0 = time.perf_counter()
                events, labels = batch_of(data, picked)
                t1 = time.perf_counter()
                step(events, labels)
                coding, stepping = coding + t1 - t0, stepping + time.perf_counter() - t1
            return {"seconds_per_sample": (coding + stepping) / len(order), "coding_seconds": coding,
                    "train_seconds": stepping, "data_share": coding / (coding + stepping)}

        return batches

    return Prepared(fresh, len(order))


def _eventsim_recurrent(case: Case, train: bool) -> Prepared:
    """The recurrent CubaLIF network on eventsim: bptt's forward and backward, or the forward pass."""
    task = recurrent.problem(case.batch, case.steps, case.density)
    weights, labels, events = task.weights, task.labels, task.events()
    del task  # the dense input stays out of eventsim's resident set
    result = recurrent.eventsim_network(weights).run(events, record=("counts",))
    spikes = result.counts[recurrent.HIDDEN_LAYER]

    def fresh() -> Callable[[], None]:
        network = recurrent.eventsim_network(weights)

        def step() -> None:  # the gradients are dropped: a dict returned would be taken for measurements
            recurrent.eventsim_gradients(network, events, labels)
        return step if train else partial(network.run, events)

    def facts() -> dict:
        return {"input_density": events.n_events / (events.batch * events.steps * recurrent.INPUTS),
                "hidden_rate": float(spikes.sum()) / (spikes.size * events.steps)}

    return Prepared(fresh, case.batch, {"synops": int(result.total_synops().sum())}, facts)


def _snntorch_recurrent(case: Case, train: bool) -> Prepared:
    """The same network, weights and input on snnTorch: forward and autograd's backward, or the forward pass."""
    torch, _ = peer.require()
    torch.set_num_threads(case.threads)
    task = recurrent.problem(case.batch, case.steps, case.density)
    x, targets = recurrent.snntorch_input(task.spikes), torch.from_numpy(task.targets())

    def fresh() -> Callable[[], None]:
        module = recurrent.snntorch_network(task.weights)
        if train:
            return recurrent.snntorch_step(module, x, targets)

        def infer() -> None:
            with torch.no_grad():
                module(x)
        return infer

    return Prepared(fresh, case.batch, facts=partial(recurrent.agreement, task, gradients=train))


def prepare(case: Case) -> Prepared:
    """Everything ``case`` needs before its timing starts: data binned, network built, kernels compiled."""
    builders: dict[tuple[str, str], Callable[[Case], Prepared]] = {
        ("lenet-nmnist-train", "eventsim-lee2020"): partial(_eventsim_lenet, rule="lee2020"),
        ("lenet-nmnist-train", "eventsim-bptt"): partial(_eventsim_lenet, rule="bptt"),
        ("lenet-nmnist-infer", "eventsim"): partial(_eventsim_lenet, rule=None),
        **{("lenet-nmnist-train", system): partial(_peer_lenet, train=True) for system in PEERS},
        **{("lenet-nmnist-infer", system): partial(_peer_lenet, train=False) for system in PEERS},
        ("conv-scatter", "eventsim"): _conv_scatter,
        ("add-peak", "machine"): _add_peak,
        ("nmnist-epoch-data", "eventsim-lee2020"): _epoch_data,
        ("mnist-epoch-data", "eventsim-lee2020"): _mnist_epoch_data,
        **{("cluster-train", system): cluster_epoch for system in WORKLOADS["cluster-train"]},
        ("cubalif-rnn-infer", "eventsim"): partial(_eventsim_recurrent, train=False),
        ("cubalif-rnn-infer", PEER): partial(_snntorch_recurrent, train=False),
        ("cubalif-rnn-train", "eventsim-bptt"): partial(_eventsim_recurrent, train=True),
        ("cubalif-rnn-train", PEER): partial(_snntorch_recurrent, train=True),
    }
    return builders[case.workload, case.system](case)
