"""One time step of LIF / IF neurons on the pre-threshold potential U."""

from __future__ import annotations

import numpy as np

from eventsim.dense._common import float_dtype
from eventsim.errors import OptionError, check_choice

#: The arithmetic forms of docs/semantics.md ("Neurons", "Arithmetic forms"),
#: named here from that text so that the twin does not depend on the layer
#: that validates the same option.
ARITHMETIC_FORMS = ("product", "euler", "euler-divide", "subtract-divide")


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
    neurons are ``leak=1``; a readout is ``threshold=inf``.

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
    check_choice("arithmetic", arithmetic, ARITHMETIC_FORMS)
    u_prev = np.asarray(u_prev)
    if u_prev.dtype != dtype:
        raise ValueError(f"lif_step: potential is {u_prev.dtype} but the current is {dtype}")
    s_prev = np.asarray(s_prev, dtype=bool)
    if not (u_prev.shape == s_prev.shape == current.shape):
        raise ValueError(
            f"lif_step: shapes differ: potential {u_prev.shape}, spikes {s_prev.shape}, current {current.shape}"
        )
    if arithmetic != "product":
        _check_form(arithmetic, float(leak), input_gain, reset_delayed)
    # Scalars are rounded to the state's dtype once, so float32 stays float32.
    theta = _per_channel(np.asarray(threshold, dtype=np.float64).astype(dtype), current.shape)
    v_reset = dtype.type(v_reset)
    gain = 1.0 if input_gain is None else input_gain  # only "product" reads it; the others fix theirs

    if reset_delayed:
        u = _delayed_product(u_prev, s_prev, current, theta, dtype.type(leak), dtype.type(gain), reset, v_reset)
    else:
        r = _after_reset(u_prev, s_prev, theta, reset, v_reset)
        u = _form(arithmetic, r, current, float(leak), gain, dtype)
    s = u > theta if strict else u >= theta
    return u, s


def _after_reset(u: np.ndarray, s: np.ndarray, theta: np.ndarray, reset: str, v_reset: np.floating) -> np.ndarray:
    """R: ``v_reset`` (hard) or ``U - theta`` (soft, one rounding) where the neuron fired, else U.

    np.where instead of the products ``U (1 - s) + v_reset s`` and ``U - theta s``
    of the equation: identical for finite U and theta, and ``theta * 0``
    would be NaN for theta = inf (a readout).
    """
    if reset == "hard":
        return np.where(s, v_reset, u)
    return np.where(s, u - theta, u)


def _form(arithmetic: str, r: np.ndarray, current: np.ndarray, leak: float, gain: float,
          dtype: np.dtype) -> np.ndarray:
    """U from R and I by the operations of ``arithmetic``, one rounding per written operation.

    NumPy performs each binary operation of an expression as its own ufunc
    call in the array's dtype, so the parentheses below are the order of the
    roundings; no multiply-add is fused.
    """
    if arithmetic == "product":
        lam, g = dtype.type(leak), dtype.type(gain)
        return (lam * r) + (g * current)
    if arithmetic == "euler":
        k = dtype.type(1.0 - leak)  # in float64, then rounded once
        return r + (k * (current - r))
    d = dtype.type(1.0 / (1.0 - leak))  # both operations in float64, then rounded once
    if arithmetic == "euler-divide":
        return r + ((current - r) / d)
    return (r - (r / d)) + current  # "subtract-divide"


def _delayed_product(u_prev: np.ndarray, s_prev: np.ndarray, current: np.ndarray, theta: np.ndarray,
                     lam: np.floating, g: np.floating, reset: str, v_reset: np.floating) -> np.ndarray:
    """The delayed reset, left to right; the soft reset's theta is subtracted last."""
    gain_current = g * current
    if reset == "hard":
        return np.where(s_prev, v_reset, lam * u_prev) + gain_current
    return (lam * u_prev + gain_current) - np.where(s_prev, theta, lam.dtype.type(0))


def _check_form(arithmetic: str, leak: float, input_gain: float | None, reset_delayed: bool) -> None:
    """The constraints of a form other than "product" (docs/semantics.md, "Arithmetic forms")."""
    if not 0.0 <= leak < 1.0:
        raise OptionError(f"lif_step: arithmetic={arithmetic!r} needs 0 <= leak < 1, got leak={leak!r}; "
                          f"IF neurons (leak 1) compute 'product'")
    if reset_delayed:
        raise OptionError(f"lif_step: reset_delayed=True needs arithmetic='product', got {arithmetic!r}")
    gain = 1.0 if arithmetic == "subtract-divide" else 1.0 - leak
    if input_gain is not None and input_gain != gain:
        raise OptionError(f"lif_step: arithmetic={arithmetic!r} fixes the input gain to {gain!r}; "
                          f"got input_gain={input_gain!r} (leave it out)")


def _per_channel(theta: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Shape a scalar or per-channel threshold to broadcast against ``(B, C, ...)``."""
    if theta.ndim == 0:
        return theta
    if theta.ndim != 1 or len(shape) < 2 or theta.shape[0] != shape[1]:
        raise ValueError(f"lif_step: {theta.shape[0] if theta.ndim == 1 else theta.shape} thresholds "
                         f"do not match the channels of shape {shape}")
    return theta.reshape((-1,) + (1,) * (len(shape) - 2))
