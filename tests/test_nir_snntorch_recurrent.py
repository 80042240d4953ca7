"""Recurrent and synaptic-current graphs that snnTorch's and Norse's own NIR exporters write, run by eventsim.

Each model is built with the framework's own classes, exported with the
framework's own exporter, written to a file and read back with
eventsim.nir.import_graph; eventsim's spikes (and potentials, and synaptic
currents where the framework reports them) are compared with the
framework's own forward pass on the same input, bit for bit. Weights and
inputs are dyadic (multiples of 1/4, small). snnTorch's recurrent neurons
add the recurrent current last, ``(alpha syn + input) + W s``, where
eventsim adds it to the input first, ``alpha J + (input + W s)``
(docs/conventions.md): equal in exact arithmetic, not always in floating
point. So the recurrent layer leaks by 1/2 (its synaptic current too) over
16 steps, which keeps every one of its operations exact; the layer after it
computes snnTorch's operations in snnTorch's order and takes any leak.
docs/conventions.md names these tests and the convention flags they set.
"""

import numpy as np
import pytest

nir = pytest.importorskip("nir")
torch = pytest.importorskip("torch")

import eventsim as es
from eventsim.nir import import_graph
from eventsim.nir.run_file import POTENTIAL, SYNAPTIC, run_graph

SNNTORCH_DT = 1e-4  # the step snnTorch's export_to_nir writes its time constants for
STEPS, BATCH, N_IN, N_REC, N_OUT = 16, 3, 6, 5, 3


def _dyadic(rng, shape, quarters=4):
    """Multiples of 1/4 in [-quarters/4, quarters/4], float32."""
    return torch.tensor(rng.integers(-quarters, quarters + 1, size=shape) / 4, dtype=torch.float32)


def _input(seed):
    """Input currents (T, batch, N_IN): multiples of 1/2 in [0, 2], a fifth of them zero."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 5, size=(STEPS, BATCH, N_IN)) / 2
    return (values * (rng.random(values.shape) > 0.2)).astype(np.float32)


# ===================================================================== snnTorch
@pytest.fixture
def snn():
    pytest.importorskip("snntorch.export_nir")
    return pytest.importorskip("snntorch")


class _SnnTorchModel(torch.nn.Module):
    """nn.Linear -> RSynaptic / RLeaky (all-to-all recurrent Linear) -> nn.Linear -> Synaptic / Leaky.

    One step per call; returns the last layer's spikes.
    """

    def __init__(self, recurrent, out):
        super().__init__()
        self.fc1, self.lif1 = torch.nn.Linear(N_IN, N_REC), recurrent
        self.fc2, self.lif2 = torch.nn.Linear(N_REC, N_OUT), out

    def forward(self, x):
        return self.lif2(self.fc2(self.lif1(self.fc1(x))))[0]


def _snntorch_model(snn, synaptic: bool, seed: int) -> _SnnTorchModel:
    """A model of snnTorch's own neurons with dyadic weights; per-neuron beta and threshold, as its export needs."""
    rng = np.random.default_rng(seed)
    full = lambda n, v: torch.full((n,), v)  # noqa: E731
    if synaptic:
        recurrent = snn.RSynaptic(alpha=full(N_REC, 0.5), beta=full(N_REC, 0.5), threshold=full(N_REC, 1.0),
                                  linear_features=N_REC, init_hidden=True)
        out = snn.Synaptic(alpha=full(N_OUT, 0.25), beta=full(N_OUT, 0.875), threshold=full(N_OUT, 0.5),
                           init_hidden=True, output=True)
    else:
        recurrent = snn.RLeaky(beta=full(N_REC, 0.5), threshold=full(N_REC, 1.0), linear_features=N_REC,
                               init_hidden=True)
        out = snn.Leaky(beta=full(N_OUT, 0.5), threshold=full(N_OUT, 0.5), init_hidden=True, output=True)
    model = _SnnTorchModel(recurrent, out)
    with torch.no_grad():
        for linear in (model.fc1, model.lif1.recurrent, model.fc2):
            linear.weight.copy_(_dyadic(rng, linear.weight.shape))
            linear.bias.copy_(_dyadic(rng, linear.bias.shape, quarters=1))
    return model


def _snntorch_run(model: _SnnTorchModel, x: np.ndarray, synaptic: bool) -> dict:
    """snnTorch's own forward, step by step: spikes, potentials (and synaptic currents) of both neuron layers."""
    for neuron in (model.lif1, model.lif2):
        neuron.reset_mem()
    names = ("spk", "mem", "syn") if synaptic else ("spk", "mem")
    out = {f"{layer}.{what}": [] for layer in ("lif1", "lif2") for what in names}
    with torch.no_grad():
        for t in range(x.shape[0]):
            spikes = {"lif2": model(torch.from_numpy(x[t])), "lif1": model.lif1.spk}
            for layer in ("lif1", "lif2"):
                neuron = getattr(model, layer)
                for what, value in zip(names, (spikes[layer], neuron.mem, getattr(neuron, "syn", None))):
                    out[f"{layer}.{what}"].append(value.numpy().copy())
    return {key: np.stack(values) for key, values in out.items()}


