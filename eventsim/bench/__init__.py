"""``eventsim bench``: eventsim against its CPU peers and against the machine's limit, in the same run.

- :mod:`~eventsim.bench.workloads`: the workloads (Lee's N-MNIST LeNet5
  training step and inference, the first convolution's event scatter, the
  core's float32 add throughput, an epoch's data work, the recurrent CubaLIF
  network's forward and forward+backward) and the systems run on each;
- :mod:`~eventsim.bench.peer`: the same LeNet in snnTorch (the ``snntorch`` extra);
- :mod:`~eventsim.bench.peers`: the same LeNet in snnTorch, Norse, SpikingJelly, sinabs and plain
  PyTorch, each checked against eventsim's readout before it is timed;
- :mod:`~eventsim.bench.recurrent`: a recurrent CubaLIF network (700-256-20)
  in eventsim and in snnTorch (``RSynaptic``), on seeded input, and how far
  the two systems' results are from each other;
- :mod:`~eventsim.bench.measure` and :mod:`~eventsim.bench.worker`: one case
  per fresh process, threads fixed through the environment, best of N
  repetitions after a warm-up, peak resident memory of the measured part
  (:mod:`~eventsim.bench.memory`);
- :mod:`~eventsim.bench.peak`: the add micro-benchmark;
- :mod:`~eventsim.bench.cluster`: the ``cluster-train`` workload, an epoch in
  one process and on a local Dask cluster, its steps broken down;
- :mod:`~eventsim.bench.neurobench`: an eventsim network as a NeuroBench
  model (the ``neurobench`` extra);
- :mod:`~eventsim.bench.report`: the ratios between records and the table;
- :mod:`~eventsim.bench.suite`: :func:`run_bench`, a whole run.

Timings are printed, never asserted: they depend on the machine.
"""

from eventsim.bench.report import table, with_ratios
from eventsim.bench.suite import DEFAULT_STEPS, run_bench
from eventsim.bench.workloads import WORKLOADS, Case

__all__ = ["DEFAULT_STEPS", "WORKLOADS", "Case", "run_bench", "table", "with_ratios"]
