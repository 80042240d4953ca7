"""The dense twin's arithmetic forms of the neuron step (docs/semantics.md, "Arithmetic forms").

Independent references for :func:`eventsim.dense.lif_step`:

- exact rational arithmetic: each operation of a form's table row computed
  in :class:`fractions.Fraction` and rounded to nearest, ties to even, by a
  rounding function written here from the IEEE 754 definition (not by NumPy);
- a literal per-step loop over NumPy scalars, in a tiny case whose leak has a
  1/(1 - lam) that is not a power of two, where the four forms give four
  different float32 sequences (so a twin that computed another form fails);
- Norse 1.1's own ``lif_box_feed_forward_step`` ("euler") and SpikingJelly
  2.0's own ``LIFNode`` ("euler-divide", "subtract-divide"), each skipped
  when the framework is not installed.

Where no operation rounds (dyadic values, 1 - lam a power of two, few steps)
the forms must agree with each other bit for bit, as the semantics says.

Whole networks: the event path (``Network.run``) and the dense twin
(``run_dense``) give bit-identical spikes and potentials in every form,
float32 and float64, with leaks whose k = 1 - lam rounds, dyadic weights and
inputs (the exactness guarantee between implementations of the same form),
and with an input-current norm feeding the form its normalised current.
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventsim as es
from eventsim.dense import lif_step
from eventsim.errors import OptionError
from eventsim.norm import CurrentNorm
from eventsim.testing.strategies import DTYPES, Features, net_cases
from test_current_norm import _dyadic_norm as dyadic_norm
from test_network_equivalence import assert_runs_identical

FORMS = ("product", "euler", "euler-divide", "subtract-divide")
#: Leaks whose k = 1 - lam (and d = 1 / k) are not powers of two, where every form rounds
#: differently; and 0 (k = d = 1), the end of the forms' range.
ROUNDING_LEAKS = (1 - 1 / 3, 0.9, 0.8, float(np.exp(-1 / 100)), 0.3, 0.0)


# ============================================================ exact reference
def rounded(x: Fraction, dtype) -> Fraction:
    """``x`` rounded to the nearest value of ``dtype`` (ties to the even significand), as IEEE 754 rounds.

    The quantum at x is ``2^(e - p + 1)`` for ``2^e <= |x| < 2^(e+1)``, p the
    significand bits; below the smallest normal exponent the quantum stays
    that of the smallest normal (gradual underflow). No overflow handling:
    the values here are small.
    """
    info = np.finfo(dtype)
    p, e_min = info.nmant + 1, info.minexp
    if x == 0:
        return Fraction(0)
    a = abs(x)
    e = a.numerator.bit_length() - a.denominator.bit_length()
    if Fraction(2) ** e > a:  # the bit lengths leave e one too high or exact
        e -= 1
    quantum = Fraction(2) ** (max(e, e_min) - p + 1)
    q, rest = divmod(a, quantum)
    if 2 * rest > quantum or (2 * rest == quantum and q % 2 == 1):
        q += 1
    return (q * quantum) if x > 0 else -(q * quantum)


def exact_form(form: str, r: float, i: float, leak: float, gain: float, dtype) -> float:
    """One step of ``form`` from R and I, each operation of the semantics' table rounded by :func:`rounded`."""
    R, I, L = Fraction(float(r)), Fraction(float(i)), Fraction(leak)

    def op(x):
        return rounded(x, dtype)

    if form == "product":
        lam, g = op(L), op(Fraction(gain))
        u = op(op(lam * R) + op(g * I))
    elif form == "euler":
        k = op(rounded(1 - L, np.float64))  # 1.0 - leak in float64, then to the dtype
        u = op(R + op(k * op(I - R)))
    else:
        d = op(rounded(1 / rounded(1 - L, np.float64), np.float64))
        if form == "euler-divide":
            u = op(R + op(op(I - R) / d))
        else:
            u = op(op(R - op(R / d)) + I)
    return float(u)


def gamma(n: int, u: float) -> float:
    """Higham's gamma_n = n u / (1 - n u), the bound of n roundings with unit roundoff u."""
    return n * u / (1 - n * u)


