# %% [markdown]
# # The Lee 2020 gradient
#
# A spike is a step function of the potential, s = 1[U > theta], whose
# derivative is 0 everywhere except at the threshold. Backpropagation through
# it gives nothing, so every spiking learning rule replaces ds/dU by
# something else. Lee et al. 2020 ("Enabling spike-based backpropagation",
# Sec. 3.1; extraction in ../shared/papers/lee2020-spike-bp.md, sections 2.2
# to 2.6) do it once per sample, on totals over the whole window of T
# steps: a straight-through slope 1/theta for an integrate-and-fire neuron,
# corrected for the leak of a LIF neuron by the neuron's own spike timing.
# eventsim implements this as the rule `lee2020` (docs/semantics.md,
# "Gradient rules"); surrogate-gradient backpropagation through time is the
# rule `bptt`.
#
# This example derives the rule step by step, computes it by hand for one
# neuron and for a tiny network (Linear -> LIF -> Linear -> Readout), checks
# the hand computation against `eventsim.learning.Lee2020`, and puts the
# `bptt` gradient of the same forward pass beside it to show where the two
# differ.
#
# Run: `python examples/lee2020_gradient.py [--out DIR]` (figures in
# `eventsim-figures/lee2020_gradient` by default).

# %%
import argparse
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import eventsim as es
from eventsim.learning import BPTT, FastSigmoid, Lee2020, LeeMSE, StraightThrough, init_lee2020
from eventsim.learning.dense import bptt_gradients

matplotlib.use("Agg")  # figures go to PNG files, never to a window


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The Lee 2020 gradient, by hand and against bptt.")
    parser.add_argument("--out", type=Path, default=Path("eventsim-figures/lee2020_gradient"),
                        help="folder for the PNG figures (created)")
    # parse_known_args: a notebook kernel passes arguments of its own.
    return parser.parse_known_args()[0]


ARGS = parse()
ARGS.out.mkdir(parents=True, exist_ok=True)

# %% [markdown]
# ## The network and its forward pass
#
# 24 inputs -> 16 LIF neurons (theta = 1, tau = 20 steps, hard reset to 0,
# strict threshold) -> 4 readout neurons (tau = 20, never fire), T = 50
# steps, a batch of 8 samples of random input spikes (probability 0.2 per
# input and step), weights drawn as Lee et al. initialise them
# (N(0, 2 / fan_in)). float64, so that the comparisons below can be tight.
# The forward pass records what each rule needs: counts and traces for
# `lee2020`, the spikes and potentials of every step for `bptt`.
#
# The loss is Lee's squared error on the readout (eqs. 6, 8-10):
# output = U_L[T] / T, e = output - onehot, L = mean over the batch of
# 0.5 * sum_k e_k^2, so dL/d(output) = e / B.

# %%
N_IN, HIDDEN, CLASSES, T, TAU, BATCH = 24, 16, 4, 50, 20.0, 8
THETA = 1.0
lam = math.exp(-1.0 / TAU)
rng = np.random.default_rng(0)
net = es.Network([
    es.Linear(N_IN, HIDDEN), es.LIF(THETA, tau=TAU), es.Linear(HIDDEN, CLASSES), es.Readout(tau=TAU),
], input_shape=(N_IN,), dtype=np.float64)
init_lee2020(net, rng)
W1, W2 = net.layers[0].weight, net.layers[2].weight  # (HIDDEN, N_IN), (CLASSES, HIDDEN)
x = (rng.random((BATCH, T, N_IN)) < 0.2).astype(np.float64)
events = es.Events.from_dense(x)
labels = rng.integers(0, CLASSES, BATCH)
RECORDS = ("counts", "traces", "spikes", "potentials")
result = net.run(events, record=RECORDS)
loss_value, g_out = LeeMSE()(net, result, labels)
spikes = result.spikes["lif1"].to_dense()  # (B, T, HIDDEN), s[b, t-1, j]
potentials = result.potentials["lif1"]
print(net)
print(f"loss {loss_value:.5f}; hidden spikes per neuron and sample: mean {spikes.sum(1).mean():.2f}, "
      f"{int((spikes.sum(1) == 0).sum())} of {BATCH * HIDDEN} (neuron, sample) pairs silent")

