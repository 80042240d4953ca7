"""NIR files and graphs eventsim did not make: every malformed field is a NIRError naming the file, node and field.

Each case here is a file eventsim wrote with one field replaced by what a
careless or hostile writer could put there; before these checks each one
escaped as a raw AttributeError, OverflowError, ValueError, TypeError or
IndexError from eventsim's importer or from inside the nir package, or was
read into silently wrong numbers (a complex weight losing its imaginary
part, parameters overflowing to inf in float32).
"""

import json
import os

import h5py
import numpy as np
import pytest

nir = pytest.importorskip("nir")

import eventsim as es
from eventsim.cli import main
from eventsim.errors import NIRError
from eventsim.nir import from_nir, load, save, to_nir
from fuzzing import time_limit


def _network() -> es.Network:
    rng = np.random.default_rng(0)
    return es.Network([
        es.Conv2d(2, 3, 3, padding=1, weight=rng.normal(size=(3, 2, 3, 3)).astype(np.float32)),
        es.LIF(1.0, leak=0.5),
        es.SpikingAvgPool(2),
        es.Flatten(),
        es.Linear(12, 4, weight=rng.normal(size=(4, 12)).astype(np.float32), bias=np.zeros(4, np.float32)),
        es.Readout(leak=0.9),
    ], (2, 4, 4))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    return save(_network(), tmp_path_factory.mktemp("nir") / "net.nir").read_bytes()


def _mutated(tmp_path, saved, field, value):
    """The saved graph with dataset ``node/nodes/<field>`` replaced by ``value``."""
    path = tmp_path / "net.nir"
    path.write_bytes(saved)
    with h5py.File(path, "a") as f:
        del f["node/nodes/" + field]
        f["node/nodes/" + field] = value
    return path


@pytest.mark.parametrize("field, value, problem", [
    ("lif1/r", b"abc", "field 'r' must hold real numbers"),                       # was AttributeError (nir)
    ("readout1/r", "junk", "field 'r' must hold real numbers"),                   # was AttributeError (nir)
    ("input/shape", [np.inf], "field 'shape' is not finite"),                     # was OverflowError
    ("input/shape", np.nan, "field 'shape' is not finite"),                       # was ValueError
    ("output/shape", b"abc", "field 'shape' must hold real numbers"),             # was ValueError
    ("conv1/groups", [2**40, 3], "field 'groups' must hold 1 whole number"),      # was TypeError
    ("conv1/groups", b"abc", "field 'groups' must hold real numbers"),            # was ValueError
    ("conv1/dilation", [1.5, np.inf], "field 'dilation' is not finite"),          # was OverflowError (nir)
    ("flatten1/end_dim", -1 + 1j, "field 'end_dim' must hold real numbers"),     # was TypeError inside nir
    ("conv1/weight", np.ones((3, 2, 3, 3)) * (1 + 1j), "field 'weight' must hold real numbers"),  # was read as real
    ("conv1/weight", np.ones(3), "field 'weight' must have 4 dimensions"),        # was IndexError inside nir
    ("conv1/padding", np.array([], float), "field 'padding' must be one whole number or a pair"),  # IndexError
    ("pool1.pool/kernel_size", -2, "field 'kernel_size' must hold whole numbers from 1"),
    ("lif1/v_reset", np.full((3, 4, 4), 1e300), "field 'v_reset' holds 1e\\+300 .* beyond the range of float32"),
    ("fc1/weight", np.full((4, 12), 1e300), "field 'weight' holds 1e\\+300 .* beyond the range of float32"),
    ("lif1/v_threshold", np.full((3, 4, 4), 1e300), "field 'v_threshold' holds 1e\\+300 .* beyond the range of float32"),
])
def test_a_malformed_field_names_the_file_node_and_field(tmp_path, saved, field, value, problem):
    path = _mutated(tmp_path, saved, field, value)
    node = field.split("/")[0]
    with pytest.raises(NIRError, match=problem) as info:
        load(path)
    message = str(info.value)
    assert message.startswith(f"NIR file {path}: NIR node {node!r}"), message
    assert "\n" not in message


