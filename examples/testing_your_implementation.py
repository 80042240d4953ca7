# %% [markdown]
# # Testing your own implementation against eventsim
#
# You wrote a spiking network in PyTorch, for a GPU. Does it compute what it
# should? Comparing it with another framework only tells you that the two
# agree; eventsim is a *reference*: every number it computes follows from a
# written semantics (docs/semantics.md), and with dyadic weights (k / 2^m)
# every sum is exact in float32, so a correct implementation must give
# eventsim's spikes and potentials bit for bit, whatever order it sums in.
#
# `eventsim.testing` turns that into a test (docs/testing.md): hypothesis
# generates networks and inputs, runs them through your code and through
# eventsim, and when they differ shrinks the network to a minimal one and
# reports the first divergence in causal order: layer, step, sample, neuron,
# both potentials and the threshold.
#
# This example writes a small PyTorch SNN as a *candidate*, plants two bugs
# that real implementations make (firing on `U >= theta` instead of
# `U > theta`; a reset that acts too late), watches the suite find and
# locate each, then fixes them and sees the suite pass.
#
# Run it as a script (`python examples/testing_your_implementation.py --out DIR`)
# or cell by cell. It needs PyTorch (`pip install -e ".[torch]"`) and runs on
# the GPU when torch sees one.

# %%
import argparse
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no window
import matplotlib.pyplot as plt
import numpy as np
import torch

import eventsim as es
from eventsim.testing import Features, LayerRecord, conform, reference_records


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Plant bugs in a small PyTorch SNN; eventsim.testing finds them.")
    parser.add_argument("--out", type=Path, default=Path("eventsim-figures/testing_your_implementation"),
                        help="folder for the PNG figure (created)")
    parser.add_argument("--examples", type=int, default=40, help="generated cases per kind of test")
    # parse_known_args: an editor running the cells passes arguments of its own.
    return parser.parse_known_args()[0]


ARGS = parse()
ARGS.out.mkdir(parents=True, exist_ok=True)
started = time.perf_counter()
device = "cuda" if torch.cuda.is_available() else "cpu"
print(f"the candidate runs on {device}")

# %% [markdown]
# ## 1. What a candidate provides
#
# The protocol (eventsim/testing/protocol.py) asks for two methods:
#
# - `candidate.build(network) -> model`: read an eventsim `Network` (its
#   layers are small objects with NumPy weights and every option spelled
#   out) and build your own model from it;
# - `model.run(spikes) -> {layer name: LayerRecord(outputs, potentials)}`:
#   run on `spikes` of shape `(T, batch, *input_shape)` (time-major, as most
#   GPU code holds it) from U[0] = 0, and report every neuron layer's spikes
#   and its pre-threshold potential U at every step, `(T, batch, *shape)`.
#
# A `model.gradients(...)` method is optional; without it the suite tests
# the forward pass only. What the implementation supports it says with
# `Features`: here linear layers only, neurons firing on `U > theta` (no
# `>=` option), hard reset to 0 or soft reset; `build` refuses anything
# else with an error naming the layer, which the report would show.
# Everything the features allow (leaks, IF neurons, biases, per-neuron
# thresholds, a non-spiking readout, float32 and float64) is generated.
#
# The neuron is docs/semantics.md, "Neurons" (Lee et al. 2020, Sec. 2.1,
# written on U):
#
#     U[t] = lam * R(U[t-1], s[t-1]) + I[t]          U[0] = 0
#     R    = U * (1 - s)  (hard reset)   or   U - theta * s  (soft reset)
#     s[t] = 1[U[t] > theta]
#
# It is the one function below that the bugs will change. The readout is a
# neuron with theta = inf that never fires (`torch.where` keeps the
# `U - inf` of a soft reset out of the result).

# %%
F = torch.nn.functional
# A reference comparison needs full float32 products: no TF32 on the GPU (off by default; said here for clarity).
torch.backends.cuda.matmul.allow_tf32 = False


def reset(u, s, n):
    """R(U, s): U where the neuron did not fire; 0 (hard) or U - theta (soft) where it did."""
    return torch.where(s, u - n["theta"] if n["soft"] else torch.zeros_like(u), u)


def lif_step(u, s, current, n):
    """One step of a neuron layer: U[t], s[t] from U[t-1], s[t-1] and the current I[t]."""
    u = n["lam"] * reset(u, s, n) + current
    return u, u > n["theta"]