# %% [markdown]
# ## Step 1: the output layer (eqs. 6, 10, 23)
#
# The readout integrates its input with a leak: U_L[T] = sum_t lam^(T-t) I_L[t]
# with I_L[t] = W2 s[t]. Lee et al. treat the output leak "as noise":
# U_L[T] ~ net_L = W2 * gamma, the weighted spike *counts*, so
#
#     d output / d net_L = 1/T,    delta_L = (dL/d output) / T = e / (B T)      (eq. 23)
#
# and the output weights get dL/dW2 = delta_L (x) gamma (eq. 26, summed over
# the batch).

# %%
delta_out = g_out / T  # (B, CLASSES)

# %% [markdown]
# ## Step 2: the IF neuron, straight through (eqs. 11-13)
#
# For an integrate-and-fire neuron with reset by subtraction the charge is
# conserved (see examples/one_neuron.py): after the window
# V_mem(T) = net(T) - theta * a_IF(T), with net the total input and a_IF the
# spike count (eq. 11). The residue V_mem stays below theta, so for many
# spikes it is small against the rest, and
#
#     a_IF ~ net / theta        =>      d a_IF / d net ~ 1 / theta            (eqs. 12-13)
#
# the straight-through estimate: the count is treated as a linear function
# of the input, with slope 1/theta.
#
# ## Step 3: the leak correction (eqs. 14-22)
#
# A leaky neuron loses part of its input, so it needs more net input for the
# same count: its effective threshold is beta * theta with beta > 1 (eq. 14),
# and d a_LIF / d net = 1 / (beta * theta). To estimate beta, compare the
# "total" potentials (integrated without reset) of IF and LIF:
#
#     d V_total_IF / dt  ~ theta * rate                                      (eq. 17)
#     d V_total_LIF / dt ~ theta * rate + theta * df/dt                      (eq. 18)
#     f(t) = sum_k exp(-(t - t_k) / tau)                                     (eq. 19)
#
# f is the neuron's own output spike train filtered by the membrane leak: it
# holds the charge that the leak takes away. Its derivative between spikes is
# df/dt = -f / tau = ln(lam) * f. Eliminating beta (eqs. 20-21),
#
#     1 / beta = 1 + (1 / rate) * df/dt,
#
# and with rate = gamma / T (gamma the spike count) and the derivative scaled
# by the window T, evaluated at the end of the window (eq. 22):
#
#     a' = d a_LIF / d net = (1 / theta) * (1 + ln(lam) * f(T) / gamma)      if gamma > 0
#     a' = 0                                                                 if gamma = 0
#
# ("If a hidden neuron does not fire any spike, the derivative ... is set to
# zero.") In steps, f(T) = sum_k lam^(T - t_k) over the spike steps t_k, or
# online f[t] = lam * f[t-1] + s[t]. f(T) / gamma is the mean of
# lam^(T - t_k) over the spikes, so it lies in [lam^(T-1), 1]: near 1 for
# late spikes, smaller for early ones. Hence
#
#     (1/theta) * (1 + ln lam) <= a' <= 1/theta,      1 + ln(lam) = 1 - 1/tau
#
# The correction is a per-neuron down-scaling of the straight-through slope
# by at most 1/tau (5 % here, 1 % with Lee's tau = 100), largest for a neuron
# whose spikes came late. An IF neuron (lam = 1) gets 1/theta exactly.
#
# ## Step 4: backpropagation on totals (eqs. 24-26)
#
#     delta_l = (W_l^T delta_{l+1}) * a'_l,       dL/dW_l = delta_{l+1} (x) x_l
#
# where x_l is the total input of layer l over the window (the input spike
# counts). One backward pass per sample, at T; nothing in it grows with T.
#
# ## One neuron by hand
#
# Take the hidden neuron that fired most in sample 0. Its spike steps give
# gamma and f(T); W2 and the output deltas give the error that reaches it;
# a' turns that into its delta; its row of dL/dW1 is delta times the input
# counts, summed over the batch.

# %%
B0 = 0
J = int(np.argmax(spikes[B0].sum(0)))
steps_j = [int(t) + 1 for t in np.flatnonzero(spikes[B0, :, J])]  # spike steps t_k, 1-based
gamma_j = len(steps_j)
f_j = sum(lam ** (T - t_k) for t_k in steps_j)
f_online = 0.0
for s_t in spikes[B0, :, J]:
    f_online = lam * f_online + s_t
