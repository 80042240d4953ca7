"""What the eventsim command does when things go wrong: one line and exit 2, never a traceback.

A full disk, a read-only or impossible ``--out``, a run folder whose
``report.json`` or ``metrics.jsonl`` is garbage, a ``--sample`` beyond the
split, a missing optional extra (with the install command for how eventsim
was installed), SIGTERM during training (one line, status 143, and
``--resume`` ends bit-identical to a run never stopped), EVENTSIM_DEBUG=1
(the traceback instead of the line). Commands run in-process through
:func:`eventsim.cli.main`, except where a real signal needs a real process.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import eventsim as es
from eventsim import extras
from eventsim.cli import EXIT_TERMINATED, failure, main
from eventsim.errors import OptionError
from shared_data import data_root

QUICK = ["--steps", "6", "--train-limit", "40", "--test-limit", "20", "--batch-size", "10", "--milestones"]
CONVERT = ["--epochs", "1", "--train-limit", "50", "--test-limit", "20", "--calibration-samples", "20", "--steps", "4"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """One cache folder for the module, so the N-MNIST subset is binned once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture()
def env(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv("EVENTSIM_DEBUG", raising=False)
    return tmp_path


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache) -> Path:
    """A finished one-epoch run folder; tests that change it work on a copy (:func:`run_copy`)."""
    out = tmp_path_factory.mktemp("trained") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVENTSIM_DATA", str(data_root()))
        mp.setenv("XDG_CACHE_HOME", str(cache))
        assert main(["train", "nmnist", "--out", str(out), "--epochs", "1", *QUICK]) == 0
    return out


def run_copy(trained: Path, where: Path) -> Path:
    import shutil

    return Path(shutil.copytree(trained, where / "run"))


@pytest.fixture()
def nir_files(tmp_path):
    """A small NIR graph and an input for ``eventsim run``."""
    from eventsim.nir import save

    pytest.importorskip("nir")
    rng = np.random.default_rng(0)
    net = es.Network([es.Linear(4, 3, weight=rng.normal(size=(3, 4))), es.LIF(leak=0.5)], (4,))
    save(net, tmp_path / "net.nir")
    np.savez(tmp_path / "in.npz", spikes=rng.integers(0, 2, (5, 2, 4)).astype(np.float32))
    return tmp_path / "net.nir", tmp_path / "in.npz"


def one_line(capsys) -> str:
    """The last line the command wrote to stderr (progress bars come before it), checked to be no traceback."""
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return err.strip().splitlines()[-1]


def commands(env: Path, trained: Path, nir_files, out: Path) -> dict[str, list[str]]:
    """The four commands that write, each into ``out``."""
    graph, spikes = nir_files
    return {
        "train": ["train", "nmnist", "--out", str(out), "--epochs", "1", *QUICK],
        "plot": ["plot", str(trained), "--out", str(out)],
        "convert": ["convert", "--out", str(out), *CONVERT],
        "run": ["run", "--graph", str(graph), "--input", str(spikes), "--steps", "5", "--out", str(out / "out.npz")],
    }


def failing_sync(monkeypatch, code: int) -> None:
    """Every atomic write fails as a full, read-only or forbidden disk makes it fail: at its fsync, with no path
    (the way write() and fsync() report it)."""
    def fail(fd):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(os, "fsync", fail)


# ------------------------------------------------------------------ disk full, unwritable --out
@pytest.mark.parametrize("command", ["train", "plot", "convert", "run"])
def test_disk_full_is_one_line_naming_the_output(env, trained, nir_files, capsys, monkeypatch, command):
    pytest.importorskip("matplotlib")
    out = env / "out"
    args = commands(env, trained, nir_files, out)[command]
    failing_sync(monkeypatch, errno.ENOSPC)
    assert main(args) == 2
    line = one_line(capsys)
    assert line.startswith(f"eventsim {command}: ") and "no space left" in line and str(out) in line


@pytest.mark.parametrize("code, meaning", [(errno.EROFS, "read-only"), (errno.EACCES, "permission denied"),
                                          (errno.EDQUOT, "quota")])
