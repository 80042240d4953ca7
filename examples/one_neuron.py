# %% [markdown]
# # One neuron: integrate, leak, fire, reset
#
# A spiking neuron is a small recursion. eventsim writes it on the
# pre-threshold membrane potential U (docs/semantics.md, "Neurons"; Lee et al.
# 2020, Sec. 2.1 and Algorithm 1):
#
#     U[t] = lam * R(U[t-1], s[t-1]) + I[t]        U[0] = 0, steps t = 1..T
#     s[t] = 1[U[t] > theta]                       (strict; ">=" with strict=False)
#     R    = U * (1 - s) + v_reset * s             hard reset (to v_reset, 0 by default)
#          = U - theta * s                         soft reset ("reset by subtraction")
#
# Integrate: the input current I[t] is added. Leak: what is carried to the
# next step is multiplied by lam = exp(-1/tau) (lam = 1 for an IF neuron).
# Fire: a spike when U passes the threshold theta. Reset: a hard reset forgets
# the potential, a soft reset subtracts theta and keeps the overshoot.
#
# Each lesson below feeds one neuron a constant current, records its
# potential with eventsim, and checks a closed form derived in the text. The
# currents are dyadic (k / 2^m) wherever equality is claimed: then every sum
# is exact in floating point and "equal" means bit for bit
# (docs/semantics.md, "Numerics").
#
# Run: `python examples/one_neuron.py [--out DIR]` (figures in
# `eventsim-figures/one_neuron` by default).

# %%
import argparse
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import eventsim as es
from eventsim.encoders import direct

matplotlib.use("Agg")  # figures go to PNG files, never to a window


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="One neuron: integrate, leak, fire, reset.")
    parser.add_argument("--out", type=Path, default=Path("eventsim-figures/one_neuron"),
                        help="folder for the PNG figures (created)")
    # parse_known_args: a notebook kernel passes arguments of its own.
    return parser.parse_known_args()[0]


ARGS = parse()
ARGS.out.mkdir(parents=True, exist_ok=True)
THETA = 1.0


# %% [markdown]
# ## A neuron fed a constant current
#
# A neuron layer that follows no synapse takes the incoming event values as
# its currents (docs/semantics.md, "Synapses and pooling"), so the direct
# encoder, which repeats a value at every step, is a constant current
# source. The network is a single neuron; the run records its potential U[t]
# and its spikes s[t] for t = 1..T (array index t - 1). float64 keeps the
# closed forms below free of rounding questions.

# %%
def simulate(neuron: es.LIF, current: float, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Potentials U[1..T] and spikes s[1..T] of one neuron under a constant current."""
    net = es.Network([neuron], input_shape=(1,), dtype=np.float64)
    result = net.run(direct(np.array([[current]]), steps, dtype=np.float64), record=("potentials", "spikes"))
    u = result.potentials[neuron.name][0, :, 0]
    s = result.spikes[neuron.name].to_dense()[0, :, 0]
    return u, s


def spike_steps(s: np.ndarray) -> list[int]:
    """The steps t (1-based) at which s[t] = 1."""
    return [int(t) + 1 for t in np.flatnonzero(s)]


def trace(ax, u: np.ndarray, s: np.ndarray, label: str, color: str, theta: float = THETA) -> None:
    """U against the step, the threshold dashed, spikes marked above the trace."""
    t = np.arange(1, len(u) + 1)
    ax.plot(t, u, "o-", ms=3.5, lw=1.2, color=color, label=label)
    fired = s > 0
    ax.plot(t[fired], u[fired], "^", ms=8, color=color, markeredgecolor="black", lw=0)
    ax.axhline(theta, ls="--", color="0.4", lw=1, label=f"threshold theta = {theta:g}")
    ax.set_xlabel("time step t")
    ax.set_ylabel("potential U[t] (threshold units)")
    ax.grid(alpha=0.3)


def legend(ax, **where) -> None:
    """A legend with one entry per label (the threshold is drawn once per trace)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), fontsize=8, **where)


