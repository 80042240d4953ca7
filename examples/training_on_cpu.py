# %% [markdown]
# # Training on a CPU
#
# Lee et al. 2020 (Front. Neurosci. 14:119) train spiking networks directly,
# with a gradient that needs only what a neuron has accumulated by the last
# step T: its spike count gamma and its leak-weighted count
# `f = sum_k lam^(T - t_k)` (their eqs. 17-22; docs/semantics.md, "lee2020").
# The backward pass is then one pass at T, whatever T is, and on an
# event-driven simulator the forward pass costs work in proportion to the
# spikes. Together they make training on a laptop CPU practical.
#
# This example trains their LeNet (`lee2020-lenet5` in `eventsim.learning.zoo`:
# conv 5x5 20, spiking average pool, conv 5x5 50, spiking average pool,
# fc 200, fc 10 and a readout; LIF neurons, tau = 100 steps, threshold 1)
# on a few hundred N-MNIST recordings for a few epochs, and shows:
#
# 1. the accuracy and loss per epoch, on the training samples and on the
#    test split;
# 2. the spikes of one test sample in every layer, after training;
# 3. where the time goes: forward, loss, backward and optimizer step for the
#    `lee2020` rule and for backpropagation through time (`bptt`), and the
#    work (SynOps) of each layer.
#
# The full run (`eventsim train nmnist`, README "Set-up and the main job")
# uses 1,000 samples and 12 epochs and reaches about 96 % test accuracy;
# the defaults here are smaller so that the example runs in seconds.
#
# Run: `python examples/training_on_cpu.py [--out DIR] [--data DIR]
# [--train-samples N] [--steps T] [--epochs E] [--seed S]`.

# %%
import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from eventsim import Events
from eventsim.datasets import NMNIST
from eventsim.encoders.binning import bin_events
from eventsim.learning import (
    BPTT, Adam, FastSigmoid, Lee2020, LeeMSE, Trainer, evaluate, load_parameters, parameters,
)
from eventsim.learning.report import evaluation_report
from eventsim.learning.zoo import build_model
from eventsim.plots import curves_figure, firing_rates_figure, plot_raster


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Training Lee et al. 2020's LeNet on N-MNIST on a CPU")
    parser.add_argument("--out", type=Path, default=Path("eventsim-figures/training_on_cpu"),
                        help="folder for the PNG figures (created)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder holding NMNIST/ (default: EVENTSIM_DATA, then ~/.cache/eventsim)")
    parser.add_argument("--train-samples", type=int, default=500, help="training recordings, the digits in turn")
    parser.add_argument("--steps", type=int, default=30, help="time steps T each recording is binned into")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0, help="seeds the initial weights, shuffling and dropout")
    args = parser.parse_args()
    if args.epochs < 2 or args.train_samples < 10 or args.steps < 1:
        parser.error("give at least 2 epochs (a curve needs them), 10 training samples (one per digit) and 1 step")
    return args


ARGS = parse()
ARGS.out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The data
#
# Each recording becomes T binary steps over its whole length (about
# 300 ms, so about 10 ms per step at T = 30) with
# `eventsim.encoders.binning.bin_events`; the polarity is the channel, so the
# input is 2 x 34 x 34. A dataset for the trainer is any sequence of
# `(Events of batch 1, label)` pairs. We take the first recordings of each
# digit, so the classes are balanced, and the whole test split.

# %%
def binned(split: str, per_class: int | None) -> list:
    recordings = NMNIST(ARGS.data, split=split)
    chosen = [np.flatnonzero(recordings.labels == digit)[:per_class] for digit in range(10)]
    return [(bin_events(recordings[i][0], sensor=NMNIST.sensor, steps=ARGS.steps), int(recordings.labels[i]))
            for i in np.concatenate(chosen)]


