"""The ``cluster-train`` workload: an epoch of ``eventsim train nmnist`` in one process and on a local Dask cluster.

Systems: ``process`` (no cluster: the chunks one after the other, each on
the case's threads), ``local:1`` and ``local:2`` (a LocalCluster of 1 or 2
worker processes on the same machine, the case's threads shared among them).
On one machine the cluster cannot be faster than the process; what the
workload measures is what the engine costs, and the inputs of the scaling
model of docs/cluster.md:

- ``epoch_seconds``: one epoch of the training split (the first step
  included: the data and the network travel to the workers then),
  ``startup_seconds``: starting the cluster;
- over :data:`STEPS_TIMED` further steps, each broken down: ``chunk_seconds``
  (a chunk's forward and backward where it ran, per sample: ``t_s``),
  ``apply_seconds`` (the tree sum, the running statistics and the optimizer
  update in this process), ``step_seconds`` (the whole step),
  ``overhead_seconds`` = step - apply - the workers' compute on the critical
  path (the chunks of a step spread over the workers as evenly as they go):
  sending, scheduling, gathering;
- ``bytes_per_step``: the weights sent to every worker, the tasks' calls
  (indices, dropout masks) and their results (one merged gradient per
  task: :class:`~eventsim.learning.steps.ClusterChunks`), as pickled.

The report adds ``efficiency_vs_process``: the process's time per sample
over this system's, on the same cores.
"""

from __future__ import annotations

import pickle
import time
from typing import Any, Callable

import numpy as np

from eventsim.learning.chunks import chunk_bounds
from eventsim.learning.parameters import parameters
from eventsim.learning.runs import Job
from eventsim.learning.steps import ClusterChunks, apply_step, batch_of, group_size, local_chunks, mask_rows

#: Steps broken down after the timed epoch.
STEPS_TIMED = 8


def _workers(system: str) -> int:
    return 0 if system == "process" else int(system.split(":")[1])


def _critical_path(seconds: list[float], workers: int) -> float:
    """The busiest task's compute: the chunks go to the workers in groups (:func:`group_size`)."""
    group = group_size(len(seconds), workers)
    return max(sum(seconds[i : i + group]) for i in range(0, len(seconds), group))


def cluster_epoch(case: Any) -> Any:
    """:class:`~eventsim.bench.workloads.Prepared` for ``case`` (workload ``cluster-train``)."""
    from eventsim.bench.workloads import Prepared
    from eventsim.learning.trainer import Trainer
    from eventsim.threads import set_threads

    job = Job(steps=case.steps, batch_size=case.batch, epochs=1)
    data = job.data("train", case.data, None)
    workers = _workers(case.system)

    def fresh() -> Callable[[], dict]:
        def epoch() -> dict:
            cluster, startup = None, 0.0
            if workers:
                from eventsim.cluster import Cluster, ClusterSpec

                t = time.perf_counter()
                cluster = Cluster(ClusterSpec(workers=workers), threads=max(1, case.threads // workers))
                startup = time.perf_counter() - t
            else:
                set_threads(case.threads)
            try:
                trainer = Trainer(job.network(np.random.default_rng(job.seed)), rule=job.rule_object(),
                                  loss=job.loss_object(), optimizer=job.optimizer_object(),
                                  batch_size=job.batch_size, epochs=1, seed=job.seed, chunk_size=job.chunk_size,
                                  progress=None, cluster=cluster)
                t = time.perf_counter()
                trainer.fit(data)
                seconds = time.perf_counter() - t
                steps = _breakdown(trainer, data, cluster, workers)
            finally:
                if cluster is not None:
                    cluster.close()
            return {"seconds_per_sample": seconds / len(data), "epoch_seconds": seconds, "epoch_samples": len(data),
                    "startup_seconds": startup, "workers": workers, "chunk_size": job.chunk_size, **steps}

        return epoch

    return Prepared(fresh, len(data))


def _breakdown(trainer: Any, data: Any, cluster: Any, workers: int) -> dict:
    """:data:`STEPS_TIMED` steps of ``trainer``'s run, each part timed and the bytes counted (module docstring)."""
    network, rule, loss = trainer.network, trainer.rule, trainer.loss
    rng = np.random.default_rng(1)
    remote = None if cluster is None else ClusterChunks(cluster, network, data)
    rows: dict[str, list[float]] = {k: [] for k in ("step", "apply", "overhead", "chunk_per_sample", "bytes")}
    for _ in range(STEPS_TIMED):
        idx = rng.permutation(len(data))[: trainer.batch_size]
        t0 = time.perf_counter()
        masks = network.dropout_masks(len(idx), rng)
        if remote is None:
            events, labels = batch_of(data, idx)
            step = local_chunks(network, rule, loss, events, labels, masks, trainer.chunk_size)
        else:
            step = remote.run(parameters(network), idx, masks, rule, loss, trainer.chunk_size)
        t1 = time.perf_counter()
        apply_step(network, trainer.optimizer, step, lr=1e-6)
        t2 = time.perf_counter()
        compute = step.seconds
        rows["step"].append(t2 - t0)
        rows["apply"].append(t2 - t1)
        rows["overhead"].append((t1 - t0) - _critical_path(compute, workers))
        rows["chunk_per_sample"].append(sum(compute) / len(idx))
        group = group_size(len(compute), workers) * trainer.chunk_size
        calls = chunk_bounds(len(idx), group)
        sent = len(pickle.dumps(parameters(network))) * workers + sum(
            len(pickle.dumps((idx[lo:hi], mask_rows(masks, lo, hi)))) for lo, hi in calls)
        back = len(calls) * len(pickle.dumps(step.grads))  # one merged gradient per task (and a few numbers)
        rows["bytes"].append(0 if remote is None else sent + back)
    median = {k: float(np.median(v)) for k, v in rows.items()}
    return {"step_seconds": median["step"], "apply_seconds": median["apply"],
            "overhead_seconds": median["overhead"] if remote is not None else 0.0,
            "chunk_seconds_per_sample": median["chunk_per_sample"], "bytes_per_step": int(median["bytes"]),
            "parameter_bytes": int(sum(v.nbytes for v in parameters(network).values()))}