def _set_option(tmp_path, saved, node, **options):
    """The saved graph with eventsim's metadata options of ``node`` changed (None: removed)."""
    path = tmp_path / "net.nir"
    path.write_bytes(saved)
    key = f"node/nodes/{node}/metadata/eventsim"
    with h5py.File(path, "a") as f:
        stored = json.loads(f[key][()])
        stored.update(options)
        stored = {k: v for k, v in stored.items() if v is not None}
        del f[key]
        f[key] = json.dumps(stored)
    return path


@pytest.mark.parametrize("node, options, problem", [
    ("lif1", {"leak": "abc"}, "option 'leak' must be float"),                      # was ValueError
    ("readout1", {"leak": {}}, "option 'leak' must be float"),                     # was TypeError
    ("lif1", {"input_gain": 1e400}, "option 'input_gain' must be float \\(finite\\)"),  # JSON reads inf
    ("lif1", {"strict": "yes"}, "option 'strict' must be bool"),                   # was read as True
    ("pool1", {"threshold_ratio": None}, "gives no threshold_ratio"),              # was KeyError
    ("lif1", {"reset": "sideways"}, "unknown reset 'sideways'"),                   # was OptionError, no node
])
def test_malformed_eventsim_options_name_the_node(tmp_path, saved, node, options, problem):
    path = _set_option(tmp_path, saved, node, **options)
    with pytest.raises(NIRError, match=problem) as info:
        load(path)
    assert str(info.value).startswith(f"NIR file {path}: NIR node {node!r}")


def test_an_unknown_field_or_node_type_is_refused(tmp_path, saved):
    path = tmp_path / "net.nir"
    path.write_bytes(saved)
    with h5py.File(path, "a") as f:
        f["node/nodes/lif1/delay"] = np.ones(3)
    with pytest.raises(NIRError, match=r"NIR node 'lif1' \(LIF\): cannot be read as a LIF node: .*field 'delay'"):
        load(path)
    path.write_bytes(saved)
    with h5py.File(path, "a") as f:
        del f["node/nodes/lif1/type"]
        f["node/nodes/lif1/type"] = np.array([b"a", b"b"])  # was ValueError (truth value of an array)
    with pytest.raises(NIRError, match="NIR node 'lif1': field 'type' must be a string"):
        load(path)


def _lif_graph(**fields):
    values = {"tau": np.full(2, 2.0), "r": np.full(2, 2.0), "v_leak": np.zeros(2), "v_threshold": np.ones(2)}
    values.update(fields)
    return nir.NIRGraph.from_list(nir.Input(input_type=np.array([2])), nir.Linear(weight=np.eye(2)),
                                  nir.LIF(**values), nir.Output(output_type=np.array([2])), type_check=False)


def test_an_input_gain_float32_cannot_hold_is_refused_naming_the_node():
    """r = 1e300 gives g = dt r / tau finite in float64 and inf in float32: refused, not run to inf potentials."""
    graph = _lif_graph(r=np.full(2, 1e300))
    assert np.isfinite(from_nir(graph, dtype=np.float64).layers[1].input_gain)
    with pytest.raises(NIRError, match=r"NIR node 'lif' \(LIF\): r=1e\+300 .* input gain 5e\+299, beyond the range "
                                       r"of float32"):
        from_nir(graph, dtype=np.float32)


def test_an_input_gain_that_underflows_to_zero_is_refused():
    with pytest.raises(NIRError, match=r"NIR node 'lif' \(LIF\): .*input gain 5e-50; it must be positive"):
        from_nir(_lif_graph(r=np.full(2, 1e-49)), dtype=np.float32)


def test_v_leak_beyond_the_dtype_is_refused():
    """v_leak is the rest potential: 1e39 is finite in float64 and beyond float32."""
    assert from_nir(_lif_graph(v_leak=np.full(2, 1e39)), dtype=np.float64).layers[1].v_rest == 1e39
    with pytest.raises(NIRError, match=r"NIR node 'lif' \(LIF\): field 'v_leak' holds 1e\+39 .*beyond the range of "
                                       r"float32"):
        from_nir(_lif_graph(v_leak=np.full(2, 1e39)))


