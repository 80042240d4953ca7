"""The arithmetic forms of the neuron step (docs/semantics.md, "Arithmetic forms").

The event path computes each form with the operations the semantics lists,
bit for bit: against a literal NumPy step written here from that table, on
random float currents and random leaks (1/(1-lam) rarely a power of two), in
float32 and float64; against the closed form of a constant input; against
:class:`TorchCandidate`, which computes the form in PyTorch, forward and
(float64) bptt gradients; and against Norse's and SpikingJelly's own neurons,
run as those packages ship them. The product form differs from each other
form on the same cases, so that these comparisons can fail. The option is
validated with errors naming the layer and the option, and travels through
NIR's metadata.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import eventsim as es
from eventsim.errors import LayerError
from eventsim.kernels import neurons as kernel
from eventsim.layers import ARITHMETIC

FORMS = ("euler", "euler-divide", "subtract-divide")
DTYPES = st.sampled_from([np.dtype(np.float32), np.dtype(np.float64)])
# Any leak in (0, 1): floats drawn from hypothesis's range, plus leaks written
# as frameworks write them (1 - 1/tau, exp(-1/tau)).
LEAKS = st.one_of(st.floats(0.01, 0.999), st.sampled_from([1 - 1 / 3, 0.9, 1 - 1 / 7, float(np.exp(-1 / 20)), 0.5]))


# ==================================================================== references
def literal_step(form: str, r: np.ndarray, current: np.ndarray, layer: es.LIF, dtype: np.dtype) -> np.ndarray:
    """U from R and I with the operations of docs/semantics.md's table, in order, in ``dtype``."""
    if form == "product":
        return dtype.type(layer.leak) * r + dtype.type(layer.input_gain) * current
    if form == "euler":
        return r + dtype.type(1.0 - layer.leak) * (current - r)
    d = dtype.type(1.0 / (1.0 - layer.leak))
    if form == "euler-divide":
        return r + (current - r) / d
    return (r - r / d) + current


