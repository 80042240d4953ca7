"""The dense twin's neuron state record and step (docs/semantics.md, "State beyond the potential").

Independent references for :func:`eventsim.dense.neuron_step` and the
records of :func:`eventsim.dense.run_dense`:

- exact rational arithmetic: steps 1-5 of the semantics, each operation in
  :class:`fractions.Fraction` rounded to the dtype by the IEEE 754 rounding
  written in tests/test_dense_forms.py (not by NumPy); with every option at
  its default this is the table of "Arithmetic forms" the twin computed
  before the state options existed, so the defaults are held to it;
- other frameworks' own code, skipped when they are not installed:
  snnTorch's ``Synaptic`` (synaptic current with the delayed soft reset),
  Norse's ``lif_feed_forward_step`` with a nonzero ``v_leak`` (the "euler"
  form with a rest potential) and SpikingJelly's ``LIFNode`` with a nonzero
  ``v_reset`` (the divide forms with a rest potential);
- hand-computed records of small networks.

Bad options are refused in one line naming the option; a NaN potential
passes the clamp as NaN.
"""

from fractions import Fraction
from math import ceil, floor
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import eventsim as es
from eventsim.dense import NeuronState, initial_state, neuron_step, run_dense
from eventsim.errors import LayerError, OptionError
from eventsim.testing.strategies import DTYPES
from test_dense_forms import exact_form, rounded

FORMS = ("product", "euler", "euler-divide", "subtract-divide")
LEAKS = (0.5, 0.75, 0.9, 1 - 1 / 3, float(np.exp(-1 / 20)), 0.3, 0.0)


# ============================================================ exact reference
def exact_step(r: float, j: float | None, i: float, *, form: str, leak: float, gain: float,
               alpha: float | None, h: float, v_rest: float, theta: float, strict: bool, max_spikes: int | None,
               reset: str, v_reset: float, v_min: float, dtype) -> tuple[Fraction, Fraction | None, Fraction, int]:
    """Steps 1-5 of the semantics for one neuron, every operation rounded once; returns ``(R, J, U, n)``."""

    def op(x: Fraction) -> Fraction:
        return rounded(x, dtype)

    def const(x: float) -> Fraction:  # a float64 option rounded once to the dtype
        return op(Fraction(float(x)))

    R, I = Fraction(float(r)), Fraction(float(i))
    J = None
    if alpha is not None:  # 1. a = alpha J, b = h I (I when h = 1), J = a + b
        b = I if const(h) == 1 else op(const(h) * I)
        J = op(op(const(alpha) * Fraction(float(j))) + b)
    X = I if J is None else J
    v = const(v_rest)  # 2. the form, the (rest) operations only when v_rest != 0
    one_minus = rounded(1 - Fraction(leak), np.float64)  # 1.0 - leak in float64
    if form == "product":
        a = op(const(leak) * (op(R - v) if v else R))
        U = op((op(v + a) if v else a) + op(const(gain) * X))
    elif form == "euler":
        a = op(op(v - R) + X) if v else op(X - R)
        U = op(R + op(op(one_minus) * a))
    else:
        d = op(rounded(1 / one_minus, np.float64))
        p = op(R - v) if v else R
        U = op(R + op(op(X - p) / d)) if form == "euler-divide" else op(op(R - op(p / d)) + X)
    th = const(theta)  # 3. spikes
    n = 0
    if (U > th) if strict else (U >= th):
        if max_spikes == 1:
            n = 1
        else:
            q = op(U / th)
            n = max(1, ceil(q) - 1) if strict else floor(q)
            n = n if max_spikes is None else min(max_spikes, n)
    if n:  # 4. reset
        R = const(v_reset) if reset == "hard" else op(U - (th if max_spikes == 1 else op(n * th)))
    else:
        R = U
    if v_min != -np.inf and R < const(v_min):  # 5. clamp
        R = const(v_min)
    return R, J, U, n


@given(dtype=DTYPES, form=st.sampled_from(FORMS), leak=st.sampled_from(LEAKS + (1.0,)),
       gain=st.sampled_from([1.0, 0.5, 0.3]), alpha=st.sampled_from([None, 0.0, 0.5, 0.8, 1.0, float(np.exp(-1 / 5))]),
       h=st.sampled_from([1.0, 0.25, 0.7]), v_rest=st.one_of(st.just(0.0), st.floats(-2, 2)),
       theta=st.sampled_from([0.25, 0.7, 1.0, 1.5]), strict=st.booleans(),
       max_spikes=st.sampled_from([1, 2, 3, None]), reset=st.sampled_from(["hard", "soft"]),
       v_reset=st.sampled_from([0.0, -0.5, 0.3]), v_min=st.sampled_from([-np.inf, -1.0, -0.25, 0.0]),
       seed=st.integers(0, 2**32 - 1))
