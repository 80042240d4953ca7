"""NIR files: written atomically, read with errors that name the file and the node.

A NIR file is HDF5: a ``version`` string and a ``node`` group holding the
graph (``type`` "NIRGraph", ``nodes``, ``edges``), as the ``nir`` package
writes it. Reading trusts nothing in it: the file is opened by the safe HDF5
reader (:mod:`eventsim.hdf5`: a regular file, no external links, external
storage, virtual datasets or link cycles, declared sizes checked against the
limit before anything is read), and eventsim reads each node's fields
itself, by the table :data:`NODE_FIELDS` of what every node type holds, and
checks every value (:mod:`eventsim.nir.fields`) before the ``nir`` package's
node constructors see it, because those fail with raw AttributeError,
OverflowError or AssertionError on malformed values, or accept values
(complex, NaN) that would become wrong numbers. A node may itself be a graph
(a group of type "NIRGraph", as NIR writes a subgraph), read the same way
to at most :data:`eventsim.nir.subgraphs.MAX_DEPTH` levels.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

from eventsim.atomic import atomic_path
from eventsim.errors import NIRError
from eventsim.network import Network
from eventsim.nir import fields
from eventsim.nir.extra import require_nir
from eventsim.nir.fields import Field


def save(network: Network, path: str | os.PathLike, *, dt: float = 1.0, portable: bool = False) -> Path:
    """Write ``network`` as a NIR file (:func:`~eventsim.nir.to_nir`), atomically; return the path."""
    from eventsim.nir.export import to_nir

    nir = require_nir()
    graph = to_nir(network, dt=dt, portable=portable)
    with atomic_path(path) as tmp:
        nir.write(tmp, graph)
    return Path(path)


def load(path: str | os.PathLike, *, dt: float = 1.0, dtype: object = np.float32) -> Network:
    """Read a NIR file into a network (:func:`~eventsim.nir.from_nir`)."""
    from eventsim.nir.importer import from_nir

    return from_nir(path, dt=dt, dtype=dtype)


#: How errors name a NIR file: "NIR file PATH: ...".
WHAT = "NIR file"

Check = Callable[[Any, Field], Any]


def _array(value: Any, where: Field) -> np.ndarray:
    return fields.numbers(value, where)


def _weight(ndim: int) -> Check:
    """A weight of exactly ``ndim`` dimensions (the nir package indexes them without checking)."""
    def check(value: Any, where: Field) -> np.ndarray:
        weight = fields.numbers(value, where)
        if weight.ndim != ndim:
            raise where.error(f"must have {ndim} dimensions, got shape {weight.shape}")
        return weight
    return check


def _threshold(value: Any, where: Field) -> np.ndarray:
    return fields.numbers(value, where, allow_inf=True)  # an infinite threshold: a neuron that never fires


def _size_pair(value: Any, where: Field) -> np.ndarray:
    return np.array(fields.pair(value, where, low=1))


def _padding(sizes: Check) -> Check:
    """Padding: 'same', 'valid', or sizes as ``sizes`` checks them."""
    def check(value: Any, where: Field) -> Any:
        if np.asarray(value).dtype.kind in "OSU":  # text, as h5py reads it
            padding = fields.text(value, where)
            if padding not in ("same", "valid"):
                raise where.error(f"must be 'same', 'valid' or sizes, got {padding!r}")
            return padding
        return sizes(value, where)
    return check


def _pad_pair(value: Any, where: Field) -> np.ndarray:
    return np.array(fields.pair(value, where, low=0))


def _pad_int(value: Any, where: Field) -> int:
    return fields.integer(value, where, low=0)


def _shape(value: Any, where: Field) -> np.ndarray:
    return np.array(fields.shape(value, where))


def _int(value: Any, where: Field) -> int:
    return fields.integer(value, where)


def _positive_int(value: Any, where: Field) -> int:
    return fields.integer(value, where, low=1)


def _spatial(value: Any, where: Field) -> np.ndarray:
    """A Conv2d's (height, width): the nir package indexes both."""
    return np.array(fields.integers(value, where, low=1, size=2))


