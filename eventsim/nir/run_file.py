"""The file interface of ``eventsim run``: a NIR graph and input spikes in, every node's output out.

    eventsim run --graph NET.nir --input SPIKES.npz --steps T --out OUT.npz [--dt DT]

``SPIKES.npz`` holds ``spikes``: a dense float array ``(T, batch, *input_shape)``
of per-step input values (0/1 spikes, signed spikes, counts or currents).
``OUT.npz`` holds, for every node of the graph, its per-step output
``(T, batch, *node_shape)`` under the node's NIR name (a readout node, which
never fires, outputs its running readout ``U[t] / t``: :func:`running_readout`);
``<name>.potential``, the pre-threshold potential U, for every neuron node;
``<name>.synaptic``, the synaptic current J, for every neuron node that has
one (CubaLIF, CubaLI); and ``output``, the value reaching the graph's Output
node (the last node's output, so the prediction ``U[T] / T`` at the last
step for a network ending in a readout). The network runs event by event
(:meth:`eventsim.Network.run`); the outputs of synapses that feed a neuron
(and so never leave the simulator as events) are those of the same synapse
run alone on its input node's output; a recurrent loop's connection node
outputs ``W_rec s[t] (+ b)``, what its neuron receives at step t + 1.
Written atomically.
"""

from __future__ import annotations

import copy
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from eventsim.atomic import atomic_path
from eventsim.errors import DataError
from eventsim.events import Events
from eventsim.layers import LIF, Dropout, Flatten, Layer, Readout, SpikingAvgPool
from eventsim.limits import check_size
from eventsim.network import Network
from eventsim.nir.importer import Imported, import_graph
from eventsim.reading import NPY_MAGIC, fill, open_regular, read_npy_header

#: Suffixes of the potential and synaptic-current arrays in OUT.npz.
POTENTIAL = ".potential"
SYNAPTIC = ".synaptic"
#: The zip entry np.savez writes for the array ``spikes``.
SPIKES = "spikes.npy"
ZIP_SIGNATURE = b"PK\x03\x04"


def read_spikes(path: str | os.PathLike, input_shape: tuple[int, ...], steps: int, dtype: np.dtype) -> np.ndarray:
    """``spikes`` of ``path``, checked: ``(steps, batch, *input_shape)``, numeric, finite in ``dtype``.

    The file is untrusted: its zip entry and ``.npy`` header are read and
    checked (compression method, declared sizes against the file and against
    the allocation limit, dtype, shape) before the array is allocated, and
    the array is then filled by bounded reads, so neither a zip bomb nor a
    header declaring gigabytes costs memory. Finiteness is checked after the
    cast to ``dtype``: 1e300 in a float64 file is inf in float32.

    Raises
    ------
    DataError
        Naming the file, the array 'spikes' where it is about the array, and
        what is wrong.
    """
    path = Path(path)
    what = f"{path}: 'spikes'"
    try:
        with open_regular(path) as f:
            start = f.read(len(NPY_MAGIC))
            if start == NPY_MAGIC:
                raise DataError(f"{path}: is a plain .npy file; save the input with np.savez(path, spikes=array)")
            if not start.startswith(ZIP_SIGNATURE):  # what np.load requires too
                raise DataError(f"{path}: not an .npz file (no zip signature at its start); "
                                f"save the input with np.savez(path, spikes=array)")
            f.seek(0)
            with zipfile.ZipFile(f) as archive:
                spikes = _read_member(archive, path, what, input_shape, steps)
    except (OSError, EOFError, zlib.error, zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError,
            UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable .npz file ({type(exc).__name__}: {exc}); "
                        f"save the input with np.savez(path, spikes=array)") from None
    with np.errstate(over="ignore"):  # an overflow to inf is reported below, with its position
        spikes = spikes.astype(dtype, copy=False)
    bad = np.argwhere(~np.isfinite(spikes))
    if bad.size:
        where = tuple(int(i) for i in bad[0])
        raise DataError(f"{what} is not finite at (step, sample, ...) = {where} "
                        f"once cast to the network's {np.dtype(dtype).name}")
    return spikes


def _read_member(archive: zipfile.ZipFile, path: Path, what: str, input_shape: tuple[int, ...],
                 steps: int) -> np.ndarray:
    """The array of the archive's ``spikes.npy``, every declared size and the shape checked before allocating."""
    names = archive.namelist()
    if SPIKES not in names:
        found = sorted(name.removesuffix(".npy") for name in names)
        raise DataError(f"{path}: has no array 'spikes' (found {found})")
    info = archive.getinfo(SPIKES)
    if info.flag_bits & 0x1:
        raise DataError(f"{what} is encrypted; save the input with np.savez(path, spikes=array)")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise DataError(f"{what} uses zip compression method {info.compress_type}, which eventsim does not read; "
                        f"save the input with np.savez or np.savez_compressed")
    check_size(info.file_size, f"{what} (zip entry, uncompressed)", DataError)
    with archive.open(info) as member:
        shape, fortran, stored = read_npy_header(member, what)
        if (len(shape) != 2 + len(input_shape) or tuple(shape[2:]) != tuple(input_shape)
                or min(shape[:2], default=0) < 1):
            raise DataError(f"{what} must have shape (T, batch, *{tuple(input_shape)}), got {shape}")
        if shape[0] != steps:
            raise DataError(f"{what} holds {shape[0]} steps but --steps is {steps}")
        nbytes = math.prod(shape) * stored.itemsize
        check_size(nbytes, f"{what} of shape {shape}", DataError)
        if member.tell() + nbytes != info.file_size:
            raise DataError(f"{what}: its header declares {nbytes} bytes of data ({stored}, shape {shape}) "
                            f"but the zip entry holds {info.file_size - member.tell()}")
        data = np.empty(shape[::-1] if fortran else shape, stored)
        fill(member, data, what)
    return data.T if fortran else data


def run_graph(imported: Imported, spikes: np.ndarray) -> dict[str, np.ndarray]:
    """Every node's per-step output (and neurons' potentials and synaptic currents), ``(T, batch, *shape)``,
    by NIR name."""
    network = imported.network
    structure = imported.structure
    events = Events.from_dense(np.ascontiguousarray(spikes.swapaxes(0, 1)))
    record = ("spikes", "potentials")
    if any(isinstance(layer, LIF) and layer.synapse_leak is not None for layer in network.walk()):
        record += ("synaptic",)
    result = network.run(events, record=record)
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
        if isinstance(layer, LIF) and layer.synapse_leak is not None:
            out[name + SYNAPTIC] = result.synaptic[layer.name].swapaxes(0, 1)
        if isinstance(layer, Readout):  # it never fires: its output is its readout, not its (empty) spikes
            out[name] = running_readout(out[name + POTENTIAL])
    return out


def running_readout(potentials: np.ndarray) -> np.ndarray:
    """``U[t] / t`` at every step t = 1..T of ``potentials`` ``(T, ...)``: the readout of a run ending at t.

    Step t's value depends on the input up to t only, so it is exactly what a
    run of t steps outputs (:attr:`eventsim.network.RunResult.output`, the
    same division in the same dtype), and step T's is the network's prediction.
    """
    steps = np.arange(1, potentials.shape[0] + 1, dtype=potentials.dtype)
    return potentials / steps.reshape((-1,) + (1,) * (potentials.ndim - 1))


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
