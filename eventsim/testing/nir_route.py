"""The NIR route: an eventsim network carried through NIR by a framework's own NIR code, run and compared.

What users do to move a network between frameworks, as candidates
(eventsim/testing/protocol.py), in two directions:

- ``"import"`` (:class:`NirImportCandidate`): the eventsim network is
  written with :func:`eventsim.nir.to_nir` (``portable=True``, so that what
  NIR's nodes cannot say is declined, naming the layer, instead of
  travelling in eventsim's metadata, which no framework reads), read by the
  framework's importer (snnTorch 1.0 ``snntorch.import_nir.import_from_nir``,
  Norse 1.1 ``norse.torch.from_nir``), and the module it returns is run one
  step at a time. Its neurons are found by the NIR node names the importer
  gives them (``res1.lif2`` becomes ``res1_lif2``, also inside a nested
  graph).
- ``"export"`` (:class:`NirExportCandidate`): the framework's model of the
  network (the adapter's) is written by the framework's exporter (snnTorch's
  ``export_to_nir``), read by :func:`eventsim.nir.from_nir` and run by
  eventsim; its records are the original layers'.

Each importer works at the step its own code assumes (:data:`IMPORTERS`):
snnTorch's builds ``beta = 1 - dt / tau`` with ``dt = 1e-4`` written into
it; Norse's takes ``dt`` (1 here, so that ``dt / tau`` is the exported
``1 - lam``). Both build float32 weights (``torch.Tensor(...)``, Norse's
``_to_tensor``), so a float64 network is declined: it has no counterpart
there. The potentials reported are the pre-threshold U of each neuron: the
potential snnTorch's ``fire`` receives
(:class:`eventsim.testing.snntorch_adapter._FireTap`), and for Norse the
``v'`` its cell computes with an infinite threshold from the same state
(``_NorseProbe``).

The rows of the matrix that use these candidates are in each framework's
adapter (``route="nir"`` / ``"export"`` of its ``candidate``), so that a
row is reported with that framework's version; the framework-only
reproducers of the defects they show are here.

Needs torch, nir, nirtorch and the framework.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from eventsim.errors import LayerError
from eventsim.layers import LIF, AvgPool, MaxPool, Readout, Recurrent, SpikingAvgPool, SumPool
from eventsim.network import Network
from eventsim.testing.compare import recorded_layers, reference_records
from eventsim.testing.protocol import LayerRecord, Unsupported
from eventsim.testing.torch_modules import RecordingModel


@dataclass(frozen=True)
class Importer:
    """A framework's NIR importer as the route uses it.

    ``dt``: the step the graph is written for; ``load(graph)``: the
    framework's module; ``neurons(module)``: ``{NIR node name: taps}`` of
    its spiking neurons (``taps`` record each step's spikes and
    potentials); ``step(module, x, state)``: one step, returning the new
    state; ``reset(module)``: back to the initial state; ``decline(network)``:
    Unsupported for what the importer has no counterpart for.
    """

    framework: str
    dt: float
    load: Callable[[Any], Any]
    neurons: Callable[[Any], dict]
    step: Callable[[Any, Any, Any], Any]
    reset: Callable[[Any], None]
    decline: Callable[[Network], None]


def candidate(framework: str, direction: str = "import") -> Any:
    """The NIR-route candidate of ``framework`` ("snntorch", "norse"): ``direction`` "import" (eventsim ->
    NIR -> framework) or "export" (framework -> NIR -> eventsim)."""
    if direction == "export":
        return NirExportCandidate(framework)
    return NirImportCandidate(IMPORTERS[framework]())


# ====================================================================== import
class NirImportCandidate:
    """eventsim network -> :func:`eventsim.nir.to_nir` -> the framework's importer -> run (the module docstring)."""

    def __init__(self, importer: Importer) -> None:
        self.importer = importer
        self.name = f"{importer.framework} via NIR"

    def build(self, network: Network) -> NirImportModel:
        return NirImportModel(network, self.importer)


