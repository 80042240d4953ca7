"""Recording only counts and traces keeps memory independent of T.

Each run happens in a fresh process that, after compiling the kernels, resets
its peak resident set size (Linux ``/proc/self/clear_refs``) and reports how
far the peak rose during one run. The input is built as events directly, so
only what the network keeps can grow with T.
"""

import json
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import eventsim as es

    steps, record = int(sys.argv[1]), tuple(sys.argv[2].split(",")) if sys.argv[2] else ()
    rng = np.random.default_rng(0)
    net = es.Network([
        es.Conv2d(2, 20, 5, padding=2, weight=(rng.normal(size=(20, 2, 5, 5)) * 0.5).astype(np.float32)),
        es.LIF(1.0, tau=100.0), es.SpikingAvgPool(2), es.Flatten(),
        es.Linear(20 * 17 * 17, 10, weight=(rng.normal(size=(10, 20 * 17 * 17)) * 0.05).astype(np.float32)),
        es.Readout(tau=100.0),
    ], (2, 34, 34))
    n = 2 * 34 * 34
    per_step = int(0.02 * n)
    step = np.repeat(np.arange(steps), per_step)
    neuron = np.concatenate([rng.choice(n, per_step, replace=False) for _ in range(steps)])
    x = es.Events.from_coo(np.zeros_like(step), step, neuron, np.ones(step.size, np.float32),
                           batch=1, steps=steps, shape=(2, 34, 34))
    net.run(x.sample(0), record=record)  # compile (or load) the kernels first

    def status_kb(field):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(field))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current RSS: only the run below counts
    before = status_kb("VmRSS:")
    r = net.run(x, record=record)
    print(json.dumps({"growth_kb": status_kb("VmHWM:") - before, "spikes": int(r.events["lif1"].sum())}))
""")


def run_growth_mb(steps: int, record: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(steps), record], capture_output=True, text=True,
                         check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["spikes"] > 0  # the network is active, not trivially silent
    return report["growth_kb"] / 1024


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak-RSS reset needs Linux /proc")
def test_counts_and_traces_memory_does_not_grow_with_steps():
    short = run_growth_mb(20, "counts,traces")
    long = run_growth_mb(2000, "counts,traces")
    # The input events themselves grow with T (about 1.5 MB at T=2000).
    assert long - short < 10, f"a run grew the peak RSS by {short:.1f} MB at T=20, {long:.1f} MB at T=2000"
    # The measurement sees growth when there is some: potentials at T=2000 are
    # 2000 x (23,120 + 5,780 + 10) float32 values, about 221 MiB (sizes here are MiB).
    with_potentials = run_growth_mb(2000, "potentials")
    assert with_potentials - short > 200, f"{short:.1f} MB vs {with_potentials:.1f} MB with potentials"