def step_bound(form: str, r: float, i: float, leak: float, gain: float, dtype) -> float:
    """The semantics' per-step rounding of ``form`` ("Numerics"), constants as rounded to ``dtype``.

    Plus, per rounding, half the smallest subnormal: a product or quotient
    that underflows errs by that much absolutely, not relatively (Higham,
    Sec. 2.1, the underflow term of the model of arithmetic), which the
    semantics' relative bound leaves out (a leak of 1e-45 in float32).
    """
    info = np.finfo(dtype)
    u, eta = float(info.eps) / 2, float(info.smallest_subnormal) / 2
    lam, g = float(dtype(leak)), float(dtype(gain))
    k = float(dtype(1.0 - leak)) if form == "euler" else 1 / float(dtype(1.0 / (1.0 - leak)))
    if form == "product":
        return gamma(2, u) * (lam * abs(r) + g * abs(i)) + 2 * eta
    if form == "subtract-divide":
        return gamma(3, u) * (abs(r) + abs(i)) + 3 * eta
    return gamma(3, u) * (abs(r) + k * (abs(r) + abs(i))) + 3 * eta


def exact_value(form: str, r: float, i: float, leak: float, gain: float, dtype) -> Fraction:
    """The form's value in exact arithmetic, with its constants as rounded to ``dtype``."""
    R, I = Fraction(float(r)), Fraction(float(i))
    if form == "product":
        return Fraction(float(dtype(leak))) * R + Fraction(float(dtype(gain))) * I
    if form == "euler":
        return R + Fraction(float(dtype(1.0 - leak))) * (I - R)
    d = Fraction(float(dtype(1.0 / (1.0 - leak))))
    return R + (I - R) / d if form == "euler-divide" else R - R / d + I


def one_step(form, r, i, leak, gain, dtype):
    """``lif_step`` from ``U[t-1] = r`` without a spike (so R = r), never firing."""
    u, _ = lif_step(r, np.zeros(r.shape, bool), i, threshold=np.inf, leak=leak,
                    input_gain=gain if form == "product" else None, arithmetic=form)
    return u


values = st.floats(-64, 64, allow_nan=False, allow_subnormal=False)


@given(form=st.sampled_from(FORMS), dtype=DTYPES,
       leak=st.sampled_from(ROUNDING_LEAKS) | st.floats(0, 0.999),
       pairs=st.lists(st.tuples(values, values), min_size=1, max_size=24),
       gain=st.sampled_from([1.0, 0.1, 0.3]))
def test_one_step_of_every_form_is_its_operations_rounded_once_each(form, dtype, leak, pairs, gain):
    r = np.array([p[0] for p in pairs]).astype(dtype)[None]
    i = np.array([p[1] for p in pairs]).astype(dtype)[None]
    u = one_step(form, r, i, leak, gain, dtype)
    assert u.dtype == dtype
    expected = [exact_form(form, a, b, leak, gain, dtype) for a, b in zip(r[0], i[0])]
    np.testing.assert_array_equal(u[0], np.array(expected, dtype), err_msg=f"{form}, leak {leak!r}")
    # and within the per-step rounding the semantics states for the float bound
    for a, b, got in zip(r[0], i[0], u[0]):
        error = abs(Fraction(float(got)) - exact_value(form, a, b, leak, gain, dtype))
        assert error <= Fraction(step_bound(form, float(a), float(b), leak, gain, dtype)), (form, a, b, leak)


def test_the_exact_reference_rounds_ties_to_even_and_below_the_normals():
    # what the property above relies on, checked on values whose rounding is known
    f32 = np.float32
    assert rounded(Fraction(1) + Fraction(1, 2**24), f32) == 1  # tie: 1 is even
    assert rounded(Fraction(1) + Fraction(3, 2**24), f32) == 1 + Fraction(4, 2**24)  # tie: up to even
    assert rounded(Fraction(1, 3), f32) == Fraction(float(f32(1 / 3)))
    assert rounded(-Fraction(1, 10), np.float64) == Fraction(-0.1)
    tiny = Fraction(2) ** -149  # the smallest float32 subnormal
    assert rounded(tiny * Fraction(3, 2), f32) == 2 * tiny and rounded(tiny / 3, f32) == 0


# ======================================================= literal per-step loop
def literal(form: str, currents, leak: float, theta: float, reset: str, dtype):
    """The semantics' recursion written out on NumPy scalars, one operation per line.

    R[0] = 0; U from R and I by the form's row of the table; R = v_reset (0,
    hard) or U - theta (soft) after a spike, U otherwise.
    """
    t = np.dtype(dtype).type
    lam, k, d = t(leak), t(1.0 - leak), t(1.0 / (1.0 - leak))
    r, us, spikes = t(0), [], []
    for i in currents:
        i = t(i)
        if form == "product":  # with g = 1 - leak, the Euler forms' gain
            a = lam * r
            b = k * i
            u = a + b
        elif form == "product-unit-gain":  # with g = 1, the gain of "subtract-divide"
            a = lam * r
            u = a + i
        elif form == "euler":
            a = i - r
            b = k * a
            u = r + b
        elif form == "euler-divide":
            a = i - r
            b = a / d
            u = r + b
        else:
            a = r / d
            b = r - a
            u = b + i
        s = u > t(theta)
        r = (t(0) if reset == "hard" else u - t(theta)) if s else u
        us.append(u)
        spikes.append(s)
    return np.array(us, dtype), np.array(spikes)


