# %% [markdown]
# # Recurrent synaptic-current networks on an event stream
#
# The networks most frameworks train today on audio, touch and gesture
# streams keep more state than a membrane potential, feed their own spikes
# back, and let spikes travel for a while before they arrive. eventsim
# writes the three mechanisms as follows (docs/semantics.md, "State beyond
# the potential", "Recurrent connections", "Delays"), with t = 1..T:
#
#     J[t] = alpha * J[t-1] + h * I[t]                 synaptic current, J[0] = 0
#     U[t] = lam * R[t-1] + g * J[t]                   potential, R = U after the reset
#     s[t] = 1[U[t] > theta],  R[t] = U[t] (1 - s[t])  spike, hard reset to 0
#
#     I[t] = I_in[t] + W_rec s[t-1]                    recurrent connection, s[0] = 0
#     out[t, i] = in[t - d_i, i]                       delay of d_i steps
#
# A neuron with a synaptic current is a current-based LIF (NIR's `CubaLIF`,
# snnTorch's `Synaptic`, lava-dl's CUBA): an input spike charges the current
# J, the current charges the potential U, and the two leak at their own
# rates alpha and lam. A `Recurrent(neuron, connection)` block adds the
# layer's spikes of the step before to its input through a weight matrix.
# A `Delay(steps)` layer holds events back by a whole number of steps, one
# for the layer, per channel or per neuron.
#
# Each lesson below runs eventsim, recomputes the same numbers by hand from
# the equations (a few lines of NumPy, or a closed form derived in the text),
# and asserts that they agree. Lessons 1 and 2 use dyadic constants
# (alpha = 1/2, lam = 3/4), so every operation is exact in floating point
# and "equal" means bit for bit (docs/semantics.md, "Numerics"). Lessons 3
# to 5 run a recurrent CubaLIF network on N-MNIST recordings (Orchard et al.
# 2015) and train it with backpropagation through time.
#
# Run: `python examples/recurrent_synaptic.py [--out DIR] [--data DIR]`
# (figures in `eventsim-figures/recurrent_synaptic` by default; the data
# folder holds `NMNIST/Train/<digit>/*.bin` and `NMNIST/Test/...`; default:
# the `EVENTSIM_DATA` variable, then `~/.cache/eventsim`).

# %%
import argparse
import math
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import eventsim as es
from eventsim.datasets import NMNIST
from eventsim.encoders import direct
from eventsim.encoders.binning import bin_events
from eventsim.learning import BPTT, Adam, CrossEntropy, FastSigmoid, train_step

matplotlib.use("Agg")  # figures go to PNG files, never to a window


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Recurrent synaptic-current networks on an event stream.")
    parser.add_argument("--out", type=Path, default=Path("eventsim-figures/recurrent_synaptic"),
                        help="folder for the PNG figures (created)")
    parser.add_argument("--data", type=Path, default=None,
                        help="data folder holding NMNIST/ (default: EVENTSIM_DATA, then ~/.cache/eventsim)")
    # parse_known_args: a notebook kernel passes arguments of its own.
    return parser.parse_known_args()[0]


ARGS = parse()
ARGS.out.mkdir(parents=True, exist_ok=True)
F64 = np.float64  # every network here runs in float64, so the comparisons can be exact or tight

# One figure collects a panel per mechanism, each drawn beside its lesson.
overview, panels = plt.subplots(2, 2, figsize=(13, 9.2), constrained_layout=True)
(ax_state, ax_cascade), (ax_stream, ax_delay) = panels


# %% [markdown]
# ## The recursion by hand
#
# The function below is the whole neuron model of this example written out
# for a layer of N neurons, one step at a time: the recurrent current from
# the spikes of the step before, the synaptic current, the potential, the
# spike and the hard reset to 0, with the gains g = h = 1 (eventsim's
# defaults). `alpha=None` means no synaptic current (the potential
# integrates I itself). It is the reference every lesson compares eventsim
# against; nothing in it comes from eventsim.