class NirImportModel(RecordingModel):
    """The module a framework's importer built from the network's NIR graph, run step by step."""

    def __init__(self, network: Network, importer: Importer) -> None:
        import torch

        self.torch, self.network, self.importer = torch, network, importer
        if network.dtype != np.float32:
            raise Unsupported(f"{importer.framework}'s NIR import builds float32 weights; a {network.dtype} network "
                              "has no counterpart")
        importer.decline(network)
        try:
            graph = _to_nir(network, importer.dt)
        except LayerError as exc:
            raise Unsupported(f"NIR cannot express it: {exc}") from None
        self.module = importer.load(graph)
        taps = importer.neurons(self.module)
        self.taps = {}
        for name, node in _neuron_nodes(network).items():
            if node not in taps:
                raise Unsupported(f"layer {name!r}: {importer.framework}'s NIR import made no neuron of node "
                                  f"{node!r}")
            self.taps[name] = taps[node]

    def _forward(self, spikes: np.ndarray) -> dict[str, tuple[list, list | None]]:
        for tap in self.taps.values():
            tap.clear()
        self.importer.reset(self.module)
        state = None
        for t in range(spikes.shape[0]):
            x = self.torch.from_numpy(np.ascontiguousarray(spikes[t])).to(self.torch.float32)
            state = self.importer.step(self.module, x, state)
        return {name: (tap.spikes, tap.potentials) for name, tap in self.taps.items()}


def _to_nir(network: Network, dt: float) -> Any:
    from eventsim.nir import to_nir

    return to_nir(network, dt=dt, portable=True)


def _neuron_nodes(network: Network) -> dict[str, str]:
    """``{neuron layer name: the name of its module in an imported graph}``: the NIR node name with "." as
    "_" (torch module names have no dots; a module of a nested graph is found by its last name)."""
    return {layer.name: layer.name.replace(".", "_") for layer in network.walk()
            if isinstance(layer, (LIF, SpikingAvgPool))}


class _Taps:
    """One neuron's spikes and pre-threshold potentials, one tensor per step."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self.spikes: list = []
        self.potentials: list = []


# ------------------------------------------------------------------ snnTorch
def _snntorch_importer() -> Importer:
    """snnTorch 1.0's ``import_from_nir`` (``snntorch/import_nir.py``): ``dt = 1e-4`` for every LIF and
    CubaLIF node; Leaky / Synaptic / RLeaky / RSynaptic with ``reset_mechanism="zero"`` and
    ``reset_delay=False`` (an immediate reset to 0, eventsim's hard reset), ``init_hidden=True``."""
    return Importer("snntorch", 1e-4, _snntorch_load, _snntorch_neurons, _snntorch_step, _snntorch_reset,
                    _snntorch_decline)


def _snntorch_decline(network: Network) -> None:
    for layer in network.walk():
        neuron = layer.neuron if isinstance(layer, Recurrent) else layer
        if not isinstance(neuron, LIF):
            continue
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        if isinstance(neuron, Readout):
            raise Unsupported(f"{where}: snnTorch's import_from_nir has no case for NIR's LI, I and CubaLI nodes")
        if neuron.leak == 1.0:
            raise Unsupported(f"{where}: snnTorch's import_from_nir asserts r == 1 for an IF node, whose r is 1 / dt "
                              "= 1e4 at its dt of 1e-4")
        if np.unique(neuron.thresholds(network.shapes[neuron.name][1])).size > 1:
            raise Unsupported(f"{where}: snnTorch's import_from_nir takes one threshold per layer")
        if neuron.input_gain != 1.0 or neuron.synapse_gain != 1.0 or neuron.arithmetic != "product":
            raise Unsupported(f"{where}: snnTorch's import_from_nir divides the threshold by the input gain "
                              "(hack_w_scale) instead of scaling the input: the potential is another")


def _snntorch_load(graph: Any) -> Any:
    from contextlib import redirect_stdout
    from io import StringIO

    from snntorch.import_nir import import_from_nir

    with redirect_stdout(StringIO()):  # it prints its progress and its weight-scaling warnings
        return import_from_nir(graph)


def _snntorch_neurons(module: Any) -> dict:
    import snntorch

    from eventsim.testing.snntorch_adapter import _FireTap

    out = {}
    for name, neuron in module.named_modules():
        if isinstance(neuron, snntorch.SpikingNeuron):
            taps = out[name.rpartition(".")[2]] = _Taps()  # a neuron of a nested graph: its own node's name
            neuron.fire = _FireTap(neuron.fire)
            neuron.register_forward_hook(_snntorch_hook(taps))
    return out


def _snntorch_hook(taps: _Taps) -> Callable:
    def record(neuron: Any, args: Any, spikes: Any) -> None:
        taps.spikes.append(spikes)
        taps.potentials.append(neuron.fire.potential)

    return record


def _snntorch_step(module: Any, x: Any, state: Any) -> Any:
    return module(x, state)[1]  # its neurons keep their own state (init_hidden); nested graphs keep theirs here


def _snntorch_reset(module: Any) -> None:
    import snntorch

    for neuron in module.modules():
        if isinstance(neuron, snntorch.SpikingNeuron):
            neuron.reset_mem()


# --------------------------------------------------------------------- Norse
def _norse_importer() -> Importer:
    """Norse 1.1's ``from_nir`` (``norse/torch/utils/import_nir.py``) at ``dt = 1``: LIF -> LIFBoxCell,
    IF -> IAFCell, CubaLIF -> an LIBoxCell synapse feeding a LIFBoxCell, all float32. The synapse computes
    ``J + k_syn ((v_leak - J) + w_in I)``, the Euler form, where eventsim's current is ``alpha J + h I``:
    the same in exact arithmetic, an ulp apart once ``alpha J`` is rounded (tests/test_nir_route.py)."""
    return Importer("norse", 1.0, _norse_load, _norse_neurons, _norse_step, lambda module: None, _norse_decline)


def _norse_decline(network: Network) -> None:
    for layer in network.walk():
        where = f"layer {layer.name!r} ({type(layer).__name__})"
        if isinstance(layer, Readout):
            raise Unsupported(f"{where}: Norse's from_nir has no case for NIR's LI, I and CubaLI nodes")
        if isinstance(layer, Recurrent):
            raise Unsupported(f"{where}: Norse's from_nir has no case for a recurrent loop")
        if isinstance(layer, (AvgPool, SpikingAvgPool)):
            raise Unsupported(f"{where}: Norse's from_nir has no case for NIR's AvgPool2d")


def _norse_load(graph: Any) -> Any:
    import logging

    import norse.torch as norse

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)  # its warnings about r are what the rows show
    try:
        return norse.from_nir(graph, dt=1.0)
    finally:
        logger.setLevel(level)


