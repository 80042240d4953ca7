"""One time step of LIF / IF neurons: the state record and the operations of the step.

docs/semantics.md, "Neurons", "Arithmetic forms" and "State beyond the
potential". :func:`neuron_step` is the step on the state record
:class:`NeuronState` (the potential after the reset R and the synaptic
current J); :func:`lif_step` is the same step written on the pre-threshold
potential and spike of the step before, ``(U[t-1], s[t-1])``, for neurons
with one spike per step and no synaptic current.
"""

from __future__ import annotations

from math import isfinite, isnan
from typing import NamedTuple

import numpy as np

from eventsim.dense._common import float_dtype
from eventsim.errors import OptionError, check_choice

#: The arithmetic forms of docs/semantics.md ("Neurons", "Arithmetic forms"),
#: named here from that text so that the twin does not depend on the layer
#: that validates the same option.
ARITHMETIC_FORMS = ("product", "euler", "euler-divide", "subtract-divide")


class NeuronState(NamedTuple):
    """What a neuron layer carries from step t to step t+1 (docs/semantics.md, "State beyond the potential").

    Attributes
    ----------
    potential : float array
        R[t], the potential after the reset and the clamp. With
        ``reset_delayed`` the reset of step t acts at step t+1, so this is
        U[t] itself and ``spikes`` says where the reset is pending.
    synaptic : float array or None
        J[t], the synaptic current; None for a neuron without one.
    spikes : float array
        n[t], the number of spikes of step t (0 or 1 unless ``max_spikes``
        allows more), in the state's dtype.
    """

    potential: np.ndarray
    synaptic: np.ndarray | None
    spikes: np.ndarray


def initial_state(shape: tuple[int, ...], dtype: np.dtype | type, *, v_init: float = 0.0,
                  synaptic: bool = False) -> NeuronState:
    """The state before the first step: ``R[0] = v_init``, ``J[0] = 0``, no spikes.

    ``v_init`` (the layer's ``v_init``, which defaults to its ``v_rest``) is
    rounded once to ``dtype``. ``synaptic`` gives the state a synaptic
    current.
    """
    dtype = np.dtype(dtype)
    if not isinstance(v_init, (int, float, np.integer, np.floating)) or not isfinite(v_init):
        raise OptionError(f"initial_state: v_init must be a finite number, got {v_init!r}")
    zeros = np.zeros(shape, dtype)
    return NeuronState(np.full(shape, dtype.type(v_init)), zeros.copy() if synaptic else None, zeros)


