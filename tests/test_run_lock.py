"""One process at a time writes a run folder (eventsim.lock).

Two trainings started into the same ``--out`` at the same instant both
exited 0 and one run was silently lost. Now exactly one runs and the other
exits 2 with one line naming the holder. The lock is the kernel's (flock),
so it dies with its holder, SIGKILL included. A run that takes it removes
the temporary files that writes of its own files killed midway left in the
folder, and nothing in shared folders such as the data cache.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import uuid

import pytest

from eventsim.cli import main
from eventsim.errors import RunLockError
from shared_data import data_root

QUICK = ["--steps", "6", "--train-limit", "20", "--test-limit", "10", "--batch-size", "10", "--epochs", "1",
         "--milestones"]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A binned-data cache filled once, so that the runs below start at once."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("EVENTSIM_DATA", str(data_root()))
        mp.setenv("XDG_CACHE_HOME", str(folder))
        assert main(["train", "nmnist", "--out", str(tmp_path_factory.mktemp("warm") / "run"), *QUICK]) == 0
    return folder


@pytest.fixture()
def env(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    return tmp_path


def temp_name(target: str) -> str:
    """The name eventsim.atomic gives the temporary file of a write to ``target``."""
    return f".{target}.{uuid.uuid4().hex}.tmp"


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    from eventsim.lock import run_folder_lock

    folder = tmp_path / "run"
    with run_folder_lock(folder):
        with pytest.raises(RunLockError) as info:
            with run_folder_lock(folder):
                pytest.fail("two holders at once")
        message = str(info.value)
        assert str(folder) in message and f"pid {os.getpid()} on {socket.gethostname()}" in message
    with run_folder_lock(folder):  # released at the end of the block
        pass


HOLDER = textwrap.dedent("""
    import sys, time
    from eventsim.lock import run_folder_lock
    with run_folder_lock(sys.argv[1]):
        print("locked", flush=True)
        time.sleep(120)
""")


def test_the_lock_dies_with_a_killed_holder(tmp_path):
    from eventsim.lock import run_folder_lock

    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(RunLockError, match=f"pid {holder.pid} "):
            with run_folder_lock(folder):
                pass
    finally:
        holder.kill()  # SIGKILL: no handler, no cleanup runs in the holder
        holder.wait()
    with run_folder_lock(folder):  # no stale lock to detect or remove by hand
        pass


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(tmp_path):
    from eventsim.lock import run_folder_lock

    folder, victim = tmp_path / "run", tmp_path / "precious.txt"
    folder.mkdir()
    victim.write_text("keep me")
    (folder / ".lock").symlink_to(victim)  # a run folder from someone else
    with pytest.raises(RunLockError, match="symbolic link"):
        with run_folder_lock(folder):
            pass
    assert victim.read_text() == "keep me"


def holder(**fields) -> str:
    return json.dumps({"pid": 1, "host": "h", "since": "now", "command": "c", **fields})


@pytest.mark.parametrize("content", [holder(pid="1\n2"), "\x00" * 10, holder(host="a\nb"), holder(command="x" * 3000),
                                     holder(command="x" * 5000)], ids=["pid", "nul", "newline", "long", "longer"])
def test_a_lock_file_written_by_something_else_gives_one_short_line(tmp_path, content):
    import fcntl

    from eventsim.lock import run_folder_lock

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / ".lock").write_text(content)
    with open(folder / ".lock") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # through another open file, as another process would hold it
        with pytest.raises(RunLockError) as info:
            with run_folder_lock(folder):
                pass
    message = str(info.value)
    assert "\n" not in message and len(message) < 600 and str(folder) in message


def test_only_the_leftovers_of_the_named_targets_are_removed(tmp_path):
    from eventsim.atomic import remove_temp_files

    (tmp_path / "plots").mkdir()
    leftovers = [tmp_path / temp_name("checkpoint.h5"), tmp_path / temp_name("metrics.jsonl")]
    kept = [tmp_path / "checkpoint.h5", tmp_path / "notes.tmp", tmp_path / ".checkpoint.h5.1234.tmp",
            tmp_path / temp_name("data.h5"), tmp_path / "plots" / temp_name("checkpoint.h5")]
    for path in leftovers + kept:
        path.write_bytes(b"x")
    assert sorted(remove_temp_files(tmp_path, ["checkpoint.h5", "metrics.jsonl", "job.json"])) == sorted(leftovers)
    assert all(path.exists() for path in kept)


def test_resume_removes_temp_files_of_killed_writes_and_none_of_the_cache(env, cache):
    out = env / "run"
    assert main(["train", "nmnist", "--out", str(out), *QUICK]) == 0
    leftovers = [out / temp_name("checkpoint.h5"), out / temp_name("metrics.jsonl")]
    for path in leftovers:
        path.write_bytes(os.urandom(1 << 20))
    shared = cache / "eventsim" / "cache" / temp_name("nmnist-train.h5")  # another process may be writing it
    shared.write_bytes(b"x")
    assert main(["train", "nmnist", "--out", str(out), "--resume", "--epochs", "2"]) == 0
    assert not any(path.exists() for path in leftovers)
    assert shared.exists()
    assert [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_eval_is_refused_while_the_run_is_held(env, capsys):
    from eventsim.lock import run_folder_lock

    out = env / "run"
    assert main(["train", "nmnist", "--out", str(out), *QUICK]) == 0
    capsys.readouterr()
    with run_folder_lock(out):
        assert main(["eval", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert f"pid {os.getpid()}" in err and "\n" not in err
    assert not (out / "report-test.json").exists()
    assert main(["eval", str(out)]) == 0


STARTER = textwrap.dedent("""
    import os, sys, time
    from eventsim.cli import main
    import eventsim.learning.runs  # imported before the start, so that both processes start together
    print("ready", flush=True)
    while not os.path.exists(sys.argv[1]):
        time.sleep(0.0005)
    sys.exit(main(sys.argv[2:]))
""")


def test_two_trainings_started_at_the_same_instant_into_one_folder(env):
    out, go = env / "run", env / "go"
    args = ["train", "nmnist", "--out", str(out), *QUICK]
    procs = [subprocess.Popen([sys.executable, "-c", STARTER, str(go), *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    try:
        for proc in procs:
            assert proc.stdout.readline().strip() == "ready"
        go.touch()
        results = [(proc, *proc.communicate(timeout=300)) for proc in procs]
    finally:
        for proc in procs:
            proc.kill()
    codes = sorted(proc.returncode for proc, _, _ in results)
    assert codes == [0, 2], [(proc.returncode, err[-2000:]) for proc, _, err in results]
    winner = next(proc for proc, _, _ in results if proc.returncode == 0)
    loser_err = next(err for proc, _, err in results if proc.returncode == 2).strip()
    assert "\n" not in loser_err and "Traceback" not in loser_err, loser_err
    assert str(out) in loser_err and f"pid {winner.pid} on {socket.gethostname()}" in loser_err
    report = json.loads((out / "report.json").read_text())
    assert report["epochs"] == 1 and report["samples"] == 10  # the winner's run, whole
