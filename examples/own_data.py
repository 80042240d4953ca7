# %% [markdown]
# # Your own data, your own network
#
# The other examples use eventsim's datasets and its zoo of published
# models. This one starts from what you bring: event recordings as four
# arrays `x, y, t, p` (or frames), and a network you write in a few lines.
# It goes through every step once, top to bottom:
#
# 1. turn recordings into eventsim's `Events` (`bin_events`), or frames
#    (`Events.from_dense`), and a dataset into a list of `(events, label)`;
# 2. build a network in Python (`eventsim.layers`, `eventsim.Network`);
# 3. train it with `Trainer` and evaluate it (`evaluate`);
# 4. load the trained weights back into the network built again
#    (`load_weights`) and predict;
# 5. export it to NIR and read it back;
# 6. count its synaptic operations (SynOps) and estimate its energy.
#
# The recordings here are made up in the script, from a seeded
# `numpy.random.Generator`, so that it runs in seconds anywhere: a bar
# sweeping across a 16 x 16 event camera in one of four directions. Replace
# `moving_bar` with your own reader and the rest stays as it is.
#
# Run: `python examples/own_data.py [--out DIR] [--seed S]` (the `nir` and
# `plot` extras). The figures, the checkpoint and the NIR file go into
# `--out`.

# %%
import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt
import numpy as np

import eventsim as es
import eventsim.nir
from eventsim.encoders.binning import bin_events
from eventsim.learning import BPTT, Adam, LeeMSE, Trainer, evaluate, init_lee2020, load_weights
from eventsim.plots import plot_curves


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Your own event data and your own network, from recording to NIR.")
    parser.add_argument("--out", type=Path, default=Path("eventsim-figures/own_data"),
                        help="folder for the figures, the checkpoint and the NIR file (created)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seeds the recordings, the initial weights and the shuffling")
    # parse_known_args: an editor running the cells passes arguments of its own.
    return parser.parse_known_args()[0]


ARGS = parse()
ARGS.out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## 1. Your events
#
# An event camera reports, per pixel and on its own, when the brightness it
# sees rises (an ON event, polarity 1) or falls (OFF, polarity 0), with a
# timestamp in microseconds. A recording is four arrays of one length:
# `x` (column) and `y` (row), integers inside the sensor; `t`, integer
# microseconds, in time order; `p`, 0 or 1 (docs/guide.md lists the
# format). A bright bar moving right turns the pixels it enters ON and the
# pixels it leaves OFF, so at every moment the ON edge runs ahead of the OFF
# edge: the direction is written in where the two polarities are, step by
# step. That is what the network will learn to read.

# %%
SENSOR = (16, 16)  # (H, W) of the made-up camera
DIRECTIONS = ("right", "left", "down", "up")  # the labels 0, 1, 2, 3