assert math.isclose(f_j, f_online, rel_tol=1e-12)
assert gamma_j == result.counts["lif1"][B0, J] and math.isclose(f_j, result.traces["lif1"][B0, J], rel_tol=1e-12)
a_prime_j = (1 / THETA) * (1 + math.log(lam) * f_j / gamma_j)
error_j = float(W2[:, J] @ delta_out[B0])  # sum_k W2[k, J] delta_L[k]
delta_j = error_j * a_prime_j
print(f"neuron lif1[{J}], sample {B0}: spikes at steps {steps_j}")
print(f"  gamma = {gamma_j}, f(T) = sum lam^(T - t_k) = {f_j:.5f}, f/gamma = {f_j / gamma_j:.5f}, "
      f"a' = (1/theta)(1 + ln(lam) f/gamma) = {a_prime_j:.5f}")
print(f"  W2^T delta_L = {error_j:.3e}, delta = {delta_j:.3e}")


def lee_a_prime(counts: np.ndarray, traces: np.ndarray) -> np.ndarray:
    """a' of eq. 22 at T for every (sample, neuron): (1/theta)(1 + ln(lam) f/gamma), 0 where gamma = 0."""
    ratio = np.divide(traces, counts, out=np.zeros_like(traces), where=counts > 0)
    return np.where(counts > 0, (1 + math.log(lam) * ratio) / THETA, 0.0)


gamma = spikes.sum(1)  # (B, HIDDEN), counted from the raster
f = np.einsum("btj,t->bj", spikes, lam ** (T - np.arange(1, T + 1)))
a_prime = lee_a_prime(gamma, f)
assert math.isclose(a_prime[B0, J], a_prime_j, rel_tol=1e-12)
x_totals = x.sum(1)  # (B, N_IN): eq. 25's input counts
row_by_hand = sum((W2[:, J] @ delta_out[b]) * a_prime[b, J] * x_totals[b] for b in range(BATCH))

lee = Lee2020().gradients(net, events, result, g_out)
assert np.allclose(lee["fc1.weight"][J], row_by_hand, rtol=1e-12, atol=1e-15)
print(f"  its row of dL/dW1 by hand equals Lee2020's (largest entry {np.abs(row_by_hand).max():.3e})")

# %% [markdown]
# ## The whole network by hand
#
# The same four lines for every neuron and sample at once, as matrices:
# delta_1 = (delta_L W2) * a', dL/dW1 = delta_1^T x, dL/dW2 = delta_L^T gamma.

# %%
delta_hidden = (delta_out @ W2) * a_prime  # (B, HIDDEN)
by_hand = {"fc1.weight": delta_hidden.T @ x_totals, "fc2.weight": delta_out.T @ gamma}
for key, value in by_hand.items():
    assert np.allclose(lee[key], value, rtol=1e-12, atol=1e-15), key
fired = gamma > 0
ratio = f[fired] / gamma[fired]
assert np.all((ratio >= lam ** (T - 1) - 1e-15) & (ratio <= 1 + 1e-15))
assert np.all((a_prime[fired] >= (1 + math.log(lam)) / THETA - 1e-15) & (a_prime[fired] <= 1 / THETA))
assert np.all(a_prime[~fired] == 0)
silent_everywhere = np.flatnonzero(~fired.any(0))
assert np.all(lee["fc1.weight"][silent_everywhere] == 0)
print(f"lee2020 by hand = eventsim Lee2020 on fc1 and fc2 (rtol 1e-12); a' in "
      f"[{a_prime[fired].min():.4f}, {a_prime[fired].max():.4f}] within the bounds "
      f"[{(1 + math.log(lam)) / THETA:.4f}, {1 / THETA:.4f}]; "
      f"neurons {silent_everywhere.tolist()} never fired: their rows of dL/dW1 are 0")

# %% [markdown]
# ## The same network under `bptt`
#
# Backpropagation through time differentiates the step recursion itself
# (docs/semantics.md, "`bptt`"), with ds/dU replaced by a surrogate sigma and
# the reset detached. For a hidden neuron with hard reset, going backward
# from E[T+1] = 0:
#
#     G[t] = sum_k W2[k, j] * lam^(T-t) * g_out[k] / T      (dL/ds[t], through the leaky readout)
#     E[t] = G[t] * sigma(U[t] - theta) + E[t+1] * lam * (1 - s[t])
#     dL/dW1[j, i] = sum_b sum_t E[t] * x_i[t]
#
# Lee's rule is the special case of a credit that is the same at every step:
# dL/dW1[j, i] = delta_j * sum_t x_i[t]. Under `bptt` each input step gets its
# own credit E[t]: the error of the spikes that input could still cause
# (until the next reset cuts the chain, since (1 - s[t]) = 0 at a spike),
# leaked back by lam. Two surrogates: straight-through (sigma = 1/theta at
# every step, the same slope as Lee's) and the fast sigmoid
# sigma = (1/theta) / (1 + c |U - theta|)^2 with c = 5, which gives credit
# mostly to steps near the threshold.
#
# First the hand recursion for the neuron above, against eventsim's
# event-driven `BPTT`; then the whole gradient against the dense NumPy
# reference `eventsim.learning.dense.bptt_gradients`, written separately on
# dense (B, T, ...) arrays. They must agree to rounding.

