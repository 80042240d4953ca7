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
from eventsim.testing.strategies import DENSITIES, dyadic, random_events

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


# ===================================================== event path vs TorchCandidate
@st.composite
def form_networks(draw, dtypes=DTYPES):
    """Linear -> LIF -> Linear -> Readout or LIF, neurons in random forms, dyadic weights, dyadic input values.

    The currents are exact whatever the order of summation, so any
    difference is in the neuron step; the leaks are not dyadic.
    """
    dtype = draw(dtypes)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_in, hidden, n_out = draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(1, 5))

    def linear(n, m):
        bias = dyadic(rng, (m,), dtype) if draw(st.booleans()) else None
        return es.Linear(n, m, weight=dyadic(rng, (m, n), dtype), bias=bias)

    def lif():
        reset = draw(st.sampled_from(["hard", "soft"]))
        return es.LIF(draw(st.sampled_from([0.25, 0.5, 1.0])), leak=draw(LEAKS), reset=reset,
                      v_reset=draw(st.sampled_from([0.0, 0.5])) if reset == "hard" else 0.0,
                      strict=draw(st.booleans()), arithmetic=draw(st.sampled_from(ARITHMETIC)))

    last = es.Readout(leak=draw(LEAKS), arithmetic=draw(st.sampled_from(ARITHMETIC))) if draw(st.booleans()) else lif()
    network = es.Network([linear(n_in, hidden), lif(), linear(hidden, n_out), last], input_shape=(n_in,), dtype=dtype)
    events = random_events(rng, draw(st.integers(1, 3)), draw(st.integers(1, 12)), (n_in,),
                           draw(st.sampled_from(DENSITIES)), dtype)
    return network, events


@given(case=form_networks())
def test_torch_candidate_computes_each_form_as_the_event_path_does(case):
    pytest.importorskip("torch")
    from eventsim.testing import torch_candidate
    network, events = case
    result = network.run(events, record=("spikes", "potentials"))
    records = torch_candidate.TorchCandidate().build(network).run(events.to_dense().swapaxes(0, 1))
    for name, spikes in result.spikes.items():
        np.testing.assert_array_equal(records[name].potentials, result.potentials[name].swapaxes(0, 1), err_msg=name)
        np.testing.assert_array_equal(records[name].outputs, spikes.to_dense().swapaxes(0, 1), err_msg=name)


@given(case=form_networks(dtypes=st.just(np.dtype(np.float64))), detach=st.booleans(),
       surrogate=st.sampled_from(["fast_sigmoid", "arctan", "triangle"]))
def test_bptt_differentiates_every_form_as_autograd_differentiates_its_operations(case, detach, surrogate):
    """eventsim's bptt (the product form's derivative) against autograd through each form's own operations.

    The two are the same linear map up to the rounding of the constants
    (1 - k against lam), far inside the kit's 1e-9 of each gradient's scale.
    """
    pytest.importorskip("torch")
    from eventsim.testing import torch_candidate
    from eventsim.learning import surrogates
    from eventsim.learning.rules import BPTT
    from eventsim.testing.compare import GRADIENT_RTOL, gradient_errors
    from eventsim.testing.protocol import GradientRequest

    network, events = case
    sigma = {"fast_sigmoid": surrogates.FastSigmoid(), "arctan": surrogates.ArcTan(),
             "triangle": surrogates.Triangle()}[surrogate]
    rule = BPTT(surrogate=sigma, detach_reset=detach)
    result = network.run(events, record=rule.records)
    grad_output = np.random.default_rng(3).normal(size=(events.batch,) + network.output_shape)
    ours = rule.gradients(network, events, result, grad_output)
    model = torch_candidate.TorchCandidate().build(network)
    theirs = model.gradients(events.to_dense().swapaxes(0, 1), GradientRequest(grad_output, sigma, detach))
    assert ours.keys() == theirs.keys()
    for difference in gradient_errors(ours, theirs):
        assert difference.error <= GRADIENT_RTOL, str(difference)


