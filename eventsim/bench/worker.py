"""The measuring side of one case, run in a fresh process: ``python -m eventsim.bench.worker CASE_JSON``.

In order: prepare the case (data binned, network built), run one
repetition as warm-up (Numba compilation or cache load, first touch of the
buffers), time ``repeats`` repetitions and keep the best, then run one
more repetition for memory (:mod:`eventsim.bench.memory`: the peak resident
set from just before it to its end), and last what the workload states
about itself (``Prepared.facts``: activity, agreement with eventsim). Prints one JSON record on stdout; an
error eventsim raises on purpose is printed as ``{"error": message}`` with
exit status 2.
"""

from __future__ import annotations

import json
import sys
import time

from eventsim.bench import memory
from eventsim.bench.workloads import Case, Prepared, prepare
from eventsim.errors import EventsimError


def best_of(prepared: Prepared, repeats: int) -> tuple[float, dict]:
    """The shortest of ``repeats`` timed repetitions and the measurements it returned."""
    best, extras = float("inf"), {}
    for _ in range(repeats):
        run = prepared.fresh()
        start = time.perf_counter()
        out = run()
        seconds = time.perf_counter() - start
        if seconds < best:
            best, extras = seconds, out if isinstance(out, dict) else {}
    return best, dict(extras)


def peak_memory(prepared: Prepared) -> tuple[float | None, float | None]:
    """``(peak resident MiB, its rise over the resident set before)`` of one more repetition."""
    run = prepared.fresh()
    before = memory.reset_peak()
    run()
    peak = memory.peak_resident_mb()
    return peak, None if peak is None or before is None else peak - before


def measure_here(case: Case) -> dict:
    """The record of ``case`` measured in this process (see the module docstring)."""
    prepared = prepare(case)
    prepared.fresh()()
    seconds, extras = best_of(prepared, case.repeats)
    peak, rise = peak_memory(prepared)
    record = case.identity()
    per_sample = None if prepared.samples is None else seconds / prepared.samples
    record.update(seconds=seconds, seconds_per_sample=extras.pop("seconds_per_sample", per_sample),
                  peak_rss_mb=peak, rss_rise_mb=rise)
    for name, count in prepared.counts.items():
        record[f"{name}_per_s"] = count / seconds
        if prepared.samples:
            record[f"{name}_per_sample"] = count / prepared.samples
    record.update(extras)
    if prepared.facts is not None:
        record.update(prepared.facts())
    return record


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        record = measure_here(Case(**json.loads(argv[0])))
    except EventsimError as exc:
        print(json.dumps({"error": str(exc)}))
        return 2
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
