"""NIR import and export of the state beyond the potential, recurrent loops and delays.

CubaLIF / CubaLI nodes (synaptic current), v_leak as the rest potential,
Delay nodes, recurrent cycles ``lif -> w_rec -> lif`` and nested subgraphs
(docs/nir.md). The import, export and round-trip tests below build networks
and graphs only; the tests at the end run them (the event path of
docs/semantics.md, "State beyond the potential", "Recurrent connections",
"Delays") and compare with NIR's Euler equations stepped here by hand.
"""

from math import exp

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

nir = pytest.importorskip("nir")

import eventsim as es
from eventsim.cli import main
from eventsim.errors import NIRError
from eventsim.nir import from_nir, load, save, to_nir
from eventsim.nir.subgraphs import MAX_DEPTH
from test_nir import _network_differences

DTS = [1.0, 1e-3, 0.37]


# ================================================================ round trips
def _neuron(draw, kind: str) -> es.LIF:
    """A LIF (or Readout) with a drawn choice of the state options NIR import and export must carry."""
    synapse = draw(st.sampled_from([None, 0.0, 0.25, 0.5, 0.875, exp(-1 / 20)]))
    options = {}
    if synapse is not None:
        options = {"synapse_leak": synapse, "synapse_gain": draw(st.sampled_from([1.0, 0.5, 0.1, 3.0]))}
    leak = draw(st.sampled_from([0.5, 0.75, 0.9, exp(-1 / 100), 0.0]))
    if kind == "readout":
        options.update(v_rest=draw(st.sampled_from([0.0, 0.25, -0.5])), v_init=draw(st.sampled_from([None, 1.5])))
        return es.Readout(leak=leak, input_gain=draw(st.sampled_from([1.0, 0.25])), **options)
    theta = draw(st.sampled_from([1.0, 0.5]))
    if draw(st.booleans()):  # snnTorch's convention: a delayed soft reset, the synaptic current only
        return es.LIF(theta, leak=leak, reset="soft", reset_delayed=True, **options)
    options.update(v_rest=draw(st.sampled_from([0.0, 0.25, -0.5])), v_reset=draw(st.sampled_from([0.0, -0.25])),
                   v_min=draw(st.sampled_from([-np.inf, -1.0])), max_spikes=draw(st.sampled_from([1, 3, None])))
    if draw(st.booleans()):
        options["v_init"] = 0.125
    return es.LIF(theta, leak=leak, strict=draw(st.booleans()), **options)


@st.composite
def state_networks(draw) -> es.Network:
    """Flat or convolutional networks with a recurrent block or a plain neuron, a delay and a readout."""
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    w = lambda *shape: rng.normal(size=shape).astype(dtype)  # noqa: E731
    bias = lambda n: w(n) if draw(st.booleans()) else None  # noqa: E731
    neuron = _neuron(draw, "lif")
    if draw(st.booleans()):  # a flat network
        n_in, n = draw(st.integers(1, 4)), draw(st.integers(1, 5))
        first = es.Linear(n_in, n, weight=w(n, n_in), bias=bias(n))
        connection = es.Linear(n, n, weight=w(n, n), bias=bias(n))
        steps = draw(st.sampled_from([0, 3, np.arange(n)]))
        layers, shape, flat = [first], (n_in,), n
    else:
        c = draw(st.integers(1, 3))
        first = es.Conv2d(1, c, 3, padding=1, weight=w(c, 1, 3, 3), bias=bias(c))
        connection = es.Conv2d(c, c, 3, padding=1, weight=w(c, c, 3, 3), bias=bias(c))
        steps = draw(st.sampled_from([2, np.arange(c), np.arange(c * 9).reshape(c, 3, 3)]))
        layers, shape, flat = [first], (1, 3, 3), c * 9
    layers.append(es.Recurrent(neuron, connection) if draw(st.booleans()) else neuron)
    layers.append(es.Delay(steps))
    if len(shape) == 3:
        layers.append(es.Flatten())
    layers += [es.Linear(flat, 2, weight=w(2, flat)), _neuron(draw, "readout")]
    return es.Network(layers, shape, dtype=dtype)