def neuron_step(
    state: NeuronState,
    current: np.ndarray,
    *,
    threshold: float | np.ndarray,
    leak: float,
    reset: str = "hard",
    v_reset: float = 0.0,
    strict: bool = True,
    input_gain: float | None = None,
    reset_delayed: bool = False,
    arithmetic: str = "product",
    synapse_leak: float | None = None,
    synapse_gain: float = 1.0,
    v_rest: float = 0.0,
    v_min: float = -np.inf,
    max_spikes: int | None = 1,
) -> tuple[NeuronState, np.ndarray]:
    """Advance neurons by one step from ``state`` (step t-1) with the input current ``I[t]``.

    docs/semantics.md, "State beyond the potential", steps 1-5 in this
    order, every operation one IEEE 754 operation in the dtype of
    ``current`` (no fused multiply-add), constants rounded once to it:

    1. synaptic current (``synapse_leak`` alpha given), ``X = J``::

           a = alpha * J;  b = h * I  (b = I when h = 1);  J = a + b

       without one, ``X = I``;
    2. potential, from ``R = R[t-1]`` and X in the form ``arithmetic``; the
       operations marked (rest) are left out when ``v_rest`` rounds to 0::

           "product"          (rest) p = R - v_rest; a = lam * p; (rest) a = v_rest + a; b = g * X; U = a + b
           "euler"            a = (v_rest - R) + X (rest; else X - R); b = k * a; U = R + b
           "euler-divide"     (rest) p = R - v_rest; a = X - p (else X - R); b = a / d; U = R + b
           "subtract-divide"  (rest) p = R - v_rest; a = p / d (else R / d); b = R - a; U = b + X

       with k = 1 - leak and d = 1 / (1 - leak) computed in float64, then
       rounded (the Euler forms' gain is ``1 - leak``, "subtract-divide"'s 1);
    3. spikes: none unless ``U > theta`` (``>=`` when not ``strict``); then
       ``n = 1`` for ``max_spikes`` M = 1, else, with ``q = U / theta``::

           n = min(M, floor(q))                  (strict=False)
           n = min(M, max(1, ceil(q) - 1))       (strict=True)

       (M = None: no bound);
    4. reset where n > 0: ``R = v_reset`` (hard) or ``R = U - m`` with
       ``m = n * theta`` (soft; m = theta when M = 1); elsewhere R = U;
    5. clamp: ``R = v_min`` where ``R < v_min`` (a NaN stays NaN).

    With ``reset_delayed`` ("product" only, one spike per step, no rest
    potential or clamp) the reset of step t-1 acts after the leak, evaluated
    left to right (snnTorch's ``Leaky`` / ``Synaptic``)::

        U = lam * U[t-1] + g * X - theta * s[t-1]                      (reset="soft")
        U = (1 - s[t-1]) * lam * U[t-1] + s[t-1] * v_reset + g * X     (reset="hard")

    Parameters
    ----------
    state : NeuronState
        The state after step t-1 (:func:`initial_state` before the first
        step); it has a synaptic current exactly when ``synapse_leak`` is given.
    current : float32 or float64 array, shape ``(B, C, H, W)`` or ``(B, N)``
        ``I[t]``, after the layer's norm, recurrent currents included.
    threshold : float or 1-D array
        theta, one value or one per channel (axis 1). ``np.inf`` never fires.
    leak : float
        lam in [0, 1], the layer's float64 value (the forms other than
        "product" derive k and d from it and need ``leak < 1``).
    reset, v_reset, strict, input_gain, reset_delayed, arithmetic
        As in :func:`lif_step`.
    synapse_leak : float in [0, 1], optional
        alpha; None: no synaptic current.
    synapse_gain : float
        h > 0, the factor of the input in J.
    v_rest : float
        The potential the neuron leaks towards.
    v_min : float
        Lower clamp of R; -inf: none.
    max_spikes : int >= 1 or None
        M, the most spikes in one step; None: no bound.

    Returns
    -------
    state : NeuronState
        The state after step t.
    u : array
        ``U[t]``, the pre-threshold potential (what a run records).
    """
    current = np.asarray(current)
    dtype = float_dtype(current, "neuron_step current")
    _check_options(reset, arithmetic, float(leak), input_gain, reset_delayed, synapse_leak, synapse_gain,
                   v_rest, v_min, max_spikes)
    _check_state(state, current, synapse_leak is not None)
    # Scalars are rounded to the state's dtype once, so float32 stays float32.
    theta = _per_channel(np.asarray(threshold, dtype=np.float64).astype(dtype), current.shape)
    gain = 1.0 if input_gain is None else input_gain  # only "product" reads it; the others fix theirs

    synaptic = None if synapse_leak is None else _synaptic(state.synaptic, current, synapse_leak, synapse_gain, dtype)
    x = current if synaptic is None else synaptic
    if reset_delayed:
        u = _delayed_product(state.potential, state.spikes > 0, x, theta, dtype.type(leak), dtype.type(gain),
                             reset, dtype.type(v_reset))
        n = _fired(u, theta, strict).astype(dtype)
        return NeuronState(u, synaptic, n), u
    u = _potential(arithmetic, state.potential, x, float(leak), gain, dtype.type(v_rest), dtype)
    n = _spike_count(u, theta, strict, max_spikes, dtype)
    r = _after_reset(u, n, theta, reset, dtype.type(v_reset), single=max_spikes == 1)
    if v_min != -np.inf:
        floor_ = dtype.type(v_min)
        r = np.where(r < floor_, floor_, r)  # NaN < v_min is False: a NaN stays NaN
    return NeuronState(r, synaptic, n), u


