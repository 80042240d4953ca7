"""NIR import and export: exact round trips, the Euler mapping, and errors that name the node."""

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

nir = pytest.importorskip("nir")

import eventsim as es
from eventsim.errors import NIRError
from eventsim.nir import from_nir, load, save, to_nir
from eventsim.nir.euler import continuous_parameters, step_parameters

try:
    from eventsim.testing.strategies import Features, net_cases
except ImportError:  # pragma: no cover
    from strategies import Features, net_cases

NIR_FEATURES = Features().without("max").including("input_gain", "reset_delayed")


def _network_differences(a: es.Network, b: es.Network) -> list:
    """Where two networks differ in layers, names, options or parameters (bit for bit); [] if nowhere."""
    if (a.input_shape, a.dtype) != (b.input_shape, b.dtype):
        return [("network", a.input_shape, a.dtype, b.input_shape, b.dtype)]
    layers_a, layers_b = list(a.walk()), list(b.walk())
    if [type(x) for x in layers_a] != [type(y) for y in layers_b]:
        return [("layer types", layers_a, layers_b)]
    found = []
    for x, y in zip(layers_a, layers_b):
        if repr(x) != repr(y):
            found.append((x.name, "repr", repr(x), repr(y)))
        for field in ("weight", "bias"):
            wx, wy = getattr(x, field, None), getattr(y, field, None)
            if (wx is None) != (wy is None) or (
                    wx is not None and (wx.dtype != wy.dtype or wx.tobytes() != wy.tobytes())):
                found.append((x.name, field))
        if isinstance(x, es.LIF) and ((x.leak, x.input_gain) != (y.leak, y.input_gain) or not np.array_equal(
                np.asarray(x.threshold), np.asarray(y.threshold))):
            found.append((x.name, "leak, gain or threshold"))
    return found


def _run_differences(a: es.Network, b: es.Network, events: es.Events) -> list:
    """Layers whose potentials or spikes differ (bit for bit) between the two networks' runs."""
    ra, rb = (n.run(events, record=("spikes", "potentials")) for n in (a, b))
    found = [(name, "potentials") for name, arr in ra.potentials.items()
             if arr.tobytes() != rb.potentials[name].tobytes()]
    return found + [(name, "spikes") for name, ev in ra.spikes.items()
                    if not np.array_equal(ev.to_dense(), rb.spikes[name].to_dense())]


@settings(max_examples=25)
@given(net_cases(features=NIR_FEATURES), st.sampled_from([1.0, 1e-3, 0.37]))
def test_eventsim_nir_eventsim_round_trip_is_exact(case, dt):
    back = from_nir(to_nir(case.network, dt=dt), dt=dt, dtype=case.dtype)
    assert _network_differences(case.network, back) == []
    assert _run_differences(case.network, back, case.events) == []


@settings(max_examples=10)
@given(case=net_cases(features=NIR_FEATURES))
def test_round_trip_through_a_file(tmp_path_factory, case):
    path = tmp_path_factory.mktemp("nir") / "net.nir"
    assert save(case.network, path) == path
    assert _network_differences(case.network, load(path, dtype=case.dtype)) == []


def _node_fields(node):
    return {k: v for k, v in node.to_dict().items()}


def test_nir_eventsim_nir_round_trip_is_exact():
    """A graph eventsim wrote comes back node for node, field for field, from its network."""
    rng = np.random.default_rng(1)
    net = es.Network([
        es.Conv2d(2, 3, 3, padding=1, weight=rng.normal(size=(3, 2, 3, 3)).astype(np.float32),
                  bias=np.zeros(3, np.float32)),
        es.LIF(np.array([1.0, 0.5, 2.0]), tau=7.0, reset="soft", strict=False),
        es.SpikingAvgPool(2), es.SumPool(2, stride=1), es.IF(0.75, v_reset=-0.25, input_gain=0.5),
        es.Dropout(0.5), es.Flatten(), es.Linear(3, 4, weight=rng.normal(size=(4, 3)).astype(np.float32)),
        es.Readout(tau=3.0, input_gain=0.25),
    ], input_shape=(2, 4, 4))
    first = to_nir(net, dt=0.01)
    second = to_nir(from_nir(first, dt=0.01), dt=0.01)
    assert list(first.nodes) == list(second.nodes) and first.edges == second.edges
    for name in first.nodes:
        a, b = _node_fields(first.nodes[name]), _node_fields(second.nodes[name])
        assert a.keys() == b.keys(), name
        for key in a:
            if isinstance(a[key], np.ndarray):
                assert a[key].dtype == b[key].dtype and a[key].tobytes() == b[key].tobytes(), (name, key)
            else:
                assert a[key] == b[key], (name, key)


