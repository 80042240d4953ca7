"""NIR's ``Delay`` node and eventsim's ``Delay`` layer: seconds and whole steps.

NIR's ``Delay`` holds one delay per element, in the unit of its time
constants: ``y(t) = x(t - delay)``. eventsim delays events by whole steps
(docs/semantics.md, "Delays"): a delay of ``delay`` is ``delay / dt`` steps,
which must be a whole number. A writer that stores the delay in float32 (or
computed ``n * dt`` in float64) leaves it a little off ``n dt``; a delay
within :data:`TOLERANCE` (relative) of a whole number of steps is taken as
that number, anything further is refused, naming the node.

A layer keeps its delays as one value, one per channel or one per neuron
(:class:`eventsim.layers.Delay`); NIR stores one per element, so export
writes the per-neuron array and records the layer's form in eventsim's
metadata (``delay_form``), and import gives a node without it the simplest
form its values allow.
"""

from __future__ import annotations

import numpy as np

from eventsim.errors import NIRError
from eventsim.layers import Delay

#: How far ``delay / dt`` may be from a whole number n of steps, relative to
#: max(n, 1): sixteen float32 roundings, a millionth of a step for short delays.
TOLERANCE = 1e-6

#: The forms of a layer's delays, as the metadata names them.
FORMS = ("layer", "channel", "neuron")


def delay_steps(name: str, seconds: np.ndarray, dt: float, form: str | None) -> float | np.ndarray:
    """The delays ``seconds`` (one per neuron, the node's input shape) in whole steps of ``dt``, as ``Delay(steps)``
    takes them: in ``form`` (one of :data:`FORMS`) or, without one, the simplest form that holds them.

    Raises
    ------
    NIRError
        Naming the node: a negative delay, one that is not a whole number of
        steps, or values that the metadata's form cannot hold.
    """
    def error(problem: str) -> NIRError:
        return NIRError(problem, node=name, kind="Delay")

    if np.any(seconds < 0):
        at = tuple(int(i) for i in np.argwhere(seconds < 0)[0])
        raise error(f"field 'delay' is negative at index {at} ({float(seconds[at])!r}); a delay cannot reach back "
                    "in time")
    with np.errstate(over="ignore"):  # a huge delay is refused by the layer, naming its bound
        steps = seconds / dt
    whole = np.round(steps)
    off = np.abs(steps - whole) > TOLERANCE * np.maximum(whole, 1.0)
    if off.any():
        at = tuple(int(i) for i in np.argwhere(off)[0])
        raise error(f"delay {float(seconds[at])!r} at index {at} is {float(steps[at])!r} steps of dt={dt}, not a "
                    f"whole number (within {TOLERANCE} relative); eventsim delays by whole steps")
    if form is not None and form not in FORMS:
        raise error(f"metadata 'eventsim': delay_form must be one of {', '.join(FORMS)}, got {form!r}")
    per_channel = whole.reshape(whole.shape[0], -1)
    uniform = bool(np.all(whole == whole.reshape(-1)[0]))
    within_channels = bool(np.all(per_channel == per_channel[:, :1]))
    if form == "layer" and not uniform:
        raise error("metadata says one delay for the layer, but the node's delays differ between neurons")
    if form == "channel" and not within_channels:
        raise error("metadata says one delay per channel, but the node's delays differ within a channel")
    if form == "layer" or (form is None and uniform):
        return float(whole.reshape(-1)[0])
    if form == "channel" or (form is None and within_channels and whole.ndim > 1):
        return per_channel[:, 0].copy()
    return whole.copy()


def delay_seconds(layer: Delay, shape: tuple[int, ...], dt: float) -> tuple[np.ndarray, str]:
    """The NIR ``delay`` field of ``layer`` (input ``shape``): ``steps * dt`` per neuron, float64; and its form."""
    steps = np.asarray(layer.steps)
    form = "layer" if steps.ndim == 0 else "neuron" if steps.shape == tuple(shape) else "channel"
    return layer.per_neuron(shape).reshape(shape).astype(np.float64) * dt, form
