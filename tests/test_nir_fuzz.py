"""Fuzzing the NIR loader with mutated graphs eventsim wrote itself (docs/safety.md).

Each case takes a valid NIR file written by :func:`eventsim.nir.save` and
applies one to three mutations of the kinds a broken exporter or an attacker
produces: a dataset's value replaced (bytes, strings, inf, NaN, huge or
negative numbers, complex values, arrays of another rank or dtype), a
dataset's dtype changed, a dataset or group deleted, groups and datasets
added, edges added, removed, reversed (cycles) or pointed at unknown nodes,
eventsim's metadata options given junk, HDF5 links (soft, external, hard-link
cycles) and datasets whose bytes live in another file (external storage).

The property (tests/fuzzing.py): :func:`eventsim.nir.load` raises an
eventsim error, or returns a network whose run on a small random input has
finite potentials and output. A file with external storage or an external
link must never load: its bytes come from a file the graph's author chose.
Sized by HYPOTHESIS_PROFILE; ``campaign`` runs 10,000 cases.
"""

import json
import os

import h5py
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytest.importorskip("nir")

import eventsim as es
from eventsim.nir import load, save
from fuzzing import untrusted

#: Layers small enough that any graph the loader accepts runs in milliseconds:
#: a mutated shape that passes every check still cannot ask for more.
LIMIT = "4M"


