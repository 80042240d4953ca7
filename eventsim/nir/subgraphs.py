"""Nested NIR graphs, flattened into one graph before eventsim reads it.

NIR lets a node be a whole graph (``NIRGraph``) with its own Input and
Output nodes. Exporters use this for recurrent layers: snnTorch's
``export_to_nir`` builds ``RLeaky`` / ``RSynaptic`` as a subgraph
``{input, lif, w_rec, output}`` (which nirtorch 2 flattens before writing,
nirtorch 1 did not), and Spyx's importer wraps every ``lif <-> w_rec`` cycle
into such a subgraph. A subgraph ``g`` means the same as its inner nodes
named ``g.<inner name>``, with every edge into ``g`` going to what ``g``'s
Input node feeds and every edge out of ``g`` leaving from what feeds ``g``'s
Output node: that is the graph :func:`flatten` returns, so that a subgraph
and the flat form snnTorch writes today are read the same way
(docs/nir.md, "Recurrent subgraphs").
"""

from __future__ import annotations

from typing import Any

from eventsim.errors import NIRError
from eventsim.nir.fields import Field, edge

#: How deeply graphs may nest: far beyond what any exporter writes, and a
#: bound on the recursion a crafted file can cause.
MAX_DEPTH = 8


def flatten(nir: Any, graph: Any) -> Any:
    """``graph`` with every nested ``NIRGraph`` node replaced by its inner nodes (``graph`` itself if none).

    Raises
    ------
    NIRError
        A subgraph without exactly one Input and one Output node, nested
        deeper than :data:`MAX_DEPTH`, or whose inner names clash with a node
        of the outer graph, naming the subgraph.
    """
    nodes = getattr(graph, "nodes", None)
    if not isinstance(nodes, dict) or not any(isinstance(node, nir.NIRGraph) for node in nodes.values()):
        return graph
    flat_nodes, flat_edges = _flat(nir, graph, "", 0)
    return nir.NIRGraph(nodes=flat_nodes, edges=flat_edges, metadata=getattr(graph, "metadata", {}) or {},
                        type_check=False)


def _flat(nir: Any, graph: Any, prefix: str, depth: int) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The nodes and edges of ``graph`` with subgraphs inlined; names prefixed with ``prefix``."""
    nodes, edges = graph.nodes, getattr(graph, "edges", None)
    if edges is None:
        raise NIRError("the NIR graph has no edges", node=prefix.rstrip(".") or None)
    where = Field(prefix.rstrip(".") or "graph", "NIRGraph", "edges")
    pairs = [edge(pair, where) for pair in edges]
    out_nodes: dict[str, Any] = {}
    # What an edge into (out of) each node of this graph connects to once subgraphs are inlined.
    entries: dict[str, list[str]] = {}
    exits: dict[str, list[str]] = {}
    inner_edges: list[tuple[str, str]] = []
    for name, node in nodes.items():
        full = prefix + name
        if isinstance(node, nir.NIRGraph):
            if depth + 1 >= MAX_DEPTH:
                raise NIRError(f"subgraphs nest deeper than {MAX_DEPTH} levels", node=full, kind="NIRGraph")
            sub_nodes, sub_edges = _flat(nir, node, full + ".", depth + 1)
            inputs = [n for n, sub in sub_nodes.items() if isinstance(sub, nir.Input)]
            outputs = [n for n, sub in sub_nodes.items() if isinstance(sub, nir.Output)]
            if len(inputs) != 1 or len(outputs) != 1:
                raise NIRError(f"a subgraph needs one Input and one Output node, it has {len(inputs)} and "
                               f"{len(outputs)}", node=full, kind="NIRGraph")
            entries[name] = [b for a, b in sub_edges if a == inputs[0]]
            exits[name] = [a for a, b in sub_edges if b == outputs[0]]
            inner_edges += [(a, b) for a, b in sub_edges if a != inputs[0] and b != outputs[0]]
            for sub_name, sub in sub_nodes.items():
                if sub_name not in (inputs[0], outputs[0]):
                    _add(out_nodes, sub_name, sub)
        else:
            entries[name] = exits[name] = [full]
            _add(out_nodes, full, node)
    out_edges = list(inner_edges)
    for a, b in pairs:
        for end in (a, b):
            if end not in nodes:
                raise NIRError(f"edge ({a!r}, {b!r}) refers to a node the graph does not have", node=prefix + end)
        out_edges += [(source, target) for source in exits[a] for target in entries[b]]
    return out_nodes, out_edges




def _add(nodes: dict[str, Any], name: str, node: Any) -> None:
    if name in nodes:
        raise NIRError("is named twice once subgraphs are flattened (a subgraph's inner node and a node of the "
                       "outer graph)", node=name)
    nodes[name] = node
