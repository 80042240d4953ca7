"""The shape of a NIR graph: checked, ordered, and cut into eventsim's sequence.

eventsim runs a sequence of layers in which a residual block is the only
place where two paths meet (docs/semantics.md, "Synapses and pooling"), and a
recurrent block the only cycle ("Recurrent connections"). A NIR graph fits
when, from its one Input node to its one Output node, every node has one
input and one output, except

- a *fork*: a node feeding two branches that are simple chains and meet
  again in one node (the block's neuron), which then has exactly those two
  inputs;
- a *loop*: a neuron node ``n`` and a ``Linear``, ``Affine`` or ``Conv2d``
  node ``w`` with the edges ``n -> w`` and ``w -> n`` and no others at ``w``
  (NIR's recurrent cycle; NIR sums ``w``'s output into ``n``'s input). The
  back edge ``w -> n`` is set aside (:attr:`Structure.loops`), so that the
  rest of the graph is checked and ordered as a feed-forward one.

Everything else (dangling edges, other cycles, nodes off the Input -> Output
path, other joins) is refused with an error naming the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eventsim.errors import NIRError
from eventsim.nir.fields import Field, edge


@dataclass
class Fork:
    """Two branches from ``source`` meeting in ``merge``; each branch a list of node names."""

    source: str
    merge: str
    branches: tuple[list[str], list[str]]


#: Node types that may close a recurrent loop, and the ones that may carry it back.
LOOP_NEURONS = ("LIF", "IF", "CubaLIF", "LI", "I", "CubaLI")
LOOP_CONNECTIONS = ("Linear", "Affine", "Conv2d")


class Structure:
    """Predecessors and successors of every node of a checked graph.

    ``loops[n]`` is the connection node of neuron node ``n``'s recurrent loop;
    the back edge from it to ``n`` is in neither ``preds`` nor ``succs``.
    ``order`` lists every node, each after its inputs (a loop's connection
    after its neuron).
    """

    def __init__(self, nir: Any, graph: Any) -> None:
        nodes, edges = getattr(graph, "nodes", None), getattr(graph, "edges", None)
        if not isinstance(nodes, dict) or not nodes:
            raise NIRError(f"a NIR graph needs a non-empty dict of nodes, got {type(nodes).__name__}")
        if edges is None:
            raise NIRError("the NIR graph has no edges")
        self.nodes = nodes
        self.preds: dict[str, list[str]] = {name: [] for name in nodes}
        self.succs: dict[str, list[str]] = {name: [] for name in nodes}
        where = Field("graph", "NIRGraph", "edges")
        for pair in edges:
            a, b = edge(pair, where)
            for end in (a, b):
                if end not in nodes:
                    raise NIRError(f"edge ({a!r}, {b!r}) refers to a node the graph does not have", node=end)
            if b in self.succs[a]:
                raise NIRError(f"edge ({a!r}, {b!r}) appears twice", node=b)
            self.succs[a].append(b)
            self.preds[b].append(a)
        self.loops = self._loops()
        self.input = self._single(nir.Input, "Input")
        self.output = self._single(nir.Output, "Output")
        self._check_order()

    def kind(self, name: str) -> str:
        return type(self.nodes[name]).__name__

    def _loops(self) -> dict[str, str]:
        """The recurrent loops ``neuron -> connection -> neuron``, their back edges removed."""
        loops: dict[str, str] = {}
        for name in self.nodes:
            if self.kind(name) not in LOOP_CONNECTIONS or len(self.preds[name]) != 1 or self.preds[name] != \
                    self.succs[name]:
                continue
            neuron = self.preds[name][0]
            if neuron == name or self.kind(neuron) not in LOOP_NEURONS:
                continue
            if neuron in loops:
                raise NIRError(f"closes two recurrent loops, through {loops[neuron]!r} and {name!r}; eventsim's "
                               "recurrent block has one connection", node=neuron, kind=self.kind(neuron))
            loops[neuron] = name
        for neuron, connection in loops.items():
            self.succs[connection].remove(neuron)
            self.preds[neuron].remove(connection)
        return loops

    def _single(self, cls: type, what: str) -> str:
        found = [name for name, node in self.nodes.items() if isinstance(node, cls)]
        if len(found) != 1:
            raise NIRError(f"eventsim needs exactly one {what} node, the graph has {len(found)}: {sorted(found)}")
        return found[0]

    def _check_order(self) -> None:
        """No cycle, and every node on a path from the Input node to the Output node."""
        if self.preds[self.input]:
            raise NIRError(f"the Input node has incoming edges from {self.preds[self.input]}", node=self.input)
        if self.succs[self.output]:
            raise NIRError(f"the Output node has outgoing edges to {self.succs[self.output]}", node=self.output)
        waiting = {name: len(p) for name, p in self.preds.items()}
        ready = [name for name, n in waiting.items() if n == 0]
        order = []
        while ready:
            name = ready.pop()
            order.append(name)
            for nxt in self.succs[name]:
                waiting[nxt] -= 1
                if waiting[nxt] == 0:
                    ready.append(nxt)
        if len(order) < len(self.nodes):
            stuck = self._on_cycles({name for name, n in waiting.items() if n > 0})
            raise NIRError(f"the graph has a cycle through {stuck}; eventsim runs feed-forward graphs and "
                           "recurrent loops neuron -> w_rec -> neuron (one Linear, Affine or Conv2d node whose "
                           "only input and only output is one neuron node)", node=stuck[0])
        self.order = order
        reached = self._reach(self.input, self.succs)
        for name in order:
            if name not in reached:
                raise NIRError("is not reachable from the Input node", node=name, kind=self.kind(name))
        back = {name: list(p) for name, p in self.preds.items()}
        for neuron, connection in self.loops.items():
            back[neuron].append(connection)
        leads = self._reach(self.output, back)
        for name in order:
            if name not in leads:
                raise NIRError("is dangling: no path leads from it to the Output node", node=name, kind=self.kind(name))

    def _on_cycles(self, stuck: set[str]) -> list[str]:
        """The nodes of ``stuck`` (those a topological sort could not order) that lie on or between cycles:
        ``stuck`` less the nodes that only lead away from them (e.g. the Output node after a cycle)."""
        onward = {name: sum(nxt in stuck for nxt in self.succs[name]) for name in stuck}
        ends = [name for name, n in onward.items() if n == 0]
        while ends:
            name = ends.pop()
            stuck.discard(name)
            for before in self.preds[name]:
                if before in stuck:
                    onward[before] -= 1
                    if onward[before] == 0:
                        ends.append(before)
        return sorted(stuck)

    @staticmethod
    def _reach(start: str, step: dict[str, list[str]]) -> set[str]:
        seen, todo = {start}, [start]
        while todo:
            for nxt in step[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    def sequence(self) -> list[str | Fork]:
        """The nodes from Input to Output (both excluded) in order, forks grouped."""
        items: list[str | Fork] = []
        current = self.input
        while True:
            nexts = self.forward(current)
            if len(nexts) == 2:
                fork = self._fork(current)
                items += [fork, fork.merge]
                current = fork.merge
                continue
            if len(nexts) != 1:
                raise NIRError(f"feeds {len(nexts)} nodes {nexts}; eventsim supports one, or two that meet again "
                               "in a residual block", node=current, kind=self.kind(current))
            nxt = nexts[0]
            if nxt == self.output:
                return items
            self._one_input(nxt)
            items.append(nxt)
            current = nxt

    def forward(self, name: str) -> list[str]:
        """The successors of ``name`` along the Input -> Output path: all but its loop's connection."""
        return [nxt for nxt in self.succs[name] if nxt != self.loops.get(name)]

    def _one_input(self, name: str) -> None:
        if len(self.preds[name]) != 1:
            raise NIRError(f"has {len(self.preds[name])} inputs {self.preds[name]}; only the neuron closing a "
                           "residual block may have two", node=name, kind=self.kind(name))

    def _fork(self, source: str) -> Fork:
        """The two branches leaving ``source`` and the node where they meet."""
        chains, ends = [], []
        for first in self.forward(source):
            chain, current = [], first
            while len(self.preds[current]) == 1 and current != self.output:
                chain.append(current)
                nexts = self.forward(current)
                if len(nexts) != 1:
                    raise NIRError(f"branches again inside the branch that starts at {source!r}; eventsim supports "
                                   "residual blocks whose paths are simple chains", node=current, kind=self.kind(current))
                current = nexts[0]
            chains.append(chain)
            ends.append(current)
        merge = ends[0]
        if ends[0] != ends[1] or merge == self.output:
            raise NIRError(f"the two branches from {source!r} do not meet in one node (they end in {ends})",
                           node=source, kind=self.kind(source))
        if len(self.preds[merge]) != 2:
            raise NIRError(f"has {len(self.preds[merge])} inputs {self.preds[merge]}; a residual merge has two",
                           node=merge, kind=self.kind(merge))
        return Fork(source, merge, (chains[0], chains[1]))