@settings(max_examples=40, deadline=None)
@given(state_networks(), st.sampled_from(DTS))
def test_eventsim_nir_eventsim_round_trip_is_exact_for_the_new_nodes(network, dt):
    back = from_nir(to_nir(network, dt=dt), dt=dt, dtype=network.dtype)
    assert _network_differences(network, back) == []


@settings(max_examples=10, deadline=None)
@given(network=state_networks())
def test_round_trip_through_a_file(tmp_path_factory, network):
    path = save(network, tmp_path_factory.mktemp("nir") / "net.nir", dt=1e-3)
    assert _network_differences(network, load(path, dt=1e-3, dtype=network.dtype)) == []


def _graph_differences(first, second) -> list:
    """Nodes, edges or node fields (bit for bit) where two NIR graphs differ; [] if nowhere."""
    if list(first.nodes) != list(second.nodes) or sorted(first.edges) != sorted(second.edges):
        return [("structure", list(first.nodes), list(second.nodes), first.edges, second.edges)]
    found = []
    for name in first.nodes:
        a, b = first.nodes[name].to_dict(), second.nodes[name].to_dict()
        if a.keys() != b.keys():
            found.append((name, sorted(a), sorted(b)))
            continue
        for key in a:
            if isinstance(a[key], np.ndarray):
                if a[key].dtype != b[key].dtype or a[key].tobytes() != b[key].tobytes():
                    found.append((name, key, a[key], b[key]))
            elif a[key] != b[key]:
                found.append((name, key, a[key], b[key]))
    return found


@settings(max_examples=15, deadline=None)
@given(state_networks(), st.sampled_from(DTS))
def test_nir_eventsim_nir_round_trip_is_exact_for_the_new_nodes(network, dt):
    """A graph eventsim wrote comes back node for node, field for field: CubaLIF, CubaLI, Delay and the cycle."""
    first = to_nir(network, dt=dt)
    assert _graph_differences(first, to_nir(from_nir(first, dt=dt, dtype=network.dtype), dt=dt)) == []


def test_new_nodes_are_written_as_nir_nodes():
    net = es.Network([
        es.Linear(2, 3, weight=np.ones((3, 2), np.float32)),
        es.Recurrent(es.LIF(1.0, leak=0.75, synapse_leak=0.5, v_rest=0.25),
                     es.Linear(3, 3, weight=np.eye(3, dtype=np.float32))),
        es.Delay(np.array([1, 2, 3])),
        es.Linear(3, 2, weight=np.ones((2, 3), np.float32)),
        es.Readout(leak=0.5, synapse_leak=0.25),
    ], (2,))
    graph = to_nir(net, dt=0.5)
    kinds = {name: type(node).__name__ for name, node in graph.nodes.items()}
    assert kinds == {"input": "Input", "fc1": "Linear", "rec1.lif1": "CubaLIF", "rec1.fc1": "Linear",
                     "delay1": "Delay", "fc2": "Linear", "readout1": "CubaLI", "output": "Output"}
    assert {("fc1", "rec1.lif1"), ("rec1.lif1", "rec1.fc1"), ("rec1.fc1", "rec1.lif1"), ("rec1.lif1", "delay1")} \
        <= set(graph.edges)
    lif = graph.nodes["rec1.lif1"]
    # Euler with dt = 0.5: alpha = 1 - dt/tau_syn = 0.5, h = dt w_in / tau_syn = 1, lam = 0.75, g = 1.
    np.testing.assert_array_equal(lif.tau_syn, np.full(3, 1.0))
    np.testing.assert_array_equal(lif.w_in, np.full(3, 2.0))
    np.testing.assert_array_equal(lif.tau_mem, np.full(3, 2.0))
    np.testing.assert_array_equal(lif.v_leak, np.full(3, 0.25))
    np.testing.assert_array_equal(graph.nodes["delay1"].delay, [0.5, 1.0, 1.5])


