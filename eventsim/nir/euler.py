"""NIR's continuous-time neuron parameters and eventsim's discrete step.

NIR's LIF and LI nodes integrate ``tau dv/dt = (v_leak - v) + r I``; one
forward-Euler step of length ``dt`` is

    v[t] = v[t-1] + dt/tau * (v_leak - v[t-1] + r I[t])
         = (1 - dt/tau) * v[t-1] + (dt r / tau) * I[t] + (dt / tau) * v_leak

which is eventsim's ``U[t] = lam * R(U[t-1]) + g * I[t]`` (docs/semantics.md,
"Neurons") with

    lam = 1 - dt/tau,   g = dt * r / tau     (LIF, LI)
    lam = 1,            g = dt * r           (IF, I: dv/dt = r I)

and a constant drive ``(dt / tau) v_leak = g * (v_leak / r)`` per step.
docs/nir.md states the conventions this implies. :func:`step_parameters` is
the one formula import uses; :func:`continuous_parameters` inverts it for
export and checks, with that same formula, that the step parameters come back
to the last bit.
"""

from __future__ import annotations

import numpy as np

#: How many neighbouring float64 values export tries around the closed-form
#: tau (and r) before it gives up on an exact round trip.
SEARCH_ULPS = 64


def step_parameters(tau: float | None, r: float, dt: float) -> tuple[float, float]:
    """``(lam, g)`` of one Euler step: ``(1 - dt/tau, dt*r/tau)``, or ``(1, dt*r)`` when ``tau`` is None.

    Evaluated in float64 exactly as written (``dt/tau`` then ``1 - .``;
    ``dt*r`` then ``/ tau``): export relies on this order.
    """
    dt, r = float(dt), float(r)
    if tau is None:
        return 1.0, dt * r
    tau = float(tau)
    return 1.0 - dt / tau, (dt * r) / tau


def continuous_parameters(leak: float, gain: float, dt: float) -> tuple[float | None, float]:
    """``(tau, r)`` whose :func:`step_parameters` give back ``(leak, gain)``, exactly where possible.

    ``tau`` is None for ``leak == 1`` (an IF or I node). Starts from the
    closed form ``tau = dt / (1 - lam)``, ``r = g tau / dt`` and walks up to
    :data:`SEARCH_ULPS` neighbouring float64 values on each side for one that
    reproduces lam (then g) bit for bit, because the closed form rounded to
    float64 need not. Some leaks have no such tau (below 0.5, ``1 - dt/tau``
    cannot produce a lam whose last bit ``1 - x`` cannot carry); then the
    closed form is returned, off by an ulp or so, and eventsim's own files
    carry the exact values in their metadata (docs/nir.md).
    """
    leak, gain, dt = float(leak), float(gain), float(dt)
    tau = None
    if leak != 1.0:
        closed = dt / (1.0 - leak)
        tau = _search(closed, lambda t: step_parameters(t, 1.0, dt)[0] == leak, closed)
    start = gain / dt if tau is None else gain * tau / dt
    return tau, _search(start, lambda v: step_parameters(tau, v, dt)[1] == gain, start)


def _search(start: float, exact, fallback: float) -> float:
    """The float64 nearest ``start`` (by ulps) for which ``exact`` holds, else ``fallback``."""
    up = down = np.float64(start)
    for _ in range(SEARCH_ULPS + 1):
        for value in (up, down):
            if exact(float(value)):
                return float(value)
        up, down = np.nextafter(up, np.inf), np.nextafter(down, 0.0)
    return fallback