def lif_step(
    u_prev: np.ndarray,
    s_prev: np.ndarray,
    current: np.ndarray,
    *,
    threshold: float | np.ndarray,
    leak: float,
    reset: str = "hard",
    v_reset: float = 0.0,
    strict: bool = True,
    input_gain: float | None = None,
    reset_delayed: bool = False,
    arithmetic: str = "product",
) -> tuple[np.ndarray, np.ndarray]:
    """Advance LIF neurons by one step (docs/semantics.md, "Neurons")::

        U[t] = lam * R(U[t-1], s[t-1]) + g * I[t]
        s[t] = 1[U[t] > theta]                       (">=" when strict is False)
        R    = U * (1 - s) + v_reset * s             (reset="hard")
             = U - theta * s                         (reset="soft")

    and with ``reset_delayed`` the reset acts after the leak, evaluated left
    to right::

        U[t] = lam * U[t-1] + g * I[t] - theta * s[t-1]                     (reset="soft")
        U[t] = (1 - s[t-1]) * lam * U[t-1] + s[t-1] * v_reset + g * I[t]    (reset="hard")

    This is Lee et al. 2020 (Sec. 2.1 and Algorithm 1: leak after
    integration, hard reset to 0) written on U; the delayed reset is
    snnTorch's ``Leaky``, and ``g = 1 - lam`` the forward-Euler neuron of
    Norse and NIR. The caller starts from ``U[0] = 0``, ``s[0] = False``. IF
    neurons are ``leak=1``; a readout is ``threshold=inf``. It is
    :func:`neuron_step` with one spike per step, no synaptic current, rest
    potential or clamp, started from ``R = R(U[t-1], s[t-1])``.

    ``arithmetic`` names the floating-point operations that compute U from
    ``R = R(U[t-1], s[t-1])`` and ``I = I[t]`` ("Arithmetic forms"), each one
    rounding to the dtype, in this order::

        "product"          U = (lam * R) + (g * I)            the equations above
        "euler"            U = R + (k * (I - R))              k = 1 - lam     (Norse)
        "euler-divide"     U = R + ((I - R) / d)              d = 1 / (1 - lam)  (SpikingJelly, decay_input)
        "subtract-divide"  U = (R - (R / d)) + I              (SpikingJelly, decay_input=False)

    All four equal ``lam R + g I`` in exact arithmetic (g = k = 1/d = 1 - lam
    for the Euler forms, g = 1 for "subtract-divide") and differ in the
    rounding, which is why a framework is matched bit for bit only by its own
    form. k and d are computed from the float64 ``leak`` in float64 and
    rounded once to the dtype, as a framework handed ``1 - leak`` or
    ``tau = 1 / (1 - leak)`` as a Python float rounds them.

    Parameters
    ----------
    u_prev : float array, shape ``(B, C, H, W)`` or ``(B, N)``
        ``U[t-1]``, same dtype as ``current``.
    s_prev : bool array, same shape
        ``s[t-1]``.
    current : float32 or float64 array, same shape
        ``I[t]``.
    threshold : float or 1-D array
        theta, one value or one per channel (axis 1; for a flat ``(B, N)``
        layer every neuron is its own channel). ``np.inf`` never fires.
    leak : float
        Per-step factor lam in [0, 1] (the float64 value of the layer: the
        forms other than "product" derive their constants from it, and need
        ``leak < 1``).
    reset : {"hard", "soft"}
    v_reset : float
        Value after a hard reset.
    strict : bool
        Fire on ``U > theta`` (default) or ``U >= theta``.
    input_gain : float, optional
        g, the factor of the input current in the "product" form (default 1).
        The other forms fix their gain (``1 - leak``, or 1 for
        "subtract-divide"); given, it must equal that gain.
    reset_delayed : bool
        Reset after the leak instead of before it ("product" only).
    arithmetic : {"product", "euler", "euler-divide", "subtract-divide"}
        The form.

    Returns
    -------
    u : array, dtype of ``current``
        ``U[t]``.
    s : bool array
        ``s[t]``.
    """
    current = np.asarray(current)
    dtype = float_dtype(current, "lif_step current")
    check_choice("reset", reset, ("hard", "soft"))
    u_prev = np.asarray(u_prev)
    if u_prev.dtype != dtype:
        raise ValueError(f"lif_step: potential is {u_prev.dtype} but the current is {dtype}")
    s_prev = np.asarray(s_prev, dtype=bool)
    if not (u_prev.shape == s_prev.shape == current.shape):
        raise ValueError(
            f"lif_step: shapes differ: potential {u_prev.shape}, spikes {s_prev.shape}, current {current.shape}"
        )
    fired = s_prev.astype(dtype)
    if reset_delayed:
        potential = u_prev  # the delayed reset acts inside the step
    else:
        theta = _per_channel(np.asarray(threshold, dtype=np.float64).astype(dtype), current.shape)
        potential = _after_reset(u_prev, fired, theta, reset, dtype.type(v_reset), single=True)
    state, u = neuron_step(
        NeuronState(potential, None, fired), current, threshold=threshold, leak=leak, reset=reset,
        v_reset=v_reset, strict=strict, input_gain=input_gain, reset_delayed=reset_delayed, arithmetic=arithmetic,
    )
    return u, state.spikes > 0