def twin(form: str, currents, leak: float, theta: float, reset: str, dtype):
    """``lif_step`` over the steps of ``currents`` for one neuron."""
    gains = {"product": 1.0 - leak, "product-unit-gain": 1.0}
    u, s = np.zeros((1, 1), dtype), np.zeros((1, 1), bool)
    us, spikes = [], []
    for i in currents:
        u, s = lif_step(u, s, np.full((1, 1), i, dtype), threshold=theta, leak=leak, reset=reset,
                        input_gain=gains.get(form), arithmetic=form.replace("-unit-gain", ""))
        us.append(u[0, 0])
        spikes.append(s[0, 0])
    return np.array(us, dtype), np.array(spikes)


TINY_FORMS = ("product", "euler", "euler-divide", "product-unit-gain", "subtract-divide")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("reset", ["hard", "soft"])
@pytest.mark.parametrize("theta", [np.inf, 0.8, 2.5])
def test_twin_follows_the_literal_loop_of_each_form(dtype, reset, theta):
    currents = [1.0, 1.0, 1.0, 0.7, 1.0, -0.3, 1.0, 1.0, 1.0, 0.1, 1.0, 1.0]
    leak = 1 - 1 / 3  # d = 1/(1 - lam) = 3.000000000000001, not a power of two
    for form in TINY_FORMS:
        u, s = twin(form, currents, leak, theta, reset, dtype)
        want_u, want_s = literal(form, currents, leak, theta, reset, dtype)
        np.testing.assert_array_equal(u, want_u, err_msg=form)
        np.testing.assert_array_equal(s, want_s, err_msg=form)


def test_the_forms_differ_by_an_ulp_in_float32_where_the_leak_rounds():
    # leak 2/3, I = 1, no firing: the exact values are U[t] = 1 - (2/3)^t (gain 1/3) and
    # 3 (1 - (2/3)^t) (gain 1); every form rounds them its own way.
    currents, leak, f32 = [1.0] * 6, 1 - 1 / 3, np.float32
    runs = {form: twin(form, currents, leak, np.inf, "hard", f32)[0] for form in TINY_FORMS}
    steps = np.arange(1, 7)
    exact = 1 - (2 / 3) ** steps
    for form, u in runs.items():
        # Every form computes the same mathematics: by the semantics' per-step rounding, each
        # step errs by at most gamma_3 (|R| + k (|R| + |I|)) <= gamma_3 (2 scale + 1) with
        # |R| <= scale, |I| = 1, and earlier errors shrink by lam < 1, so U[t] is within t times that
        # (plus the rounding of the constants, a relative 2^-24 per step).
        scale = 3 if form in ("product-unit-gain", "subtract-divide") else 1
        u_round = float(np.finfo(f32).eps) / 2
        bound = steps * (gamma(3, u_round) * (2 * scale + 1) + u_round * scale)
        assert np.all(np.abs(u - scale * exact) <= bound), (form, u - scale * exact, bound)
    ulp = np.spacing(f32(1))
    # first step where each pair differs, and by how much (in ulps of 1)
    for a, b, step in [("product", "euler", 5), ("euler", "euler-divide", 3), ("product", "euler-divide", 3),
                       ("product-unit-gain", "subtract-divide", 2)]:
        differs = np.flatnonzero(runs[a] != runs[b])
        assert differs.size and differs[0] + 1 == step, (a, b, runs[a], runs[b])
        assert 0 < abs(float(runs[a][step - 1]) - float(runs[b][step - 1])) <= 4 * ulp


# ============================================== where no operation rounds
@given(dtype=DTYPES, k_exp=st.integers(1, 3), reset=st.sampled_from(["hard", "soft"]),
       theta=st.sampled_from([0.5, 1.0, 1.5, np.inf]),
       currents=st.lists(st.integers(-8, 8), min_size=1, max_size=6))
