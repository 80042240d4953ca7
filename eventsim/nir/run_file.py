"""The file interface of ``eventsim run``: a NIR graph and input spikes in, every node's output out.

    eventsim run --graph NET.nir --input SPIKES.npz --steps T --out OUT.npz [--dt DT]

``SPIKES.npz`` holds ``spikes``: a dense float array ``(T, batch, *input_shape)``
of per-step input values (0/1 spikes, signed spikes, counts or currents).
``OUT.npz`` holds, for every node of the graph, its per-step output
``(T, batch, *node_shape)`` under the node's NIR name; ``<name>.potential``,
the pre-threshold potential U, for every neuron node; and ``output``, the
value reaching the graph's Output node. The network runs event by event
(:meth:`eventsim.Network.run`); the outputs of synapses that feed a neuron
(and so never leave the simulator as events) are those of the same synapse
run alone on its input node's output. Written atomically.
"""

from __future__ import annotations

import copy
import os
import zipfile
from pathlib import Path

import numpy as np

from eventsim.atomic import atomic_path
from eventsim.errors import DataError
from eventsim.events import Events
from eventsim.layers import LIF, Dropout, Flatten, Layer, SpikingAvgPool
from eventsim.network import Network
from eventsim.nir.importer import Imported, import_graph

#: Suffix of the potential arrays in OUT.npz.
POTENTIAL = ".potential"


def read_spikes(path: str | os.PathLike, input_shape: tuple[int, ...], steps: int, dtype: np.dtype) -> np.ndarray:
    """``spikes`` of ``path``, checked: ``(steps, batch, *input_shape)``, finite, converted to ``dtype``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            if "spikes" not in data.files:
                raise DataError(f"{path}: has no array 'spikes' (found {sorted(data.files)})")
            spikes = data["spikes"]
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path}: not a readable .npz file ({exc})") from None
    if spikes.dtype.kind not in "fiub":
        raise DataError(f"{path}: 'spikes' must be numeric, got dtype {spikes.dtype}")
    if spikes.ndim != 2 + len(input_shape) or tuple(spikes.shape[2:]) != tuple(input_shape) or 0 in spikes.shape[:2]:
        raise DataError(f"{path}: 'spikes' must have shape (T, batch, *{tuple(input_shape)}), got {spikes.shape}")
    if spikes.shape[0] != steps:
        raise DataError(f"{path}: 'spikes' holds {spikes.shape[0]} steps but --steps is {steps}")
    bad = np.argwhere(~np.isfinite(spikes))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise DataError(f"{path}: 'spikes' is not finite at (step, sample, ...) = {where}")
    return spikes.astype(dtype)


def run_graph(imported: Imported, spikes: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's per-step output (and neurons' potentials), ``(T, batch, *shape)``, by NIR name."""
    network = imported.network
    structure = imported.structure
    events = Events.from_dense(np.ascontiguousarray(spikes.swapaxes(0, 1)))
    result = network.run(events, record=("spikes", "potentials"))
    out: dict[str, np.ndarray] = {structure.input: spikes}
    for name in structure.order:
        if name == structure.input:
            continue
        sources = structure.preds[name]
        if name == structure.output:
            out[name] = out["output"] = out[sources[0]]
            continue
        layer = imported.node_layers[name]
        if layer.name is not None and layer.name in result.spikes:  # a stage of the event-driven run
            out[name] = result.spikes[layer.name].to_dense().swapaxes(0, 1)
        elif isinstance(layer, Flatten):
            x = out[sources[0]]
            out[name] = x.reshape(x.shape[:2] + (-1,))
        elif isinstance(layer, Dropout):  # off at inference
            out[name] = out[sources[0]]
        else:
            out[name] = _synapse_alone(layer, network, out[sources[0]])
        if isinstance(layer, (LIF, SpikingAvgPool)):
            out[name + POTENTIAL] = result.potentials[layer.name].swapaxes(0, 1)
    return out


def _synapse_alone(layer: Layer, network: Network, x: np.ndarray) -> np.ndarray:
    """The currents of ``layer`` on ``x`` ``(T, batch, ...)``: the layer run as a one-layer network."""
    layer = copy.copy(layer)  # naming it inside the one-layer network must not rename the original
    alone = Network([layer], x.shape[2:], dtype=network.dtype)
    events = Events.from_dense(np.ascontiguousarray(x.swapaxes(0, 1)))
    return alone.run(events, record=("spikes",)).spikes[layer.name].to_dense().swapaxes(0, 1)


def run_file(
    graph: str | os.PathLike, spikes: str | os.PathLike, steps: int, out: str | os.PathLike, *, dt: float = 1.0,
    dtype: object = np.float32,
) -> dict[str, np.ndarray]:
    """``eventsim run``: read the graph and the spikes, run, write ``out`` atomically; return what was written."""
    if int(steps) < 1:
        raise DataError(f"--steps must be >= 1, got {steps}")
    imported = import_graph(graph, dt=dt, dtype=dtype)
    network = imported.network
    x = read_spikes(spikes, network.input_shape, int(steps), network.dtype)
    arrays = run_graph(imported, x)
    with atomic_path(out) as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)
    return arrays