def _networks() -> list[es.Network]:
    rng = np.random.default_rng(0)

    def w(*shape):
        return rng.normal(size=shape).astype(np.float32)

    return [
        es.Network([es.Conv2d(2, 3, 3, padding=1, weight=w(3, 2, 3, 3)), es.LIF(1.0, leak=0.5),
                    es.SpikingAvgPool(2), es.Flatten(), es.Linear(12, 4, weight=w(4, 12), bias=np.zeros(4, np.float32)),
                    es.Readout(leak=0.9)], (2, 4, 4)),
        es.Network([es.Linear(3, 4, weight=w(4, 3)), es.IF(0.5), es.Dropout(0.2), es.Linear(4, 2, weight=w(2, 4)),
                    es.Readout(leak=1.0)], (3,)),
        es.Network([es.Conv2d(1, 2, 3, padding=1, weight=w(2, 1, 3, 3)), es.LIF(1.0, leak=0.8, reset="soft"),
                    es.Residual([es.Conv2d(2, 2, 3, padding=1, weight=w(2, 2, 3, 3))], es.LIF(1.0, leak=0.8)),
                    es.SumPool(2), es.Flatten(), es.Linear(8, 2, weight=w(2, 8)), es.LIF([0.5, 2.0], leak=0.9)],
                   (1, 4, 4)),
    ]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The valid files, a secret an external reference could point at, and the allocation limit."""
    path = tmp_path_factory.mktemp("nir_fuzz")
    for i, network in enumerate(_networks()):
        save(network, path / f"base{i}.nir")
        for dtype in (np.float32, np.float64):  # Numba compiles here, not inside a case's time limit
            _load_and_run(path / f"base{i}.nir", dtype)
    (path / "secret.txt").write_bytes(b"root:x:0:0:root:/root:/bin/bash\n" * 64)
    with h5py.File(path / "other.h5", "w") as f:
        f["x"] = np.arange(12.0)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("EVENTSIM_MAX_BYTES", LIMIT)
        yield path


def _paths(f: h5py.File) -> tuple[list[str], list[str]]:
    """(datasets, groups) of ``f`` by name, hard-link cycles and all links not followed."""
    datasets, groups, todo = [], [], ["/"]
    while todo:
        name = todo.pop()
        groups.append(name)
        for key in sorted(f[name].keys()):
            child = f"{name.rstrip('/')}/{key}"
            link = f[name].get(key, getlink=True)
            if not isinstance(link, h5py.HardLink):
                continue
            obj = f[name].get(key)
            if isinstance(obj, h5py.Dataset):
                datasets.append(child)
            elif isinstance(obj, h5py.Group) and child.count("/") < 6 and obj.name == child:
                todo.append(child)
    return datasets, groups


NUMBERS = st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-2**63, 2**64 - 1),
                    st.sampled_from([0, -1, 1, 2**31, 2**63 - 1, 1e300, -1e300, 3e38, 1e-45, 0.5]))
DTYPES = st.sampled_from(["f2", "f4", "f8", "i1", "i4", "i8", "u1", "u8", "?", "c16"])


@st.composite
def _values(draw, old):
    """A replacement for the dataset value ``old``."""
    kind = draw(st.integers(0, 7))
    if kind == 0:
        # bytes as a fixed-length string (h5py's variable-length strings cannot hold NUL), text that UTF-8 can hold
        return draw(st.one_of(st.binary(min_size=1, max_size=8).map(np.bytes_),
                              st.text(st.characters(exclude_characters="\x00", exclude_categories=["Cs"]), max_size=8)))
    if kind == 1:
        return draw(NUMBERS)
    if kind == 2:
        return complex(draw(st.floats(-10, 10)), draw(st.floats(-10, 10)))
    if kind == 3:
        shape = tuple(draw(st.lists(st.integers(0, 4), max_size=4)))
        values = draw(st.lists(NUMBERS, min_size=1, max_size=4))
        with np.errstate(all="ignore"):
            return np.resize(np.array(values, dtype=object).astype(np.float64), shape).astype(draw(DTYPES))
    old = np.asarray(old)
    if old.dtype.kind not in "biuf":
        return draw(NUMBERS)
    with np.errstate(all="ignore"):
        if kind == 4:  # another rank
            return old.reshape(-1) if old.ndim != 1 else old.reshape(1, -1, 1)
        if kind == 5:  # scaled
            return old * draw(st.sampled_from([-1.0, 0.0, 1e300, 1e30, 1e-300, np.inf, np.nan]))
        if kind == 6 and old.size:  # one entry changed
            out = old.astype(np.float64).reshape(-1)
            out[draw(st.integers(0, out.size - 1))] = draw(NUMBERS)
            return out.reshape(old.shape)
    return old.astype(draw(DTYPES))


def _replace(f, name, value, **options):
    if f.get(name, getlink=True) is not None:  # a link, dangling or not, or the dataset itself
        del f[name]
    f.create_dataset(name, data=value, **options)


@st.composite
def _mutation(draw, f: h5py.File, folder) -> str:
    """Apply one mutation to the open file ``f``; return what it did (hypothesis prints it on failure)."""
    datasets, groups = _paths(f)
    op = draw(st.sampled_from(["value", "value", "dtype", "delete", "add", "edges", "option", "link", "external"]))
    if op == "value" and datasets:
        name = draw(st.sampled_from(datasets))
        value = draw(_values(f[name][()]))
        _replace(f, name, value)
        return f"{name} = {value!r}"
    if op == "dtype" and datasets:
        name = draw(st.sampled_from(datasets))
        old = f[name][()]
        if np.asarray(old).dtype.kind in "biuf":
            with np.errstate(all="ignore"):
                _replace(f, name, np.asarray(old).astype(draw(DTYPES)))
        return f"{name} retyped"
    if op == "delete":
        name = draw(st.sampled_from([n for n in datasets + groups if n != "/"] or ["/version"]))
        if name in f:
            del f[name]
        return f"deleted {name}"
    if op == "add":
        where = draw(st.sampled_from(groups))
        key = draw(st.sampled_from(["extra", "tau", "delay", "weight", "type", "metadata", "nodes", "loop"]))
        if f[where].get(key, getlink=True) is not None:
            return "nothing added"
        if key == "loop":
            f[where][key] = f[where]  # a hard link to the group itself: a cycle
        elif draw(st.booleans()):
            f[where].create_group(key)
        else:
            f[where][key] = draw(st.sampled_from([b"LIF", 1.0, np.ones(3)]))
        return f"added {where}/{key}"
    if op == "edges" and isinstance(f.get("node/nodes"), h5py.Group):
        old = f.get("node/edges")  # None when an earlier mutation left a dangling link
        well_formed = isinstance(old, h5py.Dataset) and old.dtype.kind in "OS" and old.ndim == 2 and old.shape[1] == 2
        edges = old[()].tolist() if well_formed else []
        names = [n.encode() for n in f["node/nodes"].keys()] + [b"ghost"]
        how = draw(st.sampled_from(["add", "remove", "reverse", "self"]))
        if how == "add" or not edges:
            edges.append([draw(st.sampled_from(names)), draw(st.sampled_from(names))])
        else:
            i = draw(st.integers(0, len(edges) - 1))
            a, b = edges.pop(i)
            edges += {"remove": [], "reverse": [[b, a]], "self": [[a, a], [a, b]]}[how]
        _replace(f, "node/edges", np.array(edges, dtype="S") if edges else np.zeros((0, 2), "S1"))
        return f"edges {how}"
    if op == "option":
        found = [n for n in datasets if n.endswith("metadata/eventsim")]
        if not found:
            return "no options"
        name = draw(st.sampled_from(found))
        try:
            options = json.loads(f[name][()])
            assert isinstance(options, dict)
        except (AssertionError, TypeError, ValueError):  # an earlier mutation broke them
            return "options already broken"
        key = draw(st.sampled_from(sorted(options) + ["layer"]))
        options[key] = draw(st.sampled_from([None, "abc", "SpikingAvgPool", "IF", "Readout", 1e300, -1, 0.0, 2.5, True,
                                             [], {}, "Identity"]))
        text = json.dumps(options) if draw(st.booleans()) else json.dumps(options)[:-1]
        _replace(f, name, text.encode())
        return f"{name}: {key} = {options[key]!r}"
    if op == "link" and datasets:
        name = draw(st.sampled_from(datasets))
        del f[name]
        if draw(st.booleans()):
            f[name] = h5py.SoftLink(draw(st.sampled_from(["/version", "/node", "/nowhere"])))
            return f"{name} -> soft link"
        f[name] = h5py.ExternalLink(str(folder / "other.h5"), "/x")
        return f"{name} -> external link"
    if op == "external" and datasets:
        name = draw(st.sampled_from(datasets))
        old = np.asarray(f[name][()])
        if old.dtype.kind not in "biuf" or old.size == 0:
            return "no external storage"
        del f[name]
        f.create_dataset(name, shape=old.shape, dtype=old.dtype,
                         external=[(str(folder / "secret.txt"), 0, old.nbytes)])
        return f"{name} -> external storage"
    return "nothing"


def _foreign_bytes(path) -> bool:
    """Whether ``path`` reads anything from another file (an external link or external storage)."""
    found = []

    def storage(name, obj):
        if isinstance(obj, h5py.Dataset) and obj.external:
            found.append(name)

    def link(name, info):
        if isinstance(info, h5py.ExternalLink):
            found.append(name)

    with h5py.File(path, "r") as f:
        f.visititems(storage)
        f.visititems_links(link)
    return bool(found)


def _load_and_run(path, dtype) -> es.RunResult:
    """Load the graph and run it on a small random input (a run may stop with an error naming the layer)."""
    network = load(path, dtype=dtype)
    rng = np.random.default_rng(0)
    x = (rng.random((2, 3) + network.input_shape) < 0.3).astype(network.dtype)
    return network.run(es.Events.from_dense(x), record=("potentials",))


def _finite(result: es.RunResult) -> None:
    for name, potentials in result.potentials.items():
        assert np.all(np.isfinite(potentials)), f"layer {name!r}: non-finite potentials"
    if result.output is not None:
        assert np.all(np.isfinite(result.output)), "non-finite output"


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_nir_files_load_as_a_network_or_fail_with_an_eventsim_error(folder, data):
    base = folder / f"base{data.draw(st.integers(0, 2), label='base')}.nir"
    path = folder / "mutated.nir"
    path.write_bytes(base.read_bytes())
    with h5py.File(path, "a") as f:
        for _ in range(data.draw(st.integers(1, 3), label="mutations")):
            data.draw(_mutation(f, folder))
    foreign = _foreign_bytes(path)
    dtype = data.draw(st.sampled_from([np.float32, np.float64]), label="dtype")
    outcome = untrusted("nir file", lambda: _load_and_run(path, dtype), _finite)
    assert not (foreign and outcome == "ok"), "a graph reading another file's bytes was loaded"
    assert os.environ["EVENTSIM_MAX_BYTES"] == LIMIT
