"""N-MNIST LeNet on a CPU: eventsim (lee2020 rule) against snnTorch (BPTT), same run, same machine.

Both train the LeNet5 of Lee et al. 2020 (conv 5x5 2->20, pool 2, conv 5x5
20->50, pool 2, fc 3200->200, fc 200->10; LIF with tau = 100 steps, threshold
1) on the N-MNIST subset (1,000 train / 100 test under <data>/NMNIST), on the
same input: 30 binary bins of 10 ms from each recording's first event, built
once by eventsim. One thread each (torch.set_num_threads(1), single-threaded
BLAS). Test accuracy after every epoch and cumulative training seconds.

- snnTorch: the LeNet of :func:`eventsim.bench.peer.snntorch_lenet` with
  ``snn.Leaky`` neurons (beta = exp(-1/100), arctan surrogate, subtractive
  reset), linear average pooling, biases, a spiking output layer whose spike
  counts feed cross-entropy (``snntorch.functional.ce_rate_loss``), Adam
  1e-3, batch 32, BPTT through all 30 steps.
- eventsim: ``eventsim train nmnist``'s defaults (the lee2020 rule, spiking
  average pooling, Lee's MSE on the readout, Adam 3e-3, x0.2 after epoch 10), batch 16.

Run:  pip install snntorch; python benchmarks/peer_snntorch.py [--epochs 15] [--data DIR]
"""

from __future__ import annotations

import os

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[var] = "1"

import argparse
import time
from pathlib import Path

import numpy as np

from eventsim.datasets import NMNIST
from eventsim.encoders.binning import bin_events
from eventsim.learning import evaluate
from eventsim.learning.runs import Job, make_trainer

STEPS, STEP_US = 30, 10_000


def binned(split: str, root) -> list:
    data = NMNIST(root, split)
    out = []
    for i in range(len(data)):
        rec, label = data[i]
        out.append((bin_events(rec, sensor=(34, 34), steps=STEPS, step_us=STEP_US, start_us=int(rec["t"][0])), label))
    return out


def run_snntorch(train, test, epochs: int, seed: int):
    import torch
    from snntorch import functional as SF
    from snntorch import surrogate

    from eventsim.bench.peer import snntorch_lenet

    torch.set_num_threads(1)
    torch.manual_seed(seed)

    def tensors(data):
        x = np.stack([ev.to_dense()[0] for ev, _ in data], axis=1)  # (T, N, 2, 34, 34)
        return torch.tensor(x), torch.tensor([label for _, label in data])

    (xtr, ytr), (xte, yte) = tensors(train), tensors(test)
    # This race's snnTorch settings (the docstring), torch's default initialisation.
    net = snntorch_lenet(beta=float(np.exp(-1 / 100)), spike_grad=surrogate.atan(), reset_mechanism="subtract",
                         pool_threshold=None, readout=False, bias=True)
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = SF.ce_rate_loss()
    gen = torch.Generator().manual_seed(seed)
    elapsed = 0.0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        for idx in torch.randperm(xtr.shape[1], generator=gen).split(32):
            opt.zero_grad()
            loss_fn(net(xtr[:, idx])[0], ytr[idx]).backward()
            opt.step()
        elapsed += time.perf_counter() - start
        with torch.no_grad():
            acc = float((net(xte)[0].sum(0).argmax(1) == yte).float().mean())
        yield epoch, acc, elapsed


def run_eventsim(train, test, epochs: int, seed: int, out):
    job = Job(epochs=1, seed=seed)  # eventsim train nmnist's settings, run epoch by epoch
    trainer = make_trainer(job, out, None)
    for epoch in range(1, epochs + 1):
        trainer.epochs = epoch
        trainer.fit(train)
        acc = evaluate(trainer.network, test, trainer.loss)["accuracy"]
        yield epoch, acc, sum(h["seconds"] for h in trainer.history)


def main() -> None:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--data", default=None)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    train, test = binned("train", args.data), binned("test", args.data)
    with tempfile.TemporaryDirectory() as tmp:
        ours = list(run_eventsim(train, test, args.epochs, args.seed, Path(tmp)))
    theirs = list(run_snntorch(train, test, args.epochs, args.seed))
    print(f"{'epoch':>5} | {'eventsim acc':>12} {'s':>7} | {'snnTorch acc':>12} {'s':>7}")
    for (e, a, s), (_, b, t) in zip(ours, theirs):
        print(f"{e:>5} | {100 * a:>11.0f}% {s:>7.1f} | {100 * b:>11.0f}% {t:>7.1f}")


if __name__ == "__main__":
    main()