# %%
SURROGATES = {"straight-through": StraightThrough(), "fast sigmoid c=5": FastSigmoid(c=5.0)}


def sigma(name: str, u: np.ndarray) -> np.ndarray:
    """The surrogate ds/dU, written out from its formula."""
    if name == "straight-through":
        return np.full_like(u, 1 / THETA)
    return (1 / THETA) / (1 + 5.0 * np.abs(u - THETA)) ** 2


def bptt_credit(name: str, b: int, j: int) -> np.ndarray:
    """E[t] = dL/dI[t] of hidden neuron j in sample b, the backward recursion above."""
    g = lam ** (T - np.arange(1, T + 1)) * float(W2[:, j] @ g_out[b]) / T
    slope = sigma(name, potentials[b, :, j])
    credit, carried = np.zeros(T), 0.0
    for t in range(T - 1, -1, -1):
        carried = g[t] * slope[t] + carried * lam * (1 - spikes[b, t, j])
        credit[t] = carried
    return credit


bptt = {}
for name, surrogate in SURROGATES.items():
    bptt[name] = BPTT(surrogate=surrogate).gradients(net, events, result, g_out)
    row = sum(bptt_credit(name, b, J) @ x[b] for b in range(BATCH))
    assert np.allclose(bptt[name]["fc1.weight"][J], row, rtol=1e-10, atol=1e-15), name
    dense = bptt_gradients(net, x, g_out, surrogate=surrogate)
    worst = max(np.abs(bptt[name][k] - dense[k]).max() / np.abs(dense[k]).max() for k in dense)
    assert worst < 1e-12, (name, worst)
    print(f"bptt ({name}): neuron {J}'s row by hand = eventsim BPTT; event-driven = dense reference "
          f"(largest difference {worst:.1e} of the gradient's scale)")

# %% [markdown]
# ## Where they differ, and what the true gradient is
#
# *Output weights.* Spikes do not depend on W2, so the loss is a smooth
# (quadratic) function of W2 and has a true gradient, which central finite
# differences measure. `bptt` differentiates the readout's leak exactly:
# dL/dW2 = delta_L (x) f_out, with f_out = sum_t lam^(T-t) s[t], the same
# leak-weighted trace as f above because the readout has the same tau. Lee's
# rule uses the count gamma instead ("output leak as noise"), which
# overstates the gradient by the factor gamma / f >= 1 for every hidden
# neuron.
#
# *Hidden weights.* A small change of W1 changes no spike, so the loss does
# not move: the true gradient with respect to W1 is 0 almost everywhere (and
# undefined where a spike flips). Finite differences show exactly that.
# Neither rule computes it; both compute a useful substitute.
#
# *Silent neurons.* Lee's a' is 0 for a neuron that did not fire; the
# straight-through surrogate still gives such a neuron credit at every step,
# and the fast sigmoid a little, where U came near the threshold.
#
# *Direction and size.* On the neurons that fired, the rules mostly agree in
# direction (the cosine similarity below); the fast sigmoid, which credits
# only steps near the threshold, is closer to Lee's rule than the
# straight-through surrogate, which credits every step and so also sums to a
# gradient several times larger (a learning rate absorbs the scale).

# %%
def loss_at(weights: dict[str, np.ndarray]) -> tuple[float, np.ndarray]:
    """Loss and hidden spikes of the network with some weights replaced (restored afterwards)."""
    layers = {"fc1.weight": net.layers[0], "fc2.weight": net.layers[2]}
    saved = {k: layers[k].weight for k in weights}
    for k, w in weights.items():
        layers[k].weight = w
    try:
        run = net.run(events, record=("spikes",))
        return LeeMSE()(net, run, labels)[0], run.spikes["lif1"].to_dense()
    finally:
        for k, w in saved.items():
            layers[k].weight = w