def _norse_neurons(module: Any) -> dict:
    """Every LIFBoxCell and IAFCell (a CubaLIF's inner LIFBoxCell under the CubaLIF's name), probed for U."""
    import norse.torch as norse

    out = {}
    for name, cell in module.named_modules():
        if isinstance(cell, (norse.LIFBoxCell, norse.IAFCell)):
            taps = out[name.removesuffix(".lif")] = _Taps()
            _NorseProbe(cell, taps)
    return out


class _NorseProbe:
    """Records a Norse cell's spikes, and its ``v'`` before the reset: the ``v`` a copy of the cell with
    ``v_th = inf`` (which never fires) returns from the same input and state."""

    def __init__(self, cell: Any, taps: _Taps) -> None:
        import torch

        self.taps = taps
        self.probe = type(cell)(cell.p._replace(v_th=torch.full_like(cell.p.v_th, np.inf)), dt=cell.dt)
        cell.register_forward_pre_hook(self.before)
        cell.register_forward_hook(self.after)

    def before(self, cell: Any, args: tuple) -> None:
        self.taps.potentials.append(self.probe(*args)[1].v)

    def after(self, cell: Any, args: tuple, output: tuple) -> None:
        self.taps.spikes.append(output[0])


def _norse_step(module: Any, x: Any, state: Any) -> Any:
    return module(x, state)[1]


IMPORTERS: dict[str, Callable[[], Importer]] = {"snntorch": _snntorch_importer, "norse": _norse_importer}


# ====================================================================== export
class NirExportCandidate:
    """The framework's model of the network -> its NIR exporter -> :func:`eventsim.nir.from_nir` -> eventsim.

    snnTorch's ``export_to_nir`` writes LIF nodes for ``dt = 1e-4``
    (``tau = dt / (1 - beta)``, ``r = tau / dt``), which is the step the
    graph is read at.
    """

    dt = 1e-4

    def __init__(self, framework: str) -> None:
        if framework != "snntorch":
            raise Unsupported(f"no NIR export route for {framework!r} (snntorch only)")
        self.name = f"{framework} NIR export"

    def build(self, network: Network) -> NirExportModel:
        return NirExportModel(network, self.dt)


