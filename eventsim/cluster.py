"""Heavy work on a Dask cluster: where it runs, and running tasks there safely (the ``cluster`` extra).

docs/cluster.md. A command that does heavy work takes ``--cluster SPEC``:

- ``local`` or ``local:N``: a Dask ``LocalCluster`` of N worker processes
  (default: one per CPU) started inside the command and closed with it;
- an address (``tcp://host:8786``, any address Dask accepts): join a running
  scheduler (``dask scheduler``, ``dask worker``, dask-jobqueue on Slurm or
  PBS, Kubernetes).

``EVENTSIM_CLUSTER`` gives the default SPEC (``none`` or empty: no cluster).
Nothing in eventsim's core imports Dask; this module imports it inside the
functions that need it.

The work sent to a cluster is pure: a task's result is a function of its
arguments only (the weights, the samples' indices, the dropout masks, a
seed), so a task whose worker died is simply run again elsewhere (Dask does
that by itself) and gives the same bits. What this module adds:

- workers that run eventsim with the same versions as this process (checked
  at connection: numbers are bit-identical across processes only for the same
  eventsim, NumPy and Numba) and with ``EVENTSIM_THREADS`` set so that the
  workers of one machine share its cores instead of each taking all of them;
- :meth:`Cluster.map`, which waits for the tasks while watching the cluster:
  a task that killed ``allowed-failures`` workers (Dask's
  ``distributed.scheduler.allowed-failures``, 3 by default) or a cluster left
  without any worker for ``EVENTSIM_CLUSTER_WAIT`` seconds (default 120)
  becomes one :class:`~eventsim.errors.ClusterError` line;
- errors raised by eventsim inside a task come back as the same error.
"""

from __future__ import annotations

import os
import threading
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from eventsim.errors import ClusterError, OptionError
from eventsim.extras import require

#: The environment variable giving the default ``--cluster`` SPEC.
ENV_VAR = "EVENTSIM_CLUSTER"
#: Seconds a cluster may be without any worker before the work stops.
WAIT_VAR = "EVENTSIM_CLUSTER_WAIT"
DEFAULT_WAIT = 120.0
#: What the workers must share with this process for bit-identical results.
VERSIONED = ("eventsim", "numpy", "numba")
#: Dask settings of the workers of a local cluster. Dask's nanny sets MALLOC_TRIM_THRESHOLD_=65536 in its
#: workers, which turns off glibc's adaptive mmap threshold: every buffer of a step is then mapped and
#: unmapped again, and a training step ran 1.7x slower (measured on the N-MNIST LeNet); Dask's sampling
#: profiler interrupts the kernels' Python glue every 10 ms. The scheduler's active memory manager drops
#: the copies of a value sent to every worker (:meth:`Cluster.share`) but one, so that each task on another
#: worker fetches the network and the whole dataset again from a busy peer. docs/cluster.md gives the same
#: settings for a cluster started by hand.
LOCAL_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None,
                "distributed.worker.profile.enabled": False,
                "distributed.scheduler.active-memory-manager.start": False}


@dataclass(frozen=True)
class ClusterSpec:
    """Where distributed work runs: a local cluster of ``workers`` processes, or the scheduler at ``address``."""

    address: str | None = None
    workers: int | None = None

    @classmethod
    def parse(cls, text: str, source: str = "--cluster") -> "ClusterSpec":
        """``local``, ``local:N`` or a scheduler address; :class:`OptionError` naming ``source`` otherwise."""
        text = text.strip()
        if text == "local":
            return cls()
        if text.startswith("local:"):
            count = text[len("local:"):]
            if not count.isdigit() or int(count) < 1:
                raise OptionError(f"{source}: local:N needs a positive number of worker processes, got {text!r}")
            return cls(workers=int(count))
        if "://" in text and text.split("://", 1)[1]:
            return cls(address=text)
        raise OptionError(f"{source} must be local, local:N or a scheduler address such as tcp://host:8786, "
                          f"got {text!r}")

    def __str__(self) -> str:
        if self.address is not None:
            return self.address
        return "local" if self.workers is None else f"local:{self.workers}"


def cluster_spec(value: str | None) -> ClusterSpec | None:
    """The SPEC of ``--cluster`` (``value``), else of ``EVENTSIM_CLUSTER``; None for no cluster."""
    if value is not None:
        return ClusterSpec.parse(value)
    raw = os.environ.get(ENV_VAR, "").strip()
    if not raw or raw.lower() == "none":
        return None
    return ClusterSpec.parse(raw, f"environment variable {ENV_VAR}")