def _synaptic(j: np.ndarray, current: np.ndarray, alpha: float, gain: float, dtype: np.dtype) -> np.ndarray:
    """``J = alpha * J + h * I``: three roundings, or two when h is 1 (step 1)."""
    h = dtype.type(gain)
    b = current if h == 1 else h * current
    return (dtype.type(alpha) * j) + b


def _potential(arithmetic: str, r: np.ndarray, x: np.ndarray, leak: float, gain: float, rest: np.floating,
               dtype: np.dtype) -> np.ndarray:
    """U from R and X by the operations of ``arithmetic`` (step 2), one rounding per written operation.

    NumPy performs each binary operation of an expression as its own ufunc
    call in the array's dtype, so the parentheses below are the order of the
    roundings; no multiply-add is fused. ``rest == 0`` leaves out the
    operations marked (rest).
    """
    if arithmetic == "euler":
        k = dtype.type(1.0 - leak)  # in float64, then rounded once
        a = ((rest - r) + x) if rest != 0 else (x - r)
        return r + (k * a)
    p = (r - rest) if rest != 0 else r
    if arithmetic == "product":
        lam, g = dtype.type(leak), dtype.type(gain)
        a = lam * p
        if rest != 0:
            a = rest + a
        return a + (g * x)
    d = dtype.type(1.0 / (1.0 - leak))  # both operations in float64, then rounded once
    if arithmetic == "euler-divide":
        return r + ((x - p) / d)
    return (r - (p / d)) + x  # "subtract-divide"


def _fired(u: np.ndarray, theta: np.ndarray, strict: bool) -> np.ndarray:
    return u > theta if strict else u >= theta


def _spike_count(u: np.ndarray, theta: np.ndarray, strict: bool, max_spikes: int | None,
                 dtype: np.dtype) -> np.ndarray:
    """n[t] (step 3): 0 where U does not cross theta, else 1, or the thresholds crossed up to M."""
    fired = _fired(u, theta, strict)
    if max_spikes == 1:
        return fired.astype(dtype)
    q = u / theta  # one division
    one = dtype.type(1)
    # U > theta may still give q = 1 after rounding: max(1, ...) keeps the spike the comparison granted.
    crossed = np.maximum(one, np.ceil(q) - one) if strict else np.floor(q)
    if max_spikes is not None:
        crossed = np.minimum(dtype.type(max_spikes), crossed)
    return np.where(fired, crossed, dtype.type(0))


def _after_reset(u: np.ndarray, n: np.ndarray, theta: np.ndarray, reset: str, v_reset: np.floating,
                 single: bool) -> np.ndarray:
    """R (step 4): ``v_reset`` (hard) or ``U - n theta`` (soft) where n > 0, else U.

    np.where instead of the products ``U (1 - s) + v_reset s`` and ``U - theta s``
    of the equation: identical for finite U and theta, and ``theta * 0``
    would be NaN for theta = inf (a readout). With one spike per step
    ``m = theta`` (``1 * theta`` is theta anyway; the subtraction is the one
    rounding).
    """
    fired = n > 0
    if reset == "hard":
        return np.where(fired, v_reset, u)
    m = theta if single else n * theta
    return np.where(fired, u - m, u)


def _delayed_product(u_prev: np.ndarray, s_prev: np.ndarray, current: np.ndarray, theta: np.ndarray,
                     lam: np.floating, g: np.floating, reset: str, v_reset: np.floating) -> np.ndarray:
    """The delayed reset, left to right; the soft reset's theta is subtracted last."""
    gain_current = g * current
    if reset == "hard":
        return np.where(s_prev, v_reset, lam * u_prev) + gain_current
    return (lam * u_prev + gain_current) - np.where(s_prev, theta, lam.dtype.type(0))