class MySNN:
    """A candidate: linear layers and LIF/IF neurons (and a readout), stepped in PyTorch."""

    name = "my-torch-snn"
    features = Features(layers={"linear"}, comparisons={">"}, v_reset=False)

    def __init__(self, step=lif_step):
        self.step = step  # the neuron update, so that a bug can be planted below

    def build(self, network):
        def tensor(values):  # every number rounded once to the network's dtype, as eventsim rounds it
            return torch.from_numpy(np.asarray(values, np.float64).astype(network.dtype)).to(device)

        layers = []
        for layer in network.layers:
            if isinstance(layer, es.Linear):
                bias = None if layer.bias is None else tensor(layer.bias)
                layers.append((layer.name, "linear", (tensor(layer.weight), bias)))
            elif isinstance(layer, es.LIF):  # IF and Readout are LIF layers too
                if not layer.strict or layer.v_reset != 0 or layer.input_gain != 1 or layer.reset_delayed:
                    raise NotImplementedError(f"{layer.name}: only '>', reset to 0 and the default conventions")
                shape = network.shapes[layer.name][1]
                neuron = {"theta": tensor(layer.thresholds(shape)), "lam": tensor(layer.leak),
                          "soft": layer.reset == "soft"}
                layers.append((layer.name, "neuron", neuron))
            else:
                raise NotImplementedError(f"{layer.name}: {type(layer).__name__} is not supported")
        return MyModel(layers, self.step)


class MyModel:
    def __init__(self, layers, step):
        self.layers, self.step = layers, step

    def run(self, spikes):
        """``spikes`` (T, batch, inputs) -> {neuron layer: LayerRecord(spikes, U)}, each (T, batch, neurons)."""
        x = torch.from_numpy(spikes).to(device)
        state, steps = {}, {name: ([], []) for name, kind, _ in self.layers if kind == "neuron"}
        for t in range(x.shape[0]):
            h = x[t]
            for name, kind, p in self.layers:
                if kind == "linear":
                    h = F.linear(h, *p)
                    continue
                u, s = state.get(name, (torch.zeros_like(h), torch.zeros_like(h, dtype=torch.bool)))
                u, s = state[name] = self.step(u, s, h, p)
                steps[name][0].append(s)
                steps[name][1].append(u)
                h = s.to(h.dtype)
        return {name: LayerRecord(torch.stack(s).cpu().numpy(), torch.stack(u).cpu().numpy())
                for name, (s, u) in steps.items()}


# %% [markdown]
# ## 2. First bug: firing on `U >= theta`
#
# The semantics fires on `U > theta` (Lee et al. 2020, Algorithm 1;
# docs/semantics.md). `>=` is an easy slip and invisible on most inputs: it
# changes a spike only where U lands *exactly* on theta. With float weights
# that almost never happens; with dyadic weights it happens often, which is
# why `conform` generates dyadic cases and compares them bit for bit.
#
# `conform(candidate, examples=n)` runs n generated cases of each kind
# (dyadic forward, float forward, `bptt` gradients; our model has no
# `gradients` method, so we ask for the forward pass only) and returns a
# report; `str(report)` is the text below, `report.failures` the shrunk
# failing cases with their first divergence.


# %%
def fires_on_equal(u, s, current, n):
    u = n["lam"] * reset(u, s, n) + current
    return u, u >= n["theta"]  # the bug


def check(step, examples: int = ARGS.examples):
    """Run the suite on ``MySNN(step)``; print and return the report."""
    report = conform(MySNN(step), examples=examples, gradients=False)
    print(report)
    return report


def located(report, step):
    """The first shrunk failure's case and divergence, and both sides' records of the named layer on that case."""
    failure = report.failures[0]
    case, d = failure.case, failure.comparison.divergence
    names = [layer.name for layer in case.network.walk() if isinstance(layer, es.LIF)]
    assert d.layer in names and 1 <= d.step <= case.steps and 0 <= d.sample < case.batch, "a layer, step and sample"
    assert len(d.neuron) == 1 and 0 <= d.neuron[0] < case.network.shapes[d.layer][1][0], "a neuron of that layer"
    reference = reference_records(case.network, case.spikes)
    mine = MySNN(step).build(case.network).run(case.spikes)
    return case, d, reference[d.layer], mine[d.layer]


report = check(fires_on_equal)
assert not report.ok, "the >= bug is found"
case, d, ref, mine = located(report, fires_on_equal)
at = (d.step - 1, d.sample, *d.neuron)
layer = next(layer for layer in case.network.walk() if layer.name == d.layer)
theta = np.asarray(layer.thresholds(case.network.shapes[d.layer][1]), case.network.dtype)[d.neuron[0]]
assert ref.potentials[at] == mine.potentials[at] == theta, "where >= acts: U equals theta exactly"
assert not ref.outputs[at] and mine.outputs[at], "eventsim stays silent, the candidate fires"
print(f"lesson: the >= bug is located at layer {d.layer!r}, step {d.step}, sample {d.sample}, neuron {d.neuron}, "
      f"where U = theta = {theta}")
bug_at_equal = (case, d)