def _wait_limit() -> float:
    raw = os.environ.get(WAIT_VAR, "").strip()
    if not raw:
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise OptionError(f"environment variable {WAIT_VAR} must be a positive number of seconds, got {raw!r}")
    return value


def versions() -> dict[str, str]:
    """The versions of :data:`VERSIONED` in this process."""
    from importlib import metadata

    found = {}
    for name in VERSIONED:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def _set_threads(threads: int | None) -> None:
    from eventsim.threads import set_threads

    set_threads(threads)


def _worker_plugin(threads: int | None) -> Any:
    """A Dask worker plugin that sets eventsim's threads on every worker, those started later included."""
    from distributed.diagnostics.plugin import WorkerPlugin

    class EventsimThreads(WorkerPlugin):
        name = "eventsim-threads"

        def setup(self, worker: Any) -> None:
            _set_threads(threads)

    return EventsimThreads()


class Cluster:
    """A connection to a Dask scheduler (and the local cluster started for it); a context manager.

    Parameters
    ----------
    spec : ClusterSpec
    threads : int, optional
        eventsim threads per worker. By default a local cluster gives each of
        its N workers ``max(1, CPUs // N)`` and a joined cluster leaves the
        workers' own setting (``EVENTSIM_THREADS``, else their CPUs).
    """

    def __init__(self, spec: ClusterSpec, *, threads: int | None = None) -> None:
        require("distributed", "--cluster")
        import logging

        import dask
        from distributed import Client, LocalCluster

        self.spec = spec
        self._local = None
        self._kept: dict[int, tuple[Any, Any]] = {}
        if spec.address is None:
            cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
            workers = spec.workers or cpus
            threads = threads or max(1, cpus // workers)
            # Processes, not threads: the workers must survive one another's
            # death, and the kernels already use threads inside a worker.
            with warnings.catch_warnings(), dask.config.set(LOCAL_CONFIG):
                # Dask probes its dashboard's port even with the dashboard off, and warns when
                # another cluster holds it: nothing this command does depends on it.
                warnings.filterwarnings("ignore", message="Port .* is already in use")
                self._local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                           dashboard_address=None, silence_logs=logging.ERROR)
            address = self._local.scheduler_address
        else:
            address = spec.address
        try:
            # A local cluster's workers are reachable: results come straight
            # from them, not twice through the scheduler. A joined cluster's
            # may not be (behind a gateway): Dask decides.
            self.client = Client(address, timeout="30s", direct_to_workers=True if self._local else None)
        except (OSError, TimeoutError) as exc:
            self._close_local()
            raise ClusterError(f"cannot reach the Dask scheduler at {address}: {exc}; start it with "
                               "`dask scheduler` (docs/cluster.md) or use --cluster local") from None
        try:
            if threads is not None:
                self.client.register_plugin(_worker_plugin(threads))
            self._check_versions()
        except BaseException:
            self.close()
            raise

    def __enter__(self) -> "Cluster":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Disconnect; a local cluster is shut down with its workers."""
        self.client.close()
        self._close_local()

    def _close_local(self) -> None:
        if self._local is not None:
            self._local.close()
            self._local = None

    def __repr__(self) -> str:
        return f"Cluster({self.spec}, {self.alive()} workers)"

    def alive(self) -> int:
        """The number of workers connected now."""
        return len(self.client.scheduler_info(n_workers=-1).get("workers", {}))

    def _check_versions(self) -> None:
        mine = versions()
        theirs = self.client.run(versions)
        for worker, found in theirs.items():
            differs = [f"{k} {found.get(k)} (here {v})" for k, v in mine.items() if found.get(k) != v]
            if differs:
                raise ClusterError(f"worker {worker} runs {', '.join(differs)}; eventsim's results are "
                                   "bit-identical across processes only for the same versions: install the same "
                                   "ones on every worker")

    def share(self, value: Any, *, keep: bool = False, again: bool = False) -> Any:
        """Send ``value`` to every worker; returns the handle tasks take in its place (a Dask future).

        ``keep``: ``value`` does not change (a dataset): it is sent once for
        this connection's lifetime, later calls with the same object
        returning the same handle. ``again``: send it even so (after
        :class:`LostInputs`), the new handle replacing the kept one.
        """
        if keep and not again and id(value) in self._kept:
            return self._kept[id(value)][1]
        limit = _wait_limit()
        try:
            if not self.alive():
                self.client.wait_for_workers(1, timeout=limit)
            # In a list of one: Dask scatters a list or dict item by item, and
            # names the futures of a dict by its keys, which two steps would share.
            handle = self.client.scatter([value], broadcast=True, hash=False)[0]
        except TimeoutError:
            raise ClusterError(self._gone(limit)) from None
        if keep:  # the value is held too, so that its id is not reused by another object
            self._kept[id(value)] = (value, handle)
        return handle

    def map(self, fn: Callable[..., Any], calls: Sequence[tuple], *, what: str = "task",
            on_result: Callable[[int, Any], None] | None = None) -> list:
        """``[fn(*args) for args in calls]`` on the workers, in order.

        A call's arguments may be handles from :meth:`share`. ``on_result(i,
        value)`` is called in this process as each call finishes (for
        progress). ``what`` names a call in errors ("chunk 3 of step 12").
        Raises what a call raised, or :class:`ClusterError` (module
        docstring).
        """
        from concurrent.futures import CancelledError

        from distributed import KilledWorker, wait
        from distributed.client import FuturesCancelledError

        futures = [self.client.submit(_exclusive, fn, *args, pure=False) for args in calls]
        index = {f.key: i for i, f in enumerate(futures)}
        pending, since_empty, limit = set(futures), None, _wait_limit()
        try:
            while pending:
                try:
                    done, pending = wait(pending, timeout=1.0, return_when="FIRST_COMPLETED")
                except TimeoutError:  # nothing finished within the second: look at the cluster
                    done = set()
                except (FuturesCancelledError, CancelledError) as exc:
                    raise LostInputs(f"{what}: the scheduler dropped tasks whose inputs were on a worker that "
                                     f"left ({exc}); send the inputs again") from None
                for future in sorted(done, key=lambda f: index[f.key]):
                    i = index[future.key]
                    try:
                        value = future.result()
                    except KilledWorker as exc:
                        raise ClusterError(f"{what} {i} killed every worker it ran on ({exc}); it cannot be "
                                           "finished on this cluster") from None
                    except (FuturesCancelledError, CancelledError) as exc:
                        raise LostInputs(f"{what} {i}: the scheduler dropped it, its inputs having been on a "
                                         f"worker that left ({exc}); send the inputs again") from None
                    if on_result is not None:
                        on_result(i, value)
                if pending:
                    since_empty = self._watch(since_empty, limit)
            return [f.result() for f in futures]
        finally:
            for f in futures:
                f.release()

    def _watch(self, since_empty: float | None, limit: float) -> float | None:
        """Stop (ClusterError) when no worker has been connected for ``limit`` seconds; returns since when none is."""
        if self.alive():
            return None
        now = time.monotonic()
        if since_empty is None:
            return now
        if now - since_empty > limit:
            raise ClusterError(self._gone(limit))
        return since_empty

    def _gone(self, limit: float) -> str:
        return (f"no worker has been connected to the cluster at {self.spec} for {limit:.0f} s ({WAIT_VAR}); "
                "the work stopped: start workers and run the command again (a training run continues from its "
                "last checkpoint with --resume)")


class LostInputs(ClusterError):
    """Tasks the scheduler dropped because a worker holding their shared inputs left as they were sent:
    the work can go on once the inputs are sent again (:class:`eventsim.learning.steps.ClusterChunks`
    does, a few times)."""


_task_lock = threading.Lock()


def _exclusive(fn: Callable[..., Any], *args: Any) -> Any:
    """``fn(*args)`` holding the worker's lock: eventsim's kernels use every thread of the worker already,
    and the tasks of a worker share its copies of the network and the data."""
    with _task_lock:
        return fn(*args)


def open_cluster(spec: ClusterSpec | str | None, *, threads: int | None = None) -> Cluster | None:
    """A :class:`Cluster` for ``spec`` (a SPEC string or None: ``EVENTSIM_CLUSTER``, else no cluster: None)."""
    if isinstance(spec, ClusterSpec):
        return Cluster(spec, threads=threads)
    parsed = cluster_spec(spec)
    return None if parsed is None else Cluster(parsed, threads=threads)
