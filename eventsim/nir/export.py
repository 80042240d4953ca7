"""eventsim network -> NIR graph (docs/nir.md).

Every layer becomes the NIR node(s) that compute the same thing under NIR's
semantics with forward Euler of step ``dt`` (:mod:`eventsim.nir.euler`),
named after the layer, so that per-node outputs line up with eventsim's
per-layer records:

- ``Conv2d`` -> Conv2d (NIR requires a bias: zeros when the layer has none),
  ``Linear`` -> Linear, or Affine when it has a bias;
- ``AvgPool`` -> AvgPool2d, ``SumPool`` -> SumPool2d, a strided
  ``Identity`` -> SumPool2d with a 1 x 1 window;
- ``LIF`` -> LIF, ``IF`` (or a LIF with leak 1) -> IF, ``Readout`` -> LI, or I
  when it does not leak; a neuron with a synaptic current -> CubaLIF
  (``Readout``: CubaLI); ``v_rest`` -> ``v_leak``;
- ``Recurrent`` -> its neuron node and its connection node in a cycle
  ``neuron -> connection -> neuron`` (NIR sums the connection's output into
  the neuron's input);
- ``Delay`` -> Delay, ``steps * dt`` per neuron;
- ``SpikingAvgPool`` named ``p`` -> AvgPool2d ``p.pool`` then IF ``p``;
- ``Dropout`` -> Scale by ones (dropout is off at inference);
- ``Flatten`` -> Flatten of the whole sample;
- ``Residual`` -> its main path, its skip (an Identity skip of stride 1 is a
  plain edge) and its neuron, which receives both: NIR sums the inputs of a
  node.

Input-current norms have no NIR node: the network is exported with its norms
folded into the synapses before them (:func:`eventsim.folding.fold_norms`), so
the graph computes what an inference run computes.

``MaxPool`` has no NIR node and raises :class:`~eventsim.errors.LayerError`,
as does a synaptic current NIR cannot hold (one that never decays, or in a
neuron whose membrane does not leak: CubaLIF's ``tau_syn`` and ``tau_mem``
are finite).
What NIR cannot express travels in each node's metadata
(:mod:`eventsim.nir.options`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eventsim.errors import LayerError
from eventsim.layers import (
    LIF,
    AvgPool,
    Conv2d,
    Delay,
    Dropout,
    Flatten,
    Identity,
    Layer,
    Linear,
    MaxPool,
    Readout,
    Recurrent,
    Residual,
    SpikingAvgPool,
    SumPool,
)
from eventsim.network import Network
from eventsim.folding import fold_norms
from eventsim.nir.delays import delay_seconds
from eventsim.nir.euler import continuous_parameters
from eventsim.nir.extra import require_nir
from eventsim.nir.options import encode

#: Names of the graph's Input and Output nodes.
INPUT, OUTPUT = "input", "output"


def to_nir(network: Network, *, dt: float = 1.0, portable: bool = False) -> Any:
    """The NIR graph of ``network``, one node per layer (two for SpikingAvgPool).

    Parameters
    ----------
    network : Network
    dt : float
        The step length the continuous-time parameters refer to: a neuron
        with leak lam and input gain g gets ``tau = dt / (1 - lam)`` and
        ``r = g tau / dt`` (IF and I nodes: ``r = g / dt``), chosen to the
        last bit so that :func:`~eventsim.nir.from_nir` with the same ``dt``
        gives lam and g back (docs/nir.md).
    portable : bool
        Refuse layers whose behaviour NIR's own node semantics cannot express
        (soft reset, ``>=`` thresholds, a delayed reset to a nonzero
        ``v_reset``, an initial potential other than the rest potential, a
        clamp, several spikes per step), instead of carrying them in
        eventsim's metadata, which other NIR readers ignore.

    Returns
    -------
    nir.NIRGraph

    Raises
    ------
    LayerError
        A layer NIR cannot express (MaxPool; with ``portable``, the
        conventions above), naming the layer.
    """
    nir = require_nir()
    if not (np.isfinite(dt) and dt > 0):
        raise ValueError(f"dt must be a positive finite step length, got {dt!r}")
    network = fold_norms(network)
    graph = _Builder(nir, network, float(dt), portable)
    graph.add(INPUT, nir.Input(input_type={"input": np.array(network.input_shape)}), [])
    last = graph.layers(network.layers, INPUT)
    graph.add(OUTPUT, nir.Output(output_type={"output": np.array(network.output_shape)}), [last])
    return nir.NIRGraph(nodes=graph.nodes, edges=graph.edges, metadata=encode(dt=float(dt)))


class _Builder:
    """Nodes and edges of the graph being built."""

    def __init__(self, nir: Any, network: Network, dt: float, portable: bool) -> None:
        self.nir, self.network, self.dt, self.portable = nir, network, dt, portable
        self.nodes: dict[str, Any] = {}
        self.edges: list[tuple[str, str]] = []

    def add(self, name: str, node: Any, sources: list[str], layer: Layer | None = None) -> str:
        if name in self.nodes:
            raise LayerError(layer, f"its name {name!r} is taken by another NIR node ({INPUT!r} and {OUTPUT!r} "
                             "are the graph's own); rename the layer")
        self.nodes[name] = node
        self.edges += [(source, name) for source in sources]
        return name

    def layers(self, layers: list[Layer], source: str) -> str:
        for layer in layers:
            source = self.layer(layer, source)
        return source

    def layer(self, layer: Layer, source: str) -> str:
        nir = self.nir
        in_shape, out_shape = self.network.shapes[layer.name]
        if isinstance(layer, Residual):
            return self.residual(layer, source)
        if isinstance(layer, Recurrent):
            return self.recurrent(layer, source)
        if isinstance(layer, SpikingAvgPool):
            pool = self.add(f"{layer.name}.pool", self.pool(layer.pool), [source], layer)
            extra = {"threshold_ratio": layer.threshold_ratio}
            return self.add(layer.name, self.neuron(layer.neuron, out_shape, "SpikingAvgPool", extra), [pool], layer)
        if isinstance(layer, LIF):
            return self.add(layer.name, self.neuron(layer, out_shape, type(layer).__name__), [source], layer)
        if isinstance(layer, MaxPool):
            raise LayerError(layer, "NIR has no max pooling node; a network with MaxPool cannot be exported")
        if isinstance(layer, Dropout):
            node = nir.Scale(scale=np.ones(out_shape, self.network.dtype), metadata=encode(layer="Dropout", p=layer.p))
        elif isinstance(layer, Flatten):
            node = nir.Flatten(input_type={"input": np.array(in_shape)}, start_dim=0, end_dim=-1)
        elif isinstance(layer, (Conv2d, Linear)):
            node = self.weighted(layer, in_shape)
        elif isinstance(layer, Delay):
            seconds, form = delay_seconds(layer, in_shape, self.dt)
            node = nir.Delay(delay=seconds, metadata=encode(layer="Delay", delay_form=form))
        elif isinstance(layer, (AvgPool, SumPool, Identity)):
            node = self.pool(layer)
        else:
            raise LayerError(layer, "has no NIR counterpart")
        return self.add(layer.name, node, [source], layer)

    def weighted(self, layer: Conv2d | Linear, in_shape: tuple[int, ...]) -> Any:
        """The Conv2d, Linear or Affine node of a weighted synapse fed with ``in_shape``."""
        nir = self.nir
        if isinstance(layer, Conv2d):
            bias = np.zeros(layer.out_channels, self.network.dtype) if layer.bias is None else layer.bias
            return nir.Conv2d(
                input_shape=tuple(in_shape[1:]), weight=layer.weight.copy(), stride=layer.stride,
                padding=layer.padding, dilation=(1, 1), groups=1, bias=bias.copy(),
                metadata=encode(layer="Conv2d", bias=layer.bias is not None),
            )
        if layer.delay is not None:
            raise LayerError(layer, "NIR has no per-synapse delay; a Delay layer before the Linear (one delay per "
                                    "input) exports as NIR's Delay node")
        if layer.bias is None:
            return nir.Linear(weight=layer.weight.copy())
        return nir.Affine(weight=layer.weight.copy(), bias=layer.bias.copy())

    def pool(self, layer: AvgPool | SumPool | Identity) -> Any:
        zero = np.zeros(2, np.int64)
        if isinstance(layer, Identity):  # a 1 x 1 sum pool with the identity's stride
            return self.nir.SumPool2d(kernel_size=np.ones(2, np.int64), stride=np.array(layer.stride), padding=zero,
                                      metadata=encode(layer="Identity"))
        kind = self.nir.AvgPool2d if isinstance(layer, AvgPool) else self.nir.SumPool2d
        return kind(kernel_size=np.array(layer.kernel_size), stride=np.array(layer.stride), padding=zero)

    def residual(self, block: Residual, source: str) -> str:
        main = self.layers(block.main, source)
        skip = source
        if not (isinstance(block.skip, Identity) and block.skip.stride == (1, 1)):
            skip = self.layer(block.skip, source)
        neuron = block.neuron
        shape = self.network.shapes[neuron.name][1]
        extra = {"block": block.name, "skip": None if skip == source else skip}
        node = self.neuron(neuron, shape, type(neuron).__name__, extra)
        return self.add(neuron.name, node, [main, skip], neuron)

    def recurrent(self, block: Recurrent, source: str) -> str:
        """The block's neuron node fed by ``source`` and its connection node, in a cycle; the neuron's name."""
        neuron = block.neuron
        shape = self.network.shapes[neuron.name][1]
        node = self.neuron(neuron, shape, type(neuron).__name__, {"block": block.name})
        self.add(neuron.name, node, [source], neuron)
        self.add(block.connection.name, self.weighted(block.connection, shape), [neuron.name], block.connection)
        self.edges.append((block.connection.name, neuron.name))
        return neuron.name

    def neuron(self, layer: LIF, shape: tuple[int, ...], kind: str, extra: dict | None = None) -> Any:
        """The NIR neuron node of ``layer`` (output ``shape``), its eventsim options in the metadata."""
        nir = self.nir
        self.check_portable(layer)
        tau, r = continuous_parameters(layer.leak, layer.input_gain, self.dt)
        full = np.ones(shape)
        options = dict(
            layer=kind, leak=layer.leak, input_gain=layer.input_gain, reset=layer.reset, strict=layer.strict,
            reset_delayed=layer.reset_delayed, per_channel=isinstance(layer.threshold, np.ndarray), **(extra or {}),
        )
        if layer.arithmetic != "product":  # NIR is continuous-time: the form travels in eventsim's metadata only
            options["arithmetic"] = layer.arithmetic
        state = self.state_options(layer, leaks=tau is not None)
        cuba = {}
        if layer.synapse_leak is not None:
            cuba = self.synapse(layer, tau)
            state.update(synapse_leak=layer.synapse_leak, synapse_gain=layer.synapse_gain)
        metadata = encode(**options, **state)
        v_leak = layer.v_rest * full
        cuba = {key: value * full for key, value in cuba.items()}
        if isinstance(layer, Readout):
            if cuba:
                return nir.CubaLI(tau_mem=tau * full, r=r * full, v_leak=v_leak, **cuba, metadata=metadata)
            if tau is None:
                return nir.I(r=r * full, metadata=metadata)
            return nir.LI(tau=tau * full, r=r * full, v_leak=v_leak, metadata=metadata)
        theta = layer.thresholds(shape).reshape((shape[0],) + (1,) * (len(shape) - 1)) * full
        v_reset = layer.v_reset * full
        if cuba:
            return nir.CubaLIF(tau_mem=tau * full, r=r * full, v_leak=v_leak, v_threshold=theta, v_reset=v_reset,
                               **cuba, metadata=metadata)
        if tau is None:
            return nir.IF(r=r * full, v_threshold=theta, v_reset=v_reset, metadata=metadata)
        return nir.LIF(tau=tau * full, r=r * full, v_leak=v_leak, v_threshold=theta, v_reset=v_reset,
                       metadata=metadata)

    @staticmethod
    def state_options(layer: LIF, leaks: bool) -> dict:
        """The options of "State beyond the potential" that no field of the node holds and are not their defaults.

        ``v_rest`` is the ``v_leak`` field of the nodes that leak; IF and I
        nodes have none.
        """
        state = {}
        if not leaks and layer.v_rest != 0.0:
            state["v_rest"] = layer.v_rest
        if layer.v_init != layer.v_rest:
            state["v_init"] = layer.v_init
        if layer.v_min != -np.inf:
            state["v_min"] = layer.v_min
        if layer.max_spikes != 1:
            state["max_spikes"] = layer.max_spikes
        return state

    def synapse(self, layer: LIF, tau_mem: float | None) -> dict[str, float]:
        """``tau_syn`` and ``w_in`` of ``layer``'s synaptic current: alpha = 1 - dt/tau_syn, h = dt w_in / tau_syn."""
        if tau_mem is None:
            raise LayerError(layer, "has a synaptic current but its potential does not leak (leak 1): NIR's CubaLIF "
                                    "and CubaLI have a finite tau_mem, so no NIR node computes it")
        tau_syn, w_in = continuous_parameters(layer.synapse_leak, layer.synapse_gain, self.dt)
        if tau_syn is None:
            raise LayerError(layer, "has a synaptic current that never decays (synapse_leak 1): NIR's tau_syn would "
                                    "be infinite")
        return {"tau_syn": tau_syn, "w_in": w_in}

    def check_portable(self, layer: LIF) -> None:
        if not self.portable:
            return
        if layer.v_init != layer.v_rest:
            raise LayerError(layer, "starts at v_init != v_rest: NIR does not fix the initial state; readers start "
                                    "at rest or at 0 (portable=True)")
        if isinstance(layer, Readout):
            return
        if layer.reset == "soft":
            raise LayerError(layer, "soft reset: NIR's neurons reset to v_reset (portable=True)")
        if not layer.strict:
            raise LayerError(layer, "fires on U >= theta: NIR's neurons fire on v > v_threshold (portable=True)")
        if layer.reset_delayed and layer.v_reset != 0.0:
            raise LayerError(layer, "delayed reset to a nonzero v_reset: NIR resets at once (portable=True)")
        if layer.v_min != -np.inf:
            raise LayerError(layer, "clamps the potential at v_min: NIR's neurons have no lower bound (portable=True)")
        if layer.max_spikes != 1:
            raise LayerError(layer, "emits several spikes per step (max_spikes): NIR's neurons emit one "
                                    "(portable=True)")