def test_one_step_is_the_semantics_operation_by_operation(dtype, form, leak, gain, alpha, h, v_rest, theta, strict,
                                                          max_spikes, reset, v_reset, v_min, seed):
    assume(form == "product" or leak < 1.0)
    if reset == "soft":
        v_reset = 0.0
    gain = gain if form == "product" else None
    rng = np.random.default_rng(seed)
    r, j, i = (rng.normal(0.3, 2.0, size=(1, 24)).astype(dtype) for _ in range(3))
    state = NeuronState(r, None if alpha is None else j, np.zeros_like(r))
    got, u = neuron_step(state, i, threshold=theta, leak=leak, reset=reset, v_reset=v_reset, strict=strict,
                         input_gain=gain, arithmetic=form, synapse_leak=alpha, synapse_gain=h, v_rest=v_rest,
                         v_min=v_min, max_spikes=max_spikes)
    g = {"product": gain, "euler": None, "euler-divide": None, "subtract-divide": 1.0}[form]
    for k in range(r.shape[1]):
        want_r, want_j, want_u, want_n = exact_step(
            r[0, k], j[0, k], i[0, k], form=form, leak=leak, gain=g if g is not None else 1.0 - leak, alpha=alpha,
            h=h, v_rest=v_rest, theta=theta, strict=strict, max_spikes=max_spikes, reset=reset, v_reset=v_reset,
            v_min=v_min, dtype=dtype)
        where = f"neuron {k}"
        assert Fraction(float(u[0, k])) == want_u, where
        assert got.spikes[0, k] == want_n, where
        assert Fraction(float(got.potential[0, k])) == want_r, where
        if alpha is not None:
            assert Fraction(float(got.synaptic[0, k])) == want_j, where
    assert got.synaptic is None if alpha is None else got.synaptic.dtype == dtype
    assert u.dtype == got.potential.dtype == got.spikes.dtype == dtype


@given(dtype=DTYPES, form=st.sampled_from(FORMS), leak=st.sampled_from(LEAKS), reset=st.sampled_from(["hard", "soft"]),
       theta=st.sampled_from([0.5, 1.0, 2.5]), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 12))
def test_the_defaults_compute_the_arithmetic_forms_table_as_before(dtype, form, leak, reset, theta, seed, steps):
    # Every state option at its default: R[0] = 0, no J, one spike, the reset of "Arithmetic forms", no clamp.
    # The reference is test_dense_forms' exact form (the table without rest) with the reset written here.
    gain = 1.0 - leak if form != "subtract-divide" else 1.0
    currents = np.random.default_rng(seed).normal(0.5, 1.0, size=(steps, 1, 8)).astype(dtype)
    state = initial_state((1, 8), dtype)
    want_r = [Fraction(0)] * 8
    for t in range(steps):
        state, u = neuron_step(state, currents[t], threshold=theta, leak=leak, reset=reset, arithmetic=form,
                               input_gain=gain if form == "product" else None)
        for k in range(8):
            want_u = Fraction(exact_form(form, float(want_r[k]), float(currents[t, 0, k]), leak, gain, dtype))
            fired = want_u > rounded(Fraction(theta), dtype)
            assert Fraction(float(u[0, k])) == want_u, (t, k)
            assert state.spikes[0, k] == fired, (t, k)
            want_r[k] = (0 if reset == "hard" else rounded(want_u - rounded(Fraction(theta), dtype), dtype)) \
                if fired else want_u
        assert state.synaptic is None


def test_the_initial_state_holds_v_init_and_no_current():
    state = initial_state((2, 3), np.float32, v_init=-0.1, synaptic=True)
    np.testing.assert_array_equal(state.potential, np.full((2, 3), np.float32(-0.1)))
    assert state.potential.dtype == state.synaptic.dtype == state.spikes.dtype == np.float32
    assert not state.synaptic.any() and not state.spikes.any()
    assert initial_state((1,), np.float64).synaptic is None


