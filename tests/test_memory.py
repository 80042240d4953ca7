"""Recording only counts and traces keeps memory independent of T.

Each run happens in a fresh process and reports its peak resident memory
(``ru_maxrss``). The input is built as events directly, so only what the
network keeps can grow with T.
"""

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent("""
    import json, resource, sys
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
    net.run(x.sample(0) if steps < 10 else x, record=record)  # warm up the kernels
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    r = net.run(x, record=record)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"rss_kb": after, "spikes": int(r.events["lif1"].sum())}))
""")


def peak_rss_mb(steps: int, record: str) -> float:
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(steps), record], capture_output=True, text=True,
                         check=True)
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["spikes"] > 0  # the network is active, not trivially silent
    return report["rss_kb"] / 1024


def test_counts_and_traces_memory_does_not_grow_with_steps():
    short = peak_rss_mb(20, "counts,traces")
    long = peak_rss_mb(2000, "counts,traces")
    assert long - short < 15, f"peak RSS {short:.0f} MB at T=20, {long:.0f} MB at T=2000"
    # The measurement can see growth: keeping potentials at T=2000 (20x34x34 float32 per step,
    # about 185 MB for the first layer) shows up.
    with_potentials = peak_rss_mb(2000, "potentials")
    assert with_potentials - short > 100, f"{short:.0f} MB vs {with_potentials:.0f} MB with potentials"