# %% [markdown]
# ## Lesson 1: IF with soft reset conserves charge
#
# An IF neuron (lam = 1) with soft reset gets I at every step and gives back
# exactly theta per spike. Nothing else changes the potential, so after T
# steps and n spikes, the potential carried on is
#
#     R(U[T], s[T]) = U[T] - theta * s[T] = T * I - theta * n       (charge conservation)
#
# and since that residue stays in [0, theta] (below threshold, never
# negative), n is the largest whole number of thresholds the charge T * I
# holds: n = floor(T * I / theta) with ">=", or ceil(T * I / theta) - 1 with
# the strict ">" (the two agree unless T * I / theta is a whole number).
# This is the rate code of ANN-to-SNN conversion: the rate n / T
# approximates I / theta to within 1 / T.

# %%
T = 20
I_SOFT = 0.375  # 3/8: dyadic, so every partial sum below is exact
u_soft, s_soft = simulate(es.IF(THETA, reset="soft"), I_SOFT, T)
n = int(s_soft.sum())
assert n == math.floor(T * I_SOFT / THETA) == math.ceil(T * I_SOFT / THETA) - 1 == 7
carried = u_soft - THETA * s_soft  # R(U[t], s[t]) for every t
steps = np.arange(1, T + 1)
assert np.array_equal(carried, steps * I_SOFT - THETA * np.cumsum(s_soft))  # at every step, bit for bit
print(f"lesson 1: IF soft reset, I = {I_SOFT}, T = {T}: {n} spikes = floor(T I / theta); "
      f"U[T] - theta s[T] = {carried[-1]} = T I - theta n = {T * I_SOFT - THETA * n}")

# %% [markdown]
# ## Lesson 2: hard reset throws the overshoot away
#
# With a hard reset the neuron restarts from v_reset after each spike, so
# (strict threshold) it needs the smallest k with v_reset + k * I > theta,
#
#     k = floor((theta - v_reset) / I) + 1
#
# steps per spike after the first; the first spike comes after
# k0 = floor(theta / I) + 1 steps, from U[0] = 0. Whatever U exceeded theta
# by is lost: with the same current the hard-reset neuron fires 6 times
# where the soft-reset one fired 7. The step after a spike starts from
# v_reset: U = lam * v_reset + I.

# %%
u_hard, s_hard = simulate(es.IF(THETA, reset="hard"), I_SOFT, T)
V_RESET = -0.5
u_low, s_low = simulate(es.IF(THETA, reset="hard", v_reset=V_RESET), I_SOFT, T)


def hard_reset_spike_steps(current: float, v_reset: float, steps: int) -> list[int]:
    """Spike steps of a strict IF neuron with hard reset under a constant current (closed form)."""
    first = math.floor(THETA / current) + 1
    period = math.floor((THETA - v_reset) / current) + 1
    return list(range(first, steps + 1, period))


assert spike_steps(s_hard) == hard_reset_spike_steps(I_SOFT, 0.0, T) == [3, 6, 9, 12, 15, 18]
assert spike_steps(s_low) == hard_reset_spike_steps(I_SOFT, V_RESET, T) == [3, 8, 13, 18]
after = np.flatnonzero(s_low[:-1]) + 1  # array indices of the steps right after a spike
assert np.all(u_low[after] == V_RESET + I_SOFT)
print(f"lesson 2: IF hard reset, I = {I_SOFT}: spikes at {spike_steps(s_hard)} (every 3 steps, "
      f"{int(s_hard.sum())} against {n} with soft reset); to v_reset = {V_RESET}: {spike_steps(s_low)}")

fig, axes = plt.subplots(3, 1, figsize=(11, 8.5), sharex=True, constrained_layout=True)
trace(axes[0], u_soft, s_soft, "soft reset (U - theta)", "tab:blue")
axes[0].plot(steps, steps * I_SOFT - THETA * np.cumsum(s_soft), "s", mfc="none", ms=7, color="tab:orange",
             label="t I - theta n(t):\ncarried after the reset")
axes[0].set_title(f"IF, soft reset, I = {I_SOFT}: {n} spikes = floor(T I / theta), no charge lost")
trace(axes[1], u_hard, s_hard, "hard reset to 0", "tab:red")
axes[1].set_title(f"IF, hard reset to 0: a spike every k = floor(theta / I) + 1 = 3 steps, "
                  f"{int(s_hard.sum())} spikes")
