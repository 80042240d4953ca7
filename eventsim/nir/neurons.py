"""A NIR neuron node's parameters as the options of an eventsim neuron layer.

NIR's neurons (docs/nir.md, "From continuous time to eventsim's step") under
forward Euler of step ``dt`` (:mod:`eventsim.nir.euler`)::

    LIF / LI      tau dv/dt = (v_leak - v) + r I          lam = 1 - dt/tau,      g = dt r / tau
    IF / I        dv/dt = r I                             lam = 1,               g = dt r
    CubaLIF /     tau_syn dJ/dt = -J + w_in S             alpha = 1 - dt/tau_syn, h = dt w_in / tau_syn
      CubaLI      tau_mem dv/dt = (v_leak - v) + r J      lam = 1 - dt/tau_mem,  g = dt r / tau_mem

with ``v_leak`` the rest potential ``v_rest`` and ``v_reset`` where a hard
reset puts the potential (docs/semantics.md, "Neurons" and "State beyond the
potential"). The synaptic current and the membrane are the same Euler step
of the same kind of equation, so one function (:func:`euler_pair`) reads both.
eventsim keeps one value per layer of every parameter but the threshold
(one per channel); values that differ between neurons are refused, naming
the node and the field. eventsim's own metadata (:mod:`eventsim.nir.options`)
carries the exact float64 factors and what NIR cannot say (soft reset,
``>=``, a delayed reset, the arithmetic form, ``v_init``, ``v_min``,
``max_spikes``), checked against the NIR fields where they overlap.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from eventsim.errors import NIRError
from eventsim.nir import fields
from eventsim.nir.euler import step_parameters
from eventsim.nir.fields import Field

#: Relative disagreement allowed between the factors stored in eventsim's
#: metadata and the ones the NIR fields and ``dt`` give: enough for the last
#: bits export could not reproduce, far too little for a wrong dt.
METADATA_TOLERANCE = 1e-9

#: The NIR neuron node types, and the eventsim layer each is read as.
LAYERS = {"LIF": "LIF", "IF": "IF", "CubaLIF": "LIF", "LI": "Readout", "I": "Readout", "CubaLI": "Readout"}

#: Options of "State beyond the potential" that only eventsim's metadata carries.
METADATA_STATE = ("v_init", "v_min", "max_spikes")
#: The state options a Readout takes (it never fires: no clamp after a reset, no spikes).
READOUT_STATE = ("synapse_leak", "synapse_gain", "v_rest", "v_init")


class EulerPair(NamedTuple):
    """A time constant and an input scale that one Euler step turns into a factor and a gain."""

    tau: str  #: the NIR field of the time constant
    scale: str  #: the NIR field scaling the input
    leak: str  #: the eventsim option of the factor 1 - dt/tau
    gain: str  #: the eventsim option of the gain dt scale / tau
    leak_words: str
    gain_words: str


MEMBRANE = EulerPair("tau", "r", "leak", "input_gain", "leak", "input gain")
CUBA_MEMBRANE = MEMBRANE._replace(tau="tau_mem")
SYNAPSE = EulerPair("tau_syn", "w_in", "synapse_leak", "synapse_gain", "synaptic leak", "synaptic gain")


@dataclass
class NeuronOptions:
    """What a NIR neuron node says about the eventsim layer it becomes."""

    layer: str  #: "LIF", "IF", "Readout" or "SpikingAvgPool"
    leak: float
    input_gain: float
    threshold: float | np.ndarray = np.inf
    v_reset: float = 0.0
    flags: dict = field(default_factory=dict)  #: reset, strict, reset_delayed
    state: dict = field(default_factory=dict)  #: synapse_leak, synapse_gain, v_rest, v_init, v_min, max_spikes
    arithmetic: str = "product"


class NeuronReader:
    """Reads the neuron node ``name`` whose input has ``shape`` (:meth:`options`)."""

    def __init__(self, name: str, node: Any, shape: tuple[int, ...], options: dict, dt: float,
                 dtype: np.dtype) -> None:
        self.name, self.node, self.kind, self.shape = name, node, type(node).__name__, shape
        self.metadata, self.dt, self.dtype = options, dt, dtype

    def error(self, problem: str) -> NIRError:
        return NIRError(problem, node=self.name, kind=self.kind)

    def options(self) -> NeuronOptions:
        """The layer's options; NIRError naming the node and the field where eventsim cannot take them."""
        cuba = self.kind.startswith("Cuba")
        membrane = CUBA_MEMBRANE if cuba else MEMBRANE
        leak, gain = self.euler_pair(membrane, has_tau=self.kind not in ("IF", "I"))
        state: dict[str, Any] = {}
        if cuba:
            state["synapse_leak"], state["synapse_gain"] = self.euler_pair(SYNAPSE, has_tau=True)
        v_rest = self.v_rest()
        if v_rest != 0.0:
            state["v_rest"] = v_rest
        state.update({key: self.metadata[key] for key in METADATA_STATE if key in self.metadata})
        layer = self.metadata.get("layer") or LAYERS[self.kind]
        # NIR does not fix the floating-point operations of a step: eventsim's
        # default form, unless eventsim's metadata names another.
        out = NeuronOptions(layer, leak, gain, state=state, arithmetic=self.metadata.get("arithmetic", "product"))
        if LAYERS[self.kind] == "Readout":
            if layer != "Readout":
                raise self.error(f"a {self.kind} node never fires; its metadata names the layer {layer!r}")
            extra = sorted(set(state) - set(READOUT_STATE))
            if extra:
                raise self.error(f"a {self.kind} node never fires; its metadata gives it {', '.join(extra)}")
            return out
        out.threshold = self.thresholds()
        out.v_reset = self.uniform("v_reset") if self.has("v_reset") else 0.0
        self.fits("v_reset", out.v_reset)  # the potential after a reset, in the dtype that computes
        out.flags = {"reset": self.metadata.get("reset", "hard"), "strict": bool(self.metadata.get("strict", True)),
                     "reset_delayed": bool(self.metadata.get("reset_delayed", False))}
        if out.flags["reset"] == "soft":
            if out.v_reset != 0.0:
                raise self.error(f"soft reset (eventsim metadata) with v_reset {out.v_reset}; soft reset subtracts "
                                 "theta")
        if layer == "IF" and leak != 1.0:
            raise self.error(f"metadata names an IF layer but the leak is {leak}")
        if layer not in ("LIF", "IF", "SpikingAvgPool"):
            raise self.error(f"metadata names the layer {layer!r}, which a {self.kind} node cannot be")
        return out

    # ------------------------------------------------------------ fields
    def has(self, field_name: str) -> bool:
        return getattr(self.node, field_name, None) is not None

    def per_neuron(self, field_name: str) -> np.ndarray:
        """The field, one value per neuron of the node's shape."""
        if not hasattr(self.node, field_name):
            raise self.error(f"has no field {field_name!r}")
        arr = fields.numbers(getattr(self.node, field_name), Field(self.name, self.kind, field_name), np.float64,
                             allow_inf=field_name == "v_threshold")  # an infinite threshold: never fires
        try:
            return np.broadcast_to(arr, self.shape)
        except ValueError:
            raise self.error(f"field {field_name!r} has shape {arr.shape}, which does not fit the node's input "
                             f"shape {self.shape}") from None

    def uniform(self, field_name: str) -> float:
        """The field's one value; refused when it differs between neurons."""
        values = self.per_neuron(field_name)
        first = values.reshape(-1)[0]
        if np.any(values != first):
            raise self.error(f"field {field_name!r} differs between neurons (from {values.min()} to "
                             f"{values.max()}); eventsim has one value per layer")
        return float(first)

    def fits(self, field_name: str, value: Any, allow_inf: bool = False) -> np.ndarray:
        """``value`` (of the node's ``field_name``) in the network's dtype, refused where the cast makes it inf."""
        return fields.numbers(value, Field(self.name, self.kind, field_name), self.dtype, allow_inf=allow_inf)

    def v_rest(self) -> float:
        """v_leak, the rest potential; eventsim's metadata carries it for IF and I nodes, which have none."""
        if not hasattr(self.node, "v_leak"):
            return float(self.metadata.get("v_rest", 0.0))
        v_rest = self.uniform("v_leak")
        self.fits("v_leak", v_rest)
        return v_rest

    def thresholds(self) -> float | np.ndarray:
        per = self.per_neuron("v_threshold").reshape(self.shape[0], -1)
        if np.any(per != per[:, :1]):
            raise self.error("v_threshold differs within a channel; eventsim has one threshold per channel")
        theta = per[:, 0].copy()
        self.fits("v_threshold", theta, allow_inf=True)  # np.inf: never fires; 1e300 in float32: refused
        per_channel = self.metadata.get("per_channel")
        if per_channel or (per_channel is None and np.any(theta != theta[0])):
            return theta
        return float(theta[0])

    # ------------------------------------------------------------- Euler
    def euler_pair(self, pair: EulerPair, *, has_tau: bool) -> tuple[float, float]:
        """The factor and gain of ``pair`` under Euler with ``dt``, checked against eventsim's metadata.

        ``(1 - dt/tau, dt scale / tau)``, or ``(1, dt scale)`` without a time
        constant; a missing scale (CubaLIF's optional ``w_in``) is 1.
        """
        tau = self.uniform(pair.tau) if has_tau else None
        if tau is not None and tau <= 0:
            raise self.error(f"{pair.tau} must be positive, got {tau}")
        scale = self.uniform(pair.scale) if self.has(pair.scale) else 1.0
        leak, gain = step_parameters(tau, scale, self.dt)
        for what, value in ((pair.leak, leak), (pair.gain, gain)):
            stored = self.metadata.get(what)
            if stored is not None and abs(float(stored) - value) > METADATA_TOLERANCE * max(1.0, abs(value)):
                raise self.error(f"{pair.tau} and {pair.scale} give {what} {value!r} with dt={self.dt}, but "
                                 f"eventsim's metadata says {stored!r}: was the graph written with another dt?")
        leak, gain = float(self.metadata.get(pair.leak, leak)), float(self.metadata.get(pair.gain, gain))
        if not 0.0 <= leak <= 1.0:
            raise self.error(f"{pair.tau}={tau} with dt={self.dt} gives the {pair.leak_words} 1 - dt/{pair.tau} = "
                             f"{leak}, outside [0, 1]: is dt right? (snnTorch's export_to_nir writes its graphs for "
                             "dt=1e-4)")
        with np.errstate(over="ignore"):  # named below
            computed = self.dtype.type(gain)  # the gain the network multiplies by
        if not (np.isfinite(gain) and gain > 0 and computed > 0):
            raise self.error(f"{pair.scale}={scale} with dt={self.dt} gives the {pair.gain_words} {gain}; it must be "
                             f"positive (and not below {self.dtype}'s smallest number)")
        if not np.isfinite(computed):
            raise self.error(f"{pair.scale}={scale} with dt={self.dt} gives the {pair.gain_words} {gain}, beyond the "
                             f"range of {self.dtype} (largest {np.finfo(self.dtype).max:.4g}) that the network "
                             "computes in")
        return leak, gain