def test_read_only_or_forbidden_output(env, trained, capsys, monkeypatch, code, meaning):
    pytest.importorskip("matplotlib")
    failing_sync(monkeypatch, code)
    assert main(["plot", str(trained), "--out", str(env / "figures")]) == 2
    line = one_line(capsys)
    assert meaning in line and "--out" in line


@pytest.mark.parametrize("command", ["train", "plot", "convert", "run"])
def test_output_under_a_regular_file(env, trained, nir_files, capsys, command):
    # Tests run as root, whom chmod does not stop: a folder below a regular file cannot be made by anyone.
    pytest.importorskip("matplotlib")
    blocker = env / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    assert main(commands(env, trained, nir_files, out)[command]) == 2
    line = one_line(capsys)
    assert str(blocker) in line and "not a folder" in line
    assert blocker.read_text() == "not a folder"


# ------------------------------------------------------------------ eventsim plot on garbage
GARBAGE = {  # what a run folder's report.json or metrics.jsonl may hold instead of what eventsim wrote
    "report not JSON": ("report.json", "{not json"),
    "report a list": ("report.json", "[1, 2, 3]"),
    "report without synops": ("report.json", '{"firing_rate": {"lif1": 0.1}}'),
    "report rate a string": ("report.json", '{"firing_rate": {"lif1": "high"}, "synops_per_sample": {}}'),
    "report rate beyond float": ("report.json", '{"firing_rate": {"lif1": 1' + "0" * 400 + '}, "synops_per_sample": {}}'),
    "report nested too deep": ("report.json", "[" * 100_000),
    "report not UTF-8": ("report.json", b"\xff\xfe\x00garbage"),
    "metrics not JSON": ("metrics.jsonl", "{not json\n"),
    "metrics a string": ("metrics.jsonl", '"a string"\n'),
    "metrics without accuracy": ("metrics.jsonl", '{"epoch": 1, "train_loss": 0.5}\n'),
    "metrics epoch a string": ("metrics.jsonl", '{"epoch": "one", "train_loss": 0.5, "train_accuracy": 0.1}\n'),
    "metrics epoch infinite": ("metrics.jsonl", '{"epoch": Infinity, "train_loss": 0.5, "train_accuracy": 0.1}\n'),
    "metrics loss beyond float": ("metrics.jsonl",
                                  '{"epoch": 1, "train_loss": 1' + "0" * 400 + ', "train_accuracy": 0.1}\n'),
    "metrics binary": ("metrics.jsonl", b"\x89HDF\r\n\x1a\n\x00\x00"),
    "metrics empty": ("metrics.jsonl", ""),
}


@pytest.mark.parametrize("case", GARBAGE)
def test_plot_refuses_a_garbage_file_naming_it(env, trained, capsys, case):
    pytest.importorskip("matplotlib")
    name, content = GARBAGE[case]
    run = run_copy(trained, env)
    (run / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    assert main(["plot", str(run)]) == 2
    assert str(run / name) in one_line(capsys)


def test_plot_sample_beyond_the_split_names_the_range(env, trained, capsys):
    pytest.importorskip("matplotlib")
    for sample in ("5000", "20", "-1"):
        assert main(["plot", str(trained), "--sample", sample]) == 2
        line = one_line(capsys)
        assert f"--sample {sample}" in line and "0 to 19" in line  # the run tests on 20 samples
    assert not (trained / "plots").exists()  # nothing drawn


# ------------------------------------------------------------------ missing extras
def install_mode(monkeypatch, direct_url: str | None, installed: bool = True) -> None:
    """Make importlib.metadata see eventsim installed with ``direct_url`` as its direct_url.json."""
    class Dist:
        def read_text(self, name):
            return direct_url if name == "direct_url.json" else None

    monkeypatch.setattr(extras.metadata, "distributions", lambda **kw: iter([Dist()] if installed else []))


#: direct_url.json (PEP 610) of each way of installing, and the command that installs the plot extra then.
MODES = {
    "editable checkout": ('{"url": "file:///src/eventsim", "dir_info": {"editable": true}}', True,
                          'pip install -e ".[plot]"'),
    "from an index": (None, True, 'pip install "eventsim[plot]"'),
    "from a folder, not editable": ('{"url": "file:///src/eventsim", "dir_info": {}}', True,
                                    'pip install "eventsim[plot]"'),
    "from a wheel file": ('{"url": "file:///w/eventsim-0.1.0-py3-none-any.whl", "archive_info": {}}', True,
                          'pip install "eventsim[plot]"'),
    "damaged metadata": ("{not json", True, 'pip install "eventsim[plot]"'),
    "not installed, on sys.path": (None, False, 'pip install -e ".[plot]"'),
}


def without(monkeypatch, package: str) -> None:
    """Make every import of ``package`` fail as when it is not installed, also of submodules imported already."""
    for name in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, package, None)