def _export(model: _SnnTorchModel, path) -> None:
    from snntorch.export_nir import export_to_nir

    graph = export_to_nir(model, torch.zeros(1, N_IN), ignore_dims=[0])
    nir.write(path, graph)


def test_snntorch_writes_rsynaptic_as_a_flat_cubalif_loop(tmp_path, snn):
    """What export_to_nir writes for RSynaptic: nodes lif1.lif (CubaLIF, w_in = tau_syn/dt, r = tau_mem/dt) and
    lif1.w_rec (Affine), edges fc1 -> lif1.lif -> lif1.w_rec -> lif1.lif -> fc2; read back as Recurrent 'lif1'."""
    model = _snntorch_model(snn, synaptic=True, seed=0)
    path = tmp_path / "rsynaptic.nir"
    _export(model, path)
    graph = nir.read(path)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {"input": "Input", "fc1": "Affine", "lif1.lif": "CubaLIF", "lif1.w_rec": "Affine",
                     "fc2": "Affine", "lif2": "CubaLIF", "output": "Output"}
    assert {("fc1", "lif1.lif"), ("lif1.lif", "lif1.w_rec"), ("lif1.w_rec", "lif1.lif"),
            ("lif1.lif", "fc2")} <= set(graph.edges)
    lif = graph.nodes["lif1.lif"]
    np.testing.assert_allclose(lif.tau_syn, SNNTORCH_DT / (1 - 0.5), rtol=1e-12)
    np.testing.assert_allclose(lif.w_in, lif.tau_syn / SNNTORCH_DT, rtol=1e-12)
    np.testing.assert_allclose(lif.r, lif.tau_mem / SNNTORCH_DT, rtol=1e-12)
    network = import_graph(path, dt=SNNTORCH_DT).network
    block = network.layers[1]
    assert isinstance(block, es.Recurrent) and (block.name, block.neuron.name, block.connection.name) == \
        ("lif1", "lif1.lif", "lif1.w_rec")
    np.testing.assert_array_equal(block.connection.weight, model.lif1.recurrent.weight.detach().numpy())
    for neuron, (alpha, beta) in ((block.neuron, (0.5, 0.5)), (network.layers[3], (0.25, 0.875))):
        # float32 parameters through float64 Euler: within an ulp of float32, exactly alpha, beta and 1 there.
        assert [np.float32(v) for v in (neuron.synapse_leak, neuron.leak, neuron.synapse_gain, neuron.input_gain)] \
            == [np.float32(alpha), np.float32(beta), 1, 1]


@pytest.mark.parametrize("synaptic", [True, False], ids=["RSynaptic-Synaptic", "RLeaky-Leaky"])
def test_snntorch_recurrent_graph_runs_identically_with_the_convention_flags(tmp_path, snn, synaptic):
    """snnTorch's default reset ("subtract", delayed a step) exports as NIR's hard reset; with the imported
    neurons set to reset="soft", reset_delayed=True eventsim gives snnTorch's spikes, potentials and synaptic
    currents bit for bit."""
    model = _snntorch_model(snn, synaptic, seed=1)
    x = _input(seed=2)
    theirs = _snntorch_run(model, x, synaptic)
    path = tmp_path / "net.nir"
    _export(model, path)
    imported = import_graph(path, dt=SNNTORCH_DT)
    plain = run_graph(imported, x)
    for layer in imported.network.walk():
        if isinstance(layer, es.LIF):
            layer.reset, layer.reset_delayed = "soft", True
    ours = run_graph(imported, x)
    assert theirs["lif1.spk"].any() and theirs["lif2.spk"].any() and not theirs["lif1.spk"].all()
    assert not np.array_equal(plain["lif1.lif"], theirs["lif1.spk"])  # the flags matter
    for node, layer in (("lif1.lif", "lif1"), ("lif2", "lif2")):
        np.testing.assert_array_equal(ours[node], theirs[f"{layer}.spk"], err_msg=node)
        np.testing.assert_array_equal(ours[node + POTENTIAL], theirs[f"{layer}.mem"], err_msg=node)
        if synaptic:
            np.testing.assert_array_equal(ours[node + SYNAPTIC], theirs[f"{layer}.syn"], err_msg=node)


