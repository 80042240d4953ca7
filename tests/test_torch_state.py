"""The PyTorch reference with the state beyond the potential, recurrent blocks and delays.

docs/semantics.md, "State beyond the potential", "Recurrent connections",
"Delays" and the paragraph of "bptt" on them. First against closed forms
computed here by hand (exact rational arithmetic where the run is exact):
a synaptic current under constant input, a recurrent cascade from one
seeded spike, a delay as a shifted input, the spike total of a multi-spike
IF neuron, a neuron at rest, the clamp, the initial potential; then its
autograd gradients on small cases against the derivatives of the contract
worked out by hand (a count differentiated as one spike, the clamp's zero
gradient, the recurrent weight's ``sum_t D[t+1] s[t]^T``); then that
``lee2020-code`` refuses all of it, naming the layer.

The last section compares it with eventsim's event path on generated
networks mixing every feature: records bit for bit (spikes, potentials and
the ``synaptic`` record) and ``bptt`` gradients within the project's bound.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

import eventsim as es  # noqa: E402
from eventsim.errors import LayerError  # noqa: E402
from eventsim.learning.rules import BPTT  # noqa: E402
from eventsim.learning.surrogates import ArcTan, FastSigmoid, Sigmoid, StraightThrough, Triangle  # noqa: E402
from eventsim.testing.compare import GRADIENT_RTOL, gradient_errors  # noqa: E402
from eventsim.testing.protocol import GradientRequest  # noqa: E402
from eventsim.testing.strategies import STATE_FEATURES, Features, deep_cases, net_cases  # noqa: E402
from eventsim.testing.torch_candidate import TorchCandidate  # noqa: E402

STATE = Features().including("input_gain", "reset_delayed", *STATE_FEATURES)
FORMS = ("product", "euler", "euler-divide", "subtract-divide")


def records(layers, input_shape, x, dtype=np.float64):
    """TorchCandidate's records of ``layers`` on ``x`` ``(T, batch, *input_shape)``."""
    network = es.Network(layers, input_shape, dtype=dtype)
    return network, TorchCandidate().build(network).run(np.asarray(x, dtype))


def gradients(layers, input_shape, x, grad_output, detach_reset=True):
    """TorchCandidate's float64 gradients under the straight-through surrogate, sigma = 1/theta."""
    network = es.Network(layers, input_shape, dtype=np.float64)
    request = GradientRequest(np.asarray(grad_output, np.float64), StraightThrough(), detach_reset)
    return TorchCandidate().build(network).gradients(np.asarray(x, np.float64), request)


def weight(*values) -> np.ndarray:
    return np.array(values, np.float64).reshape(len(values), -1) if len(values) > 1 else np.array([[values[0]]])


def exact(array) -> list[Fraction]:
    return [Fraction(float(v)) for v in np.ravel(array)]


# ------------------------------------------------------------ synaptic current
def geometric(r: Fraction, t: int) -> Fraction:
    """``sum_{k=0}^{t-1} r^k``."""
    return Fraction(t) if r == 1 else (1 - r**t) / (1 - r)


def cuba_closed_form(alpha: Fraction, lam: Fraction, h: Fraction, g: Fraction, current: Fraction, t: int):
    """J[t] and U[t] of a current-based neuron that does not fire, under a constant input I from J[0] = U[0] = 0.

    ``J[t] = h I (1 - alpha^t) / (1 - alpha)`` and, with
    ``U[t] = g sum_{k<=t} lam^(t-k) J[k]``,
    ``U[t] = g h I / (1 - alpha) * (sum_k lam^(t-k) - sum_k lam^(t-k) alpha^k)`` where the second sum is
    ``alpha (lam^t - alpha^t) / (lam - alpha)`` (``t alpha^t`` when lam = alpha).
    """
    j = h * current * (1 - alpha**t) / (1 - alpha)
    mixed = t * alpha**t if lam == alpha else alpha * (lam**t - alpha**t) / (lam - alpha)
    u = g * h * current / (1 - alpha) * (geometric(lam, t) - mixed)
    return j, u


@pytest.mark.parametrize("alpha, lam, h, g", [(0.5, 0.75, 1.0, 1.0), (0.875, 0.5, 0.5, 1.0), (0.75, 1.0, 2.0, 0.25),
                                              (0.5, 0.5, 1.0, 0.5), (0.0, 0.75, 1.0, 1.0)])