@pytest.mark.parametrize("mode", MODES)
def test_install_command_follows_the_install_mode(monkeypatch, mode):
    direct_url, installed, command = MODES[mode]
    install_mode(monkeypatch, direct_url, installed)
    assert extras.install_command("plot") == command


@pytest.mark.parametrize("mode", ["editable checkout", "from an index"])
def test_plot_without_matplotlib(env, trained, capsys, monkeypatch, mode):
    direct_url, installed, command = MODES[mode]
    install_mode(monkeypatch, direct_url, installed)
    without(monkeypatch, "matplotlib")
    assert main(["plot", str(trained), "--out", str(env / "figures")]) == 2
    line = one_line(capsys)
    assert "matplotlib" in line and line.endswith(command)
    assert not (env / "figures").exists()


def test_inspect_plot_without_matplotlib_fails_before_measuring(env, capsys, monkeypatch):
    install_mode(monkeypatch, *MODES["from an index"][:2])
    without(monkeypatch, "matplotlib")
    measured = []
    monkeypatch.setattr("eventsim.learning.runs.gradient_flow_of", lambda *a, **k: measured.append(1) or {})
    assert main(["inspect", "lee2020-lenet5", "--input", "nmnist", "--grad-flow", "--plot",
                 str(env / "flow.png")]) == 2
    assert one_line(capsys).endswith('pip install "eventsim[plot]"') and not measured


def test_inspect_plot_must_be_png_before_measuring(env, capsys, monkeypatch):
    measured = []
    monkeypatch.setattr("eventsim.learning.runs.gradient_flow_of", lambda *a, **k: measured.append(1) or {})
    assert main(["inspect", "lee2020-lenet5", "--input", "nmnist", "--grad-flow", "--plot",
                 str(env / "flow.pdf")]) == 2
    assert ".png" in one_line(capsys) and not measured


@pytest.mark.parametrize("mode", ["editable checkout", "from an index"])
def test_run_without_nir(nir_files, capsys, monkeypatch, mode):
    direct_url, installed, command = MODES[mode]
    install_mode(monkeypatch, direct_url, installed)
    graph, spikes = nir_files
    without(monkeypatch, "nir")
    assert main(["run", "--graph", str(graph), "--input", str(spikes), "--steps", "5",
                 "--out", str(graph.parent / "out.npz")]) == 2
    assert one_line(capsys).endswith(command.replace("plot", "nir"))
    assert not (graph.parent / "out.npz").exists()