@pytest.mark.parametrize("leak, gain", [(0.5, 1.0), (0.75, 0.25), (0.875, 1.0), (float(np.exp(-0.01)), 1.0),
                                        (0.0, 1.0), (1.0, 1.0), (1.0, 0.5)])
@pytest.mark.parametrize("dt", [1.0, 1e-4, 0.37])
def test_nir_fields_alone_give_common_leaks_exactly(leak, gain, dt):
    """For these leaks export finds tau and r that reproduce lam and g to the last bit, without metadata."""
    assert step_parameters(*continuous_parameters(leak, gain, dt), dt) == (leak, gain)


@settings(max_examples=200)
@given(st.floats(0.0, 1.0), st.floats(1e-3, 10.0), st.sampled_from([1.0, 1e-4, 0.37]))
def test_nir_fields_come_within_an_ulp_or_so(leak, gain, dt):
    lam, g = step_parameters(*continuous_parameters(leak, gain, dt), dt)
    assert abs(lam - leak) <= 4e-16 and abs(g - gain) <= 4e-16 * gain * 4


def test_euler_mapping_of_a_foreign_lif():
    """A NIR LIF without eventsim metadata: lam = 1 - dt/tau, g = dt r / tau, hard reset to v_reset, strict."""
    shape = (3,)
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array(shape)),
        nir.LIF(tau=np.full(shape, 4.0), r=np.full(shape, 2.0), v_leak=np.zeros(shape),
                v_threshold=np.array([1.0, 0.5, 1.0]), v_reset=np.full(shape, -0.5)),
        nir.Output(output_type=np.array(shape)),
    )
    lif = from_nir(graph, dt=0.5).layers[0]
    assert (lif.leak, lif.input_gain, lif.reset, lif.v_reset, lif.strict, lif.reset_delayed) == \
        (1 - 0.5 / 4.0, 0.5 * 2.0 / 4.0, "hard", -0.5, True, False)
    np.testing.assert_array_equal(lif.threshold, [1.0, 0.5, 1.0])


def test_v_leak_is_the_rest_potential():
    """tau dv/dt = (v_leak - v) + r I: one Euler step is v_leak + lam (v - v_leak) + g I, the rest potential
    v_rest = v_leak exactly; the synapse before keeps its bias."""
    w = np.eye(2, dtype=np.float32)
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([2])), nir.Affine(weight=w, bias=np.array([0.5, 0.0], np.float32)),
        nir.LIF(tau=np.full(2, 2.0), r=np.full(2, 4.0), v_leak=np.full(2, 0.1), v_threshold=np.ones(2)),
        nir.Output(output_type=np.array([2])),
    )
    net = from_nir(graph)
    np.testing.assert_array_equal(net.layers[0].bias, [0.5, 0.0])
    assert (net.layers[1].v_rest, net.layers[1].v_init) == (0.1, 0.1)


def test_v_leak_that_differs_between_neurons_is_refused():
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([2])),
        nir.LIF(tau=np.full(2, 2.0), r=np.ones(2), v_leak=np.array([1.0, 2.0]), v_threshold=np.ones(2)),
        nir.Output(output_type=np.array([2])),
    )
    with pytest.raises(NIRError, match=r"NIR node 'lif' \(LIF\): field 'v_leak' differs between neurons"):
        from_nir(graph)


def _chain(*nodes):
    return nir.NIRGraph.from_list(*nodes, type_check=False)


@pytest.mark.parametrize("node, problem", [
    (nir.CubaLIF(tau_syn=np.array([2.0, 4.0]), tau_mem=np.ones(2) * 2, r=np.ones(2), v_leak=np.zeros(2),
                 v_threshold=np.ones(2)), "'tau_syn' differs between neurons"),
    (nir.Delay(delay=np.array([1.0, 1.5])), "not a whole number"),
    (nir.Threshold(threshold=np.ones(2)), "stateless threshold"),
    (nir.LIF(tau=np.array([2.0, 3.0]), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)),
     "'tau' differs between neurons"),
    (nir.LIF(tau=np.full(2, 0.5), r=np.ones(2), v_leak=np.zeros(2), v_threshold=np.ones(2)), "is dt right"),
    (nir.LIF(tau=np.full(3, 2.0), r=np.ones(3), v_leak=np.zeros(3), v_threshold=np.ones(3)),
     r"declares input shape \(3,\) but receives \(2,\)"),
    (nir.Scale(scale=np.full(2, 2.0)), "no scaling layer"),
    (nir.Linear(weight=np.ones((2, 3))), r"declares input shape \(3,\) but receives \(2,\)"),
])
def test_unsupported_nodes_and_shape_mismatches_name_the_node(node, problem):
    graph = _chain(nir.Input(input_type=np.array([2])), node, nir.Output(output_type=np.array([2])))
    name = next(n for n in graph.nodes if n not in ("input", "output"))
    with pytest.raises(NIRError, match=problem) as info:
        from_nir(graph, dt=1.0)
    assert f"NIR node {name!r}" in str(info.value)


