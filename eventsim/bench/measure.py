"""One case, one fresh process: the thread setting goes in through the environment.

A fresh interpreter per case keeps cases from sharing warm caches, compiled
code or allocator state, and lets the thread count be fixed before any
library starts its thread pool: ``EVENTSIM_THREADS`` (eventsim's batch
parallelism) and ``NUMBA_NUM_THREADS`` for eventsim, ``OMP_NUM_THREADS`` /
``MKL_NUM_THREADS`` / ``OPENBLAS_NUM_THREADS`` for the BLAS both sides call
and for PyTorch (which the snnTorch workload also sets with
``torch.set_num_threads``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict

from eventsim.bench.workloads import Case
from eventsim.errors import EventsimError

THREAD_VARIABLES = ("EVENTSIM_THREADS", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "OPENBLAS_NUM_THREADS")


def thread_environment(threads: int) -> dict[str, str]:
    """The environment variables that fix every thread pool of a case at ``threads``."""
    return {name: str(threads) for name in THREAD_VARIABLES}


def measure(case: Case) -> dict:
    """Measure ``case`` in a fresh process (:mod:`eventsim.bench.worker`) and return its record.

    A worker that fails is reported in the record (``"failed"``: the last
    line it wrote) rather than ending the run, except for an error eventsim
    raises on purpose (bad data, bad options), which is raised here.
    """
    # torch's OpenMP threads spin-wait by default: on a loaded machine 2 threads ran 17x slower than 1.
    env = {**os.environ, "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "PASSIVE"),
           **thread_environment(case.threads)}
    proc = subprocess.run([sys.executable, "-m", "eventsim.bench.worker", json.dumps(asdict(case))],
                          capture_output=True, text=True, env=env, check=False)
    lines = proc.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if proc.returncode in (0, 2) and lines else None
    if out is not None and "error" in out:
        raise EventsimError(f"{case.workload} on {case.system}: {out['error']}")
    if out is None:
        said = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {**case.identity(), "seconds_per_sample": None, "peak_rss_mb": None, "failed": said}
    return out