class NirExportModel:
    """eventsim's run of the graph snnTorch exports of its model of ``network``, reported under the
    original layer names (the imported layers are the original ones, in order)."""

    def __init__(self, network: Network, dt: float) -> None:
        import torch
        from snntorch.export_nir import export_to_nir

        from eventsim.nir import from_nir
        from eventsim.testing.snntorch_adapter import SnnTorchModel

        model = SnnTorchModel(network)
        if model.module is None:
            raise Unsupported("export_to_nir traces an nn.Sequential; a residual block is not one")
        for layer in network.walk():
            if isinstance(layer, (SumPool, MaxPool)):
                raise Unsupported(f"layer {layer.name!r} ({type(layer).__name__}): snnTorch's export_to_nir has no "
                                  "case for it (sum pooling is an AvgPool2d with divisor_override here)")
        if len(model.module) == 1:
            raise Unsupported("snnTorch's export_to_nir (nirtorch's tracer) finds no input node in a network of one "
                              "module")
        sample = torch.zeros((1,) + tuple(network.input_shape), dtype=model.dtype)
        graph = export_to_nir(model.module, sample, ignore_dims=[0])
        self.imported = from_nir(graph, dt=dt, dtype=network.dtype)
        theirs, ours = list(recorded_layers(self.imported)), list(recorded_layers(network))
        if len(theirs) != len(ours):
            raise Unsupported(f"export_to_nir wrote {len(theirs)} recorded layers for the network's {len(ours)}")
        self.names = dict(zip(theirs, ours))

    def run(self, spikes: np.ndarray) -> dict[str, LayerRecord]:
        return {self.names[name]: record for name, record in reference_records(self.imported, spikes).items()
                if name in self.names}