def _lif(n=2):
    return nir.LIF(tau=np.full(n, 2.0), r=np.full(n, 2.0), v_leak=np.zeros(n), v_threshold=np.ones(n))


def test_parameter_shapes_that_do_not_fit_name_the_node():
    lif = _lif(3)
    lif.input_type = {"input": None}  # no declared type: the parameter arrays themselves do not fit
    graph = _chain(nir.Input(input_type=np.array([2])), lif, nir.Output(output_type=np.array([2])))
    with pytest.raises(NIRError, match=r"NIR node 'lif' \(LIF\): field 'tau' has shape \(3,\)"):
        from_nir(graph)


@pytest.mark.parametrize("edges, problem, node", [
    ([("input", "a"), ("a", "ghost"), ("a", "output")], "does not have", "ghost"),
    ([("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")], "cycle", "a"),
    ([("input", "a"), ("a", "output"), ("input", "b")], "dangling", "b"),
    ([("input", "a"), ("a", "output"), ("b", "output")], "not reachable|2 inputs", None),
])
def test_dangling_and_cyclic_edges_name_the_node(edges, problem, node):
    nodes = {"input": nir.Input(input_type=np.array([2])), "a": _lif(), "b": _lif(),
             "output": nir.Output(output_type=np.array([2]))}
    graph = nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)
    with pytest.raises(NIRError, match=problem) as info:
        from_nir(graph)
    if node:
        assert f"NIR node {node!r}" in str(info.value)


def test_maxpool_cannot_be_exported():
    net = es.Network([es.MaxPool(2, name="mp")], input_shape=(1, 4, 4))
    with pytest.raises(es.LayerError, match="'mp'.*max pooling"):
        to_nir(net)


def test_portable_export_refuses_conventions_nir_lacks():
    net = es.Network([es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)), es.LIF(1.0, leak=0.5, reset="soft")], (2,))
    to_nir(net)  # carried in eventsim's metadata
    with pytest.raises(es.LayerError, match="'lif1'.*soft reset"):
        to_nir(net, portable=True)


def test_a_wrong_dt_is_caught_by_the_metadata():
    net = es.Network([es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)), es.LIF(1.0, leak=0.5)], (2,))
    graph = to_nir(net, dt=0.001)
    with pytest.raises(NIRError, match="'lif1'.*another dt"):
        from_nir(graph, dt=0.002)


def test_malformed_files_name_the_file_and_node(tmp_path):
    not_hdf5 = tmp_path / "text.nir"
    not_hdf5.write_text("hello")
    with pytest.raises(NIRError, match="not a readable HDF5"):
        load(not_hdf5)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["x"] = 1
    with pytest.raises(NIRError, match="not a NIR file"):
        load(other)
    with pytest.raises(NIRError, match="no such file"):
        load(tmp_path / "missing.nir")
    net = es.Network([es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)), es.LIF(1.0, leak=0.5)], (2,))
    path = save(net, tmp_path / "net.nir")
    with h5py.File(path, "a") as f:
        del f["node/nodes/lif1/tau"]
    with pytest.raises(NIRError, match="NIR node 'lif1'.*cannot be read") as info:
        load(path)
    assert str(path) in str(info.value)
    with h5py.File(path, "a") as f:
        del f["node/nodes/lif1"]
    with pytest.raises(NIRError, match="'lif1'"):
        load(path)


def test_save_is_atomic(tmp_path, monkeypatch):
    """An interrupted write leaves the old file whole and no temporary file behind."""
    net = es.Network([es.Linear(2, 2, weight=np.eye(2, dtype=np.float32)), es.LIF(1.0, leak=0.5)], (2,))
    path = save(net, tmp_path / "net.nir")
    before = path.read_bytes()

    def broken(filename, graph, **kw):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(nir, "write", broken)
    with pytest.raises(KeyboardInterrupt):
        save(net, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["net.nir"]