def moving_bar(direction: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``x, y, t, p`` of a bar sweeping across the sensor in ``direction``, with background noise.

    The bar (6 to 12 pixels long, at a random place) moves one pixel per
    1/16 of the recording (60 to 100 ms in all). Each pixel it enters fires
    ON and each pixel it leaves fires OFF, with probability 0.8, at a
    uniform time inside that 1/16; 20 to 60 noise events fall anywhere.
    """
    size = SENSOR[1]
    duration = int(rng.integers(60_000, 100_001))
    length = int(rng.integers(6, 13))
    along = np.arange(length) + int(rng.integers(0, size - length + 1))
    step, along = (a.ravel() for a in np.meshgrid(np.arange(size), along, indexing="ij"))
    across = np.concatenate([step, step - 1])  # the pixel entered (ON), then the pixel left (OFF)
    along = np.concatenate([along, along])
    p = np.repeat([1, 0], step.size)
    t = np.concatenate([step, step]) * (duration // size) + rng.integers(0, duration // size, across.size)
    keep = (across >= 0) & (rng.random(across.size) < 0.8)
    across, along, t, p = across[keep], along[keep], t[keep], p[keep]
    if direction in ("left", "up"):
        across = size - 1 - across
    x, y = (across, along) if direction in ("right", "left") else (along, across)
    noise = int(rng.integers(20, 61))
    x = np.concatenate([x, rng.integers(0, size, noise)])
    y = np.concatenate([y, rng.integers(0, size, noise)])
    t = np.concatenate([t, rng.integers(0, duration, noise)])
    p = np.concatenate([p, rng.integers(0, 2, noise)])
    order = np.argsort(t, kind="stable")  # a camera delivers its events in time order
    return x[order], y[order], t[order], p[order]


rng = np.random.default_rng(ARGS.seed)
x, y, t, p = moving_bar("right", rng)
print(f"one recording: {t.size} events over {t[-1] - t[0]} us; x {x[:5]}, t {t[:5]}, p {p[:5]}")

# %% [markdown]
# `bin_events` takes a recording as a NumPy structured array with fields
# `x, y, t, p` (the layout tonic uses: `eventsim.datasets.from_tonic`
# converts a tonic recording or frame stack, `TonicSamples` a whole tonic
# dataset) and cuts it into T steps: a step holds 1 where a pixel had an
# event of that polarity (`values="count"`: their number). The polarity
# becomes the channel, so the input of a network is `(2, H, W)`. The result
# is an `Events` container of one sample: sparse, step-major, what networks
# run on.
#
# If what you have are frames, an array `(samples, T, channels, H, W)` of
# your own making, `Events.from_dense` turns every nonzero entry into an
# event. Binning the recording yourself, with the rule `bin_events` states
# (`step = floor((t - t_first) / step_us)`, `step_us = (t_last - t_first) //
# T`, events past T steps dropped), gives the same events as `bin_events`
# with `values="count"`.

# %%
STEPS = 16


def as_events(x, y, t, p, *, values: str = "binary") -> es.Events:
    """One recording as eventsim events of shape (2, H, W) over ``STEPS`` steps."""
    recording = np.rec.fromarrays([x, y, t, p], names="x,y,t,p")
    return bin_events(recording, sensor=SENSOR, steps=STEPS, values=values)


events = as_events(x, y, t, p)
print(events)

step_us = (t[-1] - t[0]) // STEPS
step = (t - t[0]) // step_us
inside = step < STEPS
frames = np.zeros((1, STEPS, 2) + SENSOR, np.float32)  # (samples, T, channels, H, W)
np.add.at(frames, (0, step[inside], p[inside], y[inside], x[inside]), 1.0)
from_frames = es.Events.from_dense(frames)
assert np.array_equal(from_frames.to_dense(), as_events(x, y, t, p, values="count").to_dense())
print(f"frames -> Events.from_dense: {from_frames.n_events} events, the same as bin_events(values='count')")

# %% [markdown]
# A dataset, for training and evaluation, is any sequence of
# `(Events of one sample, label)` pairs: a list, or a class with `__len__`
# and `__getitem__` that reads and bins on demand. All samples have the
# same steps and shape. Here: 400 recordings for training and 200 for
# testing, the four directions in turn.

# %%
def dataset(count: int) -> list[tuple[es.Events, int]]:
    return [(as_events(*moving_bar(DIRECTIONS[i % 4], rng)), i % 4) for i in range(count)]


train, test = dataset(400), dataset(200)
print(f"{len(train)} training and {len(test)} test samples; "
      f"{np.mean([e.n_events for e, _ in train]):.0f} input events per sample")

fig, axes = plt.subplots(2, 4, figsize=(12, 6), layout="constrained")
for label, direction in enumerate(DIRECTIONS):
    sample = next(e for e, lab in test if lab == label).to_dense()[0]  # (T, 2, H, W)
    middle = sample[STEPS // 2]
    axes[0, label].imshow(middle[1] - middle[0], cmap="coolwarm", vmin=-1, vmax=1)
    axes[0, label].set_title(f"{direction}: step {STEPS // 2 + 1} (red ON, blue OFF)", fontsize=9)
    on_columns = sample[:, 1].sum(axis=1) if direction in ("right", "left") else sample[:, 1].sum(axis=2)
    axes[1, label].imshow(on_columns.T, aspect="auto", origin="lower", cmap="Greys")
    axes[1, label].set_xlabel("step")
    axes[1, label].set_ylabel("column" if direction in ("right", "left") else "row")
    axes[1, label].set_title("ON events per step, along the motion", fontsize=9)
fig.suptitle(f"The made-up recordings, binned into T = {STEPS} steps on a {SENSOR[0]} x {SENSOR[1]} sensor")
fig.savefig(ARGS.out / "recordings.png", dpi=120)
plt.close(fig)

# %% [markdown]
# ## 2. Your network
#
# Layers are plain objects (`eventsim.layers`); `Network` checks that their
# shapes fit, names them (`conv1`, `lif1`, ...) and runs them. A
# convolution of stride 2 into leaky integrate-and-fire neurons (threshold
# 1, time constant 10 steps), a hidden layer of 32 LIF neurons, and a
# readout of four values that never fires: its output is its potential at
# the last step over T, one score per direction. `init_lee2020` draws the
# weights (normal, variance 2 / fan-in). Keep the building in a function:
# it is how the trained weights find their network again (section 4).

# %%
def build_network() -> es.Network:
    return es.Network([
        es.Conv2d(2, 8, 5, stride=2, padding=2), es.LIF(1.0, tau=10.0),
        es.Flatten(), es.Linear(8 * 8 * 8, 32), es.LIF(1.0, tau=10.0),
        es.Linear(32, 4), es.Readout(tau=10.0),
    ], input_shape=(2,) + SENSOR)


network = build_network()
init_lee2020(network, np.random.default_rng(ARGS.seed))
print(network)

# %% [markdown]
# ## 3. Training and evaluation
#
# `Trainer` takes the network, a gradient rule, a loss and an optimizer.
# Backpropagation through time (`BPTT`, fast-sigmoid surrogate) reads the
# order of the spikes, which the direction lives in; `LeeMSE` is
# `0.5 sum_k (out_k - onehot_k)^2` on the readout. `fit` trains on any
# dataset as above, evaluates on `eval_data` after every epoch, checkpoints
# to HDF5 and logs one JSON line per epoch. `evaluate` gives the loss and
# the accuracy on any dataset. Four directions: chance is 25 %.

# %%
run = ARGS.out / "run"
run.mkdir(exist_ok=True)
loss = LeeMSE()
untrained = evaluate(network, test, loss)
trainer = Trainer(network, rule=BPTT(), loss=loss, optimizer=Adam(5e-3), batch_size=16, epochs=5, seed=ARGS.seed,
                  checkpoint=run / "checkpoint.h5", log=run / "metrics.jsonl", progress=None)
history = trainer.fit(train, eval_data=test)
for record in history:
    print(f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, test accuracy "
          f"{100 * record['eval_accuracy']:.1f} % ({record['samples_per_s']:.0f} samples/s)")
plot_curves(run / "metrics.jsonl", ARGS.out / "training.png")  # what `eventsim plot` draws from a run

result = evaluate(network, test, loss)
# Measured with --seed 0 to 11: 90 to 98 % after 5 epochs, the untrained network 19 to 28.5 %.
assert result["accuracy"] > 0.75, result
assert result["loss"] < untrained["loss"], (result, untrained)
print(f"lesson 3: test accuracy {100 * untrained['accuracy']:.1f} % untrained, "
      f"{100 * result['accuracy']:.1f} % trained (chance 25 %)")

# %% [markdown]
# ## 4. Loading and predicting
#
# The checkpoint holds the weights and a description of the network that
# wrote them (every layer's options), not the code that built it. Build
# the network again and `load_weights` into it: a network with other
# layers, shapes or neuron options is refused, naming the first difference.
# (`load_run` does this for the run folders `eventsim train` writes, which
# name their zoo model.) A prediction is the highest readout value.

# %%
restored = build_network()
checkpoint = load_weights(restored, run / "checkpoint.h5")
print(f"loaded {run / 'checkpoint.h5'}: {checkpoint.epoch} epochs, last test accuracy "
      f"{100 * checkpoint.history[-1]['eval_accuracy']:.1f} %")

batch = es.Events.concat([events for events, _ in test])  # all test samples in one batch
scores = restored.run(batch).output  # (200, 4): U[T] / T of the readout
predicted = scores.argmax(axis=1)
assert np.array_equal(scores, network.run(batch).output)  # the same weights: the same numbers, bit for bit
assert np.mean(predicted == [label for _, label in test]) == result["accuracy"]

new = as_events(*moving_bar("up", np.random.default_rng(1234)))
print(f"lesson 4: a new recording of a bar moving up is predicted "
      f"{DIRECTIONS[int(restored.run(new).output.argmax())]!r}")

# %% [markdown]
# ## 5. NIR
#
# NIR, the Neuromorphic Intermediate Representation, carries a network to
# snnTorch, Norse, sinabs, SpikingJelly, Lava or Rockpool (docs/nir.md).
# `eventsim.nir.save` writes one node per layer, named after it; reading
# the file back gives a network that computes the same numbers.

# %%
path = eventsim.nir.save(restored, run / "network.nir")
graph = eventsim.nir.to_nir(restored)
print(f"{path}: " + ", ".join(f"{name} ({type(node).__name__})" for name, node in graph.nodes.items()))
reread = eventsim.nir.load(path)
assert np.array_equal(reread.run(batch).output, scores)
print("lesson 5: the network read back from NIR gives the same readout, bit for bit")

# %% [markdown]
# ## 6. SynOps and energy
#
# An event-driven network works per event: each input event of a weighted
# layer adds its weight to every neuron it reaches, one synaptic operation
# (SynOp) each; no event, no work. `Network.run` counts them exactly, per
# layer and sample (docs/semantics.md, "Counting"). A fully connected layer
# reaches all its outputs from each input, so its SynOps are its input
# events times its outputs: fc1's are lif1's spikes times 32. The same
# network as a dense ANN does `network.ann_macs()` multiply-accumulates;
# `eventsim.counting.estimate_energy` prices both at 45 nm (0.9 pJ per
# float32 accumulate, 4.6 pJ per multiply-accumulate; Lee et al. 2020).
# Fewer operations than the ANN is not given: SynOps grow with the spikes
# of every step. With the default seed lif1 fires on about a fifth of its
# steps, and the spiking network does more operations than the dense one,
# each of them cheaper.

# %%
counted = restored.run(batch)
synops = {name: float(ops.mean()) for name, ops in counted.synops.items()}
assert np.array_equal(counted.synops["fc1"], 32 * counted.events["lif1"])
assert np.array_equal(counted.synops["fc2"], 4 * counted.events["lif2"])
macs = restored.ann_macs()
energy = es.estimate_energy(counted.total_synops().mean(), sum(macs.values()), "fp32")
for name in synops:
    print(f"{name}: {synops[name]:,.0f} SynOps per sample, {macs[name]:,} MACs as an ANN")
rate = counted.events["lif1"].mean() / (np.prod(restored.shapes["lif1"][1]) * STEPS)
print(f"lif1 fires on {100 * rate:.1f} % of its neurons' steps")
print(f"lesson 6: {energy.synops:,.0f} SynOps per sample over {STEPS} steps against {energy.ann_macs:,.0f} MACs: "
      f"{1e9 * energy.snn_joules:.3f} nJ against {1e9 * energy.ann_joules:.3f} nJ")
print(f"figures and files written to {ARGS.out}: recordings.png, training.png, run/checkpoint.h5, "
      f"run/metrics.jsonl, run/network.nir")