EPS = 1e-6
fd_out = np.zeros_like(W2)
for k, j in np.ndindex(*W2.shape):
    plus, minus = W2.copy(), W2.copy()
    plus[k, j] += EPS
    minus[k, j] -= EPS
    fd_out[k, j] = (loss_at({"fc2.weight": plus})[0] - loss_at({"fc2.weight": minus})[0]) / (2 * EPS)
st = bptt["straight-through"]
assert np.allclose(st["fc2.weight"], delta_out.T @ f, rtol=1e-12, atol=1e-15)
assert np.allclose(st["fc2.weight"], fd_out, rtol=1e-6, atol=1e-9)
assert np.array_equal(bptt["fast sigmoid c=5"]["fc2.weight"], st["fc2.weight"])  # no surrogate on the readout
assert np.allclose(lee["fc2.weight"], delta_out.T @ gamma, rtol=1e-12, atol=1e-15)
assert not np.allclose(lee["fc2.weight"], fd_out, rtol=1e-3, atol=0)
print(f"output weights: bptt = delta_L (x) f = finite differences (rtol 1e-6); lee2020 = delta_L (x) gamma, "
      f"larger by gamma / f in [1, {np.max(gamma[fired] / f[fired]):.2f}]")

probe = [(J, i) for i in np.flatnonzero(x_totals[B0])[:6]]
for j, i in probe:
    plus = W1.copy()
    plus[j, i] += EPS
    moved, moved_spikes = loss_at({"fc1.weight": plus})
    assert np.array_equal(moved_spikes, spikes) and moved == loss_value
print(f"hidden weights: moving W1 by {EPS:g} at {len(probe)} entries leaves every spike and the loss "
      f"unchanged: the true gradient is 0 there; lee2020 and bptt give {lee['fc1.weight'][J, probe[0][1]]:.2e} "
      f"and {st['fc1.weight'][J, probe[0][1]]:.2e} at the first")

assert np.all(np.abs(st["fc1.weight"][silent_everywhere]).max(1) > 0)
cosine = {name: float(np.sum(g["fc1.weight"] * lee["fc1.weight"])
                      / np.linalg.norm(g["fc1.weight"]) / np.linalg.norm(lee["fc1.weight"]))
          for name, g in bptt.items()}
print(f"silent neurons {silent_everywhere.tolist()}: lee2020 rows 0, bptt straight-through rows nonzero; "
      f"cosine similarity of the fc1 gradients with lee2020: "
      + ", ".join(f"{name} {c:.3f}" for name, c in cosine.items()))

# %% [markdown]
# ## Figures
#
# 1. `one_neuron_credit.png`: neuron J of sample 0: its potential and spikes,
#    its trace f[t] (the quantity eq. 22 reads at T), and the credit each
#    rule gives its input current at every step: Lee's constant delta
#    against the `bptt` recursions.
# 2. `a_prime.png`: a' against f/gamma for every (sample, neuron) that fired,
#    on the line of eq. 22, between its bounds; the same line for Lee's
#    tau = 100.
# 3. `fc1_gradients.png`: dL/dW1 under the three rules, side by side, and the
#    output weights' gradients against finite differences.

# %%
t_axis = np.arange(1, T + 1)
fig, axes = plt.subplots(3, 1, figsize=(12, 9), sharex=True, constrained_layout=True)
ax = axes[0]
u_j = potentials[B0, :, J]
ax.plot(t_axis, u_j, "o-", ms=3, color="tab:blue", label="U[t]")
ax.plot(t_axis[spikes[B0, :, J] > 0], u_j[spikes[B0, :, J] > 0], "^", ms=8, color="tab:blue",
        markeredgecolor="black", label="spike")
ax.axhline(THETA, ls="--", color="0.4", lw=1, label="threshold theta")
ax.set_ylabel("potential U[t] (threshold units)")
ax.set_title(f"Hidden neuron {J}, sample {B0}: {gamma_j} spikes (tau = {TAU:g} steps, hard reset)")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
ax = axes[1]
trace_t = np.zeros(T)
for t in range(T):
    trace_t[t] = (lam * trace_t[t - 1] if t else 0.0) + spikes[B0, t, J]