def test_a_synaptic_current_under_constant_input_matches_its_closed_form(alpha, lam, h, g):
    steps, current = 10, Fraction(3, 4)
    options = dict(synapse_leak=alpha, synapse_gain=h, leak=lam, input_gain=g)
    layers = [es.Linear(1, 2, weight=weight(0.75, 0.75)), es.LIF(1e3, **options)]
    network, got = records(layers, (1,), np.ones((steps, 1, 1)))
    lif = got[network.layers[1].name]
    readout_net, readout = records([es.Linear(1, 1, weight=weight(0.75)), es.Readout(**options)], (1,),
                                   np.ones((steps, 1, 1)))
    ro = readout[readout_net.layers[1].name]
    for t in range(1, steps + 1):
        j, u = cuba_closed_form(Fraction(alpha), Fraction(lam), Fraction(h), Fraction(g), current, t)
        assert exact(lif.synaptic[t - 1]) == [j, j] and exact(lif.potentials[t - 1]) == [u, u], t
        assert exact(ro.synaptic[t - 1]) == [j] and exact(ro.potentials[t - 1]) == [u], t
    assert not lif.outputs.any()


def test_the_synaptic_current_sees_the_input_of_the_same_step_and_a_delay_moves_it_one_later():
    """docs/semantics.md: U[t] depends on I[t]; Norse's LIF is this neuron with a Delay of one step before it."""
    x = np.zeros((4, 1, 1))
    x[1] = 1.0
    layers = [es.Linear(1, 1, weight=weight(1.0)), es.LIF(1e3, leak=0.5, synapse_leak=0.5)]
    network, same = records(layers, (1,), x)
    np.testing.assert_array_equal(same["lif1"].potentials.ravel(), [0, 1, 1, 0.75])  # J = 1, 0.5, then U halves
    delayed = [es.Linear(1, 1, weight=weight(1.0)), es.Delay(1), es.LIF(1e3, leak=0.5, synapse_leak=0.5)]
    _, later = records(delayed, (1,), x)
    np.testing.assert_array_equal(later["lif1"].potentials.ravel(), [0, 0, 1, 1])


# --------------------------------------------------------- recurrent connections
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_recurrent_ring_from_one_seeded_spike_reproduces_the_hand_computed_cascade(dtype):
    """Neuron i feeds neuron i + 1 (mod 5) with weight 1: one input spike at step 1 travels round the ring."""
    n, steps = 5, 12
    ring = np.zeros((n, n))
    ring[(np.arange(n) + 1) % n, np.arange(n)] = 1.0
    x = np.zeros((steps, 1, n))
    x[0, 0, 0] = 1.0
    network, got = records([es.Recurrent(es.IF(0.5), es.Linear(n, n, weight=ring.astype(dtype)))], (n,), x, dtype)
    expected = np.zeros((steps, 1, n), dtype)
    expected[np.arange(steps), 0, np.arange(steps) % n] = 1.0
    rec = got["rec1.if1"]
    assert list(got) == ["rec1.if1"]
    np.testing.assert_array_equal(rec.outputs, expected)
    np.testing.assert_array_equal(rec.potentials, expected)  # the firing neuron holds 1, the others 0


def test_a_conv_recurrent_layer_moves_a_spike_one_pixel_a_step_until_it_leaves_the_map():
    """A 3x3 same-padding kernel with its single 1 left of centre: ``in[y, x - 1]`` reaches ``out[y, x]``."""
    kernel = np.zeros((1, 1, 3, 3))
    kernel[0, 0, 1, 0] = 1.0
    x = np.zeros((7, 1, 1, 3, 5))
    x[0, 0, 0, 2, 0] = 1.0
    block = es.Recurrent(es.LIF(0.5, leak=0.5), es.Conv2d(1, 1, 3, padding=1, weight=kernel))
    _, got = records([block], (1, 3, 5), x)
    expected = np.zeros_like(x)
    for t in range(5):
        expected[t, 0, 0, 2, t] = 1.0
    np.testing.assert_array_equal(got["rec1.lif1"].outputs, expected)


def test_the_recurrent_current_adds_to_the_feed_forward_one_and_carries_spike_counts():
    """I[t] = I_in[t] + W_rec n[t-1] + b_rec with the count n of several spikes per step."""
    x = np.zeros((3, 1, 1))
    x[0] = 2.0
    block = es.Recurrent(es.IF(0.75, reset="soft", max_spikes=None),
                         es.Linear(1, 1, weight=weight(0.5), bias=np.array([0.125])))
    _, got = records([es.Linear(1, 1, weight=weight(1.0)), block], (1,), x)
    rec = got["rec1.if1"]
    # U1 = 2 + b = 2.125: n = floor-ish(2.125 / 0.75) = 2, R = 0.625; U2 = 0.625 + 0.5 * 2 + 0.125 = 1.75: n = 2,
    # R = 0.25; U3 = 0.25 + 1 + 0.125 = 1.375: n = 1.
    np.testing.assert_array_equal(rec.potentials.ravel(), [2.125, 1.75, 1.375])
    np.testing.assert_array_equal(rec.outputs.ravel(), [2, 2, 1])