started = time.perf_counter()
train = binned("train", ARGS.train_samples // 10)
test = binned("test", None)
print(f"{len(train)} training and {len(test)} test recordings binned into T = {ARGS.steps} steps "
      f"in {time.perf_counter() - started:.2f} s; {np.mean([x.n_events for x, _ in train]):.0f} input events "
      f"per sample")

# %% [markdown]
# ## The network, the rule, the loss
#
# The weights start as Lee et al.'s initialisation, normal with variance
# `kappa / fan_in`, kappa = 2 (their Sec. 3.4). The loss is theirs (eqs.
# 8-10): `L = 0.5 * sum_k (out_k - onehot_k)^2` on the readout
# `out = U_L[T] / T`. The `lee2020` rule propagates the output error
# `(out - onehot) / T` back through `delta_l = (W^T delta_{l+1}) * a'`, with
#
#     a' = (1/theta) * (1 + ln(lam) * f / gamma)   (0 for a neuron that never fired)
#
# the straight-through estimate 1/theta corrected for the leak (eqs. 13 and
# 22). Adam with learning rate 3e-3 and batches of 16, as `eventsim train
# nmnist` uses.

# %%
network = build_model("lee2020-lenet5", input="nmnist", rng=np.random.default_rng(ARGS.seed))
print(network)
loss = LeeMSE()
before_train = evaluate(network, train, loss)
before_test = evaluate(network, test, loss)
trainer = Trainer(network, rule=Lee2020(), loss=loss, optimizer=Adam(3e-3), batch_size=16, epochs=ARGS.epochs,
                  seed=ARGS.seed, progress=None)
started = time.perf_counter()
history = trainer.fit(train, eval_data=test)
train_seconds = time.perf_counter() - started
for record in history:
    print(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, accuracy "
          f"{100 * record['train_accuracy']:.1f} % | test accuracy {100 * record['eval_accuracy']:.1f} % | "
          f"{record['samples_per_s']:.0f} samples/s")
print(f"{ARGS.epochs} epochs in {train_seconds:.1f} s")

# %% [markdown]
# ## 1. The learning curves
#
# Epoch 0 is the untrained network, evaluated. For the later epochs the
# training figures are the trainer's running means over the epoch (the
# weights change while it is measured); the test figures are an evaluation
# after the epoch. Ten classes, so chance is 10 %. The lesson: the loss
# falls and the accuracy climbs far above chance within a few epochs.

# %%
untrained = {"epoch": 0, "train_loss": before_train["loss"], "train_accuracy": before_train["accuracy"],
             "eval_loss": before_test["loss"], "eval_accuracy": before_test["accuracy"]}
curves = curves_figure([untrained] + history)  # eventsim.plots draws; we add a title and the chance level
curves.axes[1].axhline(10, color="gray", linestyle=":", label="chance (10 %)")
curves.axes[1].legend()
curves.suptitle(f"LeNet on {len(train)} N-MNIST recordings, T = {ARGS.steps}, lee2020 rule, Adam 3e-3 "
                f"(eval: the {len(test)} test recordings)")
curves.savefig(ARGS.out / "curves.png", dpi=120)

first, last = history[0], history[-1]
# Checked at the default settings (and several seeds); far fewer samples or epochs may not learn this much.
assert last["train_loss"] < 0.75 * first["train_loss"], "the training loss should fall clearly"
assert last["train_loss"] < before_train["loss"], "training should end below the untrained network's loss"
assert last["train_accuracy"] > 0.5, "training accuracy should end far above chance (10 %)"
assert last["eval_accuracy"] > 0.3, "test accuracy should end well above chance (10 %)"
print(f"lesson 1: loss {before_train['loss']:.3f} (untrained) -> {last['train_loss']:.3f}; accuracy "
      f"{100 * last['train_accuracy']:.0f} % on training, {100 * last['eval_accuracy']:.0f} % on test (chance 10 %)")

# %% [markdown]
# ## 2. Spikes in every layer
#
# `eventsim.plots.plot_raster` runs one sample and draws every event
# stream: the input, then each spiking layer (flat neuron index against
# step). Deeper layers have fewer neurons and emit fewer events, while each
# neuron fires on a few percent of the steps. A spiking pooling neuron is an
# IF neuron whose four inputs each add 1/4, with threshold 0.75 (strict): it
# fires once its window has delivered more than three spikes, at once or
# over several steps. The readout never fires (its value is its potential,
# `U[T] / T`), so it has no panel.

# %%
sample = 0
plot_raster(network, test[sample][0], ARGS.out / "raster.png",
            title=f"test sample {sample} (digit {test[sample][1]}) after {ARGS.epochs} epochs; "
                  f"T = {ARGS.steps} steps over the ~300 ms recording")

# %% [markdown]
# ## 3. Where the time goes
#
# One training step is four calls (what `eventsim.learning.train_step` and
# the trainer do): the forward run, recording what the rule needs; the loss
# and its gradient at the readout; the rule's backward pass; the optimizer
# update. We time each on copies of the trained network, for `lee2020` and
# for `bptt` (exact backpropagation through the T steps with a fast-sigmoid
# surrogate). `lee2020` keeps only counts and traces and goes back once, at
# T; `bptt` records the potential of every neuron at every step and goes
# back through all of them, so its forward and backward both grow with T.
# Times are printed and drawn, not asserted: they depend on the machine.

# %%
def timed_steps(rule, batches: int = 4, batch_size: int = 16) -> dict[str, float]:
    """Seconds per sample of each phase of a training step, on a copy of the trained network."""
    copy = build_model("lee2020-lenet5", input="nmnist")
    load_parameters(copy, {k: v.copy() for k, v in parameters(network).items()})
    optimizer, rng = Adam(3e-3), np.random.default_rng(ARGS.seed)
    seconds, samples = dict.fromkeys(("forward", "loss", "backward", "optimizer"), 0.0), 0
    for b in range(batches):
        chosen = train[b::max(1, len(train) // batch_size)][:batch_size]  # spread over the digits
        events, labels = Events.concat([x for x, _ in chosen]), np.array([label for _, label in chosen])
        t0 = time.perf_counter()
        result = copy.run(events, record=rule.records, train=True, rng=rng)
        t1 = time.perf_counter()
        _, grad_output = loss(copy, result, labels)
        t2 = time.perf_counter()
        grads = rule.gradients(copy, events, result, grad_output)
        t3 = time.perf_counter()
        optimizer.step(parameters(copy), grads, lr=3e-3)
        t4 = time.perf_counter()
        for phase, dt in zip(seconds, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            seconds[phase] += dt
        samples += len(chosen)
    return {phase: s / samples for phase, s in seconds.items()}


rules = {"lee2020": Lee2020(), "bptt (fast sigmoid)": BPTT(surrogate=FastSigmoid(c=5.0))}
for rule in rules.values():
    timed_steps(rule, batches=1)  # compile and warm up first
phases = {name: timed_steps(rule) for name, rule in rules.items()}
for name, per_phase in phases.items():
    print(f"{name}: " + ", ".join(f"{phase} {1000 * s:.2f}" for phase, s in per_phase.items())
          + f" ms per sample (total {1000 * sum(per_phase.values()):.2f})")

# %% [markdown]
# The work of the forward pass is counted exactly: a SynOp per input event
# per synapse it reaches (`RunResult.synops`, docs/semantics.md
# "Counting"). `eventsim.learning.report.evaluation_report` sums it per
# layer over the test split, with each layer's firing rate, and
# `eventsim.plots.firing_rates_figure` draws both. A fully connected layer
# has no borders, so its SynOps are exactly its input events times its
# number of outputs: fc1 (200 outputs) is fed by pool2's spikes, fc2 (10
# outputs) by lif3's, which we check by hand. The whole network does a
# fraction of the multiply-accumulates of the same network run densely for
# T steps.

# %%
report = evaluation_report(network, test, loss)
rates = firing_rates_figure(report)
rates.suptitle(f"After training: mean over the {len(test)} test recordings, T = {ARGS.steps}")
rates.savefig(ARGS.out / "firing_rates.png", dpi=120)
synops, spikes = report["synops_per_sample"], report["spikes_per_sample"]
assert np.isclose(synops["fc1"], 200 * spikes["pool2"]), (synops["fc1"], spikes["pool2"])
assert np.isclose(synops["fc2"], 10 * spikes["lif3"]), (synops["fc2"], spikes["lif3"])
dense_work = report["ann_macs_total"] * ARGS.steps
assert report["synops_total_per_sample"] < dense_work
print(f"lesson 3: {report['synops_total_per_sample']:,.0f} SynOps per test sample against "
      f"{report['ann_macs_total']:,} MACs x {ARGS.steps} steps = {dense_work:,} for the dense network "
      f"({100 * report['synops_total_per_sample'] / dense_work:.1f} %); fc1 = 200 x pool2 spikes, "
      f"fc2 = 10 x lif3 spikes")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
names = list(phases)
bottom = np.zeros(len(names))
for phase, color in zip(("forward", "loss", "backward", "optimizer"),
                        ("tab:blue", "tab:gray", "tab:orange", "tab:green")):
    ms = np.array([1000 * phases[n][phase] for n in names])
    axes[0].bar(names, ms, bottom=bottom, label=phase, color=color)
    bottom += ms
for i, total in enumerate(bottom):
    axes[0].text(i, total, f"{total:.1f} ms", ha="center", va="bottom")
axes[0].set_ylabel("time per sample (ms)")
axes[0].set_title(f"One training step, T = {ARGS.steps}, batch 16")
axes[0].set_ylim(0, 1.15 * bottom.max())
axes[0].legend()

layers = list(synops)
macs = report["ann_macs"]
x = np.arange(len(layers))
axes[1].bar(x - 0.2, [macs[n] * ARGS.steps for n in layers], 0.4, color="gray",
            label=f"dense MACs x T (T = {ARGS.steps})")
axes[1].bar(x + 0.2, [synops[n] for n in layers], 0.4, color="tab:green", label="SynOps (event path)")
axes[1].set_yscale("log")
axes[1].set_xticks(x, layers)
axes[1].set_ylabel("operations per test sample")
axes[1].set_title("Forward work per weighted layer")
axes[1].legend(loc="lower left", fontsize=8)
fig.savefig(ARGS.out / "time.png", dpi=120)
plt.close(fig)
print(f"figures written to {ARGS.out}: curves.png, raster.png, firing_rates.png, time.png")