@pytest.mark.parametrize("layer, problem", [
    (es.IF(1.0, synapse_leak=0.5), "potential does not leak"),
    (es.LIF(1.0, leak=0.5, synapse_leak=1.0), "never decays"),
])
def test_a_synaptic_current_nir_cannot_hold_is_refused_naming_the_layer(layer, problem):
    net = es.Network([es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)), layer], (2,))
    with pytest.raises(es.LayerError, match=f"'{layer.name}'.*{problem}"):
        to_nir(net)


@pytest.mark.parametrize("layer, problem", [
    (es.LIF(1.0, leak=0.5, v_min=-1.0), "clamps"),
    (es.LIF(1.0, leak=0.5, max_spikes=2), "several spikes"),
    (es.LIF(1.0, leak=0.5, v_init=0.5), "v_init"),
])
def test_portable_export_refuses_state_options_nir_lacks(layer, problem):
    net = es.Network([es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)), layer], (2,))
    to_nir(net)  # carried in eventsim's metadata
    with pytest.raises(es.LayerError, match=f"'{layer.name}'.*{problem}"):
        to_nir(net, portable=True)


def test_portable_export_accepts_what_nir_says():
    net = es.Network([es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)),
                      es.Recurrent(es.LIF(1.0, leak=0.5, synapse_leak=0.25, v_rest=0.5, v_reset=-0.5),
                                   es.Linear(2, 2, weight=np.eye(2, dtype=np.float32))),
                      es.Delay(2)], (2,))
    assert type(to_nir(net, portable=True).nodes["rec1.lif1"]).__name__ == "CubaLIF"


# ============================================================ foreign graphs
def _graph(*nodes, edges=None):
    """A graph of ``nodes`` (name, node) chained from 'input' to 'output' unless ``edges`` are given."""
    names = [name for name, _ in nodes]
    chain = list(zip(names, names[1:]))
    return nir.NIRGraph(nodes=dict(nodes), edges=chain if edges is None else edges, type_check=False)


def _io(n):
    return ("input", nir.Input(input_type=np.array([n]))), ("output", nir.Output(output_type=np.array([n])))


def _cuba(n=2, **fields):
    values = dict(tau_syn=np.full(n, 4.0), tau_mem=np.full(n, 8.0), r=np.full(n, 2.0), v_leak=np.full(n, -0.25),
                  v_threshold=np.full(n, 1.5), v_reset=np.full(n, 0.5), w_in=np.full(n, 3.0))
    values.update(fields)
    return nir.CubaLIF(**values)


def test_euler_mapping_of_a_foreign_cubalif():
    """tau_syn dJ/dt = -J + w_in S, tau_mem dv/dt = (v_leak - v) + r J under Euler with dt = 0.5:
    alpha = 1 - 0.5/4, h = 0.5 * 3 / 4, lam = 1 - 0.5/8, g = 0.5 * 2 / 8, v_rest = v_leak, hard reset to v_reset."""
    source, sink = _io(2)
    lif = from_nir(_graph(source, ("lif", _cuba()), sink), dt=0.5).layers[0]
    assert type(lif) is es.LIF
    assert (lif.synapse_leak, lif.synapse_gain, lif.leak, lif.input_gain) == (0.875, 0.375, 0.9375, 0.125)
    assert (lif.v_rest, lif.v_init, lif.v_reset, lif.threshold, lif.reset, lif.strict, lif.reset_delayed) == \
        (-0.25, -0.25, 0.5, 1.5, "hard", True, False)


