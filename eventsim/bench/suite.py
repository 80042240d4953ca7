"""A benchmark run: which cases, in which order, in interleaved rounds, the peers skipped where they cannot run."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import replace
from typing import TextIO

from eventsim.bench.measure import measure
from eventsim.bench.peers import PEERS
from eventsim.bench.report import with_ratios
from eventsim.bench.workloads import DEFAULT_DENSITY, PER_CORE, RECURRENT, STEPLESS, WORKLOADS, Case
from eventsim.datasets import NMNIST, load_mnist
from eventsim.errors import OptionError, check_choice

DEFAULT_STEPS = (25, 100, 300)


def cases(workloads: Sequence[str], steps: Sequence[int], threads: Sequence[int], batch: int, repeats: int,
          data: str | None, density: float = DEFAULT_DENSITY) -> list[Case]:
    """Every case of a run: add-peak first (once), then per T, per thread count, each workload's systems.

    Workloads measured per core (:data:`~eventsim.bench.workloads.PER_CORE`)
    run once per T, on one thread; add-peak joins conv-scatter, whose ratio
    needs it.
    """
    chosen = list(dict.fromkeys(workloads))
    if "conv-scatter" in chosen and "add-peak" not in chosen:
        chosen.append("add-peak")
    out = [Case(w, s, None, 1, batch, repeats, data) for w in chosen if w in STEPLESS for s in WORKLOADS[w]]
    for t in steps:
        for n in threads:
            for w in chosen:
                if w in STEPLESS or (w in PER_CORE and n != threads[0]):
                    continue
                out += [Case(w, s, t, 1 if w in PER_CORE else n, batch, repeats, data, density)
                        for s in WORKLOADS[w]]
    return out


def run_bench(
    workloads: Sequence[str] = tuple(WORKLOADS),
    *,
    steps: Sequence[int] = DEFAULT_STEPS,
    threads: Sequence[int] = (2,),
    batch: int = 16,
    repeats: int = 3,
    data: str | None = None,
    density: float = DEFAULT_DENSITY,
    progress: TextIO | str | None = "stderr",
) -> list[dict]:
    """Measure every case of the run, each repetition in a fresh process; the records with their ratios.

    The repetitions are interleaved: the run goes over every case
    ``repeats`` times, one timed repetition per case and round, each in a
    fresh process (warm-up, the timed repetition, the memory reading), and
    keeps per case the record of its fastest round. A change of the
    machine's load during the run (other work starting or ending) then
    falls on every system alike, not on the cases measured at that moment.

    Parameters
    ----------
    workloads : names of :data:`~eventsim.bench.workloads.WORKLOADS`
    steps : the values of T
    threads : thread counts (1 and 2 give the scaling from one core to two)
    batch : samples per batch
    repeats : rounds, each timing every case once (the fastest is kept)
    data : the data folder holding ``NMNIST/`` (and ``mnist/`` for mnist-epoch-data; default: ``EVENTSIM_DATA``, then the user folder)
    density : input spikes per channel and step of the recurrent CubaLIF workloads
    progress : where one line per finished measurement goes: a stream, "stderr" (the default) or None (silent)

    Returns
    -------
    list of dict
        One record per case (:mod:`eventsim.bench.worker`), ``repeats``
        its number of rounds; a peer's records carry ``skipped`` with the
        reason when its packages are missing
        (:meth:`~eventsim.bench.peers.lenet.Peer.missing_reason`). Ratios:
        :func:`eventsim.bench.report.with_ratios`.
    """
    for w in workloads:
        check_choice("workload", w, tuple(WORKLOADS))
    for what, values in (("workloads", workloads), ("steps", steps), ("threads", threads)):
        if not values:
            raise OptionError(f"{what}: give at least one")
    # No data: say so now, not after the first measurements.
    if any(w not in STEPLESS | RECURRENT | {"mnist-epoch-data"} for w in workloads):
        NMNIST(data, "train")
    if "mnist-epoch-data" in workloads:
        load_mnist(data, "train")
    stream = sys.stderr if progress == "stderr" else progress
    missing = {name: peer.missing_reason() for name, peer in PEERS.items()}
    todo = cases(workloads, steps, threads, batch, repeats, data, density)
    best: list[dict | None] = [None] * len(todo)
    for round_ in range(1, repeats + 1):
        for i, case in enumerate(todo):
            if missing.get(case.system):
                if best[i] is None:
                    best[i] = {**case.identity(), "seconds_per_sample": None, "peak_rss_mb": None,
                               "skipped": missing[case.system]}
                continue
            record = {**measure(replace(case, repeats=1)), "repeats": repeats}
            if best[i] is None or _faster(record, best[i]):
                best[i] = record
            if stream is not None:
                done = record.get("failed") or (
                    f"{1e3 * record['seconds_per_sample']:.4g} ms/sample" if record["seconds_per_sample"] is not None
                    else f"{record['seconds']:.4g} s")
                stream.write(f"bench [round {round_}/{repeats}, {i + 1}/{len(todo)}] {case.workload} {case.system} "
                             f"T={case.steps} threads={case.threads}: {done}\n")
                stream.flush()
    return with_ratios([record for record in best if record is not None])


def _faster(record: dict, than: dict) -> bool:
    """Whether ``record`` is a better measurement of its case than ``than``: measured where the other
    failed, or a shorter timed repetition."""
    if "failed" in record or "failed" in than:
        return "failed" in than and "failed" not in record
    return record["seconds"] < than["seconds"]