def _check_options(reset: str, arithmetic: str, leak: float, input_gain: float | None, reset_delayed: bool,
                   synapse_leak: float | None, synapse_gain: float, v_rest: float, v_min: float,
                   max_spikes: int | None) -> None:
    """The constraints of docs/semantics.md on the options of one step; OptionError names the option."""
    check_choice("reset", reset, ("hard", "soft"))
    check_choice("arithmetic", arithmetic, ARITHMETIC_FORMS)
    if arithmetic != "product":
        _check_form(arithmetic, leak, input_gain, reset_delayed)
    if synapse_leak is not None and not (_is_number(synapse_leak) and 0.0 <= synapse_leak <= 1.0):
        raise OptionError(f"neuron step: synapse_leak must be in [0, 1], got {synapse_leak!r}")
    if not (_is_number(synapse_gain) and isfinite(synapse_gain) and synapse_gain > 0):
        raise OptionError(f"neuron step: synapse_gain must be positive and finite, got {synapse_gain!r}")
    if not (_is_number(v_rest) and isfinite(v_rest)):
        raise OptionError(f"neuron step: v_rest must be a finite number, got {v_rest!r}")
    if not _is_number(v_min) or isnan(v_min) or v_min == np.inf:
        raise OptionError(f"neuron step: v_min must be a number or -inf, got {v_min!r}")
    if max_spikes is not None and (not isinstance(max_spikes, (int, np.integer))
                                   or isinstance(max_spikes, (bool, np.bool_)) or max_spikes < 1):
        raise OptionError(f"neuron step: max_spikes must be an int >= 1 or None (no bound), got {max_spikes!r}")
    if reset_delayed:
        clash = [what for what, on in (("v_rest", v_rest != 0), ("v_min", v_min != -np.inf),
                                       ("max_spikes", max_spikes != 1)) if on]
        if clash:
            raise OptionError(f"neuron step: reset_delayed=True does not combine with {', '.join(clash)} "
                              "(docs/semantics.md, 'State beyond the potential')")


def _check_form(arithmetic: str, leak: float, input_gain: float | None, reset_delayed: bool) -> None:
    """The constraints of a form other than "product" (docs/semantics.md, "Arithmetic forms")."""
    if not 0.0 <= leak < 1.0:
        raise OptionError(f"neuron step: arithmetic={arithmetic!r} needs 0 <= leak < 1, got leak={leak!r}; "
                          f"IF neurons (leak 1) compute 'product'")
    if reset_delayed:
        raise OptionError(f"neuron step: reset_delayed=True needs arithmetic='product', got {arithmetic!r}")
    gain = 1.0 if arithmetic == "subtract-divide" else 1.0 - leak
    if input_gain is not None and input_gain != gain:
        raise OptionError(f"neuron step: arithmetic={arithmetic!r} fixes the input gain to {gain!r}; "
                          f"got input_gain={input_gain!r} (leave it out)")


def _check_state(state: NeuronState, current: np.ndarray, synaptic: bool) -> None:
    """The state must match the current in dtype and shape, and have J exactly when the step uses it."""
    parts = {"potential": state.potential, "spikes": state.spikes}
    if state.synaptic is not None:
        parts["synaptic current"] = state.synaptic
    for what, value in parts.items():
        if not isinstance(value, np.ndarray) or value.dtype != current.dtype or value.shape != current.shape:
            got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise ValueError(f"neuron step: the state's {what} is {got}, the current {current.dtype} {current.shape}")
    if synaptic != (state.synaptic is not None):
        problem = "given but the state has no" if synaptic else "None but the state has a"
        raise ValueError(f"neuron step: synapse_leak is {problem} synaptic current")


def _is_number(x: object) -> bool:
    return not isinstance(x, (bool, np.bool_)) and isinstance(x, (int, float, np.integer, np.floating))


def _per_channel(theta: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Shape a scalar or per-channel threshold to broadcast against ``(B, C, ...)``."""
    if theta.ndim == 0:
        return theta
    if theta.ndim != 1 or len(shape) < 2 or theta.shape[0] != shape[1]:
        raise ValueError(f"neuron step: {theta.shape[0] if theta.ndim == 1 else theta.shape} thresholds "
                         f"do not match the channels of shape {shape}")
    return theta.reshape((-1,) + (1,) * (len(shape) - 2))