#: What the group of each NIR node type holds (besides ``type`` and ``metadata``):
#: field -> (check, required). Fields not listed are refused, as the nir
#: package refuses them, because eventsim cannot know what they would change.
NODE_FIELDS: dict[str, dict[str, tuple[Check, bool]]] = {
    "Input": {"shape": (_shape, True)},
    "Output": {"shape": (_shape, True)},
    "Affine": {"weight": (_array, True), "bias": (_array, True)},
    "Linear": {"weight": (_array, True)},
    "Scale": {"scale": (_array, True)},
    "Conv2d": {"input_shape": (_spatial, False), "weight": (_weight(4), True), "stride": (_size_pair, True),
               "padding": (_padding(_pad_pair), True), "dilation": (_size_pair, True), "groups": (_positive_int, True),
               "bias": (_array, True)},
    "Conv1d": {"input_shape": (_positive_int, False), "weight": (_weight(3), True), "stride": (_positive_int, True),
               "padding": (_padding(_pad_int), True), "dilation": (_positive_int, True),
               "groups": (_positive_int, True), "bias": (_array, True)},
    "SumPool2d": {"kernel_size": (_size_pair, True), "stride": (_size_pair, True), "padding": (_pad_pair, True)},
    "AvgPool2d": {"kernel_size": (_size_pair, True), "stride": (_size_pair, True), "padding": (_pad_pair, True)},
    "Flatten": {"start_dim": (_int, True), "end_dim": (_int, True), "input_type": (_shape, False)},
    "I": {"r": (_array, True)},
    "IF": {"r": (_array, True), "v_threshold": (_threshold, True), "v_reset": (_array, False)},
    "LI": {"tau": (_array, True), "r": (_array, True), "v_leak": (_array, True)},
    "LIF": {"tau": (_array, True), "r": (_array, True), "v_leak": (_array, True), "v_threshold": (_threshold, True),
            "v_reset": (_array, False)},
    "CubaLI": {"tau_mem": (_array, True), "tau_syn": (_array, True), "r": (_array, True), "v_leak": (_array, True),
               "w_in": (_array, False)},
    "CubaLIF": {"tau_mem": (_array, True), "tau_syn": (_array, True), "r": (_array, True), "v_leak": (_array, True),
                "v_threshold": (_threshold, True), "v_reset": (_array, False), "w_in": (_array, False)},
    "Delay": {"delay": (_array, True)},
    "Threshold": {"threshold": (_threshold, True)},
}

#: Neuron fields that must all have one shape (the nir package asserts it).
NEURON_FIELDS = ("tau", "tau_mem", "tau_syn", "r", "v_leak", "v_threshold", "v_reset", "w_in")


def read_graph(path: str | os.PathLike) -> Any:
    """The ``nir.NIRGraph`` stored in ``path``, every field checked, without NIR's own type check
    (eventsim checks shapes itself).

    Raises
    ------
    NIRError
        The file is missing, not HDF5, not a NIR graph, or a node in it
        cannot be read (missing, unknown or malformed fields); the message
        names the file and the node.
    """
    from eventsim.hdf5 import open_hdf5

    nir = require_nir()
    try:
        with open_hdf5(path, error=NIRError, what=WHAT) as f:
            return _Reader(nir).graph(f)
    except NIRError as exc:
        raise in_file(path, exc) from None