@pytest.mark.parametrize("u, strict, bound, count", [
    (2.5, True, None, 2), (2.5, False, None, 2),    # ceil(2.5) - 1 = floor(2.5) = 2
    (3.0, True, None, 2), (3.0, False, None, 3),    # a whole multiple: > needs more than 3 theta for 3
    (1.0, True, None, 0), (1.0, False, None, 1),    # at theta: > does not fire, >= fires once
    (1.0 + 2**-52, True, None, 1),                  # just above theta: one spike
    (9.5, False, 4, 4), (9.5, True, 1, 1),          # the bound
    (-3.0, False, None, 0),
])
def test_the_spike_count_by_hand(u, strict, bound, count):
    # theta = 1, IF from R = u with no input: U = u; soft reset leaves u - n.
    state = NeuronState(np.array([[u]]), None, np.zeros((1, 1)))
    got, _ = neuron_step(state, np.zeros((1, 1)), threshold=1.0, leak=1.0, reset="soft", strict=strict,
                         max_spikes=bound)
    assert got.spikes[0, 0] == count
    assert got.potential[0, 0] == (u - count if count else u)


# ============================================================ other frameworks
@given(alpha=st.sampled_from([0.5, 0.8, float(np.exp(-1 / 5)), 0.95]), beta=st.sampled_from([0.5, 0.9, 0.875, 0.99]),
       theta=st.sampled_from([0.5, 1.0, 1.5]), seed=st.integers(0, 2**32 - 1), steps=st.integers(10, 25))
def test_synaptic_current_with_delayed_soft_reset_is_snntorch_synaptic(alpha, beta, theta, seed, steps):
    # snnTorch's Synaptic: syn = alpha syn + x; mem = beta mem + syn - reset theta, reset from the previous mem.
    torch = pytest.importorskip("torch")
    snn = pytest.importorskip("snntorch")
    currents = np.random.default_rng(seed).normal(0.3, 0.8, size=(1, steps, 16)).astype(np.float32)
    neuron = es.LIF(theta, leak=beta, reset="soft", reset_delayed=True, synapse_leak=alpha)
    r = run_dense(es.Network([neuron], (16,)), currents)
    cell = snn.Synaptic(alpha=alpha, beta=beta, threshold=theta, reset_mechanism="subtract")
    syn, mem = cell.init_synaptic()
    with torch.no_grad():
        for t in range(steps):
            spk, syn, mem = cell(torch.from_numpy(currents[0, t]), syn, mem)
            np.testing.assert_array_equal(r.outputs["lif1"][0, t], spk.numpy(), err_msg=f"spikes at step {t}")
            np.testing.assert_array_equal(r.synaptic["lif1"][0, t], syn.numpy(), err_msg=f"current at step {t}")
            np.testing.assert_array_equal(r.potentials["lif1"][0, t], mem.numpy(), err_msg=f"potential at step {t}")
    assert r.outputs["lif1"].any()


@given(dtype=DTYPES, leak=st.sampled_from(LEAKS[:-1]), v_leak=st.sampled_from([-0.5, 0.25, -1.25, 0.1]),
       v_reset=st.sampled_from([0.0, -0.5, 0.1]), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 20))
def test_euler_form_with_rest_is_norses_lif_with_v_leak(dtype, leak, v_leak, v_reset, seed, steps):
    # Norse's lif_feed_forward_step with dt * tau_syn_inv = 1 (its current is the step's input):
    # v + (dt tau_mem_inv) ((v_leak - v) + i), then (1 - z) v + z v_reset: the "euler" row with (rest).
    torch = pytest.importorskip("torch")
    pytest.importorskip("norse")
    from norse.torch.functional.lif import LIFFeedForwardState, LIFParameters, lif_feed_forward_step

    def tensor(x):
        return torch.as_tensor(x, dtype=torch.float32 if dtype == np.float32 else torch.float64)

    theta = 0.5
    currents = np.random.default_rng(seed).normal(0.4, 1.0, size=(1, steps, 16)).astype(dtype)
    neuron = es.LIF(theta, leak=leak, arithmetic="euler", v_rest=v_leak, v_reset=v_reset)
    net = es.Network([neuron], (16,), dtype=dtype)
    r = run_dense(net, currents)
    params = LIFParameters(tau_syn_inv=tensor(1.0), tau_mem_inv=tensor(1.0 - leak), v_leak=tensor(v_leak),
                           v_th=tensor(theta), v_reset=tensor(v_reset))
    state = LIFFeedForwardState(v=tensor(np.full((1, 16), v_leak)), i=tensor(np.zeros((1, 16))))
    for t in range(steps):
        z, state = lif_feed_forward_step(tensor(currents[0, t:t + 1]), state, params, dt=1.0)
        s = r.outputs["lif1"][0, t]
        np.testing.assert_array_equal(s, z.numpy()[0], err_msg=f"spikes at step {t}")
        after_reset = np.where(s > 0, dtype(v_reset), r.potentials["lif1"][0, t])  # Norse keeps R[t]
        np.testing.assert_array_equal(after_reset, state.v.numpy()[0], err_msg=f"potential at step {t}")


