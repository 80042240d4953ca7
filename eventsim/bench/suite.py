"""A benchmark run: which cases, in which order, and the peer skipped where it cannot run."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TextIO

from eventsim.bench import peer
from eventsim.bench.measure import measure
from eventsim.bench.report import with_ratios
from eventsim.bench.workloads import DEFAULT_DENSITY, PEER, PER_CORE, RECURRENT, STEPLESS, WORKLOADS, Case
from eventsim.datasets import NMNIST
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
    """Measure every case of the run, each in a fresh process; the records with their ratios.

    Parameters
    ----------
    workloads : names of :data:`~eventsim.bench.workloads.WORKLOADS`
    steps : the values of T
    threads : thread counts (1 and 2 give the scaling from one core to two)
    batch : samples per batch
    repeats : timed repetitions per case (the best is kept)
    data : the data folder holding ``NMNIST/`` (default: ``EVENTSIM_DATA``, then the user folder)
    density : input spikes per channel and step of the recurrent CubaLIF workloads
    progress : where one line per finished case goes: a stream, "stderr" (the default) or None (silent)

    Returns
    -------
    list of dict
        One record per case (:mod:`eventsim.bench.worker`); the peer's
        records carry ``skipped`` with the reason when torch or snntorch is
        missing. Ratios: :func:`eventsim.bench.report.with_ratios`.
    """
    for w in workloads:
        check_choice("workload", w, tuple(WORKLOADS))
    for what, values in (("workloads", workloads), ("steps", steps), ("threads", threads)):
        if not values:
            raise OptionError(f"{what}: give at least one")
    if any(w not in STEPLESS | RECURRENT for w in workloads):
        NMNIST(data, "train")  # no data: say so now, not after the first measurements
    stream = sys.stderr if progress == "stderr" else progress
    missing = peer.missing_reason()
    todo = cases(workloads, steps, threads, batch, repeats, data, density)
    records = []
    for i, case in enumerate(todo, 1):
        if case.system == PEER and missing:
            record = {**case.identity(), "seconds_per_sample": None, "peak_rss_mb": None, "skipped": missing}
        else:
            record = measure(case)
        records.append(record)
        if stream is not None:
            done = record.get("skipped") or record.get("failed") or (
                f"{1e3 * record['seconds_per_sample']:.4g} ms/sample" if record["seconds_per_sample"] is not None
                else f"{record['seconds']:.4g} s")
            stream.write(f"bench [{i}/{len(todo)}] {case.workload} {case.system} T={case.steps} "
                         f"threads={case.threads}: {done}\n")
            stream.flush()
    return with_ratios(records)