ax.step(t_axis, trace_t, where="post", color="tab:green", label="f[t] = lam f[t-1] + s[t]")
ax.step(t_axis, np.cumsum(spikes[B0, :, J]), where="post", color="0.5", ls=":", label="spike count a(t)")
ax.plot([T], [f_j], "o", color="tab:green", ms=8, label=f"f(T) = {f_j:.2f}, gamma = {gamma_j}")
ax.set_ylabel("trace f[t], count (spikes)")
ax.set_title(f"Eq. 19 in steps: a' = (1/theta)(1 + ln(lam) f(T)/gamma) = {a_prime_j:.4f}")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
ax = axes[2]
ax.axhline(delta_j, color="tab:red", lw=2, label="lee2020: delta, the same at every step")
for (name, _), color in zip(SURROGATES.items(), ("tab:purple", "tab:orange")):
    ax.plot(t_axis, bptt_credit(name, B0, J), ".-", color=color, label=f"bptt, {name}: E[t]")
ax.axhline(0, color="black", lw=0.6)
ax.set_xlabel("time step t")
ax.set_ylabel("credit dL/dI[t] (loss per unit current)")
ax.set_title("What each rule multiplies the input at step t by, in dL/dW1 = sum_t credit[t] x[t]")
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)
ax.ticklabel_format(axis="y", style="sci", scilimits=(-2, 2))
fig.savefig(ARGS.out / "one_neuron_credit.png", dpi=110)
plt.close(fig)

fig, ax = plt.subplots(figsize=(8, 5), constrained_layout=True)
r = np.linspace(lam ** (T - 1), 1, 100)
ax.plot(r, (1 + math.log(lam) * r) / THETA, color="tab:red", lw=1.5,
        label=f"eq. 22: (1/theta)(1 + ln(lam) f/gamma), tau = {TAU:g}")
lam_lee = math.exp(-1 / 100)
r_lee = np.linspace(lam_lee ** (T - 1), 1, 100)
ax.plot(r_lee, (1 + math.log(lam_lee) * r_lee) / THETA, color="tab:gray", ls="--",
        label="the same for Lee's tau = 100")
points = ax.scatter(f[fired] / gamma[fired], a_prime[fired], c=gamma[fired], cmap="viridis", s=28,
                    edgecolor="black", lw=0.4, zorder=3, label="hidden neurons that fired")
ax.axhline(1 / THETA, color="black", lw=0.8, ls=":", label="straight-through 1/theta (IF)")
ax.axhline((1 + math.log(lam)) / THETA, color="tab:red", lw=0.8, ls=":", label="lower bound (1/theta)(1 - 1/tau)")
fig.colorbar(points, ax=ax, label="spike count gamma")
ax.set_xlabel("f(T) / gamma: mean of lam^(T - t_k) over the spikes (1 = all spikes at T)")
ax.set_ylabel("a' = d a_LIF / d net (per threshold unit)")
ax.set_title(f"Lee et al. 2020's leak correction, {int(fired.sum())} (neuron, sample) pairs, T = {T}")
ax.legend(loc="lower left", fontsize=8)
fig.savefig(ARGS.out / "a_prime.png", dpi=110)
plt.close(fig)

fig, axes = plt.subplots(2, 2, figsize=(12, 9), constrained_layout=True)
panels = [("dL/dW1, lee2020", lee["fc1.weight"])] + [
    (f"dL/dW1, bptt, {n} (cosine {cosine[n]:.2f} with lee2020)", g["fc1.weight"]) for n, g in bptt.items()]
for ax, (title, grad) in zip(axes.flat, panels):
    scale = np.abs(grad).max()
    image = ax.imshow(grad, cmap="RdBu_r", vmin=-scale, vmax=scale, aspect="auto")
    fig.colorbar(image, ax=ax, label="dL/dW1")
    ax.set_yticks(range(HIDDEN), [f"silent {j}" if j in silent_everywhere else str(j) for j in range(HIDDEN)],
                  fontsize=7)
    ax.set_xlabel("input i")
    ax.set_ylabel("hidden neuron j")
    ax.set_title(title)
ax = axes[1, 1]
ax.plot(fd_out.ravel(), st["fc2.weight"].ravel(), "o", color="tab:purple", label="bptt (either surrogate)")
ax.plot(fd_out.ravel(), lee["fc2.weight"].ravel(), "x", color="tab:red", label="lee2020 (counts, no output leak)")
line = np.array([fd_out.min(), fd_out.max()])
ax.plot(line, line, color="black", lw=0.8, label="y = x")
ax.set_xlabel("dL/dW2 by central finite differences (the true gradient)")
ax.set_ylabel("dL/dW2 from the rule")
ax.set_title("Output weights: bptt exact, lee2020 larger by gamma / f")
ax.legend(loc="upper left", fontsize=8)
fig.savefig(ARGS.out / "fc1_gradients.png", dpi=110)
plt.close(fig)
print(f"figures written to {ARGS.out}")