def test_snntorch_subgraph_form_reads_as_the_flat_form(tmp_path, snn):
    """snnTorch builds RSynaptic as a subgraph {input, lif, w_rec, output}, which nirtorch 1 wrote nested: the same
    network as the flat graph nirtorch 2 writes."""
    from snntorch.export_nir import _extract_snntorch_module

    model = _snntorch_model(snn, synaptic=True, seed=3)
    flat_path = tmp_path / "flat.nir"
    _export(model, flat_path)
    flat = nir.read(flat_path)
    nodes = {name: node for name, node in flat.nodes.items() if not name.startswith("lif1.")}
    nodes["lif1"] = _extract_snntorch_module(model.lif1)  # snnTorch's own subgraph of the layer
    edges = [(a, b) for a, b in flat.edges if not (a.startswith("lif1.") and b.startswith("lif1."))]
    edges = [(a.replace("lif1.lif", "lif1"), b.replace("lif1.lif", "lif1")) for a, b in edges]
    nested_path = tmp_path / "nested.nir"
    nir.write(nested_path, nir.NIRGraph(nodes=nodes, edges=edges, type_check=False))
    a, b = (import_graph(p, dt=SNNTORCH_DT).network for p in (flat_path, nested_path))
    assert [repr(layer) for layer in a.walk()] == [repr(layer) for layer in b.walk()]
    for x, y in zip(a.walk(), b.walk()):
        for field in ("weight", "bias"):
            assert np.array_equal(getattr(x, field, None), getattr(y, field, None)), (x.name, field)


# ======================================================================== Norse
def test_norse_lif_graph_runs_identically_with_the_convention_flags(tmp_path):
    """Norse 1.1's to_nir writes LIFCell as a CubaLIF with w_in = 1 (and tau = dt / tau_inv): read as NIR says,
    its synaptic gain is dt w_in / tau_syn = dt tau_syn_inv, where Norse's current takes the input unscaled
    (i += input). With synapse_gain=1 and Norse's arithmetic form ("euler") eventsim gives Norse's spikes."""
    norse = pytest.importorskip("norse.torch")
    rng = np.random.default_rng(4)
    p_rec = norse.LIFParameters(tau_mem_inv=torch.full((N_REC,), 0.5), tau_syn_inv=torch.full((N_REC,), 0.25),
                                v_th=torch.full((N_REC,), 1.0), v_leak=torch.full((N_REC,), 0.25))
    p_out = norse.LIFBoxParameters(tau_mem_inv=torch.full((N_OUT,), 0.5), v_th=torch.full((N_OUT,), 0.5),
                                   v_leak=torch.zeros(N_OUT))
    model = norse.SequentialState(torch.nn.Linear(N_IN, N_REC, bias=False), norse.LIFCell(p_rec, dt=1.0),
                                  torch.nn.Linear(N_REC, N_OUT, bias=False), norse.LIFBoxCell(p_out, dt=1.0))
    with torch.no_grad():
        for linear in (model[0], model[2]):
            linear.weight.copy_(_dyadic(rng, linear.weight.shape))
    x = _input(seed=5)
    path = tmp_path / "norse.nir"
    nir.write(path, norse.to_nir(model, torch.zeros(N_IN), dt=1.0))
    imported = import_graph(path, dt=1.0).network
    lif = imported.layers[1]
    assert (lif.synapse_leak, lif.synapse_gain, lif.leak, lif.input_gain, lif.v_rest) == (0.75, 0.25, 0.5, 0.5, 0.25)

    state, spikes = None, {"1": [], "3": []}
    with torch.no_grad():
        for t in range(STEPS):
            h = torch.from_numpy(x[t])
            states = []
            for i, module in enumerate(model):
                if isinstance(module, torch.nn.Linear):
                    h = module(h)
                    states.append(None)
                    continue
                h, s = module(h, None if state is None else state[i])
                spikes[str(i)].append(h.numpy().copy())
                states.append(s)
            state = states
    flagged = []
    for layer in imported.layers:
        if isinstance(layer, es.LIF):
            synapse = {} if layer.synapse_leak is None else {"synapse_leak": layer.synapse_leak, "synapse_gain": 1.0}
            layer = es.LIF(layer.threshold, leak=layer.leak, arithmetic="euler", v_rest=layer.v_rest, **synapse,
                           name=layer.name)
        else:
            layer = es.Linear(layer.in_features, layer.out_features, weight=layer.weight, bias=layer.bias,
                              name=layer.name)
        flagged.append(layer)
    network = es.Network(flagged, imported.input_shape)
    result = network.run(es.Events.from_dense(np.ascontiguousarray(x.swapaxes(0, 1))), record=("spikes",))
    assert np.stack(spikes["1"]).any() and np.stack(spikes["3"]).any()
    for name in ("1", "3"):
        np.testing.assert_array_equal(result.spikes[name].to_dense().swapaxes(0, 1), np.stack(spikes[name]),
                                      err_msg=name)


def test_norse_exports_no_recurrent_cell():
    """Norse 1.1's to_nir has no case for LIFRecurrentCell: the node it writes is None, so a Norse recurrent
    network cannot reach eventsim through NIR (docs/conventions.md)."""
    norse = pytest.importorskip("norse.torch")
    model = norse.SequentialState(torch.nn.Linear(N_IN, N_REC, bias=False), norse.LIFRecurrentCell(N_REC, N_REC))
    graph = norse.to_nir(model, torch.zeros(N_IN))
    assert [node for node in graph.nodes.values() if node is None]
