# %% [markdown]
# # Events vs frames
#
# An event camera does not take pictures. Each pixel reports, on its own and
# with microsecond timing, when the log brightness it sees rises (an ON
# event) or falls (an OFF event). N-MNIST (Orchard et al. 2015, Frontiers in
# Neuroscience 9:437) is MNIST shown to such a camera (34 x 34 pixels) while
# the camera moves in three saccades of about 105 ms each, along a triangle.
#
# This example takes one N-MNIST recording and shows:
#
# 1. the events themselves (x, y, t, polarity) and the event rate, which
#    drops where the camera turns at the end of each saccade;
# 2. the same events binned into frames (docs/semantics.md, "Events"):
#    `step = floor((t_us - start_us) / step_us)`, polarity as the channel;
# 3. that an event-driven convolution (each event adds its kernel into the
#    outputs it reaches) computes exactly the dense convolution of the
#    frames, bit for bit with dyadic weights (docs/semantics.md, "Numerics");
# 4. how much work each path does: SynOps (one accumulate per event per
#    synapse it reaches) against the dense MACs (every synapse at every step),
#    and why that makes the event path fast when the input is sparse.
#
# Run: `python examples/events_vs_frames.py [--out DIR] [--data DIR]`
# (the data folder holds `NMNIST/Train/<digit>/*.bin`; default: the
# `EVENTSIM_DATA` variable, then `~/.cache/eventsim`).

# %%
import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch

import eventsim as es
from eventsim.datasets import NMNIST
from eventsim.datasets.nmnist import SACCADE_US
from eventsim.dense import conv2d, run_dense
from eventsim.encoders.binning import bin_events


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Events vs frames: N-MNIST, binning, event-driven convolution, SynOps")
    parser.add_argument("--out", type=Path, default=Path("eventsim-figures/events_vs_frames"),
                        help="folder for the PNG figures (created)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder holding NMNIST/ (default: EVENTSIM_DATA, then ~/.cache/eventsim)")
    return parser.parse_args()


ARGS = parse()
ARGS.out.mkdir(parents=True, exist_ok=True)
ON, OFF = "tab:red", "tab:blue"

# %% [markdown]
# ## 1. One recording as events
#
# A recording is a structured array with one row per event: `x` (column),
# `y` (row), `t` (microseconds) and `p` (polarity: 1 = ON, 0 = OFF). The
# first training sample is a zero. The camera moves for three saccades of
# `SACCADE_US` = 105 ms; where it stops and turns, the image stands still
# on the sensor and almost no pixel changes, so the event rate drops at
# 105 ms and 210 ms. The three saccades each hold a good share of the
# events, and the recording ends before 3 x 105 ms.

# %%
dataset = NMNIST(ARGS.data, split="train")
recording, label = dataset[0]
t_us = recording["t"]
print(f"sample 0 of {len(dataset)}: digit {label}, {len(recording)} events over {t_us[-1] / 1000:.1f} ms, "
      f"{int(recording['p'].sum())} ON / {int((recording['p'] == 0).sum())} OFF")