@given(dtype=DTYPES, leak=st.sampled_from(LEAKS[:-1]), decay_input=st.booleans(),
       v_reset=st.sampled_from([-0.5, 0.25, -1.25, 0.1]), seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 20))
def test_divide_forms_with_rest_are_spikingjellys_lif_node_with_v_reset(dtype, leak, decay_input, v_reset, seed, steps):
    # SpikingJelly's v_reset is both the rest potential and the reset value, and its neurons start there.
    torch = pytest.importorskip("torch")
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    theta = 0.5
    node = sj.LIFNode(tau=1.0 / (1.0 - leak), decay_input=decay_input, v_threshold=theta, v_reset=v_reset,
                      step_mode="s")
    form = "euler-divide" if decay_input else "subtract-divide"
    currents = np.random.default_rng(seed).normal(0.4, 1.0, size=(1, steps, 16)).astype(dtype)
    neuron = es.LIF(theta, leak=leak, arithmetic=form, v_rest=v_reset, v_reset=v_reset, strict=False)
    r = run_dense(es.Network([neuron], (16,), dtype=dtype), currents)
    with torch.no_grad():
        for t in range(steps):
            z = node(torch.from_numpy(currents[0, t:t + 1]))
            s = r.outputs["lif1"][0, t]
            np.testing.assert_array_equal(s, z.numpy()[0], err_msg=f"spikes at step {t}")
            after_reset = np.where(s > 0, dtype(v_reset), r.potentials["lif1"][0, t])
            np.testing.assert_array_equal(after_reset, node.v.numpy()[0], err_msg=f"potential at step {t}")


# =================================================================== records
def test_counts_feed_the_next_synapse_as_values_and_j_is_recorded_per_layer():
    # IF (>=, soft, no bound) under I = 2.5: U = 2.5, 3.0, 2.5, 3.0 -> n = 2, 3, 2, 3 (residues .5, 0, .5, 0);
    # the next Linear sees the counts: 0.5 n. The readout's J (alpha 1/2) = 1, 2, 2, 2.5.
    layers = [es.IF(1.0, reset="soft", strict=False, max_spikes=None),
              es.Linear(1, 1, weight=np.array([[0.5]])), es.Readout(synapse_leak=0.5)]
    r = run_dense(es.Network(layers, (1,), dtype=np.float64), np.full((2, 4, 1), 2.5))
    np.testing.assert_array_equal(r.outputs["if1"][:, :, 0], [[2, 3, 2, 3]] * 2)
    np.testing.assert_array_equal(r.outputs["fc1"][:, :, 0], [[1.0, 1.5, 1.0, 1.5]] * 2)
    assert r.synaptic.keys() == {"readout1"}
    np.testing.assert_array_equal(r.synaptic["readout1"][:, :, 0], [[1.0, 2.0, 2.0, 2.5]] * 2)
    assert r.synaptic["readout1"].shape == (2, 4, 1)


def test_a_recurrent_block_records_its_neuron_block_and_connection():
    # Two neurons, W_rec = [[0, 1], [1, 0]], bias 0.25: a unit input into neuron 0 at step 0 makes it fire;
    # step 1: neuron 1 gets 1 + 0.25 on top of its 0.25, fires; neuron 0 (reset) gets 0.25; step 2: neuron 0
    # gets 1 + 0.25 on top of its 0.25, fires; neuron 1 (reset) gets 0.25.
    w = np.array([[0.0, 1.0], [1.0, 0.0]])
    rec = es.Recurrent(es.IF(1.0), es.Linear(2, 2, weight=w, bias=np.full(2, 0.25)), name="rec")
    x = np.zeros((1, 3, 2))
    x[0, 0, 0] = 1.5
    r = run_dense(es.Network([rec], (2,), dtype=np.float64), x)
    spikes = [[1, 0], [0, 1], [1, 0]]
    np.testing.assert_array_equal(r.outputs["rec"][0], spikes)
    np.testing.assert_array_equal(r.outputs["rec.if1"][0], spikes)
    np.testing.assert_array_equal(r.outputs["rec.fc1"][0], [[0.25, 0.25], [0.25, 1.25], [1.25, 0.25]])
    np.testing.assert_array_equal(r.potentials["rec.if1"][0], [[1.75, 0.25], [0.25, 1.5], [1.5, 0.25]])
    assert r.potentials.keys() == {"rec.if1"}