def test_forms_agree_bit_for_bit_where_no_operation_rounds(dtype, k_exp, reset, theta, currents):
    # 1 - lam = 2^-k_exp, dyadic inputs k/8 and few steps: every product, quotient and sum is exact
    leak = 1 - 2.0**-k_exp
    currents = [c / 8 for c in currents]
    euler = twin("euler", currents, leak, theta, reset, dtype)
    for form in ("product", "euler-divide"):
        got = twin(form, currents, leak, theta, reset, dtype)
        np.testing.assert_array_equal(got[0], euler[0], err_msg=form)
        np.testing.assert_array_equal(got[1], euler[1], err_msg=form)
    unit = twin("product-unit-gain", currents, leak, theta, reset, dtype)
    got = twin("subtract-divide", currents, leak, theta, reset, dtype)
    np.testing.assert_array_equal(got[0], unit[0])
    np.testing.assert_array_equal(got[1], unit[1])


# ====================================================== Norse's own arithmetic
@given(dtype=DTYPES, leak=st.sampled_from(ROUNDING_LEAKS[:-1]), reset=st.sampled_from(["hard", "soft"]),
       theta=st.sampled_from([0.5, 1.0, 1.5]), v_reset=st.sampled_from([0.0, -0.5, 0.25]),
       seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 20))
def test_euler_form_is_norses_lif_box_bit_for_bit(dtype, leak, reset, theta, v_reset, seed, steps):
    torch = pytest.importorskip("torch")
    pytest.importorskip("norse")
    from norse.torch.functional.lif_box import (
        LIFBoxFeedForwardState, LIFBoxParameters, lif_box_feed_forward_step,
    )
    from norse.torch.functional.reset import reset_subtract, reset_value

    if reset == "soft":
        v_reset = 0.0
    rng = np.random.default_rng(seed)
    currents = rng.normal(0.4, 1.0, size=(steps, 1, 16)).astype(dtype)

    def tensor(x):
        return torch.as_tensor(x, dtype=torch.float32 if dtype == np.float32 else torch.float64)

    params = LIFBoxParameters(tau_mem_inv=tensor(1.0 - leak), v_leak=tensor(0.0), v_th=tensor(theta),
                              v_reset=tensor(v_reset), reset_method=reset_value if reset == "hard" else reset_subtract)
    state = LIFBoxFeedForwardState(v=tensor(np.zeros((1, 16))))
    u, s = np.zeros((1, 16), dtype), np.zeros((1, 16), bool)
    for t in range(steps):
        z, state = lif_box_feed_forward_step(tensor(currents[t]), state, params, dt=1.0)
        u, s = lif_step(u, s, currents[t], threshold=theta, leak=leak, reset=reset, v_reset=v_reset,
                        arithmetic="euler")
        np.testing.assert_array_equal(s, z.numpy() > 0, err_msg=f"spikes at step {t + 1}")
        # Norse keeps the potential after the reset, R[t]
        r = np.where(s, v_reset, u) if reset == "hard" else np.where(s, u - dtype(theta), u)
        np.testing.assert_array_equal(r, state.v.numpy(), err_msg=f"potential at step {t + 1}")