# %%
def cuba_lif_by_hand(i_in: np.ndarray, *, lam: float, alpha: float | None, theta: float,
                     w_rec: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """J[t], U[t] and s[t] (arrays of shape (T, N)) from the feed-forward currents i_in (T, N)."""
    steps, n = i_in.shape
    j, r, s = np.zeros(n), np.zeros(n), np.zeros(n)
    out_j, out_u, out_s = np.zeros((steps, n)), np.zeros((steps, n)), np.zeros((steps, n))
    for t in range(steps):
        i = i_in[t] if w_rec is None else i_in[t] + w_rec @ s  # s is still s[t-1] here
        j = i if alpha is None else alpha * j + i
        u = lam * r + j
        s = (u > theta).astype(float)
        r = np.where(s > 0, 0.0, u)
        out_j[t], out_u[t], out_s[t] = j, u, s
    return out_j, out_u, out_s


def run_one_layer(layer: es.LIF | es.Recurrent, stream: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """eventsim's J, U and s of a network made of one neuron layer, on a dense (T, N) input stream."""
    neuron = layer.neuron if isinstance(layer, es.Recurrent) else layer
    net = es.Network([layer], input_shape=(stream.shape[1],), dtype=F64)
    result = net.run(es.Events.from_dense(stream[None].astype(F64)), record=("synaptic", "potentials", "spikes"))
    j = result.synaptic[neuron.name][0] if neuron.name in result.synaptic else None
    return j, result.potentials[neuron.name][0], result.spikes[neuron.name].to_dense()[0]


def steps_of(s: np.ndarray) -> list[int]:
    """The steps t (1-based) at which a single neuron's s[t] = 1."""
    return [int(t) + 1 for t in np.flatnonzero(s)]


# %% [markdown]
# ## Lesson 1: two state variables
#
# A neuron with a synaptic current (`LIF(..., synapse_leak=alpha)`) keeps
# J and U. Feed it a single unit spike at step t0 and nothing else, and
# leave the threshold at infinity so that it never fires. Then, n = t - t0
# steps later, J[t] = h alpha^n and U sums the leaked currents:
#
#     U[t] = g h (lam^n + lam^(n-1) alpha + ... + alpha^n)
#          = g h (lam^(n+1) - alpha^(n+1)) / (lam - alpha)          (lam != alpha)
#
# the difference of two exponentials: the response to a spike is no longer
# a jump that decays but a bump that keeps rising while the current still
# flows in. U rises from n to n + 1 as long as (lam / alpha)^(n+1) <
# (1 - alpha) / (1 - lam), so the peak comes at
#
#     n* = ceil(ln((1 - alpha) / (1 - lam)) / ln(lam / alpha)) - 1
#
# steps after the spike: n* = 1 for alpha = 1/2 and lam = 3/4, with
# U = 5/4 at the peak. The current sees the input of the same step (U jumps
# by g h at n = 0), as NIR's `CubaLIF` under forward Euler does.
#
# Under a constant current I from step 1, both sums are geometric:
#
#     J[t] = h I (1 - alpha^t) / (1 - alpha)
#     U[t] = g h I / (1 - alpha) * ((1 - lam^t) / (1 - lam) - alpha (lam^t - alpha^t) / (lam - alpha))
#
# and U tends to g h I / ((1 - alpha)(1 - lam)): with I = 1/4, J -> 1/2 and
# U -> 2. (The direct encoder repeats a value at every step: a constant
# current source.)

# %%
LAM, ALPHA = 0.75, 0.5  # dyadic: every product and sum below is exact in float64
T1, T0 = 16, 3  # steps, and the step of the single input spike


def psp(n: np.ndarray | int, lam: float = LAM, alpha: float | None = ALPHA) -> np.ndarray:
    """U, n steps after one unit input spike (g = h = 1): the closed forms of lesson 1."""
    n = np.asarray(n)
    return lam**n if alpha is None else (lam**(n + 1) - alpha**(n + 1)) / (lam - alpha)


one_spike = np.zeros((T1, 1))
one_spike[T0 - 1] = 1.0
j1, u1, _ = run_one_layer(es.LIF(np.inf, leak=LAM, synapse_leak=ALPHA), one_spike)
n = np.arange(T1 - T0 + 1)
assert np.all(j1[:T0 - 1] == 0) and np.all(u1[:T0 - 1] == 0)
assert np.array_equal(j1[T0 - 1:, 0], ALPHA**n)
assert np.allclose(u1[T0 - 1:, 0], psp(n), rtol=1e-14, atol=0)
peak = math.ceil(math.log((1 - ALPHA) / (1 - LAM)) / math.log(LAM / ALPHA)) - 1
assert peak == 1 and int(np.argmax(u1[:, 0])) + 1 == T0 + peak and u1.max() == 1.25
print(f"lesson 1: one spike at t = {T0}: J = alpha^n and U = (lam^(n+1) - alpha^(n+1)) / (lam - alpha); "
      f"U peaks {peak} step later at {u1.max()}")

I_CONST, T_CONST = 0.25, 40
below_threshold = es.LIF(np.inf, leak=LAM, synapse_leak=ALPHA)
const_net = es.Network([below_threshold], input_shape=(1,), dtype=F64)
const = const_net.run(direct(np.array([[I_CONST]]), T_CONST, dtype=F64), record=("synaptic", "potentials"))
j_c, u_c = const.synaptic[below_threshold.name][0, :, 0], const.potentials[below_threshold.name][0, :, 0]
t = np.arange(1, T_CONST + 1)
j_closed = I_CONST * (1 - ALPHA**t) / (1 - ALPHA)
u_closed = I_CONST / (1 - ALPHA) * ((1 - LAM**t) / (1 - LAM) - ALPHA * (LAM**t - ALPHA**t) / (LAM - ALPHA))
assert np.allclose(j_c, j_closed, rtol=1e-14, atol=0) and np.allclose(u_c, u_closed, rtol=1e-14, atol=0)
assert abs(u_c[-1] - I_CONST / ((1 - ALPHA) * (1 - LAM))) < 1e-3  # the fixed point, U -> 2
print(f"lesson 1: constant I = {I_CONST}: J and U follow their closed forms to 1e-14 over {T_CONST} steps; "
      f"U[{T_CONST}] = {u_c[-1]:.6f} -> {I_CONST / ((1 - ALPHA) * (1 - LAM)):g}")

# %% [markdown]
# Now a neuron that fires (theta = 3/2) on three input spikes in a row and
# one later. The reset empties the potential, not the current: at the step
# after a spike R = 0, so U = g J, and the current that is still flowing in
# fires the neuron again at step 5. The lone input spike at step 12 fires
# it one step later, at 13, the peak of its response (n* = 1): a synaptic
# current delays the spike it causes. eventsim's J, U and s equal the
# recursion by hand bit for bit.

# %%
THETA1 = 1.5
burst = np.zeros((T1, 1))
burst[[2, 3, 4, 11], 0] = 1.0  # input spikes at steps 3, 4, 5 and 12
j_b, u_b, s_b = run_one_layer(es.LIF(THETA1, leak=LAM, synapse_leak=ALPHA), burst)
hand = cuba_lif_by_hand(burst, lam=LAM, alpha=ALPHA, theta=THETA1)
assert all(np.array_equal(a, b) for a, b in zip((j_b, u_b, s_b), hand))
fired = steps_of(s_b[:, 0])
assert fired == [4, 5, 13]
assert u_b[fired[0], 0] == j_b[fired[0], 0]  # the step after the first spike: U = J
print(f"lesson 1: input spikes at 3, 4, 5, 12 -> output spikes at {fired} (U = J after the reset at 4); "
      f"J, U and s equal the recursion by hand bit for bit")

steps1 = np.arange(1, T1 + 1)
ax_state.step(steps1, j_b[:, 0], where="mid", color="tab:orange", lw=1.8, label="synaptic current J[t]")
ax_state.plot(steps1, u_b[:, 0], "o-", ms=4, color="tab:blue", lw=1.4, label="potential U[t]")
ax_state.plot(fired, u_b[np.array(fired) - 1, 0], "^", ms=10, color="tab:blue", markeredgecolor="black",
              label="output spike")
ax_state.axhline(THETA1, ls="--", color="0.4", lw=1, label=f"threshold theta = {THETA1:g}")
ax_state.vlines(np.flatnonzero(burst[:, 0]) + 1, -0.35, -0.1, color="black", lw=2, label="input spike")
ax_state.set_xlabel("time step t")
ax_state.set_ylabel("threshold units")
ax_state.set_xticks(steps1)
ax_state.set_ylim(-0.4, 2.7)
ax_state.legend(fontsize=8, loc="upper right")
ax_state.set_title("Lesson 1: two state variables (alpha = 1/2, lam = 3/4)\n"
                   "J[t] = alpha J[t-1] + h I[t],   U[t] = lam R[t-1] + g J[t]", fontsize=10)
ax_state.grid(alpha=0.3)

# %% [markdown]
# ## Lesson 2: the recurrent cascade
#
# A ring of N = 8 neurons, each connected to the next by a recurrent weight
# w (W_rec[k+1, k] = w, neuron N-1 back to neuron 0), no feed-forward input
# except one seeded spike: 3/2 into neuron 0 at step 1, which fires it. A
# spike at step t reaches the next neuron as a current at step t + 1
# (s[t-1] in the equation), n = 0 steps into its response U = w psp(n) of
# lesson 1. It fires after n* more steps, the first n with w psp(n) > theta,
# if there is one. So the spike travels around the ring one neuron every
# hop = 1 + n* steps, neuron k firing at
#
#     t = 1 + hop k + hop N m,       m = 0, 1, 2, ...
#
# (as long as a neuron has forgotten the wave's previous passage, hop N
# steps earlier, by the time it returns: lam^8 < 0.11 here, and the hard
# reset has already emptied its potential).
#
# Three rings with lam = 3/4 and theta = 1:
#
# - LIF, w = 3/2: psp(0) = 1, w > theta at once, n* = 0: one neuron per step;
# - LIF, w = 7/8: w lam^n never exceeds theta: the wave dies after the seed;
# - CubaLIF (alpha = 1/2), w = 7/8: the same weak weight, but the current
#   keeps charging the potential, w psp(1) = 7/8 * 5/4 > 1: n* = 1, the wave
#   travels, one neuron every two steps.

# %%
N_RING, T2, THETA2 = 8, 40, 1.0


def ring(weight: float) -> np.ndarray:
    """Recurrent weights of a ring: neuron k excites neuron k+1 (mod N) with ``weight``."""
    return weight * np.roll(np.eye(N_RING), 1, axis=0)


def cascade(weight: float, alpha: float | None) -> np.ndarray:
    """eventsim's spikes (T, N) of the ring seeded at neuron 0, checked against the recursion by hand."""
    connection = es.Linear(N_RING, N_RING)
    connection.weight = ring(weight)
    neuron = es.LIF(THETA2, leak=LAM, synapse_leak=alpha)
    seed = np.zeros((T2, N_RING))
    seed[0, 0] = 1.5
    j, u, s = run_one_layer(es.Recurrent(neuron, connection), seed)
    hand_j, hand_u, hand_s = cuba_lif_by_hand(seed, lam=LAM, alpha=alpha, theta=THETA2, w_rec=ring(weight))
    assert np.array_equal(u, hand_u) and np.array_equal(s, hand_s)
    assert alpha is None or np.array_equal(j, hand_j)
    return s


def hop(weight: float, alpha: float | None) -> int | None:
    """Steps per neuron of the travelling spike: 1 + the first n with w psp(n) > theta (None: it dies)."""
    n = np.arange(64)
    crossing = np.flatnonzero(weight * psp(n, alpha=alpha) > THETA2)
    return 1 + int(crossing[0]) if crossing.size else None


def closed_form_cascade(steps_per_neuron: int | None) -> np.ndarray:
    """s[t, k] = 1 at t = 1 + hop k + hop N m (the seed alone when the wave dies)."""
    s = np.zeros((T2, N_RING))
    s[0, 0] = 1.0
    if steps_per_neuron is not None:
        for t in range(1, T2 + 1):
            k, rest = divmod((t - 1) % (steps_per_neuron * N_RING), steps_per_neuron)
            s[t - 1, k] = 1.0 if rest == 0 else 0.0
    return s


rings = {"LIF, w = 3/2": (1.5, None), "LIF, w = 7/8": (0.875, None), "CubaLIF, w = 7/8": (0.875, ALPHA)}
raster = {}
for label, (weight, alpha) in rings.items():
    raster[label] = cascade(weight, alpha)
    assert np.array_equal(raster[label], closed_form_cascade(hop(weight, alpha))), label
    travel = f"one neuron every {hop(weight, alpha)} step(s)" if hop(weight, alpha) else "the wave dies"
    print(f"lesson 2: ring of {N_RING}, {label}: {travel}, {int(raster[label].sum())} spikes in {T2} steps "
          f"(eventsim = recursion by hand = closed form)")
assert [hop(w, a) for w, a in rings.values()] == [1, None, 2]

for (label, s), color, marker, offset in zip(raster.items(), ("tab:blue", "tab:gray", "tab:orange"),
                                             ("s", "x", "o"), (-0.22, 0.0, 0.22)):
    t_idx, k_idx = np.nonzero(s)
    ax_cascade.plot(t_idx + 1, k_idx + offset, marker, ms=5, color=color, ls="none",
                    label=f"{label}: hop = {hop(*rings[label]) or 'none, the wave dies'}")
ax_cascade.set_xlabel("time step t")
ax_cascade.set_ylabel("neuron k of the ring")
ax_cascade.set_yticks(range(N_RING))
ax_cascade.set_ylim(-0.6, N_RING + 1.4)  # headroom for the legend
ax_cascade.legend(fontsize=8, loc="upper center", ncol=2)
ax_cascade.set_title("Lesson 2: the recurrent cascade: one seeded spike, no other input\n"
                     "I[t] = I_in[t] + W_rec s[t-1],   W_rec[k+1, k] = w", fontsize=10)
ax_cascade.grid(alpha=0.3)

# %% [markdown]
# ## Lesson 3: a recurrent CubaLIF network on an event stream
#
# An N-MNIST recording (34 x 34 pixels, two polarities) binned into T = 30
# steps of 10 ms (docs/semantics.md, "Events"), into a network of the usual
# recurrent shape (one recurrent layer between an input and an output
# synapse):
#
#     Flatten -> Linear(2312, 64) -> Recurrent(CubaLIF(64), Linear(64, 64)) -> Linear(64, 10) -> Readout
#
# with tau_mem = 10 and tau_syn = 5 steps (lam = exp(-1/10), alpha =
# exp(-1/5)), theta = 1, and weights drawn N(0, 2 / fan_in) (Lee et al.
# 2020). The run records the recurrent layer's currents I, synaptic
# currents J, potentials U and spikes. Two checks rebuild them from the
# equations:
#
# - the currents are the feed-forward synapse's sum over this step's input
#   events plus the recurrent synapse's sum over the layer's own spikes of
#   the step before, I[t] = W_in x[t] + W_rec s[t-1], to rounding (the
#   event path adds the same products in event order, NumPy in its own);
# - fed those currents, the recursion by hand gives the same J, U and s bit
#   for bit.

# %%
T, STEP_US, HIDDEN, CLASSES = 30, 10_000, 64, 10
TAU_MEM, TAU_SYN = 10.0, 5.0
SENSOR_SIZE = 2 * NMNIST.sensor[0] * NMNIST.sensor[1]


def binned(recording: np.ndarray) -> es.Events:
    """One recording as T binary steps of STEP_US from its start, shape (2, 34, 34)."""
    return bin_events(recording, sensor=NMNIST.sensor, steps=T, step_us=STEP_US, start_us=0, dtype=F64)


weight_rng = np.random.default_rng(0)
WEIGHTS = {  # (out, in), N(0, 2 / fan_in)
    "in": weight_rng.normal(0, math.sqrt(2 / SENSOR_SIZE), (HIDDEN, SENSOR_SIZE)),
    "rec": weight_rng.normal(0, math.sqrt(2 / HIDDEN), (HIDDEN, HIDDEN)),
    "out": weight_rng.normal(0, math.sqrt(2 / HIDDEN), (CLASSES, HIDDEN)),
}


def recurrent_network(delay: int | None = None) -> tuple[es.Network, es.Recurrent]:
    """The network above (a Delay of ``delay`` steps first, if given), with the weights of WEIGHTS."""
    feed, rec_connection, out = es.Linear(SENSOR_SIZE, HIDDEN), es.Linear(HIDDEN, HIDDEN), es.Linear(HIDDEN, CLASSES)
    for layer, key in ((feed, "in"), (rec_connection, "rec"), (out, "out")):
        layer.weight = WEIGHTS[key].copy()
    block = es.Recurrent(es.LIF(1.0, leak=math.exp(-1 / TAU_MEM), synapse_leak=math.exp(-1 / TAU_SYN)),
                         rec_connection)
    layers = [es.Flatten(), feed, block, out, es.Readout()]
    if delay is not None:
        layers.insert(0, es.Delay(delay))
    return es.Network(layers, input_shape=(2, *NMNIST.sensor), dtype=F64), block


train_set = NMNIST(ARGS.data, split="train")
recording, digit = train_set[0]
stream = binned(recording)
net, block = recurrent_network()
name = block.neuron.name
run = net.run(stream, record=("currents", "synaptic", "potentials", "spikes"))
i_rec, j_rec, u_rec = (getattr(run, what)[name][0] for what in ("currents", "synaptic", "potentials"))
s_rec = run.spikes[name].to_dense()[0]

x = stream.to_dense()[0].reshape(T, SENSOR_SIZE)
s_before = np.vstack([np.zeros((1, HIDDEN)), s_rec[:-1]])  # s[t-1], with s[0] = 0
assert np.allclose(i_rec, x @ WEIGHTS["in"].T + s_before @ WEIGHTS["rec"].T, rtol=1e-12, atol=1e-12)
hand = cuba_lif_by_hand(i_rec, lam=math.exp(-1 / TAU_MEM), alpha=math.exp(-1 / TAU_SYN), theta=1.0)
assert all(np.array_equal(a, b) for a, b in zip((j_rec, u_rec, s_rec), hand))
assert s_rec.sum() > 0 and np.any(s_before @ WEIGHTS["rec"].T != 0)  # the recurrence carries current
print(f"lesson 3: N-MNIST sample 0 (digit {digit}, {stream.n_events} input events in {T} steps): "
      f"{int(s_rec.sum())} spikes in the recurrent layer; I = W_in x + W_rec s[t-1] to 1e-12, "
      f"J, U and s equal the recursion by hand bit for bit")

spike_t, spike_k = np.nonzero(s_rec)
ax_stream.plot(spike_t + 1, spike_k, "|", ms=7, mew=1.5, color="tab:blue")
ax_stream.set_xlabel("time step t (10 ms each)")
ax_stream.set_ylabel("recurrent CubaLIF neuron")
ax_stream.set_xlim(0.5, T + 0.5)
ax_stream.set_title(f"Lesson 3: the recurrent layer on an N-MNIST recording (digit {digit}): "
                    f"{int(s_rec.sum())} spikes\n"
                    "J = alpha J + h (W_in x[t] + W_rec s[t-1]),   U = lam R + g J", fontsize=10)
ax_stream.grid(alpha=0.3)

# %% [markdown]
# ## Lesson 4: delays
#
# A `Delay` moves every event d_i steps later, `out[t, i] = in[t - d_i, i]`,
# and drops what would land at a step >= T. Given per channel, the ON
# events (channel 1) of the recording are held back 4 steps and the OFF
# events (channel 0) pass unchanged; given per neuron, every pixel gets its
# own delay. Both outputs equal the input shifted by NumPy, and the events
# dropped are exactly those of the last d_i steps.
#
# A delay before a network is the same network a few steps later: with a
# Delay of 3 steps in front, the recurrent network's potentials are 0 for
# the first 3 steps and then equal those of lesson 3, U_delayed[t] =
# U[t - 3] (the last 3 steps of the input never arrive).
#
# Delays also tell two conventions apart. eventsim's synaptic current sees
# the input of the same step (lesson 1), as NIR's Euler step, snnTorch's
# `Synaptic` and Norse 1.1's `LIF` do. A simulator that updates the
# potential with the current of the step before and only then lets the
# current take the input, `v = lam v + g i; i = alpha i + h I` in product
# form, computes eventsim's CubaLIF with a Delay of one step in front.

# %%
def shifted(dense: np.ndarray, delays: np.ndarray) -> np.ndarray:
    """out[t, i] = dense[t - d_i, i] for t >= d_i, 0 before; dense is (T, N), one delay per neuron."""
    out = np.zeros_like(dense)
    for d in np.unique(delays):
        cols = delays == d
        out[d:, cols] = dense[:dense.shape[0] - d, cols]
    return out


def delayed_stream(delay: es.Delay) -> np.ndarray:
    """eventsim's output (T, N) of a Delay layer on the stream."""
    delay_net = es.Network([delay], input_shape=(2, *NMNIST.sensor), dtype=F64)
    return delay_net.run(stream, record=("spikes",)).spikes[delay.name].to_dense()[0].reshape(T, SENSOR_SIZE)


PER_CHANNEL = np.array([0, 4])  # OFF events on time, ON events 4 steps late
per_pixel = np.repeat(PER_CHANNEL, SENSOR_SIZE // 2)
by_channel = delayed_stream(es.Delay(PER_CHANNEL))
assert np.array_equal(by_channel, shifted(x, per_pixel))
assert x.sum() - by_channel.sum() == x[T - PER_CHANNEL[1]:, SENSOR_SIZE // 2:].sum()  # the ON events of the last 4 steps
per_neuron = np.random.default_rng(1).integers(0, 8, size=(2, *NMNIST.sensor))
assert np.array_equal(delayed_stream(es.Delay(per_neuron)), shifted(x, per_neuron.reshape(-1)))
print(f"lesson 4: per-channel delays {PER_CHANNEL.tolist()} and per-pixel delays 0..7: output = input shifted; "
      f"{int(x.sum() - by_channel.sum())} ON events pushed past T dropped")

D = 3
late_net, late_block = recurrent_network(delay=D)
u_late = late_net.run(stream, record=("potentials",)).potentials[late_block.neuron.name][0]
assert np.all(u_late[:D] == 0) and np.array_equal(u_late[D:], u_rec[:T - D])
print(f"lesson 4: a Delay of {D} before the network: U_delayed[t] = U[t - {D}] bit for bit")

current_late = es.LIF(np.inf, leak=LAM, synapse_leak=ALPHA)
late_current_net = es.Network([es.Delay(1), current_late], input_shape=(1,), dtype=F64)
u_late_current = late_current_net.run(es.Events.from_dense(burst[None]),
                                      record=("potentials",)).potentials[current_late.name][0, :, 0]
v, i_syn, by_hand = 0.0, 0.0, []
for current in burst[:, 0]:
    v = LAM * v + i_syn  # the potential takes the current of the step before (g = 1) ...
    i_syn = ALPHA * i_syn + current  # ... then the current takes this step's input (h = 1)
    by_hand.append(v)
assert np.array_equal(u_late_current, np.array(by_hand))
print("lesson 4: potential first, then current = CubaLIF after a Delay of 1, bit for bit")

# The raster: the 12 busiest pixels of each polarity, input and delayed.
busiest = np.concatenate([np.argsort(-x[:, :SENSOR_SIZE // 2].sum(0), kind="stable")[:12],
                          SENSOR_SIZE // 2 + np.argsort(-x[:, SENSOR_SIZE // 2:].sum(0), kind="stable")[:12]])
for row, pixel in enumerate(busiest):
    t_in, t_out = np.flatnonzero(x[:, pixel]) + 1, np.flatnonzero(by_channel[:, pixel]) + 1
    color = "tab:blue" if pixel < SENSOR_SIZE // 2 else "tab:red"
    ax_delay.plot(t_in, np.full(t_in.size, row), "o", mfc="none", ms=7, color="0.55",
                  label="input event" if row == 0 else None)
    ax_delay.plot(t_out, np.full(t_out.size, row), "o", ms=3.5, color=color,
                  label=("OFF, d = 0" if pixel < SENSOR_SIZE // 2 else "ON, d = 4") if row in (0, 12) else None)
ax_delay.axhline(11.5, color="0.4", lw=0.8)
ax_delay.set_xlabel("time step t (10 ms each)")
ax_delay.set_ylabel("busiest pixels (OFF below, ON above)")
ax_delay.set_xlim(0.5, T + 0.5)
ax_delay.set_ylim(-0.8, 27.5)  # headroom for the legend
ax_delay.legend(fontsize=8, loc="upper center", ncol=3)
ax_delay.set_title("Lesson 4: a delay per channel on the same recording\n"
                   "out[t, i] = in[t - d_i, i],   d = (0, 4) for (OFF, ON)", fontsize=10)
ax_delay.grid(alpha=0.3)
overview.suptitle("Recurrent synaptic-current networks: each mechanism next to its equation")
overview.savefig(ARGS.out / "recurrent_synaptic.png", dpi=100)
plt.close(overview)

# %% [markdown]
# ## Lesson 5: learning through the recurrence
#
# The `bptt` rule differentiates the same recursion backwards in time
# (docs/semantics.md, "bptt"). The recurrent weight enters the current of
# step t + 1 through the spikes of step t, so its gradient is
#
#     dL/dW_rec = sum_t D[t+1] s[t]^T            (D: dL/dI, per neuron and step)
#
# A column j of it collects what neuron j's spikes did at the next step: a
# neuron that fired at no step before T (silent, or firing only at the last
# step, whose spikes reach no next step) gets exactly zero there, whatever
# the loss. Only spiking neurons scatter, forwards and backwards. On the
# recording of lesson 3 a third of the recurrent neurons stay silent, and
# their columns are zero.
#
# Then 4 epochs of Adam on 300 training recordings (30 per digit, batches
# of 50), cross-entropy on the readout, fast-sigmoid surrogate: the loss
# falls, and the 100 test recordings are classified well above chance
# (10 %). (With 300 recordings this is a lesson, not a benchmark: see
# training_on_cpu.py for a trained model.)

# %%
PER_DIGIT, BATCH, EPOCHS = 30, 50, 4
train_ids = [int(np.flatnonzero(train_set.labels == d)[k]) for k in range(PER_DIGIT) for d in range(CLASSES)]
train_events = es.Events.concat([binned(train_set[i][0]) for i in train_ids])
train_labels = train_set.labels[train_ids]
test_set = NMNIST(ARGS.data, split="test")
test_events = es.Events.concat([binned(test_set[i][0]) for i in range(len(test_set))])

rule, loss = BPTT(surrogate=FastSigmoid()), CrossEntropy()
result = net.run(stream, record=rule.records)
_, grad_output = loss(net, result, np.array([digit]))
g_rec = rule.gradients(net, stream, result, grad_output)[f"{block.connection.name}.weight"]
fired_before_last = s_rec[:-1].any(axis=0)  # the spikes of lesson 3: the same network, the same recording
assert not fired_before_last.all(), "the lesson needs neurons that stay silent"
assert np.all(g_rec[:, ~fired_before_last] == 0) and np.all(np.any(g_rec[:, fired_before_last] != 0, axis=0))
print(f"lesson 5: dL/dW_rec on the recording of lesson 3: the {int((~fired_before_last).sum())} columns of neurons "
      f"that fired at no step before T are exactly 0, the other {int(fired_before_last.sum())} are not")

optimizer, step_rng, losses = Adam(1e-3), np.random.default_rng(1), []
for epoch in range(EPOCHS):
    order = np.random.default_rng(100 + epoch).permutation(train_events.batch)
    for start in range(0, train_events.batch, BATCH):
        pick = order[start:start + BATCH]
        batch = es.Events.concat([train_events.sample(int(b)) for b in pick])
        losses.append(train_step(net, rule, loss, optimizer, batch, train_labels[pick], lr=3e-3, rng=step_rng).loss)
per_epoch = np.array(losses).reshape(EPOCHS, -1).mean(axis=1)
accuracy = float(np.mean(np.argmax(net.run(test_events).output, axis=1) == test_set.labels))
print(f"lesson 5: loss per epoch {np.round(per_epoch, 3).tolist()}; test accuracy {accuracy:.0%} "
      f"on the {len(test_set)} test recordings (chance: 10 %)")
assert per_epoch[-1] < 0.75 * per_epoch[0] and accuracy >= 0.4

fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.4), constrained_layout=True)
column = np.abs(g_rec).sum(axis=0)  # sum_i |dL/dW_rec[i, j]|, per presynaptic neuron j
left.bar(np.arange(HIDDEN), column, color="tab:purple", width=0.8, label="fired before T")
silent = np.flatnonzero(~fired_before_last)
left.plot(silent, column[silent], "x", color="tab:cyan", ms=8, mew=2,
          label=f"fired at no step before T ({silent.size}): exactly 0")
left.set_xlabel("presynaptic neuron j of the recurrent layer")
left.set_ylabel("sum_i |dL/dW_rec[i, j]|")
left.set_title("dL/dW_rec = sum_t D[t+1] s[t]^T on one recording: silent neurons get no gradient", fontsize=10)
left.legend(fontsize=8)
right.plot(np.arange(1, len(losses) + 1), losses, "o-", ms=3)
right.set_xlabel(f"training step (batch of {BATCH}, {train_events.batch // BATCH} per epoch)")
right.set_ylabel("cross-entropy loss")
right.set_title(f"bptt through the recurrence: test accuracy {accuracy:.0%} after {EPOCHS} epochs", fontsize=10)
right.grid(alpha=0.3)
fig.savefig(ARGS.out / "learning_through_recurrence.png", dpi=100)
plt.close(fig)
print(f"figures written to {ARGS.out}")