# ---------------------------------------------------------------------- delays
def shifted(x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``out[t, b, i] = x[t - d_i, b, i]``, 0 before d_i, one neuron at a time."""
    flat = x.reshape(x.shape[0], x.shape[1], -1)
    out = np.zeros_like(flat)
    for i, d in enumerate(np.ravel(steps)):
        if d < x.shape[0]:
            out[d:, :, i] = flat[: x.shape[0] - d, :, i]
    return out.reshape(x.shape)


@settings(max_examples=20)
@given(case=net_cases(features=STATE.without("delay")), d=st.integers(0, 14))
def test_a_delay_before_a_network_equals_the_network_on_the_input_shifted(case, d):
    delayed = es.Network([es.Delay(d)] + case.layers, case.input_shape, dtype=case.dtype)
    got = TorchCandidate().build(delayed).run(case.spikes)
    want = TorchCandidate().build(case.network).run(shifted(case.spikes, np.full(np.prod(case.input_shape), d)))
    assert list(got) == [delayed.layers[0].name] + list(want)
    for name, record in want.items():
        for what in ("outputs", "potentials", "synaptic"):
            np.testing.assert_array_equal(getattr(got[name], what), getattr(record, what), err_msg=f"{what} of {name}")


@pytest.mark.parametrize("steps", [2, np.array([0, 3]), np.array([[[1, 0, 2], [4, 9, 0]], [[0, 1, 1], [3, 2, 5]]])])
def test_a_delay_per_layer_channel_or_neuron_shifts_each_neuron_by_its_own_steps(steps):
    x = np.random.default_rng(0).choice([0.0, 1.0, -0.5], size=(6, 2, 2, 2, 3))
    layer = es.Delay(steps)
    network, got = records([layer], (2, 2, 3), x)
    np.testing.assert_array_equal(got["delay1"].outputs, shifted(x, layer.per_neuron((2, 2, 3))))


# ---------------------------------------------------------- several spikes per step
@settings(max_examples=30)
@given(current=st.sampled_from([0.25, 0.5, 0.75, 1.25, 2.0, 3.5]), theta=st.sampled_from([0.25, 0.5, 1.0, 1.5, 2.0]),
       steps=st.integers(1, 30), extra=st.one_of(st.none(), st.integers(0, 2)), strict=st.booleans(),
       dtype=st.sampled_from([np.float32, np.float64]))
def test_a_multispike_if_under_constant_current_emits_the_spikes_its_charge_holds(current, theta, steps, extra,
                                                                                  strict, dtype):
    """floor(T I / theta) in total (>=; with >, a potential exactly at a multiple of theta keeps one back:
    ceil(T I / theta) - 1), for any max_spikes >= I / theta."""
    bound = None if extra is None else int(np.ceil(current / theta)) + extra
    layers = [es.Linear(1, 1, weight=weight(current)), es.IF(theta, reset="soft", strict=strict, max_spikes=bound)]
    _, got = records(layers, (1,), np.ones((steps, 1, 1)), dtype)
    charge = Fraction(current) * steps / Fraction(theta)
    total = (np.ceil(charge) - 1) if strict else np.floor(charge)
    assert got["if1"].outputs.sum() == total
    assert bound is None or got["if1"].outputs.max() <= bound


def test_several_spikes_are_capped_at_max_spikes_and_a_hard_reset_puts_any_count_at_v_reset():
    x = np.array([3.5, 0.0, 2.0]).reshape(3, 1, 1)
    layers = [es.Linear(1, 1, weight=weight(1.0)), es.IF(1.0, v_reset=-0.25, strict=False, max_spikes=2)]
    _, got = records(layers, (1,), x)
    np.testing.assert_array_equal(got["if1"].outputs.ravel(), [2, 0, 1])
    np.testing.assert_array_equal(got["if1"].potentials.ravel(), [3.5, -0.25, 1.75])


# ------------------------------------------------------------ rest, init, clamp
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_a_neuron_with_a_rest_potential_and_no_input_stays_at_rest(form, dtype):
    layer = es.LIF(1.0, leak=0.75, v_rest=-0.375, arithmetic=form)
    _, got = records([layer], (3,), np.zeros((8, 2, 3)), dtype)
    np.testing.assert_array_equal(got["lif1"].potentials, np.full((8, 2, 3), -0.375, dtype))


@pytest.mark.parametrize("form", FORMS)
def test_from_its_initial_potential_a_neuron_decays_to_rest_geometrically(form):
    """U[t] = v_rest + lam^t (v_init - v_rest), exact with lam = 3/4 (k = 1/4, d = 4) in every form."""
    rest, init = Fraction(-1, 2), Fraction(3, 4)
    _, got = records([es.LIF(1.0, leak=0.75, v_rest=-0.5, v_init=0.75, arithmetic=form)], (1,), np.zeros((10, 1, 1)))
    assert exact(got["lif1"].potentials) == [rest + Fraction(3, 4) ** t * (init - rest) for t in range(1, 11)]


def test_the_initial_potential_is_leaked_before_the_first_input_is_added():
    _, got = records([es.Linear(1, 1, weight=weight(0.5)), es.LIF(2.0, leak=0.5, v_init=1.5, input_gain=0.5)], (1,),
                     np.ones((2, 1, 1)))
    np.testing.assert_array_equal(got["lif1"].potentials.ravel(), [0.5 * 1.5 + 0.25, 0.5 * 1.0 + 0.25])


def test_the_clamp_holds_the_potential_after_the_reset_at_v_min():
    x = -np.ones((4, 1, 1))
    _, got = records([es.Linear(1, 1, weight=weight(0.75)), es.IF(np.inf, v_min=-1.0)], (1,), x)
    np.testing.assert_array_equal(got["if1"].potentials.ravel(), [-0.75, -1.5, -1.75, -1.75])
    # A hard reset below v_min is clamped too: after the spike R = max(-0.5, -0.25) = -0.25.
    x = np.array([1.5, 0.0, 0.0]).reshape(3, 1, 1)
    _, got = records([es.Linear(1, 1, weight=weight(1.0)), es.IF(1.0, v_reset=-0.5, v_min=-0.25)], (1,), x)
    np.testing.assert_array_equal(got["if1"].potentials.ravel(), [1.5, -0.25, -0.25])


def test_defaults_compute_the_equations_of_neurons_unchanged():
    """Stating every default explicitly builds the same model as leaving the options out."""
    x = np.random.default_rng(1).choice([0.0, 1.0, 0.5], size=(9, 2, 4))
    w = np.random.default_rng(2).integers(-8, 9, size=(3, 4)) / 8
    plain = [es.Linear(4, 3, weight=w), es.LIF(0.5, leak=0.875, reset="soft")]
    spelled = [es.Linear(4, 3, weight=w), es.LIF(0.5, leak=0.875, reset="soft", v_rest=0.0, v_init=0.0,
                                                 v_min=-np.inf, max_spikes=1)]
    _, a = records(plain, (4,), x)
    _, b = records(spelled, (4,), x)
    for name in a:
        np.testing.assert_array_equal(a[name].potentials, b[name].potentials)
        assert a[name].synaptic is None and b[name].synaptic is None


# ------------------------------------------------- the backward pass, by hand
def test_the_clamp_passes_no_gradient_where_it_held_the_potential():
    """U2 = clamp(w x1) + w x2 under sigma = 1/theta = 1/4: dL/dw = (x2 + x1 [if not clamped]) / 4 + x1 / 4."""
    x = np.array([-1.0, 1.0]).reshape(2, 1, 1)
    for v_min, want in ((-0.5, 0.0), (-2.0, -0.25)):
        grads = gradients([es.Linear(1, 1, weight=weight(1.0)), es.IF(4.0, v_min=v_min)], (1,), x, [[1.0]])
        assert grads["fc1.weight"][0, 0] == want, v_min


@pytest.mark.parametrize("reset, detach, want", [
    ("soft", True, 2.5 + (2.5 + 0.25)),  # dR/dU = 1
    ("soft", False, 2.5 + 0.25),  # dR/dU = 1 - theta * sigma = 0
    ("hard", True, 2.5 + 0.25),  # dR/dU = 1 - gate = 0
    ("hard", False, 2.5 + 0.25 + (0.0 - 2.5) * 2.5),  # + dR/dn dn/dU = (v_reset - U1) sigma, times x1
])
def test_a_spike_count_is_differentiated_as_one_spike(reset, detach, want):
    """n1 = 2 from U1 = 2.5 (theta 1, sigma 1); L = n1 + n2: dL/dw = x1 + dU2/dw, U2 = R(U1, n1) + w x2."""
    x = np.array([2.5, 0.25]).reshape(2, 1, 1)
    layers = [es.Linear(1, 1, weight=weight(1.0)), es.IF(1.0, reset=reset, max_spikes=3)]
    assert gradients(layers, (1,), x, [[1.0]], detach_reset=detach)["fc1.weight"][0, 0] == want


def test_the_recurrent_weight_gradient_is_the_next_steps_delta_times_the_spikes():
    """theta 1/2 (sigma 2), w_rec = 1/4, one input spike: s = (1, 0, 0), U = (1, 1/4, 1/4).

    E3 = 2; gS2 = G2 + w_rec D3 = 1 + 1/2, E2 = gS2 sigma + E3 (1 - s2) = 5; dL/dw_rec = D2 s1 + D3 s2 = 5.
    """
    x = np.array([1.0, 0.0, 0.0]).reshape(3, 1, 1)
    block = es.Recurrent(es.IF(0.5), es.Linear(1, 1, weight=weight(0.25)))
    assert gradients([block], (1,), x, [[1.0]])["rec1.fc1.weight"][0, 0] == 5.0


def test_the_synaptic_current_passes_h_times_its_own_delta_on():
    """readout = U[T] / T, U[T] = g sum_k lam^(T-k) J[k], J[k] = sum_m alpha^(k-m) h w x_m: dL/dw by hand."""
    alpha, lam, h, steps = Fraction(1, 2), Fraction(3, 4), Fraction(2), 4
    x = np.array([1.0, -0.5, 1.0, 0.25]).reshape(steps, 1, 1)
    layers = [es.Linear(1, 1, weight=weight(0.5)), es.Readout(leak=0.75, synapse_leak=0.5, synapse_gain=2.0)]
    want = sum(lam ** (steps - k) * alpha ** (k - m) * h * Fraction(float(x[m - 1, 0, 0]))
               for k in range(1, steps + 1) for m in range(1, k + 1)) / steps
    assert Fraction(float(gradients(layers, (1,), x, [[1.0]])["fc1.weight"][0, 0])) == want


def test_a_delay_shifts_gradients_back_and_drops_what_falls_beyond_t():
    """readout = (1/T) sum_t lam^(T-t) w x[t-d]: dL/dw = (1/T) sum_{t>d} lam^(T-t) x[t-d]."""
    x = np.array([1.0, 0.5, -1.0, 2.0]).reshape(4, 1, 1)
    for d in (0, 1, 3, 4):
        layers = [es.Linear(1, 1, weight=weight(1.0)), es.Delay(d), es.Readout(leak=0.5)]
        want = sum(Fraction(1, 2) ** (4 - t) * Fraction(float(x[t - 1 - d, 0, 0])) for t in range(d + 1, 5)) / 4
        assert Fraction(float(gradients(layers, (1,), x, [[1.0]])["fc1.weight"][0, 0])) == want, d


# ------------------------------------------------------------- lee2020-code
@pytest.mark.parametrize("layer, name, what", [
    (es.Recurrent(es.IF(1.0), es.Linear(2, 2, weight=np.eye(2))), "rec1", "a recurrent connection"),
    (es.Delay(1), "delay1", "a delay"),
    (es.IF(1.0, synapse_leak=0.5), "if1", "a synaptic current"),
    (es.IF(1.0, max_spikes=2), "if1", "several spikes per step"),
    (es.LIF(1.0, leak=0.5, v_rest=0.25), "lif1", "a rest potential"),
    (es.IF(1.0, v_min=-1.0), "if1", "a lower clamp"),
    (es.IF(1.0, v_init=0.5), "if1", "an initial potential"),
])
def test_lee2020_code_refuses_what_its_derivation_does_not_cover_naming_the_layer(layer, name, what):
    network = es.Network([layer], (2,))
    with pytest.raises(LayerError, match=name) as info:
        TorchCandidate(rule="lee2020-code").build(network)
    assert what in str(info.value)


def test_the_candidate_declares_every_state_feature_but_not_under_lee2020_code():
    assert all(getattr(TorchCandidate().features, name) for name in STATE_FEATURES)
    assert not any(getattr(TorchCandidate(rule="lee2020-code").features, name) for name in STATE_FEATURES)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@settings(max_examples=10)
@given(case=net_cases(features=STATE))
def test_cuda_gives_the_cpu_records_bit_for_bit(case):
    cpu = TorchCandidate().build(case.network).run(case.spikes)
    cuda = TorchCandidate(device="cuda").build(case.network).run(case.spikes)
    assert list(cuda) == list(cpu)
    for name, record in cpu.items():
        for what in ("outputs", "potentials", "synaptic"):
            np.testing.assert_array_equal(getattr(cuda[name], what), getattr(record, what), err_msg=f"{what} of {name}")


# ======================================================== against the event path
# These compare with eventsim's Network.run: its records "spikes", "potentials"
# and "synaptic" (RunResult.synaptic, (batch, T, *shape) for every layer with a
# synaptic current) and the bptt rule, on networks that mix every feature.
def event_path_records(network, events):
    result = network.run(events, record=("spikes", "potentials", "synaptic"))
    out = {}
    for name, spikes in result.spikes.items():
        u, j = result.potentials.get(name), result.synaptic.get(name)
        out[name] = tuple(None if a is None else np.swapaxes(a, 0, 1) for a in (spikes.to_dense(), u, j))
    return out


@settings(max_examples=2 * settings.default.max_examples)
@given(case=st.one_of(net_cases(features=STATE), deep_cases(features=STATE)))
def test_the_event_path_gives_the_torch_records_bit_for_bit(case):
    reference = event_path_records(case.network, case.events)
    records_ = TorchCandidate().build(case.network).run(case.spikes)
    assert set(records_) <= set(reference)  # the recorded layers of eventsim.testing.compare
    for name, record in records_.items():
        outputs, potentials, synaptic = reference[name]
        np.testing.assert_array_equal(record.outputs, outputs, err_msg=f"outputs of {name}")
        for what, ours in (("potentials", potentials), ("synaptic", synaptic)):
            theirs = getattr(record, what)
            assert (theirs is None) == (ours is None), f"{what} of {name}"
            if ours is not None:
                assert theirs.dtype == case.dtype
                np.testing.assert_array_equal(theirs, ours, err_msg=f"{what} of {name}")


SURROGATES = st.sampled_from([StraightThrough(), FastSigmoid(), FastSigmoid(c=2.0, b=0.5), ArcTan(),
                              Sigmoid(alpha=1.0), Triangle(width=0.5)])


@settings(max_examples=2 * settings.default.max_examples)
@given(case=st.one_of(net_cases(dtypes=st.just(np.float64), features=STATE),
                      deep_cases(dtypes=st.just(np.float64), features=STATE)),
       surrogate=SURROGATES, detach=st.booleans())
def test_bptt_on_the_state_equals_autograd(case, surrogate, detach):
    rule = BPTT(surrogate=surrogate, detach_reset=detach)
    result = case.network.run(case.events, record=rule.records)
    g = np.random.default_rng(case.seed + 1).normal(size=(case.batch,) + case.network.output_shape)
    ours = rule.gradients(case.network, case.events, result, g)
    theirs = TorchCandidate().build(case.network).gradients(case.spikes, GradientRequest(g, surrogate, detach))
    assert ours.keys() == theirs.keys()
    for d in gradient_errors(theirs, ours):
        assert d.error <= GRADIENT_RTOL, str(d)


def test_a_failure_is_located_by_step_through_recurrent_layers_and_delays_but_not_synaptic_currents():
    """The locator of docs/testing.md runs on recurrent blocks and delays (dL/dU of the recurrent layer
    equal to autograd's), and says why it cannot where a synaptic current hides dL/dU."""
    from eventsim.learning.surrogates import StraightThrough
    from eventsim.testing.backward import locate
    from eventsim.testing.protocol import GradientRequest

    rng = np.random.default_rng(0)
    for synapse_leak, expected in ((None, "every dL/dU agrees"), (0.5, "has a synaptic current")):
        net = es.Network([es.Linear(3, 4, weight=rng.normal(size=(4, 3))),
                          es.Recurrent(es.LIF(0.5, leak=0.75, synapse_leak=synapse_leak),
                                       es.Linear(4, 4, weight=rng.normal(size=(4, 4)))),
                          es.Delay(1), es.Linear(4, 2, weight=rng.normal(size=(2, 4))), es.Readout()],
                         (3,), dtype=np.float64)
        spikes = (rng.random((6, 1, 3)) < 0.5).astype(np.float64)
        model = TorchCandidate().build(net)
        assert expected in str(locate(net, spikes, GradientRequest(np.ones((1, 2)), StraightThrough(), True), model))