# ======================================================== Norse and SpikingJelly
@st.composite
def framework_cases(draw):
    """float32 currents ``(T, batch, N)``, a random leak and threshold, and a reset; nonzero currents."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    steps, batch, n = draw(st.integers(1, 40)), draw(st.integers(1, 3)), draw(st.integers(1, 50))
    currents = rng.normal(draw(st.sampled_from([0.3, 1.0, 2.0])), 1.0, (steps, batch, n)).astype(np.float32)
    currents[currents == 0] = np.float32(0.5)
    theta = float(np.float32(draw(st.floats(0.2, 2.0))))  # a float32 number: every framework rounds theta alike
    return currents, draw(LEAKS), theta, draw(st.sampled_from(["hard", "soft"]))


def reset_potentials(potentials: np.ndarray, spikes: np.ndarray, layer: es.LIF) -> np.ndarray:
    """R = R(U, s), the potential after the reset, which the frameworks keep as their state."""
    theta = potentials.dtype.type(layer.threshold)
    return np.where(spikes, potentials - theta if layer.reset == "soft" else layer.v_reset, potentials)


def eventsim_run(arithmetic: str, currents: np.ndarray, **options) -> tuple[np.ndarray, np.ndarray]:
    """The event path's spikes and potentials after the reset, R, for a layer in ``arithmetic``.

    For "product" the gain is given explicitly: ``options`` carries the
    form's (``1 - leak``, or 1).
    """
    layer = es.LIF(arithmetic=arithmetic, **options)
    potentials, spikes = event_records(es.Network([layer], input_shape=currents.shape[2:]), currents)
    return spikes, reset_potentials(potentials, spikes, layer)


def norse_run(cell: str, currents: np.ndarray, leak: float, theta: float, reset: str) -> tuple[np.ndarray, np.ndarray]:
    """Norse's spikes and potentials after the reset, stepping ``cell`` with dt = 1 and v_leak = 0."""
    torch = pytest.importorskip("torch")
    norse = pytest.importorskip("norse.torch")
    as_tensor = lambda value: torch.tensor(value, dtype=torch.float32)  # noqa: E731
    common = dict(tau_mem_inv=as_tensor(1.0 - leak), v_leak=as_tensor(0.0), v_th=as_tensor(theta),
                  v_reset=as_tensor(0.0))
    if cell == "LIFBoxCell":
        method = norse.reset_value if reset == "hard" else norse.reset_subtract
        neuron = norse.LIFBoxCell(norse.LIFBoxParameters(reset_method=method, **common), dt=1.0)
    else:  # a synaptic current that lasts one step is the step's input
        assert reset == "hard", "Norse's LIF resets to v_reset only"
        neuron = norse.LIFCell(norse.LIFParameters(tau_syn_inv=as_tensor(1.0), **common), dt=1.0)
    state, spikes, after = None, [], []
    with torch.no_grad():
        for current in torch.from_numpy(currents):
            z, state = neuron(current, state)
            spikes.append(z.numpy() != 0)
            after.append(state.v.numpy().copy())
    return np.stack(spikes), np.stack(after)