def test_euler_mapping_of_a_foreign_cubali_and_li():
    source, sink = _io(2)
    cuba = nir.CubaLI(tau_syn=np.full(2, 2.0), tau_mem=np.full(2, 4.0), r=np.full(2, 4.0), v_leak=np.full(2, 0.5),
                      w_in=np.full(2, 2.0))
    readout = from_nir(_graph(source, ("out", cuba), sink), dt=1.0).layers[0]
    assert type(readout) is es.Readout
    assert (readout.synapse_leak, readout.synapse_gain, readout.leak, readout.input_gain, readout.v_rest) == \
        (0.5, 1.0, 0.75, 1.0, 0.5)
    li = nir.LI(tau=np.full(2, 4.0), r=np.ones(2), v_leak=np.full(2, -1.0))
    readout = from_nir(_graph(source, ("out", li), sink), dt=1.0).layers[0]
    assert (readout.synapse_leak, readout.leak, readout.input_gain, readout.v_rest) == (None, 0.75, 0.25, -1.0)


@pytest.mark.parametrize("fields, problem", [
    ({"tau_syn": np.array([4.0, 2.0])}, "field 'tau_syn' differs between neurons"),
    ({"w_in": np.array([3.0, 1.0])}, "field 'w_in' differs between neurons"),
    ({"v_leak": np.array([0.0, 1.0])}, "field 'v_leak' differs between neurons"),
    ({"tau_syn": np.full(2, 0.25)}, r"tau_syn=0.25 .* synaptic leak 1 - dt/tau_syn = -1.0, outside \[0, 1\]: is dt "
                                    "right"),
    ({"tau_syn": np.full(2, -1.0)}, "tau_syn must be positive"),
    ({"w_in": np.full(2, 0.0)}, "w_in=0.0 .* synaptic gain 0.0; it must be positive"),
])
def test_cubalif_values_eventsim_cannot_take_are_refused_naming_node_and_field(fields, problem):
    source, sink = _io(2)
    with pytest.raises(NIRError, match=r"NIR node 'lif' \(CubaLIF\): " + problem):
        from_nir(_graph(source, ("lif", _cuba(**fields)), sink), dt=0.5)


def test_synaptic_metadata_that_disagrees_with_tau_syn_asks_for_the_dt():
    """eventsim's metadata holds the exact alpha; tau_syn read with another dt gives another: refused."""
    net = es.Network([es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)),
                      es.LIF(1.0, leak=0.5, synapse_leak=0.5, synapse_gain=0.25)], (2,))
    graph = to_nir(net, dt=0.001)
    graph.nodes["lif1"].tau_syn = graph.nodes["lif1"].tau_syn * 1.5
    with pytest.raises(NIRError, match="'lif1'.*tau_syn and w_in give synapse_leak .*another dt"):
        from_nir(graph, dt=0.001)


# --------------------------------------------------------------------- delays
@pytest.mark.parametrize("delay, dt, steps", [
    (np.full(3, 3e-4, np.float32), 1e-4, 3),  # float32 3e-4 is 3.0000001 steps: within the tolerance
    (np.full(3, 0.0), 0.5, 0),
    (np.array([0.5, 1.0, 2.5]), 0.5, [1, 2, 5]),
])
def test_delay_in_seconds_becomes_whole_steps(delay, dt, steps):
    source, sink = _io(3)
    layer = from_nir(_graph(source, ("d", nir.Delay(delay=delay)), sink), dt=dt).layers[0]
    assert isinstance(layer, es.Delay)
    np.testing.assert_array_equal(layer.steps, steps)


def test_delay_per_channel_of_a_map_is_read_per_channel():
    delay = np.broadcast_to(np.array([1.0, 2.0])[:, None, None], (2, 3, 3)).copy()
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2, 3, 3])), "d": nir.Delay(delay=delay),
                                "output": nir.Output(output_type=np.array([2, 3, 3]))},
                         edges=[("input", "d"), ("d", "output")], type_check=False)
    np.testing.assert_array_equal(from_nir(graph).layers[0].steps, [1, 2])
    delay[1, 0, 0] = 3.0
    assert from_nir(graph).layers[0].steps.shape == (2, 3, 3)


