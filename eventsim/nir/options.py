"""eventsim's own options in a NIR node's metadata.

A NIR node says what NIR can express; what it cannot (soft reset, ``>=``
thresholds, a delayed reset, the exact float64 leak and input gain, the
eventsim layer a node came from) travels in the node's metadata under one
key, :data:`KEY`, as a JSON object, so that eventsim -> NIR -> eventsim gives
back the same network (docs/nir.md, "Round trips"). NIR readers that do not
know the key ignore it and see NIR's own semantics.
"""

from __future__ import annotations

import json
from typing import Any

from eventsim.errors import NIRError

#: The metadata key of eventsim's options.
KEY = "eventsim"


def encode(**options: Any) -> dict[str, str]:
    """The metadata dict carrying ``options`` (JSON; floats keep every bit)."""
    return {KEY: json.dumps(options, sort_keys=True)}


def decode(name: str, node: Any) -> dict[str, Any]:
    """eventsim's options stored on ``node`` (named ``name``), or ``{}`` when it has none."""
    metadata = getattr(node, "metadata", None) or {}
    if not isinstance(metadata, dict) or KEY not in metadata:
        return {}
    raw = metadata[KEY]
    if isinstance(raw, bytes):
        raw = raw.decode("utf8")
    try:
        options = json.loads(str(raw))
    except json.JSONDecodeError as exc:
        raise NIRError(f"metadata {KEY!r} is not valid JSON ({exc})", node=name, kind=type(node).__name__) from None
    if not isinstance(options, dict):
        raise NIRError(f"metadata {KEY!r} must be a JSON object, got {raw!r}", node=name, kind=type(node).__name__)
    return options
