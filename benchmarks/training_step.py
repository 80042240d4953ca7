"""One training step of Lee's N-MNIST LeNet: time and peak memory, lee2020 against bptt.

Network (Lee et al. 2020, Table 4, N-MNIST LeNet; padding 2 as in the authors'
code): conv 2->20 5x5 -> LIF -> spiking avg pool 2 -> conv 20->50 5x5 -> LIF ->
spiking avg pool 2 -> fc 3200->200 -> LIF -> fc 200->10 -> readout; tau = 100
steps, theta = 1, Lee's initialisation. Input: N-MNIST-like events, 34x34x2,
unit spikes at a fixed density per step (2 %, about what binning a 300 ms
recording of ~4,000 events into 100 steps gives), batch of 8; or, with
``--nmnist``, real N-MNIST training recordings (evenly spaced over the split)
binned to T binary steps as ``eventsim train nmnist`` bins them. The batch
runs on ``--threads`` threads (:func:`eventsim.set_threads`).

One step = forward with the rule's records, Lee's MSE loss, the rule's
gradients, one Adam update. Each (rule, T) runs in a fresh process: after a
warm-up step (Numba compilation or cache load), the best time of the timed
steps, then how far the peak resident set rises during one more step
(:mod:`eventsim.bench.memory`, as ``eventsim bench`` measures it). The input
events exist before the measurement and are not counted. lee2020
keeps counts and traces only, so its memory must stay flat in T; bptt keeps
potentials and spikes of every step, O(T x neurons).

Run:  python benchmarks/training_step.py [--steps 25 100 300] [--batch 8] [--repeats 3]
                                        [--threads 1 2] [--nmnist [DATA_FOLDER]]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import textwrap

WORKER = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import eventsim as es
    from eventsim.learning.init import init_lee2020
    from eventsim.learning.losses import LeeMSE
    from eventsim.learning.optimizers import Adam
    from eventsim.learning.rules import rule_from_config
    from eventsim.bench.memory import peak_resident_mb, reset_peak
    from eventsim.learning.trainer import train_step

    rule_name, steps, batch, repeats, density = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    threads, data = int(sys.argv[6]), json.loads(sys.argv[7])
    es.set_threads(threads)
    rng = np.random.default_rng(0)
    net = es.Network([
        es.Conv2d(2, 20, 5, padding=2), es.LIF(1.0, tau=100.0), es.SpikingAvgPool(2),
        es.Conv2d(20, 50, 5, padding=2), es.LIF(1.0, tau=100.0), es.SpikingAvgPool(2),
        es.Flatten(), es.Linear(50 * 8 * 8, 200), es.LIF(1.0, tau=100.0),
        es.Linear(200, 10), es.Readout(tau=100.0),
    ], (2, 34, 34))
    init_lee2020(net, rng)
    if data["nmnist"]:
        from eventsim.datasets import NMNIST
        from eventsim.encoders.binning import bin_events
        split = NMNIST(data["root"], "train")
        picked = np.linspace(0, len(split) - 1, batch).astype(int)
        x = es.Events.concat([bin_events(split[int(i)][0], sensor=split.sensor, steps=steps) for i in picked])
        labels = split.labels[picked]
    else:
        on = rng.random((batch, steps, 2, 34, 34)) < density
        x = es.Events.from_dense(on.astype(np.float32))
        labels = rng.integers(0, 10, batch)
    rule, loss, opt = rule_from_config(rule_name), LeeMSE(), Adam(1e-3)

    def step():
        return train_step(net, rule, loss, opt, x, labels, lr=1e-3, rng=rng)

    step()  # warm-up: kernels compiled or loaded from the cache

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    before = reset_peak()  # fixes glibc's thresholds too, so only after the timed steps
    step()
    growth = peak_resident_mb() - before
    r = net.run(x, record=("counts",))
    spikes = {k: int(v.sum()) for k, v in r.events.items()}
    print(json.dumps({"seconds": min(times), "peak_growth_mb": growth,
                      "spikes": spikes}))
""")


def _worker(args: list[str], env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", WORKER, *args], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout.strip().splitlines()[-1])


def measure(rule: str, steps: int, batch: int, repeats: int, density: float, threads: int, data: dict) -> dict:
    """Best time of the timed steps, then the peak memory of one more (eventsim.bench.memory), in a fresh process."""
    args = [rule, str(steps), str(batch), str(repeats), str(density), str(threads), json.dumps(data)]
    return _worker(args, dict(os.environ))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[25, 100, 300])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--density", type=float, default=0.02)
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--nmnist", nargs="?", const="", default=None, metavar="DATA_FOLDER",
                        help="real N-MNIST input (data folder as eventsim.datasets resolves it)")
    args = parser.parse_args()
    data = {"nmnist": args.nmnist is not None, "root": args.nmnist or None}
    if not sys.platform.startswith("linux"):
        sys.exit("the peak-memory measurement needs Linux /proc")
    source = "N-MNIST" if data["nmnist"] else f"input density {args.density}"
    print(f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"batch {args.batch}, {source}")
    print(f"{'T':>5} {'rule':>8} {'threads':>7} {'step s':>8} {'ms/sample':>10} {'peak MB':>9}  spikes per layer")
    rows = {}
    for steps in args.steps:
        for rule in ("lee2020", "bptt"):
            for threads in args.threads:
                r = measure(rule, steps, args.batch, args.repeats, args.density, threads, data)
                rows[rule, steps] = r  # the last thread count is compared below
                active = " ".join(f"{k}={v}" for k, v in r["spikes"].items() if k.startswith("lif"))
                print(f"{steps:>5} {rule:>8} {threads:>7} {r['seconds']:>8.3f} {1000 * r['seconds'] / args.batch:>10.1f} "
                      f"{r['peak_growth_mb']:>9.1f}  {active}")
    print()
    print(f"{'T':>5} {'bptt/lee2020 time':>18} {'bptt/lee2020 memory':>20}")
    for steps in args.steps:
        lee, bptt = rows["lee2020", steps], rows["bptt", steps]
        mem = bptt["peak_growth_mb"] / max(lee["peak_growth_mb"], 0.1)
        print(f"{steps:>5} {bptt['seconds'] / lee['seconds']:>18.2f} {mem:>20.1f}")
    lee_mem = [rows["lee2020", s]["peak_growth_mb"] for s in args.steps]
    print(f"\nlee2020 peak growth from T={args.steps[0]} to T={args.steps[-1]}: "
          f"{lee_mem[0]:.1f} -> {lee_mem[-1]:.1f} MB (flat in T: the forward keeps counts and traces only)")


if __name__ == "__main__":
    main()