trace(axes[2], u_low, s_low, f"hard reset to v_reset = {V_RESET}", "tab:purple")
axes[2].axhline(V_RESET, ls=":", color="tab:purple", lw=1, label=f"v_reset = {V_RESET}")
axes[2].set_title(f"IF, hard reset to {V_RESET}: first spike at 3, then every "
                  f"floor((theta - v_reset) / I) + 1 = 5 steps")
for ax in axes:
    legend(ax, loc="upper left", bbox_to_anchor=(1.01, 1.0))
for ax in axes[:-1]:
    ax.set_xlabel("")
axes[0].set_xticks(range(0, T + 1, 2))
fig.suptitle("Integrate and fire under a constant current (threshold dashed, spikes marked by triangles)")
fig.savefig(ARGS.out / "if_soft_vs_hard_reset.png", dpi=110)
plt.close(fig)

# %% [markdown]
# ## Lesson 3: the leak
#
# With lam < 1 and no spike yet, the recursion is geometric:
#
#     U[t] = lam * U[t-1] + I = I * (1 + lam + ... + lam^(t-1)) = I * (1 - lam^t) / (1 - lam)
#
# U rises towards I / (1 - lam) and never passes it. Two consequences:
#
# - if I / (1 - lam) <= theta, i.e. I <= theta * (1 - lam), the neuron never
#   fires, however long it integrates (the rheobase);
# - otherwise it first fires at the smallest t with I (1 - lam^t) / (1 - lam) > theta,
#   t > ln(1 - theta (1 - lam) / I) / ln(lam), and, restarting from 0 after
#   every hard reset, fires with that period.
#
# With tau = 10 steps (lam = exp(-0.1)) and I = 0.15 the IF neuron needs
# 7 steps per spike (7 * 0.15 = 1.05 > 1) and the LIF neuron 11.

# %%
TAU, I_LEAK, T_LEAK = 10.0, 0.15, 60
lam = math.exp(-1.0 / TAU)
u_quiet, s_quiet = simulate(es.LIF(2.0, tau=TAU), I_LEAK, T_LEAK)  # theta = 2 > I / (1 - lam): never fires
t_leak = np.arange(1, T_LEAK + 1)
closed = I_LEAK * (1 - lam**t_leak) / (1 - lam)
assert s_quiet.sum() == 0 and np.allclose(u_quiet, closed, rtol=1e-12, atol=0)
below = THETA * (1 - lam) * 0.999  # just under the rheobase
assert simulate(es.LIF(THETA, tau=TAU), below, 2000)[1].sum() == 0

u_lif, s_lif = simulate(es.LIF(THETA, tau=TAU), I_LEAK, T_LEAK)
u_if, s_if = simulate(es.IF(THETA), I_LEAK, T_LEAK)
period_lif = math.floor(math.log(1 - THETA * (1 - lam) / I_LEAK) / math.log(lam)) + 1
assert period_lif == 11
assert spike_steps(s_lif) == list(range(period_lif, T_LEAK + 1, period_lif))
assert spike_steps(s_if) == hard_reset_spike_steps(I_LEAK, 0.0, T_LEAK)  # every 7 steps
print(f"lesson 3: LIF tau = {TAU}, I = {I_LEAK}: U[t] = I (1 - lam^t) / (1 - lam) to 1e-12 over {T_LEAK} steps; "
      f"silent for 2000 steps below the rheobase I = theta (1 - lam) = {THETA * (1 - lam):.4f}; "
      f"fires every {period_lif} steps (IF: every 7)")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
ax = axes[0]
ax.plot(t_leak, closed, "-", color="black", lw=2.5, alpha=0.35, label="I (1 - lam^t) / (1 - lam)")
trace(ax, u_quiet, s_quiet, "eventsim, LIF, theta = 2", "tab:green", theta=2.0)
ax.axhline(I_LEAK / (1 - lam), ls=":", color="tab:green", lw=1.2, label=f"limit I / (1 - lam) = {I_LEAK / (1 - lam):.3f}")
ax.set_title(f"LIF below threshold: geometric rise (tau = {TAU:g} steps, I = {I_LEAK})")
legend(ax, loc="lower right")
ax = axes[1]
trace(ax, u_if, s_if, "IF (lam = 1): a spike every 7 steps", "tab:red")
trace(ax, u_lif, s_lif, f"LIF (tau = {TAU:g}): a spike every {period_lif} steps", "tab:green")
ax.set_title(f"Leak slows firing: same current I = {I_LEAK}, theta = 1, hard reset")
ax.set_ylim(0, 1.45)  # headroom for the legend
legend(ax, loc="upper center", ncol=2)
fig.savefig(ARGS.out / "lif_leak.png", dpi=110)
plt.close(fig)

