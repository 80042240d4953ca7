# %% [markdown]
# # Conversion: from a ReLU network to a spiking one
#
# A spiking network can be trained without spikes: train an ordinary ReLU
# network (an ANN), copy its weights into integrate-and-fire neurons, and
# choose their thresholds so that each neuron's firing rate follows the ReLU
# activation it replaces. This example does that on a subset of MNIST with
# channel-wise threshold balancing (Ngu & Lee, "Effective Conversion of a
# Convolutional Neural Network into a Spiking Neural Network for Image
# Recognition Tasks", Appl. Sci. 12, 2022: Sec. 3.2, Algorithm 2) and shows
# how the spiking network's accuracy approaches the ANN's as the number of
# steps T grows.
#
# Run it as a script (`python examples/conversion.py --data DIR --out DIR`)
# or cell by cell in an editor that reads `# %%` cells. `--data` is the
# folder holding `mnist/`; by default the `EVENTSIM_DATA` variable.

# %%
import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt
import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from eventsim.datasets import load_mnist
from eventsim.encoders import direct
from eventsim.learning import Adam
from eventsim.learning.ann import ann_accuracy, train_ann
from eventsim.learning.conversion import balance_thresholds, conversion_sweep
from eventsim.learning.zoo import build_model


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="ANN-to-SNN conversion with channel-wise threshold balancing.")
    parser.add_argument("--out", type=Path, default=Path("eventsim-figures/conversion"),
                        help="folder for the PNG figures (created)")
    parser.add_argument("--data", default=None, help="data folder holding mnist/ (default: EVENTSIM_DATA)")
    parser.add_argument("--train-samples", type=int, default=6000, help="MNIST training images for the ANN")
    parser.add_argument("--test-samples", type=int, default=400, help="MNIST test images for both networks")
    parser.add_argument("--epochs", type=int, default=2, help="ANN training epochs")
    # parse_known_args: an editor running the cells passes arguments of its own.
    return parser.parse_known_args()[0]


ARGS = parse()
ARGS.out.mkdir(parents=True, exist_ok=True)
started = time.perf_counter()

# %% [markdown]
# ## 1. The ANN
#
# The network is the paper's MNIST model, `28x28-12c5-2ap-64c5-2ap-10o`
# (Ngu & Lee 2022, Fig. 5; `eventsim inspect ngu2022-mnist`): two 5x5
# convolutions without bias, each followed by a neuron layer and 2x2 average
# pooling, then a fully connected layer into a readout. Built as an eventsim
# `Network`, its neurons are soft-reset IF neurons that fire on `U >= theta`,
# the paper's eq. (1):
#
#     U[t] = R(U[t-1], s[t-1]) + I[t],   R = U - theta * s,   s[t] = 1[U[t] >= theta]
#
# (docs/semantics.md, "Neurons", with lam = 1 and `strict=False`). The same
# network has an *ANN view* (`eventsim.learning.ann`): every neuron layer read
# as `relu`, the readout as the identity. `train_ann` trains that view with
# hand-derived backprop in NumPy and writes the weights into the network's own
# layers, so after training they are already the SNN's weights.

# %%
train_images, train_labels = load_mnist(ARGS.data, "train")
test_images, test_labels = load_mnist(ARGS.data, "test")
x_train = (train_images[: ARGS.train_samples] / 255.0).astype(np.float32)[:, None]  # (N, 1, 28, 28), in [0, 1]
y_train = train_labels[: ARGS.train_samples]
x_test = (test_images[: ARGS.test_samples] / 255.0).astype(np.float32)[:, None]
y_test = test_labels[: ARGS.test_samples]

rng = np.random.default_rng(0)
net = build_model("ngu2022-mnist", rng=rng)
print(net)
history = train_ann(net, x_train, y_train, epochs=ARGS.epochs, optimizer=Adam(1e-3), rng=rng, progress=None)
ann_acc = ann_accuracy(net, x_test, y_test)
print(f"ANN: {ARGS.epochs} epochs on {len(x_train)} images in {sum(h['seconds'] for h in history):.1f} s, "
      f"test accuracy {100 * ann_acc:.1f} % on {len(x_test)} images")