@pytest.mark.parametrize("delay, problem", [
    (np.array([1.0, 1.5, 2.0]), r"delay 1.5 at index \(1,\) is 1.5 steps of dt=1.0, not a whole number"),
    (np.array([1.0, 1.00001, 2.0]), "not a whole number"),
    (np.array([1.0, -1.0, 2.0]), "negative"),
    (np.full(3, 2.0**40), "below 2\\*\\*31"),
])
def test_delay_eventsim_cannot_take_is_refused_naming_the_node(delay, problem):
    source, sink = _io(3)
    with pytest.raises(NIRError, match=r"NIR node 'd' \(Delay\): .*" + problem):
        from_nir(_graph(source, ("d", nir.Delay(delay=delay)), sink), dt=1.0)


# ------------------------------------------------------------ recurrent loops
def _loop_graph(neuron, connection, names=("lif", "w_rec"), n=2):
    source, sink = _io(n)
    lif, w_rec = names
    nodes = [source, ("fc", nir.Linear(weight=np.eye(n))), (lif, neuron), (w_rec, connection), sink]
    edges = [("input", "fc"), ("fc", lif), (lif, w_rec), (w_rec, lif), (lif, "output")]
    return _graph(*nodes, edges=edges)


def test_a_cycle_through_a_linear_node_is_a_recurrent_block():
    """The neuron's input is the sum of the feed-forward and the recurrent edge: Recurrent(neuron, Linear)."""
    weight = np.array([[0.0, 0.5], [-0.25, 0.0]])
    net = from_nir(_loop_graph(_cuba(), nir.Affine(weight=weight, bias=np.array([0.125, 0.0]))), dt=0.5)
    block = net.layers[1]
    assert isinstance(block, es.Recurrent) and isinstance(block.neuron, es.LIF)
    assert (block.neuron.name, block.connection.name, block.name) == ("lif", "w_rec", "rec1")
    np.testing.assert_array_equal(block.connection.weight, weight)
    np.testing.assert_array_equal(block.connection.bias, [0.125, 0.0])


def test_a_recurrent_block_is_named_by_the_prefix_its_nodes_share():
    """snnTorch's flat form names the nodes lif1.lif and lif1.w_rec: the block is lif1."""
    lif = nir.LIF(tau=np.full(2, 2.0), r=np.full(2, 2.0), v_leak=np.zeros(2), v_threshold=np.ones(2))
    net = from_nir(_loop_graph(lif, nir.Linear(weight=np.eye(2)), names=("lif1.lif", "lif1.w_rec")))
    assert [layer.name for layer in net.walk()] == ["fc", "lif1", "lif1.w_rec", "lif1.lif"]


def test_a_convolutional_loop_is_a_recurrent_block():
    conv = nir.Conv2d(input_shape=(3, 3), weight=np.ones((2, 2, 3, 3)), stride=1, padding=1, dilation=1, groups=1,
                      bias=np.zeros(2))
    lif = nir.LIF(tau=np.full((2, 3, 3), 2.0), r=np.ones((2, 3, 3)), v_leak=np.zeros((2, 3, 3)),
                  v_threshold=np.ones((2, 3, 3)))
    graph = nir.NIRGraph(nodes={"input": nir.Input(input_type=np.array([2, 3, 3])), "lif": lif, "w": conv,
                                "output": nir.Output(output_type=np.array([2, 3, 3]))},
                         edges=[("input", "lif"), ("lif", "w"), ("w", "lif"), ("lif", "output")], type_check=False)
    block = from_nir(graph).layers[0]
    assert isinstance(block, es.Recurrent) and isinstance(block.connection, es.Conv2d)