# %% [markdown]
# ## Lesson 4: strict ">" against ">="
#
# Lee et al. 2020 fire when U *exceeds* theta; several frameworks fire when
# U reaches it. The two rules give the same spikes until the first step at
# which U equals theta exactly, and differ from that step on. With
# I = 1/4 an IF neuron with soft reset reaches 1.0 exactly at t = 4: ">="
# fires at 4, 8, 12, 16, 20 (floor(T I / theta) = 5 spikes), ">" one step
# later each time (ceil(T I / theta) - 1 = 4 spikes, the last residue still
# waiting at T). With dyadic currents such ties are not rare accidents: any
# current I = p / 2^m reaches a whole number of thresholds at t = 2^m. An
# implementation checked against eventsim must use the same rule (the
# `strict` option), or it will diverge exactly there.

# %%
I_TIE = 0.25
u_gt, s_gt = simulate(es.IF(THETA, reset="soft"), I_TIE, T)
u_ge, s_ge = simulate(es.IF(THETA, reset="soft", strict=False), I_TIE, T)
assert spike_steps(s_ge) == [4, 8, 12, 16, 20] and len(spike_steps(s_ge)) == math.floor(T * I_TIE / THETA)
assert spike_steps(s_gt) == [5, 9, 13, 17] and len(spike_steps(s_gt)) == math.ceil(T * I_TIE / THETA) - 1


def first_tie_and_divergence(current: float, steps: int) -> tuple[int | None, int | None]:
    """First step with U == theta (strict run) and first step where ">" and ">=" spike differently."""
    u, s = simulate(es.IF(THETA, reset="soft"), current, steps)
    _, s_eq = simulate(es.IF(THETA, reset="soft", strict=False), current, steps)
    ties, differ = np.flatnonzero(u == THETA), np.flatnonzero(s != s_eq)
    return (int(ties[0]) + 1 if ties.size else None), (int(differ[0]) + 1 if differ.size else None)


# 11/32 reaches a whole number of thresholds only at t = 32 > T; 0.3 is not dyadic.
for current in (0.25, 0.375, 11 / 32, 0.3):
    tie, divergence = first_tie_and_divergence(current, 30)
    assert tie == divergence, (current, tie, divergence)
    print(f"lesson 4: I = {current}: " + (
        f"U == theta first at step {tie}, and '>' and '>=' first differ at step {divergence}" if tie
        else "U never equals theta in 30 steps, and '>' and '>=' give the same spikes"))

fig, ax = plt.subplots(figsize=(9, 4.2), constrained_layout=True)
trace(ax, u_gt, s_gt, "strict: s = 1[U > theta] (Lee et al. 2020, default)", "tab:blue")
trace(ax, u_ge, s_ge, "s = 1[U >= theta] (strict=False)", "tab:orange")
ax.set_xticks(range(0, T + 1, 2))
ax.set_ylim(0, 1.6)  # headroom for the legend
ax.set_title(f"IF, soft reset, I = {I_TIE}: U hits theta exactly at t = 4; "
             f"'>=' fires {int(s_ge.sum())} times, '>' {int(s_gt.sum())} times")
legend(ax, loc="upper center", ncol=2)
fig.savefig(ARGS.out / "strict_vs_ge.png", dpi=110)
plt.close(fig)