# ================================================================ bad input
@pytest.mark.parametrize("options, message", [
    (dict(arithmetic="fma"), "unknown arithmetic 'fma'"),
    (dict(arithmetic="euler", leak=1.0), "needs 0 <= leak < 1"),
    (dict(arithmetic="euler-divide", reset_delayed=True), "reset_delayed=True needs arithmetic='product'"),
    (dict(arithmetic="euler", input_gain=0.5), "fixes the input gain"),
    (dict(arithmetic="subtract-divide", input_gain=0.25), "fixes the input gain to 1.0"),
])
def test_a_form_with_options_it_cannot_take_is_refused_in_one_line(options, message):
    one = np.zeros((1, 1), np.float32)
    with pytest.raises(OptionError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        lif_step(one, one.astype(bool), one, threshold=1.0, **{"leak": 0.75, **options})
    assert "\n" not in str(error.value)


def test_the_euler_forms_accept_their_own_gain_given_explicitly():
    one = np.ones((1, 1), np.float32)
    for form, gain in [("euler", 1.0 - 0.9), ("euler-divide", 1.0 - 0.9), ("subtract-divide", 1.0)]:
        explicit = lif_step(one, one > 1, one, threshold=1.0, leak=0.9, input_gain=gain, arithmetic=form)
        implicit = lif_step(one, one > 1, one, threshold=1.0, leak=0.9, arithmetic=form)
        np.testing.assert_array_equal(explicit[0], implicit[0])


# ======================================= the event path against the dense twin
#: Leaks of the whole-network property: k = 1 - lam rounds for all but 0.5.
NETWORK_LEAKS = (1 - 1 / 3, 0.9, 0.8, float(np.exp(-1 / 100)), 0.3, 0.5)


#: Every LIF layer and readout with a leak below 1 computes one of these; "product", the
#: default that tests/test_network_equivalence.py covers, remains in IF layers and spiking pools.
OTHER_FORMS = Features(leaks=NETWORK_LEAKS, arithmetic=frozenset(FORMS[1:])).without("if")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@given(data=st.data())
def test_event_path_equals_dense_twin_in_every_form(dtype, data):
    assert_runs_identical(data.draw(net_cases(features=OTHER_FORMS, dtypes=st.just(dtype))), train=False)


@given(case=net_cases(features=OTHER_FORMS), window=st.integers(1, 5))
def test_training_runs_in_every_form_are_identical(case, window):
    assert_runs_identical(case, train=True, window=window)


@pytest.mark.parametrize("form", FORMS[1:])
@given(seed=st.integers(0, 2**32 - 1), leak=st.sampled_from(NETWORK_LEAKS))
def test_a_form_integrates_the_normalised_current(form, seed, leak):
    # inference with running statistics whose k is a power of two and c dyadic: I' = k I + c is exact
    # on both paths, and the form must then act on I', not on I (docs/semantics.md, "Arithmetic forms");
    # float64, the dtype of the norm helper's statistics
    rng = np.random.default_rng(seed)
    weight = rng.integers(-8, 9, size=(3, 2, 3, 3)) / 8
    network = es.Network([es.Conv2d(2, 3, 3, padding=1, weight=weight),
                          es.LIF(1.0, leak=leak, arithmetic=form, norm=CurrentNorm()),
                          es.Flatten(), es.Linear(48, 2, weight=rng.integers(-8, 9, size=(2, 48)) / 8),
                          es.Readout(leak=leak, arithmetic=form)], (2, 4, 4), np.float64)
    norm = network.layers[1].norm
    dyadic_norm(rng, norm)

    class Case:  # what assert_runs_identical reads
        dtype = np.float64
        events = es.Events.from_dense((rng.random((2, 6, 2, 4, 4)) < 0.4).astype(np.float64))

    Case.network, Case.seed = network, seed
    got = assert_runs_identical(Case, train=False)
    plain = es.Network([es.Conv2d(2, 3, 3, padding=1, weight=weight), es.LIF(1.0, leak=leak, arithmetic=form)],
                       (2, 4, 4), np.float64).run(Case.events, record=("potentials",))
    assert not np.array_equal(got.potentials["lif1"], plain.potentials["lif1"])  # the norm acted


# ================================================ SpikingJelly's own arithmetic
@given(dtype=DTYPES, leak=st.sampled_from(ROUNDING_LEAKS[:-1]), decay_input=st.booleans(),
       reset=st.sampled_from(["hard", "soft"]), theta=st.sampled_from([0.5, 1.0, 1.5]),
       seed=st.integers(0, 2**32 - 1), steps=st.integers(1, 20))
def test_divide_forms_are_spikingjellys_lif_node_bit_for_bit(dtype, leak, decay_input, reset, theta, seed, steps):
    torch = pytest.importorskip("torch")
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    # SpikingJelly is handed tau = 1 / (1 - leak) as a Python float, as the semantics prescribes
    node = sj.LIFNode(tau=1.0 / (1.0 - leak), decay_input=decay_input, v_threshold=theta,
                      v_reset=0.0 if reset == "hard" else None, step_mode="s")
    form = "euler-divide" if decay_input else "subtract-divide"
    currents = np.random.default_rng(seed).normal(0.4, 1.0, size=(steps, 1, 16)).astype(dtype)
    u, s = np.zeros((1, 16), dtype), np.zeros((1, 16), bool)
    with torch.no_grad():
        for t in range(steps):
            z = node(torch.from_numpy(currents[t]))
            u, s = lif_step(u, s, currents[t], threshold=theta, leak=leak, reset=reset, strict=False,
                            arithmetic=form)
            np.testing.assert_array_equal(s, z.numpy() > 0, err_msg=f"spikes at step {t + 1}")
            # SpikingJelly keeps the potential after the reset, R[t]
            r = np.where(s, dtype(0), u) if reset == "hard" else np.where(s, u - dtype(theta), u)
            assert node.v.dtype == z.dtype
            np.testing.assert_array_equal(r, node.v.numpy(), err_msg=f"potential at step {t + 1}")