@pytest.mark.parametrize("node, problem", [
    (nir.Conv2d(input_shape=None, weight=np.ones((1, 1, 1, 1)), stride=1, padding=0, dilation=1, groups="abc",
                bias=np.zeros(1)), "field 'groups' must hold real numbers"),        # was ValueError
    (nir.Flatten(input_type=None, start_dim=0, end_dim=1j), "field 'end_dim' must hold real numbers"),  # TypeError
])
def test_junk_in_an_in_memory_graph_names_the_node(node, problem):
    graph = nir.NIRGraph.from_list(nir.Input(input_type=np.array([1, 2, 2])), node,
                                   nir.Output(output_type=np.array([1, 2, 2])), type_check=False)
    with pytest.raises(NIRError, match=problem):
        from_nir(graph)


def test_an_edge_that_is_not_a_pair_is_refused():
    graph = _lif_graph()
    graph.edges.append(5)  # was TypeError (len of an int)
    with pytest.raises(NIRError, match="edge 5 is not a .source, target. pair"):
        from_nir(graph)


def test_a_graph_declaring_huge_layers_is_refused_before_a_run_allocates_them(monkeypatch):
    """A 1 x 1 convolution of a 65536 x 65536 input: 16 GiB per step and sample in float32."""
    monkeypatch.delenv("EVENTSIM_MAX_BYTES", raising=False)
    graph = nir.NIRGraph.from_list(
        nir.Input(input_type=np.array([1, 65536, 65536])),
        nir.Conv2d(input_shape=None, weight=np.ones((1, 1, 1, 1)), stride=1, padding=0, dilation=1, groups=1,
                   bias=np.zeros(1)),
        nir.Output(output_type=np.array([1, 65536, 65536])), type_check=False)
    with pytest.raises(NIRError, match=r"NIR node 'conv2d'.*16.0 GiB, above the limit of 8.0 GiB.*EVENTSIM_MAX_BYTES"):
        from_nir(graph)
    monkeypatch.setenv("EVENTSIM_MAX_BYTES", "64G")
    assert from_nir(graph).output_shape == (1, 65536, 65536)


def test_importer_errors_name_the_file(tmp_path):
    """An error found after reading (here: the gain overflowing float32) names the file as well as the node."""
    path = tmp_path / "lif.nir"
    nir.write(path, _lif_graph(r=np.full(2, 1e300)))
    with pytest.raises(NIRError, match=rf"^NIR file {path}: NIR node 'lif' \(LIF\): r=1e\+300"):
        load(path)


def test_a_valid_graph_still_loads_exactly(tmp_path):
    net = _network()
    back = load(save(net, tmp_path / "net.nir"))
    assert [repr(layer) for layer in back.walk()] == [repr(layer) for layer in net.walk()]
    assert from_nir(to_nir(net)).output_shape == net.output_shape


# --------------------------------------------------------------------------------------------
# HDF5 attacks on `eventsim run`: the graph goes through the safe HDF5 reader before anything is read.

SECRET = b"root:x:0:0:root:/root:/bin/bash\n" * 8


@pytest.fixture
def graph(tmp_path):
    """A small graph ``net.nir`` (weight ``node/nodes/fc/weight``: 2 x 3 float32) and a valid input."""
    net = es.Network([es.Linear(3, 2, weight=np.full((2, 3), 0.5, np.float32), name="fc"), es.LIF(1.0, leak=0.5)],
                     (3,))
    save(net, tmp_path / "net.nir")
    np.savez(tmp_path / "in.npz", spikes=np.ones((2, 1, 3), np.float32))
    return tmp_path / "net.nir"


def _run(graph, capsys) -> tuple[int, str]:
    """``eventsim run`` on ``graph``: its exit status and its stderr, after checking nothing was written."""
    folder = graph.parent
    with time_limit(20):  # a FIFO or a dataset stored on one must not block the run
        code = main(["run", "--graph", str(graph), "--input", str(folder / "in.npz"), "--steps", "2",
                     "--out", str(folder / "out.npz")])
    err = capsys.readouterr().err
    assert not (folder / "out.npz").exists()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return code, err


def _weight_stored_in(graph, target, nbytes=24):
    with h5py.File(graph, "a") as f:
        del f["node/nodes/fc/weight"]
        f.create_dataset("node/nodes/fc/weight", shape=(2, 3), dtype="f4", external=[(str(target), 0, nbytes)])