def test_loops_eventsim_cannot_run_are_refused_naming_the_nodes():
    li = nir.LI(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2))
    with pytest.raises(NIRError, match=r"NIR node 'lif' \(LI\): closes a recurrent loop through 'w_rec': .*spiking"):
        from_nir(_loop_graph(li, nir.Linear(weight=np.eye(2))))
    lif = nir.LIF(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    with pytest.raises(NIRError, match=r"NIR node 'w_rec' \(Linear\): .*declares input shape \(3,\)"):
        from_nir(_loop_graph(lif, nir.Linear(weight=np.ones((2, 3)))))
    source, sink = _io(2)
    delayed = _graph(source, ("lif", lif), ("w_rec", nir.Linear(weight=np.eye(2))), ("d", nir.Delay(np.ones(2))), sink,
                     edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "d"), ("d", "lif"), ("lif", "output")])
    with pytest.raises(NIRError, match=r"cycle through \['d', 'lif', 'w_rec'\];.*recurrent loops") as info:
        from_nir(delayed)
    assert "NIR node 'd'" in str(info.value)
    twice = _graph(source, ("lif", lif), ("a", nir.Linear(weight=np.eye(2))), ("b", nir.Linear(weight=np.eye(2))),
                   sink, edges=[("input", "lif"), ("lif", "a"), ("a", "lif"), ("lif", "b"), ("b", "lif"),
                                ("lif", "output")])
    with pytest.raises(NIRError, match="NIR node 'lif' .*two recurrent loops"):
        from_nir(twice)


def test_a_residual_merge_with_a_loop_is_refused():
    lif = nir.LIF(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2))
    source, sink = _io(2)
    graph = _graph(source, ("fc", nir.Linear(weight=np.eye(2))), ("lif", lif), ("w", nir.Linear(weight=np.eye(2))),
                   sink, edges=[("input", "fc"), ("input", "lif"), ("fc", "lif"), ("lif", "w"), ("w", "lif"),
                                ("lif", "output")])
    with pytest.raises(NIRError, match="NIR node 'lif' .*residual block and a recurrent loop"):
        from_nir(graph)


# ------------------------------------------------------------------ subgraphs
def _subgraph(n=2):
    lif = nir.LIF(tau=np.full(n, 2.0), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.ones(n))
    inner_in, inner_out = _io(n)
    return _graph(inner_in, ("lif", lif), ("w_rec", nir.Linear(weight=np.eye(n) / 2)), inner_out,
                  edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")])


def test_a_nested_subgraph_reads_as_its_flat_form():
    source, sink = _io(2)
    nested = _graph(source, ("fc", nir.Linear(weight=np.eye(2))), ("lif1", _subgraph()), sink)
    flat = _subgraph()
    flat_graph = _graph(source, ("fc", nir.Linear(weight=np.eye(2))), ("lif1.lif", flat.nodes["lif"]),
                        ("lif1.w_rec", flat.nodes["w_rec"]), sink,
                        edges=[("input", "fc"), ("fc", "lif1.lif"), ("lif1.lif", "lif1.w_rec"),
                               ("lif1.w_rec", "lif1.lif"), ("lif1.lif", "output")])
    a, b = from_nir(nested), from_nir(flat_graph)
    assert [repr(layer) for layer in a.walk()] == [repr(layer) for layer in b.walk()]
    assert [layer.name for layer in a.walk()] == ["fc", "lif1", "lif1.w_rec", "lif1.lif"]


def test_a_nested_subgraph_is_read_from_a_file(tmp_path):
    source, sink = _io(2)
    nir.write(tmp_path / "nested.nir", _graph(source, ("lif1", _subgraph()), sink))
    assert [layer.name for layer in load(tmp_path / "nested.nir").walk()] == ["lif1", "lif1.w_rec", "lif1.lif"]


def test_subgraphs_nested_too_deeply_are_refused(tmp_path):
    source, sink = _io(2)
    graph = _graph(source, ("lif", nir.LIF(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.zeros(2),
                                           v_threshold=np.ones(2))), sink)
    for _ in range(MAX_DEPTH):
        graph = _graph(source, ("g", graph), sink)
    with pytest.raises(NIRError, match=f"nest deeper than {MAX_DEPTH}"):
        from_nir(graph)
    nir.write(tmp_path / "deep.nir", graph)
    with pytest.raises(NIRError, match=r"NIR file .*deep.nir: NIR node 'g(.g)*' \(NIRGraph\): .*deeper than"):
        load(tmp_path / "deep.nir")


def test_a_subgraph_without_its_own_input_is_refused():
    source, sink = _io(2)
    inner = _subgraph()
    del inner.nodes["input"]
    inner.edges = [edge for edge in inner.edges if edge[0] != "input"]
    with pytest.raises(NIRError, match="NIR node 'lif1' \\(NIRGraph\\): a subgraph needs one Input and one Output"):
        from_nir(_graph(source, ("lif1", inner), sink))


# ============================================== running (the event path)
def test_a_rest_potential_without_input_stays_at_rest():
    """v_leak = 0.3 and no input: v_rest + lam (v_rest - v_rest) + g 0 = v_rest at every step, in the dtype."""
    source, sink = _io(2)
    lif = nir.LIF(tau=np.full(2, 3.0), r=np.ones(2), v_leak=np.full(2, 0.3), v_threshold=np.ones(2))
    net = from_nir(_graph(source, ("lif", lif), sink))
    result = net.run(es.Events.empty(batch=2, steps=5, shape=(2,)), record=("potentials", "spikes"))
    np.testing.assert_array_equal(result.potentials["lif"], np.full((2, 5, 2), np.float32(0.3)))
    assert result.spikes["lif"].to_dense().sum() == 0


W_IN = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 0.75]], np.float32)
W_REC = np.array([[0.0, 0.5, -0.25], [0.75, 0.0, 0.0], [0.25, 0.5, 0.0]], np.float32)
B_REC = np.array([0.0, 0.125, 0.0], np.float32)
W_OUT = np.array([[1.0, -0.5, 0.25], [0.0, 0.5, 1.0]], np.float32)


