"""NIR files: written atomically, read with errors that name the file and the node.

A NIR file is HDF5: a ``version`` string and a ``node`` group holding the
graph (``type`` "NIRGraph", ``nodes``, ``edges``), as the ``nir`` package
writes it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from eventsim.atomic import atomic_path
from eventsim.errors import NIRError
from eventsim.network import Network
from eventsim.nir.extra import require_nir


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

    return from_nir(read_graph(path), dt=dt, dtype=dtype)


def read_graph(path: str | os.PathLike) -> Any:
    """The ``nir.NIRGraph`` stored in ``path``, without NIR's own type check (eventsim checks shapes itself).

    Raises
    ------
    NIRError
        The file is missing, not HDF5, not a NIR graph, or a node in it
        cannot be read (missing or malformed fields); the message names the
        file and the node.
    """
    import h5py

    nir = require_nir()
    from nir.serialization import hdf2dict

    path = Path(path)
    if not path.is_file():
        raise NIRError(f"{path}: no such file")
    try:
        with h5py.File(path, "r") as f:
            if "node" not in f:
                raise NIRError(f"{path}: not a NIR file (no 'node' group)")
            data = hdf2dict(f["node"])
    except OSError as exc:
        raise NIRError(f"{path}: not a readable HDF5 file ({exc})") from None
    if data.get("type") != "NIRGraph":
        raise NIRError(f"{path}: the top node is {data.get('type')!r}, not a NIRGraph")
    for field in ("nodes", "edges"):
        if field not in data:
            raise NIRError(f"{path}: the graph has no {field!r}")
    if not isinstance(data["nodes"], dict):
        raise NIRError(f"{path}: 'nodes' is not a group of nodes")
    nodes = {}
    for name, fields in data["nodes"].items():
        if not isinstance(fields, dict) or "type" not in fields:
            raise NIRError(f"{path}: has no 'type' field", node=name)
        kind = getattr(nir, str(fields["type"]), None)
        if not (isinstance(kind, type) and issubclass(kind, nir.NIRNode)):
            raise NIRError(f"{path}: unknown node type {fields['type']!r}", node=name)
        try:
            nodes[name] = nir.dict2NIRNode(dict(fields))
        except (AssertionError, KeyError, TypeError, ValueError, IndexError) as exc:
            raise NIRError(f"{path}: cannot be read as a {fields['type']} node ({type(exc).__name__}: {exc})",
                           node=name) from None
    edges = np.asarray(data["edges"])
    if edges.size and (edges.ndim != 2 or edges.shape[1] != 2):
        raise NIRError(f"{path}: edges must be (source, target) pairs, got an array of shape {edges.shape}")
    metadata = data.get("metadata", {})
    return nir.NIRGraph(nodes=nodes, edges=[tuple(e) for e in edges.reshape(-1, 2)],
                        metadata=metadata if isinstance(metadata, dict) else {}, type_check=False)