def test_conform_without_torch(tmp_path, capsys, monkeypatch):
    install_mode(monkeypatch, *MODES["from an index"][:2])
    without(monkeypatch, "torch")
    # eventsim's own torch candidate, and a user's candidate module that imports torch at its top
    assert main(["conform", "--candidate", "eventsim.testing.torch_candidate:TorchCandidate", "--examples", "1"]) == 2
    assert one_line(capsys).endswith('pip install "eventsim[torch]"')
    (tmp_path / "my_torch_candidate.py").write_text("import torch\n\ndef make():\n    raise AssertionError\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_candidate puts the current folder first
    assert main(["conform", "--candidate", "my_torch_candidate:make", "--examples", "1"]) == 2
    line = one_line(capsys)
    assert "my_torch_candidate" in line and line.endswith('pip install "eventsim[torch]"')


def test_a_missing_module_that_is_no_extra_is_not_reported_as_one():
    assert extras.missing_extra(ModuleNotFoundError("No module named 'nosuch'", name="nosuch")) is None
    # an ImportError from inside an installed package is a broken installation, not a missing extra
    assert extras.missing_extra(ImportError("cannot import name 'x' from 'torch'", name="torch")) is None


# ------------------------------------------------------------------ HDF5 errors no reader caught
def test_an_h5py_error_is_one_line(tmp_path):
    import h5py

    path = tmp_path / "damaged.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("w", data=np.arange(100_000.0), chunks=(10_000,), compression="gzip")
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2: len(raw) // 2 + 20_000] = bytes(20_000)  # zeroes over compressed chunks
    path.write_bytes(bytes(raw))
    with pytest.raises(Exception) as caught:
        with h5py.File(path, "r") as f:
            f["w"][...]
    line = failure(caught.value)
    assert line is not None and "HDF5" in line and str(caught.value) in line
    assert failure(KeyError("w")) is None  # the same type raised by eventsim itself is a bug


# ------------------------------------------------------------------ EVENTSIM_DEBUG, bugs
def test_debug_shows_the_traceback(env, capsys, monkeypatch):
    args = ["train", "nmnist", "--model", "nosuchnet", "--out", str(env / "x"), *QUICK]
    monkeypatch.setenv("EVENTSIM_DEBUG", "0")
    assert main(args) == 2
    assert "nosuchnet" in one_line(capsys)
    monkeypatch.setenv("EVENTSIM_DEBUG", "1")
    with pytest.raises(OptionError, match="nosuchnet"):
        main(args)


def test_a_bug_stays_a_traceback(monkeypatch):
    def broken(args):
        raise KeyError("a bug")

    monkeypatch.setattr("eventsim.cli._cmd_inspect", broken)
    with pytest.raises(KeyError, match="a bug"):
        main(["inspect"])


# ------------------------------------------------------------------ SIGTERM
TRAIN = ["train", "nmnist", "--epochs", "2", "--steps", "12", "--train-limit", "60", "--test-limit", "10",
         "--batch-size", "10", "--milestones", "--rule", "bptt", "--loss", "cross_entropy"]


def test_sigterm_stops_training_in_one_line_and_resume_ends_bit_identical(env, capsys):
    from eventsim.learning.checkpoint import load_checkpoint

    reference, stopped = env / "reference", env / "stopped"
    assert main([*TRAIN, "--out", str(reference)]) == 0
    script = Path(sys.executable).parent / "eventsim"  # the installed command, as a user runs it
    command = [str(script)] if script.exists() else [sys.executable, "-m", "eventsim.cli"]
    process = subprocess.Popen([*command, *TRAIN, "--out", str(stopped)],
                               stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    metrics = stopped / "metrics.jsonl"
    deadline = time.monotonic() + 120
    # Wait for the end of the first epoch (about 1.5 s of each on 2 busy cores), so that the signal lands inside
    # the second, after a checkpoint.
    while not (metrics.exists() and metrics.read_text().count("\n") >= 1) and process.poll() is None:
        assert time.monotonic() < deadline, "training never finished its first epoch"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_TERMINATED, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1] == "eventsim train: terminated (SIGTERM); a run continues with --resume"
    assert len(metrics.read_text().splitlines()) < 2  # stopped before the end
    assert not list(stopped.glob(".*.tmp"))  # the write it interrupted, if any, left nothing

    assert main(["train", "nmnist", "--out", str(stopped), "--resume"]) == 0
    got, want = load_checkpoint(stopped / "checkpoint.h5"), load_checkpoint(reference / "checkpoint.h5")
    assert (got.epoch, got.step) == (want.epoch, want.step) == (2, 12)
    for part in ("params", "optimizer_state", "statistics"):
        mine, theirs = getattr(got, part), getattr(want, part)
        assert mine.keys() == theirs.keys(), part
        for key in theirs:
            assert mine[key].tobytes() == theirs[key].tobytes(), (part, key)
    timing = ("seconds", "samples_per_s")
    assert [{k: v for k, v in h.items() if k not in timing} for h in got.history] == \
           [{k: v for k, v in h.items() if k not in timing} for h in want.history]
