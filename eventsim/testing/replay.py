"""Reproducers: a conformance case as a token that rebuilds it exactly, anywhere.

A failing case is reported with a token (``es1.`` and URL-safe base64 of
compressed JSON) that holds everything the comparison used: every layer with
its options, weights and thresholds bit for bit, the network's dtype, the
input, the kind of comparison and, for gradient cases, the surrogate,
``detach_reset`` and ``grad_output``. The token does not depend on the
strategies that generated the case, on hypothesis or on its database, so it
stays valid when those change; ``eventsim conform --candidate X --replay
TOKEN`` and :func:`replay` run the case again through a candidate.

Layers are written from the options they print (``repr``), which name every
constructor argument, so an option added to a layer travels without a change
here. Input-current norms are not written: conformance cases have none.
"""

from __future__ import annotations

import base64
import json
import zlib
from typing import Any

import numpy as np

import eventsim as es
from eventsim.errors import OptionError
from eventsim.testing.protocol import GradientRequest
from eventsim.testing.strategies import NetCase

PREFIX = "es1."
_LAYER_TYPES = ("Conv2d", "Linear", "AvgPool", "SumPool", "MaxPool", "Identity", "LIF", "IF", "Readout",
                "SpikingAvgPool", "Dropout", "Flatten", "Residual", "Recurrent", "Delay")


def _array(a: np.ndarray) -> dict:
    a = np.ascontiguousarray(a)
    return {"dtype": a.dtype.str, "shape": list(a.shape), "data": base64.b64encode(a.tobytes()).decode()}


def _unarray(d: dict) -> np.ndarray:
    return np.frombuffer(base64.b64decode(d["data"]), dtype=np.dtype(d["dtype"])).reshape(d["shape"]).copy()


def _value(v: Any) -> Any:
    if isinstance(v, es.layers.Layer):
        return _layer(v)
    if isinstance(v, np.ndarray):
        return {"array": _array(v)}
    if isinstance(v, (list, tuple)):
        return {"list": [_value(x) for x in v]}
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return v


def _unvalue(v: Any) -> Any:
    if isinstance(v, dict):
        if "array" in v:
            return _unarray(v["array"])
        if "list" in v:
            return [_unvalue(x) for x in v["list"]]
        return _unlayer(v)
    return v


def _layer(layer: es.layers.Layer) -> dict:
    kind = type(layer).__name__
    if kind not in _LAYER_TYPES:
        raise OptionError(f"layer {layer.name!r}: a {kind} cannot be written into a replay token")
    if getattr(layer, "norm", None) is not None:
        raise OptionError(f"layer {layer.name!r}: input-current norms cannot be written into a replay token")
    options = dict(layer._options())  # every constructor argument, as the layer's repr prints them
    if isinstance(layer, es.layers.Weighted):
        options["bias"] = layer.bias
        options["weight"] = layer.weight
    if kind == "IF":
        options.pop("leak")  # IF fixes it to 1
    options.pop("norm", None)
    return {"layer": kind, "options": {k: _value(v) for k, v in options.items()}}


def _unlayer(d: dict) -> es.layers.Layer:
    kind = d.get("layer")
    if kind not in _LAYER_TYPES:
        raise OptionError(f"the replay token names an unknown layer type {kind!r}")
    options = {k: _unvalue(v) for k, v in d["options"].items()}
    name = options.pop("name", None)
    layer = getattr(es, kind)(**options)
    layer.name = name  # as the network named it; "res1.conv1" is no name a constructor accepts
    return layer


def case_token(case: NetCase, kind: str, request: GradientRequest | None = None) -> str:
    """The token of one case of ``kind`` (``"dyadic forward"``, ``"float forward"``, ``"bptt gradients"``)."""
    payload = {
        "kind": kind,
        "dtype": np.dtype(case.network.dtype).name,
        "input_shape": list(case.network.input_shape),
        "layers": [_layer(layer) for layer in case.network.layers],
        "spikes": _array(case.spikes),
        "weights": case.weights,
        "seed": int(case.seed),
        "density": float(case.density),
    }
    if request is not None:
        payload["request"] = {"surrogate": request.surrogate.config(), "detach_reset": bool(request.detach_reset),
                              "grad_output": _array(np.asarray(request.grad_output))}
    packed = zlib.compress(json.dumps(payload, separators=(",", ":")).encode(), 9)
    return PREFIX + base64.urlsafe_b64encode(packed).decode().rstrip("=")


def read_token(token: str) -> tuple[NetCase, str, GradientRequest | None]:
    """The case, its kind and its gradient request (None for forward kinds) from a token.

    Raises :class:`~eventsim.errors.OptionError` with one line for a string
    that is not a token (cut short when copied, or from another version).
    """
    from eventsim.learning.surrogates import surrogate_from_config

    token = token.strip()
    if not token.startswith(PREFIX):
        raise OptionError(f"not a replay token (it must start with {PREFIX!r}, as eventsim conform prints it): "
                          f"{token[:20]!r}...")
    try:
        body = token[len(PREFIX):]
        payload = json.loads(zlib.decompress(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))))
        layers = [_unlayer(d) for d in payload["layers"]]
        dtype = np.dtype(payload["dtype"])
        network = es.Network(layers, tuple(payload["input_shape"]), dtype=dtype)
        spikes = _unarray(payload["spikes"])
        request = None
        if "request" in payload:
            r = payload["request"]
            request = GradientRequest(grad_output=_unarray(r["grad_output"]),
                                      surrogate=surrogate_from_config(r["surrogate"]),
                                      detach_reset=bool(r["detach_reset"]))
        kind = payload["kind"]
    except OptionError:
        raise
    except Exception as exc:  # binascii, zlib, JSON, a missing key, a layer that refuses its options
        raise OptionError(f"the replay token is damaged or incomplete (copy all of it): "
                          f"{type(exc).__name__}: {exc}") from None
    steps, batch = spikes.shape[:2]
    case = NetCase(seed=payload["seed"], dtype=dtype.type, input_shape=network.input_shape, layers=layers,
                   batch=batch, steps=steps, density=payload["density"], weights=payload["weights"],
                   network=network, events=es.Events.from_dense(np.ascontiguousarray(spikes.swapaxes(0, 1))))
    return case, kind, request


def replay(token: str, candidate: Any):
    """Run the case of ``token`` through ``candidate`` again; returns its :class:`~eventsim.testing.conform.CaseOutcome`.

    ``print(replay(token, MyCandidate()))`` shows the same comparison as
    the report the token came from (or that the candidate now conforms).
    """
    from eventsim.testing.conform import check_case

    case, _, request = read_token(token)
    return check_case(candidate, case, request=request)