# %% [markdown]
# ## 2. Why a rate is a ReLU
#
# Feed a soft-reset IF neuron a constant current I with 0 <= I <= theta. Each
# spike removes exactly theta from U and nothing else is lost, so after T
# steps the charge T * I has become N spikes of theta plus a remainder
# 0 <= U < theta (charge conservation, which follows from eq. (1)):
#
#     N(T) = floor(T * I / theta),   so   I - theta / T < (N / T) * theta <= I
#
# A negative current never fires (N = 0), and a current above theta fires at
# every step (N = T, one spike per step at most). Together:
#
#     | (N / T) * theta - clip(I, 0, theta) | <= theta / T
#
# The rate times the threshold is a ReLU clipped at theta, to within theta / T.
# That is why ReLU weights carry over, and why theta must be about the
# largest current a neuron sees: smaller, and the clip cuts off the
# activation; larger, and the neuron fires too rarely for a short T to
# resolve it.
#
# ## 3. Channel-wise threshold balancing
#
# Algorithm 2 of the paper sets the thresholds layer by layer, in network
# order: run the calibration images through the SNN (earlier layers already
# spiking with their final thresholds), record the instantaneous input current
# I[t] of the layer, and set each output channel's threshold to the largest
# I[t] over images, positions and steps 1..T. The readout never fires
# (theta = inf). `balance_thresholds` does this on `Events`; the first layer
# sees the pixels as a constant current (`eventsim.encoders.direct`), so its
# thresholds are simply the channel-wise maxima of the first convolution over
# the calibration images, whatever T. We check that against a convolution
# written here with NumPy.

# %%
calibration = x_train[:200]
T_check = 16
thresholds = balance_thresholds(net, direct(calibration, T_check), method="channel")
print("thresholds:", {name: np.round(theta[:4], 3).tolist() + ["..."] for name, theta in thresholds.items()})

conv1 = net.layers[0]
assert conv1.name == "conv1" and conv1.bias is None


def conv1_currents(images: np.ndarray) -> np.ndarray:
    """I = conv1(x), ``(N, 12, 24, 24)``: every 5x5 patch against every filter, in float64."""
    patches = sliding_window_view(images[:, 0].astype(np.float64), (5, 5), axis=(1, 2))  # (N, 24, 24, 5, 5)
    return np.einsum("nhwij,cij->nchw", patches, conv1.weight[:, 0].astype(np.float64))


channel_max = conv1_currents(calibration).max(axis=(0, 2, 3))
assert np.allclose(thresholds["if1"], channel_max, rtol=1e-5), "layer-1 thresholds are the channel maxima of conv1"
print(f"lesson: layer-1 thresholds = channel-wise max of conv1 over {len(calibration)} calibration images "
      f"(largest relative difference {np.max(np.abs(thresholds['if1'] / channel_max - 1)):.1e})")

# %% [markdown]
# Now the claim of section 2 on the first layer, on test images the
# calibration never saw (a current may exceed theta there, though rarely:
# the calibration maxima are near the maxima of any similar images):
# run the SNN at two latencies, count each neuron's spikes, and compare
# `N / T * theta` with `clip(conv1(x), 0, theta)` computed above. The bound
# theta / T is exact arithmetic; float32 potentials add rounding of about
# 1e-7 theta per step, hence the small allowance.

# %%
images = x_test[:20]
currents = conv1_currents(images)
theta1 = thresholds["if1"][None, :, None, None]
relu = np.clip(currents, 0, theta1)
rates = {}
for T in (4, 32):
    counts = net.run(direct(images, T), record=("counts",)).counts["if1"]
    rates[T] = counts / T
    error = np.abs(rates[T] * theta1 - relu)
    allowed = theta1 / T + 1e-5 * theta1
    assert np.all(error <= allowed), f"rate x theta departs from ReLU by more than theta / T at T = {T}"
    print(f"lesson: T = {T:2d}: |rate x theta - clip(relu(I), 0, theta)| <= theta / T for all "
          f"{error.size} neurons of if1 (largest: {np.max(error / theta1):.4f} theta, bound {1 / T:.4f} theta)")