# %% [markdown]
# ## Lesson 5: other frameworks' conventions
#
# Two options express conventions of other simulators (docs/semantics.md,
# "Neurons", and docs/conventions.md); their defaults give the equations
# above.
#
# `input_gain=g` multiplies the current: U[t] = lam * R + g * I[t]. With
# g = 1 - lam the leak is applied to the input, as in Norse, SpikingJelly's
# `decay_input` and forward-Euler NIR neurons; the geometric sum of lesson 3
# becomes
#
#     U[t] = (1 - lam) * I * (1 - lam^t) / (1 - lam) = I * (1 - lam^t)
#
# so a silent neuron tends to I itself, the fixed point of the continuous
# equation tau dU/dt = -U + I.
#
# `reset_delayed=True` applies the reset of a spike at step t at step t + 1,
# after the leak (snnTorch's `Leaky`):
#
#     soft:  U[t] = lam * U[t-1] + g * I[t] - theta * s[t-1]
#
# evaluated left to right, where the default soft reset leaks the
# subtraction too: U[t] = lam * (U[t-1] - theta * s[t-1]) + g * I[t]. After
# every spike the delayed neuron sits lower by theta * (1 - lam). With a hard
# reset to 0 the order does not matter (0 leaked is 0) and the two agree.

# %%
u_gain, s_gain = simulate(es.LIF(2.0, tau=TAU, input_gain=1 - lam), I_LEAK, T_LEAK)
assert s_gain.sum() == 0 and np.allclose(u_gain, I_LEAK * (1 - lam**t_leak), rtol=1e-12, atol=0)

I_DELAY, T_DELAY = 0.3, 25
u_now, s_now = simulate(es.LIF(THETA, tau=TAU, reset="soft"), I_DELAY, T_DELAY)
u_late, s_late = simulate(es.LIF(THETA, tau=TAU, reset="soft", reset_delayed=True), I_DELAY, T_DELAY)


def delayed_soft_reset(current: float, steps: int) -> np.ndarray:
    """U[t] = lam * U[t-1] + I - theta * s[t-1], left to right, written out from docs/semantics.md."""
    u, spiked, out = 0.0, 0.0, []
    for _ in range(steps):
        u = lam * u + current - THETA * spiked
        spiked = float(u > THETA)
        out.append(u)
    return np.array(out)


assert np.array_equal(u_late, delayed_soft_reset(I_DELAY, T_DELAY))  # the same operations, bit for bit
first = spike_steps(s_now)[0]
assert spike_steps(s_late)[0] == first
assert math.isclose(u_now[first] - u_late[first], THETA * (1 - lam), rel_tol=1e-12)
hard_now = simulate(es.LIF(THETA, tau=TAU), I_DELAY, T_DELAY)
hard_late = simulate(es.LIF(THETA, tau=TAU, reset_delayed=True), I_DELAY, T_DELAY)
assert all(np.array_equal(a, b) for a, b in zip(hard_now, hard_late))
print(f"lesson 5: input_gain = 1 - lam: U[t] = I (1 - lam^t) -> I = {I_LEAK}; reset_delayed (soft): "
      f"U lower by theta (1 - lam) = {THETA * (1 - lam):.4f} after the first spike, "
      f"{int(s_late.sum())} spikes against {int(s_now.sum())}; hard reset to 0: identical")

fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), constrained_layout=True)
ax = axes[0]
trace(ax, u_quiet, s_quiet, "input_gain = 1 (default): limit I / (1 - lam)", "tab:green", theta=2.0)
trace(ax, u_gain, s_gain, "input_gain = 1 - lam (leak on the input): limit I", "tab:brown", theta=2.0)
ax.axhline(I_LEAK, ls=":", color="tab:brown", lw=1.2)
ax.set_title(f"input_gain: LIF tau = {TAU:g}, I = {I_LEAK}, no spikes (theta = 2)")
legend(ax, loc="center right")
ax = axes[1]
trace(ax, u_now, s_now, "soft reset (default): lam (U - theta s) + I", "tab:blue")
trace(ax, u_late, s_late, "reset_delayed: lam U + I - theta s", "tab:orange")
ax.set_title(f"reset_delayed: LIF tau = {TAU:g}, soft reset, I = {I_DELAY}")
ax.set_ylim(0, 1.6)  # headroom for the legend
legend(ax, loc="upper center", ncol=2)
fig.savefig(ARGS.out / "conventions.png", dpi=110)
plt.close(fig)
print(f"figures written to {ARGS.out}")
