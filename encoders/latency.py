"""Latency (time-to-first-spike) coding: one spike per input, earlier when larger.

Each input above a threshold fires exactly once; its step encodes its value.
Two maps from value to step are offered, the linear and logarithmic ones that
spiking-network libraries usually provide (snnTorch's ``spikegen.latency``,
for one):

- ``linear``: the step falls linearly from the last step (an input just above
  the threshold) to step 0 (an input of 1);
- ``log``: the firing time of an RC circuit (a leaky integrator with time
  constant ``tau``) charged from rest by the constant input ``x``, whose
  potential ``x (1 - exp(-t / tau))`` reaches ``threshold`` at
  ``t = tau ln(x / (x - threshold))``.

Both compute in float64 and round to the nearest step, ties to even (IEEE
``roundTiesToEven``, as ``numpy.rint`` and ``torch.round``).
"""

from __future__ import annotations

import numpy as np

from eventsim.encoders.inputs import check_dtype, check_input, check_number, check_range, check_steps
from eventsim.errors import OptionError, check_choice
from eventsim.events import Events

MODES = ("linear", "log")


def latency(
    x: np.ndarray,
    steps: int,
    *,
    mode: str = "linear",
    tau: float | None = None,
    threshold: float = 0.01,
    dtype: object = np.float32,
) -> Events:
    """Time-to-first-spike coding: each input above ``threshold`` fires once.

    With ``T = steps``, an input ``x > threshold`` fires one unit spike at
    step (0-based)::

        linear:  t = rint((1 - x) / (1 - threshold) * (T - 1))
        log:     t = min(rint(tau * log1p(threshold / (x - threshold))), T - 1)

    and an input ``x <= threshold`` never fires. The operations run in float64
    in the order written; ``rint`` rounds to the nearest integer, ties to
    even. ``log1p(threshold / (x - threshold))`` is ``ln(x / (x - threshold))``
    written so that every operation is monotone in ``x``: both maps are
    non-increasing in ``x``, so a larger input never fires later (rounding may
    put different inputs on the same step).

    In linear mode ``x = 1`` fires at step 0 and inputs just above the
    threshold at the last step. In log mode ``t`` is the moment the RC
    potential ``x (1 - exp(-t / tau))`` crosses ``threshold`` (``tau`` in
    steps); an input whose crossing falls after the last step fires at the
    last step (clipped), so every input above the threshold fires within the
    window.

    Parameters
    ----------
    x : array, shape ``(B, *shape)``
        Finite inputs: in [0, 1] for ``linear``; >= 0 for ``log`` (a charging
        current; values above 1 are allowed and fire earlier).
    steps : int
        Number of steps T >= 1.
    mode : {"linear", "log"}
        The map from value to step.
    tau : float, optional
        RC time constant in steps, > 0; ``log`` mode only. Default ``T - 1``
        (at threshold 0.01 this spreads inputs from about 0.015 to 1 over the
        window), or 1 when T = 1.
    threshold : float
        Inputs at or below it never fire: in [0, 1) for ``linear``, > 0 for
        ``log``.
    dtype : float32 or float64
        Dtype of the event values (1).

    Returns
    -------
    Events
        Batch B, T steps, neuron shape ``x.shape[1:]``; at most one spike per
        input.
    """
    check_choice("latency mode", mode, MODES)
    dt = check_dtype("latency", dtype)
    steps = check_steps("latency", steps)
    x = check_input("latency", "x", x, ndim=2, layout="(B, *shape)")
    if mode == "linear":
        if tau is not None:
            raise OptionError(f"latency: tau applies to mode 'log' only, got tau={tau!r} with mode 'linear'")
        threshold = check_number("latency", "threshold", threshold, low=0.0, low_open=False)
        if threshold >= 1.0:
            raise OptionError(f"latency: threshold must be < 1 in mode 'linear', got {threshold!r}")
        check_range("latency", "x", x, 0.0, 1.0, "linear latency coding takes values in [0, 1]")
        fires = x > threshold
        t = np.rint((1.0 - x) / (1.0 - threshold) * (steps - 1))
    else:
        tau = float(max(steps - 1, 1)) if tau is None else check_number("latency", "tau", tau, low=0.0, low_open=True)
        threshold = check_number("latency", "threshold", threshold, low=0.0, low_open=True)
        check_range("latency", "x", x, 0.0, np.inf, "log latency coding takes currents >= 0")
        fires = x > threshold
        with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # non-firing inputs are masked below
            crossing = tau * np.log1p(threshold / (x - threshold))
        t = np.minimum(np.rint(np.where(fires, crossing, 0.0)), steps - 1)
    sample, *where = np.nonzero(fires)
    neuron = np.ravel_multi_index(tuple(where), x.shape[1:])
    return Events.from_coo(
        sample, t[fires].astype(np.int64), neuron, np.ones(sample.shape[0], dt),
        batch=x.shape[0], steps=steps, shape=x.shape[1:],
    )