# %% [markdown]
# ## 4. Accuracy against latency
#
# Each T gets its own calibration (hidden-layer currents depend on T,
# Sec. 3.2 of the paper), then the test images run for T steps with the
# pixels as constant current and the prediction is the argmax of the readout
# potential. `conversion_sweep` does both for a list of T and reports the
# accuracy and the SynOps per sample (one per synapse an event reaches).
# At small T the rates are coarse (multiples of 1/T) and the deeper layers
# have barely started firing; as T grows the rates approach the ReLU
# activations and the SNN approaches the ANN, at a cost in synaptic
# operations that grows linearly with T.

# %%
steps = [2, 4, 8, 16, 32]
rows = conversion_sweep(net, calibration, x_test, y_test, steps=steps, method="channel")
snn_acc = np.array([row["accuracy"] for row in rows])
synops = np.array([row["synops_per_sample"] for row in rows])
ann_macs = sum(net.ann_macs().values())
for row in rows:
    print(f"T = {row['steps']:2d}: SNN accuracy {100 * row['accuracy']:5.1f} %, "
          f"{row['synops_per_sample'] / 1e6:5.2f} M SynOps per sample")

assert ann_acc - snn_acc[-1] <= 0.03, "at the largest T the SNN is within 3 points of the ANN"
assert snn_acc[-1] > snn_acc[0], "more steps, better accuracy"
print(f"lesson: the SNN goes from {100 * snn_acc[0]:.1f} % at T = {steps[0]} to {100 * snn_acc[-1]:.1f} % "
      f"at T = {steps[-1]}; the ANN has {100 * ann_acc:.1f} %")

# %%
fig, (ax_acc, ax_ops) = plt.subplots(1, 2, figsize=(11, 4.2))
ax_acc.plot(steps, 100 * snn_acc, "o-", label="converted SNN (channel-wise thresholds)")
ax_acc.axhline(100 * ann_acc, color="k", ls="--", label=f"ANN (ReLU): {100 * ann_acc:.1f} %")
ax_acc.set(xscale="log", xlabel="latency T (steps)", ylabel="test accuracy (%)", ylim=(0, 100),
           title=f"Accuracy against latency ({len(x_test)} MNIST test images)")
ax_ops.plot(steps, synops / 1e6, "o-", label="SNN: SynOps per sample")
ax_ops.axhline(ann_macs / 1e6, color="k", ls="--", label="ANN: MACs per sample")
ax_ops.set(xscale="log", xlabel="latency T (steps)", ylabel="operations per sample (millions)",
           title="Cost against latency")
for ax in (ax_acc, ax_ops):
    ax.set_xticks(steps, [str(t) for t in steps])
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if ax is ax_acc else "upper left")
fig.tight_layout()
fig.savefig(ARGS.out / "conversion_accuracy.png", dpi=120)
plt.close(fig)

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
grid = np.linspace(-0.2, 1.2, 400)
for ax, (T, rate) in zip(axes, rates.items()):
    x = (currents / theta1).ravel()
    ax.plot(grid, np.clip(np.floor(T * grid) / T, 0, 1), "r-", lw=0.8, label="floor(T I / theta) / T")
    ax.plot(x, rate.ravel(), "o", ms=3, alpha=0.3, label="IF neurons of layer 1 (20 test images)")
    ax.plot(grid, np.clip(grid, 0, 1), "k--", lw=1, label="clip(I / theta, 0, 1): the ReLU")
    ax.set(xlim=(grid[0], grid[-1]), xlabel="input current I / theta (constant over the T steps)",
           title=f"Spike rate against current, T = {T}")
    ax.grid(alpha=0.3)
axes[0].set_ylabel("spike rate N / T (spikes per step)")
axes[0].legend(loc="upper left", fontsize=8)
fig.tight_layout()
fig.savefig(ARGS.out / "rate_vs_relu.png", dpi=120)
plt.close(fig)
print(f"figures in {ARGS.out}/; {time.perf_counter() - started:.1f} s in all")

# %% [markdown]
# ## Further
#
# `eventsim convert --data DIR` runs the same procedure at full size (all
# 60,000 training images, 8 epochs, T = 4 ... 64 on the 10,000 test images)
# and reproduces Table 2 of the paper (README, "ANN-to-SNN conversion");
# `--alpha` scales the thresholds down, which helps at short latencies
# (Sec. 4.1.3 of the paper).
