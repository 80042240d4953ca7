"""``eventsim run``: the file interface gives the Python API's per-layer spikes and potentials, and errors."""

import numpy as np
import pytest
from hypothesis import given, settings

pytest.importorskip("nir")

import eventsim as es
from eventsim.cli import main
from eventsim.dense import avg_pool, run_dense
from eventsim.errors import DataError
from eventsim.nir import save
from eventsim.nir.run_file import run_file, running_readout
from eventsim.testing import Features, net_cases, reference_records


@settings(max_examples=12)
@given(case=net_cases(features=Features().without("max", "float64")))
def test_outputs_equal_the_python_api(tmp_path_factory, case):
    folder = tmp_path_factory.mktemp("run")
    save(case.network, folder / "net.nir")
    spikes = np.swapaxes(case.events.to_dense(), 0, 1)
    np.savez(folder / "in.npz", spikes=spikes)
    assert main(["run", "--graph", str(folder / "net.nir"), "--input", str(folder / "in.npz"),
                 "--steps", str(case.steps), "--out", str(folder / "out.npz")]) == 0
    with np.load(folder / "out.npz") as out:
        arrays = dict(out)
    reference = reference_records(case.network, spikes)
    readouts = {layer.name for layer in case.network.walk() if isinstance(layer, es.Readout)}
    for name, record in reference.items():
        # a readout's output is its running readout (test_a_readout_outputs_its_running_readout), not its spikes
        outputs = running_readout(record.potentials) if name in readouts else record.outputs
        assert arrays[name].tobytes() == outputs.tobytes(), name
        if record.potentials is not None:
            assert arrays[name + ".potential"].tobytes() == record.potentials.tobytes(), name
    # Every other node (synapses feeding a neuron, flatten, dropout) against the dense twin, run independently;
    # an identity skip of stride 1 is an edge, not a node.
    dense = run_dense(case.network, case.events.to_dense())
    nodes = {"input", "output"}
    for layer in case.network.walk():
        if isinstance(layer, es.Residual) or layer.name not in arrays:
            assert isinstance(layer, (es.Residual, es.Identity)), layer.name
            continue
        nodes.add(layer.name)
        if layer.name not in readouts:
            np.testing.assert_array_equal(arrays[layer.name], np.swapaxes(dense.outputs[layer.name], 0, 1),
                                          err_msg=layer.name)
    previous = case.events.to_dense()
    for layer in case.network.layers:
        if isinstance(layer, es.SpikingAvgPool):  # its AvgPool2d node: the window averages of its input
            nodes.add(layer.name + ".pool")
            np.testing.assert_array_equal(arrays[layer.name + ".pool"],
                                          np.swapaxes(avg_pool(previous, layer.kernel_size, layer.stride), 0, 1))
        name = layer.neuron.name if isinstance(layer, es.Residual) else layer.name
        previous = dense.outputs[name]
    last = case.network.layers[-1]
    last = last.neuron if isinstance(last, es.Residual) else last
    np.testing.assert_array_equal(arrays["output"], arrays[last.name])
    assert {k for k in arrays if not k.endswith(".potential")} == nodes
    np.testing.assert_array_equal(arrays["input"], spikes)


@pytest.fixture
def files(tmp_path):
    net = es.Network([es.Linear(3, 2, weight=np.full((2, 3), 0.5, np.float32)), es.LIF(1.0, leak=0.5)], (3,))
    save(net, tmp_path / "net.nir")
    return tmp_path


@pytest.mark.parametrize("arrays, steps, problem", [
    ({"other": np.zeros((4, 1, 3))}, 4, "has no array 'spikes'"),
    ({"spikes": np.zeros((4, 1, 5))}, 4, r"shape \(T, batch, \*\(3,\)\), got \(4, 1, 5\)"),
    ({"spikes": np.zeros((4, 1, 3))}, 5, "holds 4 steps but --steps is 5"),
    ({"spikes": np.full((4, 1, 3), np.nan)}, 4, "not finite at"),
])
def test_bad_input_is_named(files, arrays, steps, problem):
    np.savez(files / "in.npz", **arrays)
    with pytest.raises(DataError, match=problem):
        run_file(files / "net.nir", files / "in.npz", steps, files / "out.npz")
    assert not (files / "out.npz").exists()


def test_cli_reports_errors_in_one_line(files, capsys):
    np.savez(files / "in.npz", spikes=np.zeros((2, 1, 3)))
    code = main(["run", "--graph", str(files / "missing.nir"), "--input", str(files / "in.npz"), "--steps", "2",
                 "--out", str(files / "out.npz")])
    assert code == 2
    assert "no such file" in capsys.readouterr().err


def test_counts_are_inputs_too(files):
    """Input values other than 0/1 (counts) are currents: 2 * 0.5 * 3 = 3 into a neuron with g = 1."""
    np.savez(files / "in.npz", spikes=np.full((1, 1, 3), 2.0))
    out = run_file(files / "net.nir", files / "in.npz", 1, files / "out.npz")
    np.testing.assert_array_equal(out["fc1"], [[[3.0, 3.0]]])
    np.testing.assert_array_equal(out["lif1.potential"], [[[3.0, 3.0]]])
    np.testing.assert_array_equal(out["lif1"], [[[1.0, 1.0]]])
    np.testing.assert_array_equal(out["output"], out["lif1"])


def test_a_readout_outputs_its_running_readout(tmp_path):
    """A Readout's per-step output is U[t] / t, the readout of a run ending at t; its last step is the prediction."""
    rng = np.random.default_rng(0)
    net = es.Network([es.Linear(4, 3, weight=rng.normal(0, 1, (3, 4)).astype(np.float32)), es.Readout(tau=5.0)], (4,))
    save(net, tmp_path / "net.nir")
    spikes = (rng.random((6, 2, 4)) < 0.5).astype(np.float32)
    np.savez(tmp_path / "in.npz", spikes=spikes)
    out = run_file(tmp_path / "net.nir", tmp_path / "in.npz", 6, tmp_path / "out.npz")
    name = net.layers[-1].name
    u = out[name + ".potential"]
    assert out[name].dtype == u.dtype == np.float32
    np.testing.assert_array_equal(out[name], u / np.arange(1, 7, dtype=np.float32)[:, None, None])
    assert out[name][-1].tobytes() == net.run(es.Events.from_dense(spikes.swapaxes(0, 1))).output.tobytes()
    np.testing.assert_array_equal(out["output"], out[name])