# ================================================================ reproducers
# Framework-only: each builds its case with the framework and nir alone, and returns the lines it shows.
def _quiet(call: Callable, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)`` with its prints and warnings (snnTorch's progress, Norse's r warning) left out."""
    import logging
    from contextlib import redirect_stdout
    from io import StringIO

    logger = logging.getLogger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with redirect_stdout(StringIO()):
            return call(*args, **kwargs)
    finally:
        logger.setLevel(level)


def reproduce_snntorch_flatten() -> list[str]:
    """snnTorch's own round trip of ``Sequential(Flatten(), Linear(4, 2))`` on a batch of 3: the imported
    module flattens the batch with the sample."""
    import torch
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 2))
    graph = _quiet(export_to_nir, net, torch.zeros(1, 1, 2, 2), ignore_dims=[0])
    back = _quiet(import_from_nir, graph)
    x = torch.ones(3, 1, 2, 2)
    written = next(node for node in graph.nodes.values() if type(node).__name__ == "Flatten")
    built = next(module for module in back.modules() if isinstance(module, torch.nn.Flatten))
    lines = [f"export_to_nir writes Flatten(start_dim={written.start_dim}, end_dim={written.end_dim}); "
             f"import_from_nir builds {built}", f"the original maps a batch of 3 to {tuple(net(x).shape)}"]
    try:
        lines.append(f"the imported module maps it to {tuple(back(x)[0].shape)}")
    except RuntimeError as exc:
        lines.append(f"the imported module fails: {str(exc).splitlines()[0]}")
    return lines


def reproduce_snntorch_recurrent_loops() -> list[str]:
    """snnTorch's own round trip of ``Linear -> RLeaky`` changes the spikes (the imported loop feeds its
    input through the recurrent weights); a hand-written graph with two loops ``lif <-> w_rec`` does not
    import."""
    import nir
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    linear = torch.nn.Linear(2, 3, bias=False)
    rleaky = snn.RLeaky(beta=0.5, linear_features=3, init_hidden=True, reset_mechanism="zero")
    with torch.no_grad():
        linear.weight.fill_(0.5)
        rleaky.recurrent.weight.fill_(0.25)
        rleaky.recurrent.bias.fill_(0.125)
    net = torch.nn.Sequential(linear, rleaky)
    back = _quiet(import_from_nir, _quiet(export_to_nir, net, torch.zeros(1, 2), ignore_dims=[0]))
    x, state, theirs, ours = torch.ones(1, 2), None, [], []
    for _ in range(4):
        ours.append(net(x)[0, 0].item())
        out, state = back(x, state)
        theirs.append(out[0, 0].item())
    lines = [f"RLeaky(beta=0.5, W_rec 0.25, b_rec 0.125) after Linear(W 0.5), input 1, 1 for 4 steps: spikes {ours}; "
             f"after export_to_nir and import_from_nir: {theirs}"]

    def loop(name: str, source: str) -> tuple[dict, list]:
        n = np.ones(2)
        nodes = {f"{name}.lif": nir.LIF(tau=1e-3 * n, r=10 * n, v_leak=0 * n, v_threshold=n, v_reset=0 * n),
                 f"{name}.w_rec": nir.Linear(weight=0.25 * np.eye(2))}
        return nodes, [(source, f"{name}.lif"), (f"{name}.lif", f"{name}.w_rec"), (f"{name}.w_rec", f"{name}.lif")]

    (first, e1), (second, e2) = loop("a", "w1"), loop("b", "w2")
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([2])}), **first, **second,
                                "w1": nir.Linear(weight=np.eye(2)), "w2": nir.Linear(weight=np.eye(2)),
                                "output": nir.Output(output_type={"output": np.array([2])})},
                         edges=e1 + e2 + [("input", "w1"), ("a.lif", "w2"), ("b.lif", "output")])
    try:
        _quiet(import_from_nir, graph)
        lines.append("a graph with two loops lif <-> w_rec imports")
    except Exception as exc:  # what snnTorch raises is the finding
        lines.append(f"a graph with two loops lif <-> w_rec: {type(exc).__name__}: {exc}")
    return lines


def reproduce_snntorch_v_reset() -> list[str]:
    """A NIR LIF with ``v_reset = -0.5`` through snnTorch's ``import_from_nir``: it resets to 0."""
    import nir
    import torch
    from snntorch.import_nir import import_from_nir

    one = np.ones(1)
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1])}),
                                "lif": nir.LIF(tau=2e-4 * one, r=2 * one, v_leak=0 * one, v_threshold=one,
                                               v_reset=-0.5 * one),
                                "output": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("input", "lif"), ("lif", "output")])
    module = _quiet(import_from_nir, graph)
    lif = module.get_submodule("lif")
    spikes = [module(torch.tensor([[x]]))[0].item() for x in (2.0, 0.0)]
    return ["NIR LIF(tau=2e-4, r=2, v_threshold=1, v_reset=-0.5), its dt 1e-4: beta 0.5, input unscaled",
            f"import_from_nir builds {type(lif).__name__}(reset_mechanism={lif.reset_mechanism!r})",
            f"inputs 2, 0: spikes {spikes}, potential after the second step {lif.mem.item()} "
            f"(NIR: 0.5 * -0.5 = -0.25)"]


def reproduce_snntorch_export_subtract() -> list[str]:
    """snnTorch alone: ``Leaky(reset_mechanism="subtract")`` exported with ``export_to_nir`` and read back
    with ``import_from_nir`` fires differently."""
    import snntorch as snn
    import torch
    from snntorch.export_nir import export_to_nir
    from snntorch.import_nir import import_from_nir

    net = torch.nn.Sequential(torch.nn.Linear(1, 1, bias=False),
                              snn.Leaky(beta=torch.full((1,), 0.5), threshold=torch.ones(1), init_hidden=True))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    graph = _quiet(export_to_nir, net, torch.zeros(1, 1), ignore_dims=[0])
    lif = next(node for node in graph.nodes.values() if type(node).__name__ == "LIF")
    back = _quiet(import_from_nir, graph)
    inputs = (1.25, 0.5, 0.875)
    ours, theirs, state = [], [], None
    for x in inputs:
        ours.append(net(torch.tensor([[x]])).item())
        out, state = back(torch.tensor([[x]]), state)
        theirs.append(out.item())
    return [f"Leaky(beta=0.5, threshold=1, reset_mechanism='subtract') exports as LIF with v_reset "
            f"{lif.v_reset.tolist()} (NIR's LIF has no other reset)",
            f"inputs {list(inputs)}: spikes {ours}; after export_to_nir and import_from_nir: {theirs}"]