def test_a_delay_inside_a_network_delays_spikes_between_layers():
    # lif fires at steps 0 and 2; Delay(per channel [1, 3]) moves channel 0 by 1 and channel 1 by 3.
    layers = [es.IF(0.5), es.Delay(np.array([1, 3]))]
    x = np.zeros((1, 5, 2))
    x[0, [0, 2]] = 1.0
    r = run_dense(es.Network(layers, (2,), dtype=np.float64), x)
    np.testing.assert_array_equal(r.outputs["delay1"][0], [[0, 0], [1, 0], [0, 0], [1, 1], [0, 0]])


# ================================================================= bad input
STATE = NeuronState(np.zeros((1, 2)), None, np.zeros((1, 2)))


@pytest.mark.parametrize("options, message", [
    (dict(synapse_leak=1.5), "synapse_leak must be in [0, 1]"),
    (dict(synapse_leak=True), "synapse_leak must be in [0, 1]"),
    (dict(synapse_gain=0.0), "synapse_gain must be positive"),
    (dict(synapse_gain=np.inf), "synapse_gain must be positive"),
    (dict(v_rest=np.nan), "v_rest must be a finite number"),
    (dict(v_min=np.nan), "v_min must be a number or -inf"),
    (dict(v_min=np.inf), "v_min must be a number or -inf"),
    (dict(max_spikes=0), "max_spikes must be an int >= 1 or None"),
    (dict(max_spikes=2.0), "max_spikes must be an int >= 1 or None"),
    (dict(max_spikes=True), "max_spikes must be an int >= 1 or None"),
    (dict(reset_delayed=True, v_rest=0.5), "reset_delayed=True does not combine with v_rest"),
    (dict(reset_delayed=True, v_min=-1.0), "reset_delayed=True does not combine with v_min"),
    (dict(reset_delayed=True, max_spikes=None), "reset_delayed=True does not combine with max_spikes"),
    (dict(reset="partial"), "unknown reset 'partial'"),
])
def test_bad_state_options_are_refused_in_one_line_naming_the_option(options, message):
    with pytest.raises(OptionError, match=message.replace("[", r"\[").replace("]", r"\]")) as error:
        neuron_step(STATE, np.zeros((1, 2)), threshold=1.0, leak=0.5, **options)
    assert "\n" not in str(error.value)


def test_a_state_that_does_not_fit_the_step_is_refused():
    with pytest.raises(ValueError, match="synapse_leak is given but the state has no synaptic current"):
        neuron_step(STATE, np.zeros((1, 2)), threshold=1.0, leak=0.5, synapse_leak=0.5)
    with_j = initial_state((1, 2), np.float64, synaptic=True)
    with pytest.raises(ValueError, match="synapse_leak is None but the state has a synaptic current"):
        neuron_step(with_j, np.zeros((1, 2)), threshold=1.0, leak=0.5)
    with pytest.raises(ValueError, match="potential is float64 \\(1, 2\\), the current float32"):
        neuron_step(STATE, np.zeros((1, 2), np.float32), threshold=1.0, leak=0.5)
    with pytest.raises(OptionError, match="v_init must be a finite number"):
        initial_state((1, 2), np.float64, v_init=np.inf)


def test_a_delay_that_does_not_fit_its_input_is_refused_naming_it():
    # A network object the twin reads without eventsim.Network's own checks.
    net = SimpleNamespace(layers=[es.Delay(np.array([1, 2]), name="late")], input_shape=(3,), dtype=np.float64)
    with pytest.raises(LayerError, match="layer 'late' \\(Delay\\): has delays of shape \\(2,\\)"):
        run_dense(net, np.zeros((1, 2, 3)))


def test_nan_passes_the_clamp_as_nan_and_minus_inf_is_clamped():
    # R = NaN, -inf, -3, 0.5 with no input (IF): U = R; no spike; the clamp at -1 lifts -inf and -3 only.
    state = NeuronState(np.array([[np.nan, -np.inf, -3.0, 0.5]]), None, np.zeros((1, 4)))
    got, u = neuron_step(state, np.zeros((1, 4)), threshold=1.0, leak=1.0, v_min=-1.0, max_spikes=None)
    np.testing.assert_array_equal(u, state.potential)
    np.testing.assert_array_equal(got.potential, [[np.nan, -1.0, -1.0, 0.5]])
    np.testing.assert_array_equal(got.spikes, [[0, 0, 0, 0]])
