"""The ``cluster-train`` workload: an epoch of ``eventsim train nmnist`` in one process and on a local Dask cluster.

Systems: ``process`` (no cluster: the chunks one after the other, each on
the case's threads), ``local:1`` and ``local:2`` (a LocalCluster of 1 or 2
worker processes on the same machine, the case's threads shared among them).
On one machine the cluster cannot be faster than the process; what the
workload measures is what the engine costs, and the inputs of the scaling
model of docs/cluster.md:

- ``epoch_seconds``: one epoch of the training split on warm workers;
  ``startup_seconds``: starting the cluster; ``first_step_seconds``: the
  first step on the fresh workers, which sends them the training set and
  loads their kernels;
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
        cluster, startup, first = None, 0.0, 0.0
        if workers:
            from eventsim.cluster import Cluster, ClusterSpec

            t = time.perf_counter()
            cluster = Cluster(ClusterSpec(workers=workers), threads=max(1, case.threads // workers))
            startup = time.perf_counter() - t
            # The first step on fresh workers: the training set travels to them (once for the
            # cluster's lifetime) and their kernels load; timed apart from the epoch.
            network = job.network(np.random.default_rng(job.seed))
            t = time.perf_counter()
            ClusterChunks(cluster, network, data).run(parameters(network), np.arange(job.batch_size),
                                                      network.dropout_masks(job.batch_size, np.random.default_rng(0)),
                                                      job.rule_object(), job.loss_object(), job.chunk_size)
            first = time.perf_counter() - t
        else:
            set_threads(case.threads)

        def epoch() -> dict:
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
                    "startup_seconds": startup, "first_step_seconds": first, "workers": workers,
                    "chunk_size": job.chunk_size, **steps}

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


# --------------------------------------------------------------- the model
#: The grid docs/cluster.md predicts.
MODEL_WORKERS = (4, 16, 64)
MODEL_BATCHES = (32, 64, 128, 256, 512, 1024)


def model_inputs(records: list[dict]) -> dict | None:
    """The model's costs from one run's ``cluster-train`` records at one T (None without local:1 and local:2).

    - ``t_s``: a worker's compute per sample (local:1's chunks, on all the
      case's threads: a worker is a machine like this one);
    - ``fixed`` and ``per_byte``: the communication of a step, fitted as
      ``fixed + per_byte * bytes`` through local:1's and local:2's
      (``per_byte`` at least 0);
    - ``update`` and ``per_gradient``: the update in this process, plus the
      cost of each gradient more to sum (local:2 - local:1);
    - ``parameter_bytes``, ``chunk_size``.
    """
    runs = {r["system"]: r for r in records if r.get("workload") == "cluster-train" and "step_seconds" in r}
    one, two = runs.get("local:1"), runs.get("local:2")
    if one is None or two is None:
        return None
    per_byte = max(0.0, (two["overhead_seconds"] - one["overhead_seconds"])
                   / max(1, two["bytes_per_step"] - one["bytes_per_step"]))
    return {"t_s": one["chunk_seconds_per_sample"], "per_byte": per_byte,
            "fixed": max(0.0, one["overhead_seconds"] - per_byte * one["bytes_per_step"]),
            "update": one["apply_seconds"], "per_gradient": max(0.0, two["apply_seconds"] - one["apply_seconds"]),
            "parameter_bytes": one["parameter_bytes"], "chunk_size": one["chunk_size"], "T": one["T"]}


def predicted_efficiency(costs: dict, workers: int, batch: int) -> float:
    """Speed-up over one worker without any overhead, divided by ``workers``.

    A step on ``workers`` workers (docs/cluster.md, "Scaling")::

        compute  = t_s * c * g                 (g chunks of c samples per task: group_size)
        update   = update + per_gradient * (tasks - 1)
        traffic  = P * workers + P * tasks     (the weights to every worker, one gradient back per task)
        step     = compute + update + fixed + per_byte * traffic
        E        = batch * t_s / (workers * step)
    """
    c = costs["chunk_size"]
    chunks = -(-batch // c)
    group = group_size(chunks, workers)
    tasks = -(-chunks // group)
    compute = costs["t_s"] * c * group
    update = costs["update"] + costs["per_gradient"] * (tasks - 1)
    traffic = costs["parameter_bytes"] * (workers + tasks)
    step = compute + update + costs["fixed"] + costs["per_byte"] * traffic
    return batch * costs["t_s"] / (workers * step)


def model_table(records: list[dict]) -> str | None:
    """The predicted efficiency over :data:`MODEL_WORKERS` x :data:`MODEL_BATCHES`, from this run's costs."""
    costs = model_inputs(records)
    if costs is None:
        return None
    head = ["workers"] + [f"B={b}" for b in MODEL_BATCHES]
    rows = [[str(n)] + [f"{100 * predicted_efficiency(costs, n, b):.0f} %" for b in MODEL_BATCHES]
            for n in MODEL_WORKERS]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(r, widths)) for r in [head] + rows]
    return (f"scaling model at T={costs['T']} (docs/cluster.md): t_s {1e3 * costs['t_s']:.3g} ms/sample, "
            f"communication {1e3 * costs['fixed']:.3g} ms + {1e3 * costs['per_byte'] * 1e6:.3g} ms/MB, "
            f"update {1e3 * costs['update']:.3g} ms + {1e3 * costs['per_gradient']:.3g} ms per gradient, "
            f"P = {costs['parameter_bytes'] / 1e6:.3g} MB, chunk {costs['chunk_size']}\n" + "\n".join(lines))