def literal_neurons(form: str, currents: np.ndarray, layer: es.LIF, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """Potentials U and spikes s of a flat layer for currents ``(T, batch, N)``, reset at once."""
    theta = dtype.type(layer.threshold)
    r = np.zeros(currents.shape[1:], dtype)
    potentials, spikes = np.zeros_like(currents), np.zeros(currents.shape, bool)
    for t, current in enumerate(currents):
        u = literal_step(form, r, current, layer, dtype)
        s = u > theta if layer.strict else u >= theta
        after = (u - theta) if layer.reset == "soft" else dtype.type(layer.v_reset)
        r = np.where(s, after, u)
        potentials[t], spikes[t] = u, s
    return potentials, spikes


def event_records(network: es.Network, currents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The event path's potentials and spikes ``(T, batch, N)`` of a one-layer network fed ``currents``.

    A neuron layer after no synapse takes the event values as its currents
    (docs/semantics.md, "Synapses and pooling").
    """
    events = es.Events.from_dense(np.ascontiguousarray(currents.swapaxes(0, 1)))
    result = network.run(events, record=("spikes", "potentials"))
    name = network.layers[0].name
    return result.potentials[name].swapaxes(0, 1), result.spikes[name].to_dense().swapaxes(0, 1) != 0


@st.composite
def neuron_cases(draw, forms=FORMS + ("product",)):
    """A flat LIF layer in a form, with random options, and nonzero float currents ``(T, batch, N)``."""
    dtype = draw(DTYPES)
    form = draw(st.sampled_from(forms))
    reset = draw(st.sampled_from(["hard", "soft"]))
    v_reset = draw(st.sampled_from([0.0, 0.3, -0.7])) if reset == "hard" else 0.0
    layer = es.LIF(draw(st.sampled_from([0.6, 1.0, 1.3])), leak=draw(LEAKS), reset=reset, v_reset=v_reset,
                   strict=draw(st.booleans()), arithmetic=form)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps, batch, n = draw(st.integers(1, 25)), draw(st.integers(1, 3)), draw(st.integers(1, 40))
    currents = rng.normal(draw(st.sampled_from([0.0, 0.3, 1.0])), 1.0, (steps, batch, n)).astype(dtype)
    currents[currents == 0] = dtype.type(0.5)  # events carry nonzero values only
    return form, layer, currents


# ======================================================================= option
def test_arithmetic_defaults_to_product_and_leaves_the_repr_as_it_was():
    layer = es.LIF(1.0, leak=0.9)
    assert layer.arithmetic == "product" and layer.input_gain == 1.0
    assert "arithmetic" not in repr(layer) and "arithmetic" not in repr(es.Readout(leak=0.5))
    assert "arithmetic='euler'" in repr(es.LIF(1.0, leak=0.9, arithmetic="euler"))


@pytest.mark.parametrize("form", FORMS)
def test_a_form_implies_its_input_gain_and_it_follows_the_leak(form):
    layer = es.LIF(1.0, leak=0.75, arithmetic=form)
    implied = 1.0 if form == "subtract-divide" else 0.25
    assert layer.input_gain == implied
    assert es.LIF(1.0, leak=0.75, arithmetic=form, input_gain=implied).input_gain == implied
    layer.leak = 0.5
    assert layer.input_gain == (1.0 if form == "subtract-divide" else 0.5)
    assert es.Readout(leak=0.75, arithmetic=form).input_gain == implied


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_constants_are_the_float64_k_and_d_rounded_once(dtype):
    leak = 1 - 1 / 3
    euler = es.LIF(1.0, leak=leak, arithmetic="euler").constants((4,), np.dtype(dtype))
    assert euler.gain == dtype(1.0 - leak) and euler.arithmetic == "euler"
    divide = es.LIF(1.0, leak=leak, arithmetic="euler-divide").constants((4,), np.dtype(dtype))
    assert divide.divisor == dtype(1.0 / (1.0 - leak)) and divide.divisor.dtype == dtype
    assert es.LIF(1.0, leak=leak).constants((4,), np.dtype(dtype)).divisor == 1.0


@pytest.mark.parametrize("build, words", [
    (lambda: es.LIF(1.0, leak=0.9, arithmetic="fma"), ["arithmetic", "'fma'", "'euler-divide'"]),
    (lambda: es.LIF(1.0, leak=1.0, arithmetic="euler"), ["leak below 1", "'product'"]),
    (lambda: es.Readout(arithmetic="subtract-divide"), ["leak below 1"]),
    (lambda: es.LIF(1.0, leak=0.9, arithmetic="euler", input_gain=0.5), ["input_gain 0.5", "1 - leak"]),
    (lambda: es.LIF(1.0, leak=0.9, arithmetic="subtract-divide", input_gain=0.1), ["input_gain 0.1", "(1)"]),
    (lambda: es.LIF(1.0, leak=0.9, arithmetic="euler-divide", reset_delayed=True), ["reset_delayed", "at once"]),
], ids=["unknown", "leak-1", "readout-leak-1", "gain", "gain-subtract", "delayed"])
def test_bad_arithmetic_options_name_the_layer_and_the_option(build, words):
    with pytest.raises(LayerError) as info:
        build()
    for word in words:
        assert word in str(info.value)


def test_a_form_cannot_be_changed_on_a_layer_or_leave_its_conditions():
    layer = es.LIF(1.0, leak=0.9, arithmetic="euler")
    with pytest.raises(AttributeError):
        layer.arithmetic = "product"
    for change in (lambda: setattr(layer, "leak", 1.0), lambda: setattr(layer, "input_gain", 1.0),
                   lambda: setattr(layer, "reset_delayed", True)):
        with pytest.raises(LayerError):
            change()
    assert (layer.leak, layer.input_gain, layer.reset_delayed) == (0.9, 1.0 - 0.9, False)


def test_the_kernel_codes_follow_the_order_of_the_forms():
    codes = (kernel.PRODUCT, kernel.EULER, kernel.EULER_DIVIDE, kernel.SUBTRACT_DIVIDE)
    assert [ARITHMETIC.index(form) for form in ("product", "euler", "euler-divide", "subtract-divide")] == list(codes)


# ============================================================ event path, exact
@given(case=neuron_cases())
def test_event_path_computes_each_form_operation_for_operation(case):
    form, layer, currents = case
    network = es.Network([layer], input_shape=currents.shape[2:], dtype=currents.dtype)
    potentials, spikes = event_records(network, currents)
    expected_u, expected_s = literal_neurons(form, currents, layer, currents.dtype)
    np.testing.assert_array_equal(potentials, expected_u)
    np.testing.assert_array_equal(spikes, expected_s)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("form", FORMS)
def test_the_product_form_rounds_differently_from_each_other_form(form, dtype):
    """Same leak, same currents: the forms agree to rounding, not bit for bit (so the tests above can fail)."""
    dtype = np.dtype(dtype)
    currents = np.random.default_rng(7).normal(0.2, 1.0, (30, 2, 64)).astype(dtype)
    never_fires = dict(leak=0.9)  # a Readout: no spike flip can hide or magnify the difference
    ours = es.Network([es.Readout(arithmetic=form, **never_fires)], input_shape=(64,), dtype=dtype)
    product_gain = 1.0 if form == "subtract-divide" else 1.0 - 0.9
    product = es.Network([es.Readout(input_gain=product_gain, **never_fires)], input_shape=(64,), dtype=dtype)
    u_form, u_product = event_records(ours, currents)[0], event_records(product, currents)[0]
    assert not np.array_equal(u_form, u_product)
    np.testing.assert_allclose(u_form, u_product, rtol=0, atol=64 * np.finfo(dtype).eps * np.abs(u_product).max())


@pytest.mark.parametrize("form", FORMS)
@given(leak=LEAKS, drive=st.floats(-4, 4).filter(lambda x: abs(x) > 1e-3), steps=st.integers(1, 200))
def test_a_constant_input_gives_the_closed_form_within_rounding(form, leak, drive, steps):
    """``U[t] = g I (1 - lam^t) / (1 - lam)`` for a neuron that never fires, in float64.

    lam and g are those of the form's constants as rounded (lam = 1 - k, or
    1 - 1/d), the closed form evaluated in exact rational arithmetic. Each
    step's rounding is at most ``gamma_3 (|R| + k (|R| + |I|)) <= 3 gamma_3 S``
    (docs/semantics.md, "Numerics"; S = g |I| / (1 - lam) bounds |R| and |I|),
    and the exact step damps earlier errors by lam, so the error at step t is
    at most ``3 gamma_3 S min(t, 1 / (1 - lam))``, plus the rounding of the
    closed form to float64.
    """
    network = es.Network([es.Readout(leak=leak, arithmetic=form)], input_shape=(1,), dtype=np.float64)
    potentials = event_records(network, np.full((steps, 1, 1), drive))[0][:, 0, 0]
    k = Fraction(1.0 - leak) if form == "euler" else 1 / Fraction(1.0 / (1.0 - leak))
    lam, g = 1 - k, (Fraction(1) if form == "subtract-divide" else k)
    closed, power = [], Fraction(1)
    for _ in range(steps):
        power *= lam
        closed.append(float(g * Fraction(drive) * (1 - power) / (1 - lam)))
    u = np.finfo(np.float64).eps / 2
    scale = float(abs(g * Fraction(drive) / (1 - lam)))
    bound = 3 * (3 * u / (1 - 3 * u)) * scale * np.minimum(np.arange(1, steps + 1), float(1 / (1 - lam)))
    assert np.all(np.abs(potentials - np.array(closed)) <= bound + u * np.abs(closed))