def spikingjelly_run(currents: np.ndarray, leak: float, theta: float, reset: str, decay_input: bool,
                     step_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """SpikingJelly's spikes and potentials after the reset: LIFNode with tau = 1 / (1 - leak).

    v_reset 0.0 (hard) or None (soft). Step mode "s" runs its reference
    recursion, "m" its registered CPU kernel.
    """
    torch = pytest.importorskip("torch")
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    node = sj.LIFNode(tau=1.0 / (1.0 - leak), decay_input=decay_input, v_threshold=theta,
                      v_reset=0.0 if reset == "hard" else None, step_mode=step_mode, store_v_seq=True)
    with torch.no_grad():
        x = torch.from_numpy(currents)
        if step_mode == "m":
            return node(x).numpy() != 0, node.v_seq.numpy()
        steps = [(node(current).numpy() != 0, node.v.numpy().copy()) for current in x]
    return np.stack([s for s, _ in steps]), np.stack([v for _, v in steps])


@given(case=framework_cases(), cell=st.sampled_from(["LIFBoxCell", "LIFCell"]))
def test_euler_is_norse_bit_for_bit(case, cell):
    """Norse 1.1's box neuron and its LIF with a one-step synapse (dt * tau_syn_inv = 1)."""
    currents, leak, theta, reset = case
    reset = "hard" if cell == "LIFCell" else reset
    expected = norse_run(cell, currents, leak, theta, reset)
    for ours, theirs in zip(eventsim_run("euler", currents, threshold=theta, leak=leak, reset=reset), expected):
        np.testing.assert_array_equal(ours, theirs)


@given(case=framework_cases(), decay_input=st.booleans(), step_mode=st.sampled_from(["s", "m"]))
def test_divide_forms_are_spikingjelly_bit_for_bit(case, decay_input, step_mode):
    """SpikingJelly 2.0's LIFNode, which fires on >=: strict=False."""
    currents, leak, theta, reset = case
    expected = spikingjelly_run(currents, leak, theta, reset, decay_input, step_mode)
    form = "euler-divide" if decay_input else "subtract-divide"
    ours = eventsim_run(form, currents, threshold=theta, leak=leak, reset=reset, strict=False)
    for ours, theirs in zip(ours, expected):
        np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("leak", [0.9, 1 - 1 / 3, float(np.exp(-1 / 20))])
@pytest.mark.parametrize("framework", ["norse", "spikingjelly-decay-input", "spikingjelly"])
def test_the_product_form_does_not_reproduce_the_frameworks(framework, leak):
    """The same case with eventsim's default form: the frameworks' numbers differ (the tests above can fail).

    Soft reset and a threshold that most neurons reach, so that rounding
    differences can also move spikes; 40 steps of 200 neurons.
    """
    currents = np.random.default_rng(11).normal(0.5, 1.0, (40, 1, 200)).astype(np.float32)
    options = dict(threshold=0.75, leak=leak, reset="soft")
    if framework == "norse":
        theirs, form = norse_run("LIFBoxCell", currents, leak, 0.75, "soft"), "euler"
    else:
        decay_input = framework == "spikingjelly-decay-input"
        theirs = spikingjelly_run(currents, leak, 0.75, "soft", decay_input, "m")
        form, options["strict"] = ("euler-divide" if decay_input else "subtract-divide"), False
    gain = 1.0 if form == "subtract-divide" else 1.0 - leak
    product = eventsim_run("product", currents, input_gain=gain, **options)
    ours = eventsim_run(form, currents, **options)
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert not np.array_equal(product[1], theirs[1])
    np.testing.assert_allclose(product[1], theirs[1], rtol=0, atol=1e-5)  # rounding, not another neuron


@given(case=framework_cases())
def test_euler_readout_is_norse_leaky_integrator_bit_for_bit(case):
    torch = pytest.importorskip("torch")
    norse = pytest.importorskip("norse.torch")
    currents, leak, _, _ = case
    cell = norse.LIBoxCell(norse.LIBoxParameters(tau_mem_inv=torch.tensor(1.0 - leak), v_leak=torch.tensor(0.0)),
                           dt=1.0)
    state, potentials = None, []
    with torch.no_grad():
        for current in torch.from_numpy(currents):
            v, state = cell(current, state)
            potentials.append(v.numpy())
    network = es.Network([es.Readout(leak=leak, arithmetic="euler")], input_shape=currents.shape[2:])
    np.testing.assert_array_equal(event_records(network, currents)[0], np.stack(potentials))


@given(case=framework_cases())
def test_euler_divide_readout_is_spikingjelly_non_spiking_lif_bit_for_bit(case):
    torch = pytest.importorskip("torch")
    sj = pytest.importorskip("spikingjelly.activation_based.neuron")
    currents, leak, _, _ = case
    with torch.no_grad():
        potentials = torch.stack(sj.NonSpikingLIFNode(tau=1.0 / (1.0 - leak))(torch.from_numpy(currents))).numpy()
    network = es.Network([es.Readout(leak=leak, arithmetic="euler-divide")], input_shape=currents.shape[2:])
    np.testing.assert_array_equal(event_records(network, currents)[0], potentials)


# ========================================================================== NIR
@pytest.mark.parametrize("form", FORMS)
def test_nir_round_trip_keeps_the_form_and_a_foreign_graph_imports_as_product(form):
    pytest.importorskip("nir")
    from eventsim.nir import from_nir, to_nir

    rng = np.random.default_rng(5)
    layers = [es.Linear(3, 4, weight=dyadic(rng, (4, 3), np.float32)), es.LIF(0.5, leak=0.8, arithmetic=form),
              es.Linear(4, 2, weight=dyadic(rng, (2, 4), np.float32)), es.Readout(leak=0.7, arithmetic=form)]
    network = es.Network(layers, input_shape=(3,))
    graph = to_nir(network)
    back = from_nir(graph)
    assert [repr(layer) for layer in back.layers] == [repr(layer) for layer in network.layers]
    for node in graph.nodes.values():  # as another tool writes it: NIR's fields only
        node.metadata = {}
    foreign = from_nir(graph)
    assert {layer.arithmetic for layer in foreign.layers if isinstance(layer, es.LIF)} == {"product"}


def test_an_unknown_form_in_nir_metadata_names_the_node():
    pytest.importorskip("nir")
    import json

    from eventsim.errors import NIRError
    from eventsim.nir import from_nir, to_nir

    layers = [es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)), es.LIF(1.0, leak=0.8, arithmetic="euler")]
    network = es.Network(layers, input_shape=(2,))
    graph = to_nir(network)
    node = graph.nodes["lif1"]
    options = json.loads(node.metadata["eventsim"])
    node.metadata["eventsim"] = json.dumps(dict(options, arithmetic="fma"))
    with pytest.raises(NIRError, match="'lif1'.*unknown arithmetic 'fma'"):
        from_nir(graph)


# ====================================================================== conform
def test_torch_candidate_conforms_on_networks_drawn_with_every_form():
    """The kit on networks whose LIF layers and readouts draw their form: exact, float bound and gradients."""
    pytest.importorskip("torch")
    from eventsim.testing import torch_candidate
    from eventsim.testing import conform
    from eventsim.testing.strategies import Features

    features = Features().including(*FORMS)
    report = conform(torch_candidate.TorchCandidate(), features=features, examples=15)
    assert report.ok, str(report)