def _recurrent_cuba_graph():
    """Input(2) -> Linear -> CubaLIF 'rec.lif' <-> Affine 'rec.w_rec' -> Linear -> CubaLI 'out', for dt = 1:
    alpha 0.5, h 1, lam 0.75, g 1, v_leak 0.125, threshold 1, reset to -0.25; readout alpha 0.75, h 1, lam 0.5."""
    n = 3
    lif = nir.CubaLIF(tau_syn=np.full(n, 2.0), w_in=np.full(n, 2.0), tau_mem=np.full(n, 4.0), r=np.full(n, 4.0),
                      v_leak=np.full(n, 0.125), v_threshold=np.ones(n), v_reset=np.full(n, -0.25))
    out = nir.CubaLI(tau_syn=np.full(2, 4.0), w_in=np.full(2, 4.0), tau_mem=np.full(2, 2.0), r=np.full(2, 2.0),
                     v_leak=np.zeros(2))
    nodes = {"input": nir.Input(input_type=np.array([2])), "fc": nir.Linear(weight=W_IN), "rec.lif": lif,
             "rec.w_rec": nir.Affine(weight=W_REC, bias=B_REC), "fc_out": nir.Linear(weight=W_OUT), "out": out,
             "output": nir.Output(output_type=np.array([2]))}
    edges = [("input", "fc"), ("fc", "rec.lif"), ("rec.lif", "rec.w_rec"), ("rec.w_rec", "rec.lif"),
             ("rec.lif", "fc_out"), ("fc_out", "out"), ("out", "output")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def _euler_by_hand(x: np.ndarray, w_rec: np.ndarray) -> dict:
    """NIR's equations stepped with dt = 1 in float32, the recurrent edge one step late, starting at rest
    (v = v_leak, J = 0): (T, batch, n) arrays."""
    f = np.float32
    steps, batch = x.shape[:2]
    j, s = np.zeros((batch, 3), f), np.zeros((batch, 3), f)
    r = np.full((batch, 3), 0.125, f)
    j_out, u_out = np.zeros((batch, 2), f), np.zeros((batch, 2), f)
    out = {key: [] for key in ("spikes", "potential", "synaptic", "rec", "readout")}
    for t in range(steps):
        current = x[t] @ W_IN.T + (s @ w_rec.T + B_REC)
        j = f(0.5) * j + current
        u = f(0.125) + f(0.75) * (r - f(0.125)) + j
        s = (u > 1).astype(f)
        r = np.where(s > 0, f(-0.25), u)
        j_out = f(0.75) * j_out + s @ W_OUT.T
        u_out = f(0.5) * u_out + j_out
        for key, value in zip(out, (s, u, j, s @ w_rec.T + B_REC, u_out / f(t + 1))):
            out[key].append(value)
    return {key: np.stack(values) for key, values in out.items()}


def test_eventsim_run_handles_a_recurrent_cubalif_graph_from_a_file(tmp_path):
    """OUT.npz holds every node's output, both state variables of the CubaLIF node, and the loop's current."""
    nir.write(tmp_path / "net.nir", _recurrent_cuba_graph())
    x = (np.random.default_rng(0).integers(0, 3, size=(20, 2, 2)) / 2).astype(np.float32)
    np.savez(tmp_path / "in.npz", spikes=x)
    assert main(["run", "--graph", str(tmp_path / "net.nir"), "--input", str(tmp_path / "in.npz"), "--steps", "20",
                 "--out", str(tmp_path / "out.npz"), "--dt", "1"]) == 0
    with np.load(tmp_path / "out.npz") as f:
        out = dict(f)
    hand = _euler_by_hand(x, W_REC)
    assert hand["spikes"].any() and not hand["spikes"].all()
    assert not np.array_equal(hand["spikes"], _euler_by_hand(x, np.zeros_like(W_REC))["spikes"])  # the loop matters
    expected = {"input": x, "fc": x @ W_IN.T, "rec.lif": hand["spikes"], "rec.lif.potential": hand["potential"],
                "rec.lif.synaptic": hand["synaptic"], "rec.w_rec": hand["rec"], "fc_out": hand["spikes"] @ W_OUT.T,
                "out": hand["readout"], "output": hand["readout"]}
    assert set(expected) <= set(out)
    for key, value in expected.items():
        np.testing.assert_array_equal(out[key], value, err_msg=key)
    assert {"out.potential", "out.synaptic"} <= set(out)


def test_eventsim_run_delays_by_whole_steps(tmp_path):
    """A NIR Delay of 2 dt before a Linear: the Linear's output is its output on the input two steps later."""
    source, sink = _io(2)
    graph = _graph(source, ("d", nir.Delay(delay=np.full(2, 0.5))), ("fc", nir.Linear(weight=W_OUT[:, :2])), sink)
    nir.write(tmp_path / "net.nir", graph)
    x = (np.random.default_rng(1).integers(0, 3, size=(6, 1, 2)) / 2).astype(np.float32)
    np.savez(tmp_path / "in.npz", spikes=x)
    assert main(["run", "--graph", str(tmp_path / "net.nir"), "--input", str(tmp_path / "in.npz"), "--steps", "6",
                 "--out", str(tmp_path / "out.npz"), "--dt", "0.25"]) == 0
    with np.load(tmp_path / "out.npz") as f:
        shifted = np.concatenate([np.zeros_like(x[:2]), x[:-2]])
        np.testing.assert_array_equal(f["d"], shifted)
        np.testing.assert_array_equal(f["fc"], shifted @ W_OUT[:, :2].T)


def test_a_linear_with_synaptic_delays_is_refused_at_export_naming_it():
    net = es.Network([es.Linear(2, 2, weight=np.eye(2), delay=[1, 0], name="fc"), es.LIF(1.0, leak=0.5)], (2,))
    with pytest.raises(es.LayerError, match="fc.*no per-synapse delay"):
        to_nir(net)