def _norse_graph(neuron: Any, size: int, flatten: bool = False) -> Any:
    """``input -> (Flatten ->) neuron -> output`` on ``size`` values."""
    import nir

    nodes = {"input": nir.Input(input_type={"input": np.array([1, size] if flatten else [size])}),
             "neuron": neuron, "output": nir.Output(output_type={"output": np.array([size])})}
    edges = [("neuron", "output")]
    if flatten:
        nodes["flatten"] = nir.Flatten(input_type={"input": np.array([1, size])}, start_dim=0, end_dim=-1)
        edges += [("input", "flatten"), ("flatten", "neuron")]
    else:
        edges.append(("input", "neuron"))
    return nir.NIRGraph(nodes=nodes, edges=edges)


def reproduce_norse_flatten() -> list[str]:
    """NIR's ``Flatten(start_dim=0)`` of (1, 2) samples through Norse's ``from_nir``, on a batch of 3."""
    import nir
    import norse.torch as norse
    import torch

    two = np.ones(2)
    graph = _norse_graph(nir.IF(r=two, v_threshold=two, v_reset=0 * two), 2, flatten=True)
    module = _quiet(norse.from_nir, graph, dt=1.0)
    built = next(m for m in module.modules() if isinstance(m, torch.nn.Flatten))
    x = torch.ones(3, 1, 2)
    lines = [f"NIR Flatten(start_dim=0, end_dim=-1) of samples (1, 2): from_nir builds {built}",
             f"which maps a batch of 3 samples (1, 2) to {tuple(built(x).shape)} (NIR: 3 samples of 2, (3, 2))"]
    try:
        lines.append(f"the imported graph returns {tuple(module(x)[0].shape)}")
    except RuntimeError as exc:
        lines.append(f"the imported graph fails: {str(exc).splitlines()[0]}")
    return lines


def reproduce_norse_lif_r_and_v_reset() -> list[str]:
    """A NIR LIF with ``r = 2`` and ``v_reset = -0.5`` through Norse's ``from_nir`` at dt = 1."""
    import nir
    import norse.torch as norse
    import torch

    one = np.ones(1)
    graph = _norse_graph(nir.LIF(tau=2 * one, r=2 * one, v_leak=0 * one, v_threshold=one, v_reset=-0.5 * one), 1)
    module = _quiet(norse.from_nir, graph, dt=1.0)
    lines, state, v = [], None, 0.0
    for x in (0.75, 4.0, 0.0):
        z, state = module(torch.tensor([[x]]), state)
        v += (2 * x - v) / 2  # NIR's LIF under forward Euler: v += dt/tau (v_leak - v + r I)
        v, fired = (-0.5, 1.0) if v > 1 else (v, 0.0)
        lines.append(f"input {x}: from_nir's module spikes {z.item()}, v {state.state['neuron'][0].v.item()}; "
                     f"the NIR node spikes {fired}, v {v}")
    return ["NIR LIF(tau=2, r=2, v_leak=0, v_threshold=1, v_reset=-0.5) read by from_nir at dt = 1"] + lines


def reproduce_norse_two_inputs() -> list[str]:
    """NIR ``input -> a, input -> b, a -> if, b -> if`` (NIR sums a and b into the IF node) through Norse's
    ``from_nir``."""
    import nir
    import norse.torch as norse
    import torch

    one = np.ones(1)
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([1])}),
                                "a": nir.Linear(weight=np.array([[1.0]])), "b": nir.Linear(weight=np.array([[0.5]])),
                                "if": nir.IF(r=one, v_threshold=10 * one, v_reset=0 * one),
                                "output": nir.Output(output_type={"output": np.array([1])})},
                         edges=[("input", "a"), ("input", "b"), ("a", "if"), ("b", "if"), ("if", "output")])
    module = _quiet(norse.from_nir, graph, dt=1.0)
    try:
        _, state = module(torch.tensor([[1.0]]))
        shown = f"v = {state.state['if'][0].v.tolist()}"
    except Exception as exc:  # what Norse raises is the finding
        shown = f"{type(exc).__name__}: {str(exc).splitlines()[0]}"
    return ["NIR: IF fed by Linear(1) and Linear(0.5) of the input 1 integrates v = 1.5",
            f"Norse's from_nir: {shown}"]