# %% [markdown]
# Read the report from the top: the dyadic forward cases failed at once;
# hypothesis shrank the failing network to a minimal one (here one linear
# layer and one IF neuron, one step, one sample); the first divergence is an
# *output* at a position where both potentials agree and equal the threshold. So the
# potential is right and the firing decision is wrong: exactly `>=`.
# The float cases mostly passed: with float weights U = theta exactly is
# rare, and a spike that differs where U is within the rounding bound of
# theta is a permitted flip (docs/testing.md, "The tolerance contract").
#
# ## 3. Second bug: the reset acts too late
#
# The semantics resets *before* the leak and the new input:
# `U[t] = lam * R(U[t-1], s[t-1]) + I[t]`. Code that integrates first and
# resets afterwards, `U[t] = R(lam * U[t-1] + I[t], s[t-1])`, throws away the
# input of the step after every spike (hard reset) or subtracts an unleaked
# theta (soft reset). It acts only one step after a spike.


# %%
def late_reset(u, s, current, n):
    u = reset(n["lam"] * u + current, s, n)  # the bug: the reset after the leak and the input
    return u, u > n["theta"]


report = check(late_reset)
assert not report.ok, "the late reset is found"
case, d, ref, mine = located(report, late_reset)
at = (d.step - 1, d.sample, *d.neuron)
assert d.kind == "potential" and ref.potentials[at] != mine.potentials[at], "the potential is wrong"
assert d.step >= 2 and ref.outputs[(d.step - 2, d.sample, *d.neuron)], "one step after a spike: where a reset acts"
print(f"lesson: the late reset is located at layer {d.layer!r}, step {d.step}, sample {d.sample}, neuron "
      f"{d.neuron}, one step after eventsim's neuron fired")
bug_late_reset = (case, d)

# %% [markdown]
# This time the divergence is a *potential*: U is already wrong, one step
# after eventsim's neuron fired (here at step 2, after a spike at step 1). A wrong potential one step
# after a spike points at the reset; a wrong firing decision at U = theta
# points at the comparison. That is what "first divergence in causal order"
# buys: earlier steps and layers agree, so the cause is at the named place.
#
# ## 4. Fixed
#
# The correct `lif_step` passes: every dyadic case bit for bit, every float
# case within the rounding bound.

# %%
report = check(lif_step)
assert report.ok, "the correct candidate conforms"
print("lesson: with the bugs fixed the candidate conforms")

# %% [markdown]
# ## 5. The bugs in a picture
#
# Each shrunk network, driven for 12 steps by its input repeated, through
# eventsim and through the buggy candidate: the potential U of the neuron
# the report names, with its threshold, and the spikes. With `>=` the
# candidate fires whenever U reaches theta; with the late reset the input
# of the step after each spike is lost.

# %%
def long_traces(step, case, d, steps: int = 12):
    """U and spikes of the reported neuron over ``steps`` steps of the case's input repeated: eventsim, candidate."""
    spikes = np.tile(case.spikes, (-(-steps // case.steps),) + (1,) * (case.spikes.ndim - 1))[:steps]
    where = (slice(None), d.sample, *d.neuron)
    ref = reference_records(case.network, spikes)[d.layer]
    mine = MySNN(step).build(case.network).run(spikes)[d.layer]
    return ref.potentials[where], ref.outputs[where], mine.potentials[where], mine.outputs[where]


fig, axes = plt.subplots(2, 2, figsize=(11, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
panels = [("fires on U >= theta", fires_on_equal, *bug_at_equal), ("resets too late", late_reset, *bug_late_reset)]
for column, (title, step, case, d) in enumerate(panels):
    u_ref, s_ref, u_mine, s_mine = long_traces(step, case, d)
    t = np.arange(1, len(u_ref) + 1)
    top, raster = axes[0, column], axes[1, column]
    top.plot(t, u_ref, "o-", label="eventsim")
    top.plot(t, u_mine, "s--", mfc="none", label="candidate")
    top.axhline(d.threshold, color="r", lw=1, zorder=0, label=f"threshold theta = {d.threshold:g}")
    top.axvline(d.step, color="0.6", ls=":", label=f"reported divergence (step {d.step})")
    low, high = min(0.0, u_ref.min(), u_mine.min()), max(u_ref.max(), u_mine.max(), d.threshold)
    top.set_ylim(low - 0.05 * (high - low), high + 0.55 * (high - low))  # room for the legend above the traces
    top.set(ylabel="potential U (before reset)", title=f"Bug: {title}\nlayer {d.layer!r}, neuron {d.neuron}")
    top.legend(fontsize=8, loc="upper center", ncol=2)
    raster.vlines(t[s_ref.astype(bool)], 1.6, 2.4, color="C0", lw=2)
    raster.vlines(t[s_mine.astype(bool)], 0.6, 1.4, color="C1", lw=2)
    raster.set(yticks=[1, 2], yticklabels=["candidate", "eventsim"], ylim=(0.3, 2.7), xlabel="step t",
               xticks=t)
    raster.set_title("spikes", fontsize=9)
    for ax in (top, raster):
        ax.grid(alpha=0.3)
fig.suptitle("Each shrunk network, its input repeated for 12 steps: eventsim against the buggy candidate")
fig.tight_layout()
fig.savefig(ARGS.out / "planted_bugs.png", dpi=120)
plt.close(fig)
print(f"figure in {ARGS.out}/; {time.perf_counter() - started:.1f} s in all")
