"""One time step of LIF / IF neurons on the pre-threshold potential U."""

from __future__ import annotations

import numpy as np

from eventsim.dense._common import float_dtype
from eventsim.errors import check_choice


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
    input_gain: float = 1.0,
    reset_delayed: bool = False,
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
        Per-step factor lam in [0, 1].
    reset : {"hard", "soft"}
    v_reset : float
        Value after a hard reset.
    strict : bool
        Fire on ``U > theta`` (default) or ``U >= theta``.
    input_gain : float
        g, the factor of the input current.
    reset_delayed : bool
        Reset after the leak instead of before it.

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
    # Scalars are rounded to the state's dtype once, so float32 stays float32.
    lam = dtype.type(leak)
    theta = _per_channel(np.asarray(threshold, dtype=np.float64).astype(dtype), current.shape)

    # np.where instead of the products of the equation: identical for finite
    # U and theta, and theta * 0 would be NaN for theta = inf. The gain
    # scales the summed current; the delayed soft reset is subtracted last.
    gain_current = dtype.type(input_gain) * current
    if reset == "hard":
        v_reset = dtype.type(v_reset)
        if reset_delayed:
            u = np.where(s_prev, v_reset, lam * u_prev) + gain_current
        else:
            u = lam * np.where(s_prev, v_reset, u_prev) + gain_current
    else:
        subtracted = np.where(s_prev, theta, dtype.type(0))
        if reset_delayed:
            u = (lam * u_prev + gain_current) - subtracted
        else:
            u = lam * (u_prev - subtracted) + gain_current
    s = u > theta if strict else u >= theta
    return u, s


def _per_channel(theta: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Shape a scalar or per-channel threshold to broadcast against ``(B, C, ...)``."""
    if theta.ndim == 0:
        return theta
    if theta.ndim != 1 or len(shape) < 2 or theta.shape[0] != shape[1]:
        raise ValueError(f"lif_step: {theta.shape[0] if theta.ndim == 1 else theta.shape} thresholds "
                         f"do not match the channels of shape {shape}")
    return theta.reshape((-1,) + (1,) * (len(shape) - 2))