def test_a_weight_in_external_storage_is_refused_not_read(graph, capsys):
    """Before: the secret file's bytes became the weights and came back in OUT.npz."""
    secret = graph.parent / "secret.txt"
    secret.write_bytes(SECRET)
    _weight_stored_in(graph, secret)
    code, err = _run(graph, capsys)
    assert code == 2
    assert f"NIR file {graph}" in err and "/node/nodes/fc/weight" in err and "external file" in err
    assert "root:" not in err


def test_a_weight_stored_on_a_fifo_does_not_hang(graph, capsys):
    """Before: reading the dataset opened the FIFO and waited forever for a writer."""
    fifo = graph.parent / "pipe"
    os.mkfifo(fifo)
    _weight_stored_in(graph, fifo)
    code, err = _run(graph, capsys)
    assert code == 2 and "/node/nodes/fc/weight" in err and "external file" in err


def test_an_external_link_is_refused_before_it_is_followed(graph, capsys):
    other = graph.parent / "other.h5"
    with h5py.File(other, "w") as f:
        f["w"] = np.full((2, 3), 7.0, np.float32)
    with h5py.File(graph, "a") as f:
        del f["node/nodes/fc/weight"]
        f["node/nodes/fc/weight"] = h5py.ExternalLink(str(other), "/w")
    code, err = _run(graph, capsys)
    assert code == 2 and "/node/nodes/fc/weight is an external link" in err


def test_a_fifo_named_like_the_graph_is_refused(graph, capsys):
    """Before: 'no such file', which sends the user looking for a file that is there."""
    fifo = graph.parent / "pipe.nir"
    os.mkfifo(fifo)
    code, err = _run(fifo, capsys)
    assert code == 2 and f"NIR file {fifo}: is a FIFO" in err


def test_a_hard_link_cycle_is_refused(graph, capsys):
    """Before: a RecursionError from the nir package's recursive reader."""
    with h5py.File(graph, "a") as f:
        f["node/nodes/fc/loop"] = f["node/nodes/fc"]
    code, err = _run(graph, capsys)
    assert code == 2 and "/node/nodes/fc/loop links again to /node/nodes/fc" in err


@pytest.mark.parametrize("limit, rows", [
    ("", 9 * 2**28),       # 9 GiB of float32 under the default limit of 8 GiB
    ("1M", 2**24),         # 64 MiB under a limit of 1 MiB
])
def test_a_dataset_declaring_more_than_the_limit_is_refused_before_allocation(graph, capsys, monkeypatch, limit,
                                                                                rows):
    """A few-KB file (the dataset is chunked and never written) declares gigabytes; before, it was allocated."""
    if limit:
        monkeypatch.setenv("EVENTSIM_MAX_BYTES", limit)
    else:
        monkeypatch.delenv("EVENTSIM_MAX_BYTES", raising=False)
    with h5py.File(graph, "a") as f:
        del f["node/nodes/fc/weight"]
        f.create_dataset("node/nodes/fc/weight", shape=(rows, 1), dtype="f4", chunks=(1024, 1), compression="gzip")
    assert graph.stat().st_size < 100_000
    code, err = _run(graph, capsys)
    assert code == 2 and "above the limit" in err and "EVENTSIM_MAX_BYTES" in err


def test_a_refused_graph_leaves_no_hdf5_lock_held(tmp_path, saved):
    """h5py iterates a group's items holding its global lock across yields: a node refused in the middle of
    that iteration must not leave the lock held (by the error's traceback), or the next thread that frees an
    h5py object (a pool thread's garbage collection) waits for it forever."""
    import gc
    import threading

    from h5py._objects import phil

    path = _mutated(tmp_path, saved, "conv1/groups", b"abc")
    gc.disable()  # a collection would free the suspended iteration by chance
    try:
        with pytest.raises(NIRError, match="field 'groups'") as info:
            load(path)
        taken = []

        def try_lock() -> None:
            got = phil.acquire(False)  # h5py's lock takes no timeout: ask without waiting
            taken.append(got)
            if got:
                phil.release()

        other = threading.Thread(target=try_lock)
        other.start()
        other.join()
        assert taken == [True], "h5py's lock is still held after the refused file"
        del info
    finally:
        gc.enable()