boundaries = np.array([SACCADE_US, 2 * SACCADE_US])
saccade = np.minimum(t_us // SACCADE_US, 2)
share = np.bincount(saccade, minlength=3) / len(recording)
# Events per ms within 10 ms of each turn, against the rate inside the saccades (away from the turns).
near_turn = np.array([np.sum(np.abs(t_us - b) < 10_000) / 20.0 for b in boundaries])
inside_rate = np.mean([np.sum((t_us >= s * SACCADE_US + 20_000) & (t_us < (s + 1) * SACCADE_US - 20_000)) / 65.0
                       for s in range(3)])
assert t_us[-1] < 3 * SACCADE_US, "the recording should end within its three saccades"
assert share.min() > 0.15, f"every saccade should hold a good share of the events, got {share}"
assert near_turn.max() < 0.5 * inside_rate, (near_turn, inside_rate)
print(f"lesson 1: three saccades hold {np.round(100 * share).astype(int)} % of the events; "
      f"{near_turn.round(1)} events/ms at the turns against {inside_rate:.1f} inside the saccades")

# %%
fig, axes = plt.subplots(3, 1, figsize=(9, 7.5), sharex=True, layout="constrained")
t_ms = t_us / 1000.0
for p, color, name in ((1, ON, "ON"), (0, OFF, "OFF")):
    mine = recording["p"] == p
    axes[0].scatter(t_ms[mine], recording["x"][mine], s=1.5, c=color, label=name, linewidths=0)
    axes[1].scatter(t_ms[mine], recording["y"][mine], s=1.5, c=color, label=name, linewidths=0)
axes[0].set_ylabel("x (pixel column)")
axes[1].set_ylabel("y (pixel row)")
axes[0].set_title(f"N-MNIST training sample 0 (digit {label}): {len(recording)} events")
bin_ms = 5.0
edges = np.arange(0.0, 3 * SACCADE_US / 1000 + bin_ms, bin_ms)
axes[2].stairs(np.histogram(t_ms, edges)[0] / bin_ms, edges, color="black")
axes[2].set_title(f"event rate in {bin_ms:g} ms bins; dashed: saccade boundaries, every 105 ms", fontsize=9)
axes[2].set_ylabel("event rate (events / ms)")
axes[2].set_xlabel("time t (ms)")
for ax in axes:
    for b in boundaries / 1000:
        ax.axvline(b, color="gray", linestyle="--", linewidth=1)
for s in range(3):
    axes[2].text((s + 0.5) * SACCADE_US / 1000, 0.95, f"saccade {s + 1}", ha="center", va="top",
                 transform=axes[2].get_xaxis_transform())
axes[0].legend(loc="upper right", markerscale=6)
axes[2].set_ylim(0, 1.2 * axes[2].get_ylim()[1])
axes[2].set_xlim(0, 3 * SACCADE_US / 1000)
fig.savefig(ARGS.out / "events.png", dpi=120)
plt.close(fig)

# %% [markdown]
# ## 2. Frames: events binned into steps
#
# A spiking network runs in steps, so the events are binned
# (`eventsim.encoders.binning.bin_events`, docs/semantics.md "Events"):
#
#     step = floor((t_us - start_us) / step_us),   channel = polarity
#
# and a bin holds 1 if any event of that pixel and polarity fell into it
# (`values="binary"`) or their number (`values="count"`). Here the window
# starts at 0 and steps are 10.5 ms, so T = 30 steps hold ten steps of each
# saccade exactly. We check the binning against an independent count of the
# raw events with `np.histogramdd`.

# %%
STEPS_PER_SACCADE = 10
STEP_US = SACCADE_US // STEPS_PER_SACCADE
T = 3 * STEPS_PER_SACCADE
events = bin_events(recording, sensor=NMNIST.sensor, steps=T, step_us=STEP_US, start_us=0)
counts = bin_events(recording, sensor=NMNIST.sensor, steps=T, step_us=STEP_US, start_us=0, values="count")
frames = events.to_dense()[0]  # (T, 2, 34, 34): channel 0 = OFF, channel 1 = ON

reference, _ = np.histogramdd(
    np.stack([t_us / STEP_US, recording["p"], recording["y"], recording["x"]], axis=1),
    bins=(np.arange(T + 1), np.arange(3), np.arange(35), np.arange(35)),
)
assert np.array_equal(counts.to_dense()[0], reference), "count bins differ from a histogram of the raw events"
assert np.array_equal(frames, (reference > 0).astype(np.float32)), "binary bins must be 1 where any event fell"
per_saccade = reference.reshape(3, STEPS_PER_SACCADE, -1).sum(axis=(1, 2))
assert np.array_equal(per_saccade, np.bincount(saccade, minlength=3)), "each saccade's steps hold its events"
density = events.n_events / frames.size
print(f"lesson 2: {len(recording)} events -> {events.n_events} binary bins in T = {T} steps of "
      f"{STEP_US / 1000} ms ({100 * density:.1f} % of the {frames.size} bins are 1); equal to np.histogramdd")


# %%
def rgb(on: np.ndarray, off: np.ndarray) -> np.ndarray:
    """White background, ON pixels red, OFF pixels blue, both purple."""
    image = np.ones(on.shape + (3,))
    image[on > 0] = (0.84, 0.15, 0.16)
    image[off > 0] = (0.12, 0.47, 0.71)
    image[(on > 0) & (off > 0)] = (0.58, 0.40, 0.74)
    return image


shown = [0, 2, 4, 6, 8]
fig, axes = plt.subplots(3, len(shown) + 1, figsize=(11, 6.6), layout="constrained")
for s in range(3):
    for col, k in enumerate(shown):
        step = s * STEPS_PER_SACCADE + k
        ax = axes[s, col]
        ax.imshow(rgb(frames[step, 1], frames[step, 0]), interpolation="nearest")
        ax.set_title(f"step {step}: {step * STEP_US / 1000:.1f}-{(step + 1) * STEP_US / 1000:.1f} ms", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    whole = reference[s * STEPS_PER_SACCADE:(s + 1) * STEPS_PER_SACCADE].sum(axis=0)
    ax = axes[s, -1]
    im = ax.imshow(whole[1] - whole[0], cmap="RdBu_r", vmin=-8, vmax=8, interpolation="nearest")
    ax.set_title(f"saccade {s + 1}: ON - OFF count", fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])
    axes[s, 0].set_ylabel(f"saccade {s + 1}\n34 x 34 pixels")
fig.colorbar(im, ax=axes[:, -1], shrink=0.6, label="events per pixel (ON - OFF)")
fig.legend(handles=[Patch(color=c, label=n) for c, n in ((ON, "ON"), (OFF, "OFF"), ("#9467bd", "both"))],
           loc="outside lower center", ncols=3)
fig.suptitle(f"Binary frames of sample 0 (T = {T} steps of {STEP_US / 1000} ms, every other step shown)")
fig.savefig(ARGS.out / "frames.png", dpi=120)
plt.close(fig)

# %% [markdown]
# ## 3. Event-driven convolution equals dense convolution
#
# A convolution layer's input current (docs/semantics.md, "Synapses and
# pooling"; Lee et al. 2020, Sec. 2.2.1) is the cross-correlation of the
# frame with the kernel:
#
#     I[o, y, x] = sum_{c,i,j} W[o, c, i, j] * s[c, y + i - p, x + j - p]
#
# The event path turns it around: an event at (c, y, x) adds
# `W[:, c, i, j]` to every output `(y + p - i, x + p - j)` that lies inside
# the map. With weights of the form k / 2^m every partial sum is exact in
# float32, so the order of the additions does not matter and both paths
# must agree bit for bit. We check it three times: a five-line scatter
# written here against the dense twin `eventsim.dense.conv2d`; the
# currents of `eventsim.Network` against the same twin at every step; and
# the whole network (two convolutions, LIF neurons with a leak, Lee's
# spiking average pooling) against its dense twin `eventsim.dense.run_dense`:
# identical potentials and spikes in every layer.

# %%
rng = np.random.default_rng(0)


def dyadic(*shape: int) -> np.ndarray:
    """Weights k / 16 with k in -8..8: every sum of a few thousand of them is exact in float32."""
    return (rng.integers(-8, 9, shape) / 16).astype(np.float32)


K, PAD = 5, 2
network = es.Network([
    es.Conv2d(2, 16, K, padding=PAD, weight=dyadic(16, 2, K, K)), es.LIF(1.0, tau=20.0), es.SpikingAvgPool(2),
    es.Conv2d(16, 32, K, padding=PAD, weight=dyadic(32, 16, K, K)), es.LIF(1.0, tau=20.0),
], input_shape=(2, 34, 34))
print(network)
W1 = network.layers[0].weight


def scatter(frame: np.ndarray, weight: np.ndarray, pad: int) -> np.ndarray:
    """The event path by hand: every nonzero input adds its kernel taps into the outputs they reach."""
    out_c, _, k, _ = weight.shape
    height, width = frame.shape[1:]
    current = np.zeros((out_c, height, width), frame.dtype)
    for c, y, x in zip(*np.nonzero(frame)):
        for i in range(k):
            for j in range(k):
                oy, ox = y + pad - i, x + pad - j
                if 0 <= oy < height and 0 <= ox < width:
                    current[:, oy, ox] += weight[:, c, i, j] * frame[c, y, x]
    return current


step = 3
assert np.array_equal(scatter(frames[step], W1, PAD), conv2d(frames[step], W1, padding=PAD))

result = network.run(events, record=("spikes", "potentials", "currents"))
dense = run_dense(network, frames[None])
assert np.array_equal(result.currents["lif1"][0], conv2d(frames, W1, padding=PAD)), "conv1 currents"
for name in result.potentials:
    assert np.array_equal(result.potentials[name], dense.potentials[name]), f"{name} potentials"
    assert np.array_equal(result.spikes[name].to_dense(), dense.outputs[name]), f"{name} spikes"
print(f"lesson 3: event-driven = dense, bit for bit: conv1 currents at all {T} steps, potentials and spikes of "
      f"{', '.join(result.potentials)} ({', '.join(str(int(result.events[n][0])) for n in result.potentials)} spikes)")

# %%
fig, axes = plt.subplots(1, 4, figsize=(12, 3.4), layout="constrained")
current = result.currents["lif1"][0, step, 0]
twin = conv2d(frames[step], W1, padding=PAD)[0]
limit = np.abs(current).max()
panels = [
    (rgb(frames[step, 1], frames[step, 0]), f"input frame, step {step}\n{int(frames[step].sum())} events", None),
    (current, "event path: eventsim.Network\nconv1 current, channel 0", "RdBu_r"),
    (twin, "dense twin: eventsim.dense.conv2d\nconv1 current, channel 0", "RdBu_r"),
    (current - twin, f"difference\n(max |diff| = {np.abs(current - twin).max():g})", "RdBu_r"),
]
for ax, (image, title, cmap) in zip(axes, panels):
    im = ax.imshow(image, cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixel)")
axes[0].set_ylabel("y (pixel)")
axes[3].text(17, 17, "0 everywhere", ha="center", va="center")
fig.colorbar(im, ax=axes[1:], shrink=0.8, label="input current I (threshold units)")
fig.savefig(ARGS.out / "conv_equality.png", dpi=120)
plt.close(fig)

# %% [markdown]
# ## 4. Counting the work: SynOps against dense MACs
#
# The dense path computes every synapse at every step: a convolution costs
# `O * C * k * k * H_out * W_out` multiply-accumulates (MACs) per step, and
# `network.ann_macs()` counts them (padded taps included). The event path
# does one accumulate (a SynOp) per event per synapse it reaches, and
# `RunResult.synops` counts them exactly (docs/semantics.md, "Counting";
# Lee et al. 2020, Sec. 5.4). An event at row y reaches the output rows
# `y + p - i` that are inside the map, for i = 0..k-1, so the SynOps of a
# convolution are
#
#     SynOps = sum over events of  O * rows_reached(y) * cols_reached(x)
#
# which we count here from the dense frames and compare with the simulator.
# Then the ratio: SynOps / (MACs x T) is roughly the fraction of input
# positions that carry an event, a few percent for N-MNIST and less in
# deeper layers.

# %%
def reached(size: int, k: int, pad: int) -> np.ndarray:
    """For every input position along one axis, how many of the k taps land inside the output map."""
    position = np.arange(size)[:, None] + pad - np.arange(k)[None, :]
    return np.sum((position >= 0) & (position < size), axis=1)


def conv_synops(spike_maps: np.ndarray, out_channels: int, k: int, pad: int) -> int:
    """SynOps of a stride-1 'same' convolution from its dense input spike maps (..., C, H, W)."""
    reach = out_channels * np.outer(reached(spike_maps.shape[-2], k, pad), reached(spike_maps.shape[-1], k, pad))
    return int(np.sum(spike_maps * reach))


def conv_macs(in_channels: int, out_channels: int, k: int, height: int, width: int) -> int:
    return out_channels * in_channels * k * k * height * width


hand_synops = {"conv1": conv_synops(frames, 16, K, PAD), "conv2": conv_synops(dense.outputs["pool1"], 32, K, PAD)}
hand_macs = {"conv1": conv_macs(2, 16, K, 34, 34), "conv2": conv_macs(16, 32, K, 17, 17)}
macs = network.ann_macs()
assert macs == hand_macs, (macs, hand_macs)
for name in hand_synops:
    assert int(result.synops[name][0]) == hand_synops[name], (name, result.synops[name], hand_synops[name])
    assert hand_synops[name] < 0.1 * macs[name] * T  # the lesson: sparse input, a small fraction of the work
ratio = {name: int(result.synops[name][0]) / (macs[name] * T) for name in macs}
for name in macs:
    print(f"lesson 4: {name}: {int(result.synops[name][0]):,} SynOps against {macs[name]:,} MACs x {T} steps "
          f"= {macs[name] * T:,}: {100 * ratio[name]:.1f} % of the dense work")

# %% [markdown]
# ## Why sparsity makes the event path fast
#
# The dense path's work is fixed: MACs x T, whatever the input. The event
# path's work is the SynOps, proportional to the number of events, plus one
# update per neuron per step. Below, the same network runs on random input
# of growing density (each input bin is 1 with that probability), and on the
# N-MNIST sample. The dense twin is written for reading, not speed (NumPy,
# step by step), so the timing compares two eventsim paths, not eventsim
# with an optimised dense library; the SynOps, which any implementation
# would have to do, tell the same story without a clock. Times are printed,
# not asserted: they depend on the machine.

# %%
def best_time(run, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


sweep_rng = np.random.default_rng(1)
densities = np.array([0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5])
sweep_synops, sweep_seconds = [], []
for d in densities:
    random_input = es.Events.from_dense((sweep_rng.random((1, T, 2, 34, 34)) < d).astype(np.float32))
    sweep_synops.append(int(network.run(random_input).total_synops()[0]))
    sweep_seconds.append(best_time(lambda: network.run(random_input)))
event_seconds = best_time(lambda: network.run(events))
dense_seconds = best_time(lambda: run_dense(network, frames[None]))
sample_synops = int(result.total_synops()[0])
total_dense = sum(macs.values()) * T
print(f"timing: N-MNIST sample ({100 * density:.1f} % dense input): event path {1000 * event_seconds:.1f} ms, "
      f"dense twin {1000 * dense_seconds:.0f} ms ({dense_seconds / event_seconds:.0f}x)")
for d, s, sec in zip(densities, sweep_synops, sweep_seconds):
    print(f"  random input {100 * d:4.1f} % dense: {s:>12,} SynOps ({100 * s / total_dense:5.1f} % of MACs x T), "
          f"event path {1000 * sec:6.1f} ms")

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
names = list(macs)
x = np.arange(len(names))
axes[0].bar(x - 0.2, [macs[n] * T for n in names], 0.4, label=f"dense MACs x T (T = {T})", color="gray")
axes[0].bar(x + 0.2, [int(result.synops[n][0]) for n in names], 0.4, label="event path SynOps", color="tab:green")
for i, n in enumerate(names):
    axes[0].text(i + 0.2, result.synops[n][0] * 1.15, f"{100 * ratio[n]:.1f} %", ha="center", fontsize=9)
axes[0].set_yscale("log")
axes[0].set_ylim(1e5, 1e9)
axes[0].set_xticks(x, names)
axes[0].set_ylabel("operations per sample")
axes[0].set_title("N-MNIST sample 0: work per layer")
axes[0].legend(loc="upper left", fontsize=8)

axes[1].plot(100 * densities, 1000 * np.array(sweep_seconds), "o-", color="tab:green", label="event path (random input)")
axes[1].plot(100 * density, 1000 * event_seconds, "*", color="black", markersize=12, label="event path (N-MNIST sample)")
axes[1].axhline(1000 * dense_seconds, color="gray", linestyle="--", label="dense twin (any input)")
axes[1].set_xscale("log")
axes[1].set_yscale("log")
axes[1].set_ylim(top=2000 * dense_seconds)
axes[1].set_xlabel("input density (% of bins holding an event)")
axes[1].set_ylabel("time per sample (ms)")
axes[1].set_title(f"Run time against input density (T = {T})")
twin_ax = axes[1].twinx()
twin_ax.plot(100 * densities, np.array(sweep_synops) / total_dense * 100, "s:", color="tab:purple", markersize=4,
             label="SynOps / (MACs x T)")
twin_ax.set_yscale("log")
twin_ax.set_ylabel("SynOps / (MACs x T) (%)", color="tab:purple")
handles = axes[1].get_legend_handles_labels()[0] + twin_ax.get_legend_handles_labels()[0]
axes[1].legend(handles=handles, loc="lower right", fontsize=8)
fig.savefig(ARGS.out / "synops.png", dpi=120)
plt.close(fig)
print(f"figures written to {ARGS.out}: events.png, frames.png, conv_equality.png, synops.png")
