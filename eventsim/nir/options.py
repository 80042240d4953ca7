"""eventsim's own options in a NIR node's metadata.

A NIR node says what NIR can express; what it cannot (soft reset, ``>=``
thresholds, a delayed reset, the exact float64 leak, input gain and synaptic
factors, an initial potential, a clamp, several spikes per step, the form of
a layer's delays, the eventsim layer a node came from) travels in the node's
metadata under one key, :data:`KEY`, as a JSON object, so that eventsim ->
NIR -> eventsim gives back the same network (docs/nir.md, "Round trips").
NIR readers that do not know the key ignore it and see NIR's own semantics.
"""

from __future__ import annotations

import json
import math
from typing import Any

from eventsim.errors import NIRError
from eventsim.nir.fields import Field, text

#: The metadata key of eventsim's options.
KEY = "eventsim"


def encode(**options: Any) -> dict[str, str]:
    """The metadata dict carrying ``options`` (JSON; floats keep every bit)."""
    return {KEY: json.dumps(options, sort_keys=True)}


#: The type of each option eventsim writes; a file may hold anything, so
#: :func:`decode` checks these before the importer uses them. Options not
#: listed are ignored, as a NIR reader ignores metadata it does not know.
TYPES: dict[str, tuple[type, ...]] = {
    "layer": (str,), "reset": (str,), "block": (str, type(None)), "skip": (str, type(None)),
    "strict": (bool,), "reset_delayed": (bool,), "per_channel": (bool,), "bias": (bool,),
    "leak": (float,), "input_gain": (float,), "threshold_ratio": (float,), "p": (float,), "dt": (float,),
    "synapse_leak": (float,), "synapse_gain": (float,), "v_rest": (float,), "v_init": (float,), "v_min": (float,),
    "max_spikes": (int, type(None)), "delay_form": (str,),
}


def decode(name: str, node: Any) -> dict[str, Any]:
    """eventsim's options stored on ``node`` (named ``name``), or ``{}`` when it has none.

    Raises NIRError naming the node and the option when the metadata is not
    a JSON object or an option has the wrong type (a number must be finite:
    JSON readers take ``1e400`` and ``NaN``).
    """
    kind = type(node).__name__
    metadata = getattr(node, "metadata", None) or {}
    if not isinstance(metadata, dict) or KEY not in metadata:
        return {}
    raw = text(metadata[KEY], Field(name, kind, f"metadata {KEY!r}"))
    try:
        options = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise NIRError(f"metadata {KEY!r} is not valid JSON ({exc})", node=name, kind=kind) from None
    if not isinstance(options, dict):
        raise NIRError(f"metadata {KEY!r} must be a JSON object, got {raw!r}", node=name, kind=kind)
    for key, value in options.items():
        types = TYPES.get(key)
        if types is None:
            continue
        if float in types and isinstance(value, int) and not isinstance(value, bool):
            value = options[key] = float(value)
        if not isinstance(value, types) or (isinstance(value, float) and not math.isfinite(value)):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise NIRError(f"metadata {KEY!r}: option {key!r} must be {wanted}"
                           f"{' (finite)' if float in types else ''}, got {value!r}", node=name, kind=kind)
    return options