class _Reader:
    """Reads the groups of one NIR file into nir nodes."""

    def __init__(self, nir: Any) -> None:
        self.nir = nir

    def graph(self, f: Any) -> Any:
        top = f.get("node")
        if not self.is_group(top):
            raise NIRError("not a NIR file (no 'node' group)")
        kind = self.text(top, "type", Field("graph", "NIRGraph", "type"))
        if kind != "NIRGraph":
            raise NIRError(f"the top node is {kind!r}, not a NIRGraph")
        return self.subgraph(top, None, 0)

    def subgraph(self, group: Any, name: str | None, depth: int) -> Any:
        """The graph in ``group``: the file's top graph (``name`` None) or the subgraph node ``name``."""
        from eventsim.nir.subgraphs import MAX_DEPTH

        def error(problem: str) -> NIRError:
            return NIRError(problem, node=name, kind="NIRGraph" if name else None)

        if depth >= MAX_DEPTH:
            raise error(f"subgraphs nest deeper than {MAX_DEPTH} levels")
        for key in ("nodes", "edges"):
            if key not in group:
                raise error(f"the graph has no {key!r}")
        if not self.is_group(group["nodes"]):
            raise error("'nodes' is not a group of nodes")
        prefix = f"{name}." if name else ""
        # h5py iterates items holding its global lock across yields: read them all first, so that a
        # node refused midway leaves no suspended iteration (and no lock) behind in the error's traceback.
        nodes = {inner: self.node(inner, node, prefix, depth) for inner, node in list(group["nodes"].items())}
        where = Field(name or "graph", "NIRGraph", "edges")
        return self.nir.NIRGraph(nodes=nodes, edges=self.edges(group, where),
                                 metadata=self.metadata(group, name or "graph", "NIRGraph"), type_check=False)

    def node(self, inner: str, group: Any, prefix: str, depth: int) -> Any:
        """The node ``inner`` of a graph whose nodes' full names start with ``prefix``."""
        name = prefix + inner
        if not self.is_group(group):
            raise NIRError("is not a group of fields", node=name)
        if "type" not in group:
            raise NIRError("has no 'type' field", node=name)
        kind = self.text(group, "type", Field(name, None, "type"))
        if kind == "NIRGraph":
            return self.subgraph(group, name, depth + 1)
        table = NODE_FIELDS.get(kind)
        if table is None:
            from eventsim.nir.importer import UNSUPPORTED

            reason = f"is not supported: {UNSUPPORTED[kind]}" if kind in UNSUPPORTED else f"unknown node type {kind!r}"
            raise NIRError(reason, node=name)
        values = {}
        for key in group:
            if key in ("type", "metadata"):
                continue
            if key not in table:
                raise self.unreadable(name, kind, f"it has a field {key!r} that a {kind} node does not have")
            values[key] = table[key][0](self.value(group, key, Field(name, kind, key)), Field(name, kind, key))
        missing = [key for key, (_, required) in table.items() if required and key not in values]
        if missing:
            raise self.unreadable(name, kind, f"it has no field {missing[0]!r}")
        shapes = {key: values[key].shape for key in NEURON_FIELDS if key in values}
        if len(set(shapes.values())) > 1:
            raise self.unreadable(name, kind, f"its parameters must all have one shape, got {shapes}")
        try:
            return self.nir.dict2NIRNode({"type": kind, **values, "metadata": self.metadata(group, name, kind)})
        except (AssertionError, ValueError, TypeError) as exc:  # the nir package's own checks
            raise self.unreadable(name, kind, f"{type(exc).__name__}: {exc}") from None

    def edges(self, top: Any, where: Field) -> list[tuple[str, str]]:
        raw = np.asarray(self.value(top, "edges", where, kinds="S"))
        if raw.size == 0:
            return []
        if raw.ndim != 2 or raw.shape[1] != 2:
            raise where.error(f"must be (source, target) pairs, got an array of shape {raw.shape}")
        return [(fields.text(a, where), fields.text(b, where)) for a, b in raw]

    def metadata(self, group: Any, name: str, kind: str) -> dict[str, Any]:
        """The node's metadata: strings or numbers under string keys (what nir writes)."""
        if "metadata" not in group:
            return {}
        if not self.is_group(group["metadata"]):
            raise Field(name, kind, "metadata").error("is not a group")
        out = {}
        for key in group["metadata"]:
            where = Field(name, kind, f"metadata/{key}")
            out[key] = self.value(group["metadata"], key, where, kinds="Sbiuf")
        return out

    def text(self, group: Any, key: str, where: Field) -> str:
        return fields.text(self.value(group, key, where, kinds="S"), where)

    def value(self, group: Any, key: str, where: Field, kinds: str = "biufcS") -> np.ndarray:
        """The dataset ``group[key]`` read whole by the safe reader (:func:`eventsim.hdf5.read_dataset`:
        declared size checked against the limit and the file first); strings come as bytes.

        ``kinds``: the dtype kinds accepted. Numeric fields accept complex and
        strings here so that :mod:`eventsim.nir.fields` names what they hold.
        """
        import h5py

        from eventsim.hdf5 import read_dataset

        dset = group.get(key)
        if not isinstance(dset, h5py.Dataset):
            raise where.error("is not a dataset")
        return read_dataset(dset, error=NIRError, what=WHAT, kinds=kinds)

    @staticmethod
    def is_group(obj: Any) -> bool:
        import h5py

        return isinstance(obj, h5py.Group)

    @staticmethod
    def unreadable(name: str, kind: str, problem: str) -> NIRError:
        return NIRError(f"cannot be read as a {kind} node: {problem}", node=name, kind=kind)


def in_file(path: str | os.PathLike, exc: NIRError) -> NIRError:
    """A NIRError saying what ``exc`` says, about the file ``path``, keeping the node it names.

    ``exc`` itself when it names the file already (the safe HDF5 reader's errors do).
    """
    label = f"{WHAT} {os.fspath(path)}"
    if str(exc).startswith(label):
        return exc
    out = NIRError(f"{label}: {exc}")
    out.node = exc.node
    return out
