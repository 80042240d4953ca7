"""SIGKILL a training at random points, resume it each time: the run ends as if never interrupted.

An ``eventsim train`` process is killed (SIGKILL: no handler runs) while it
starts, between optimizer steps, and inside checkpoint writes (the kill is
timed from the moment the write's temporary file appears), then resumed with
``--resume``. After the last resume, every dataset of ``checkpoint.h5`` must
be bit-identical to that of a run that was never interrupted, the metrics and
the report the same but for timings, and no temporary file may remain in the
run folder. A kill landed inside a write when the write's temporary file is
still there after the kill; the tests count those.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from eventsim.cli import main
from shared_data import data_root

#: A run whose weights change at every step (bptt, cross entropy), checkpointed after every step.
OPTIONS = ["--steps", "10", "--rule", "bptt", "--loss", "cross_entropy", "--batch-size", "10", "--test-limit", "10",
           "--milestones", "1", "--checkpoint-every", "1"]
TIMING = ("seconds", "samples_per_s", "train_seconds", "wall_seconds")
POLL = 0.0005  # seconds between two looks at the run folder


def temp_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob(".*.tmp")) if folder.is_dir() else []


def checkpoint_id(path: Path) -> int | None:
    """The inode of the checkpoint: every completed write renames a new file onto it."""
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def wait_until(proc: subprocess.Popen, condition) -> bool:
    """Poll ``condition`` until it holds (True) or the process exits (False)."""
    while proc.poll() is None:
        if condition():
            return True
        time.sleep(POLL)
    return False


class Killer:
    """Starts ``eventsim train`` into ``out`` (resuming once a job is there) and kills it at a drawn point."""

    def __init__(self, out: Path, options: list[str], rng: np.random.Generator) -> None:
        self.out, self.options, self.rng = out, options, rng
        self.kills = 0
        self.inside_writes: list[tuple[str, str]] = []  # (how, temporary file) of each kill that landed inside a write

    def start(self) -> subprocess.Popen:
        resume = ["--resume"] if (self.out / "job.json").exists() else []
        self.log = self.out.parent / "stderr.txt"  # a file, not a pipe nobody reads until the kill
        with open(self.log, "w") as log:
            return subprocess.Popen([sys.executable, "-m", "eventsim.cli", "train", "nmnist", "--out", str(self.out),
                                     *self.options, *resume], stdout=subprocess.DEVNULL, stderr=log)

    def kill_once(self, how: str) -> bool:
        """One process killed ``how``; False when it finished the run before the kill came."""
        left_before = set(temp_files(self.out))  # a process killed before it took the lock leaves them there
        proc = self.start()
        ckpt = self.out / "checkpoint.h5"
        try:
            if how == "startup":  # anywhere in imports, data loading, the first steps
                time.sleep(self.rng.uniform(0.0, 1.5))
            elif how == "between":  # after 1 or 2 new checkpoints, somewhere in the next step or write
                seen, wanted = [checkpoint_id(ckpt)], int(self.rng.integers(1, 3))

                def new_checkpoints():
                    now = checkpoint_id(ckpt)
                    if now != seen[-1]:
                        seen.append(now)
                    return len(seen) > wanted

                wait_until(proc, new_checkpoints)
                time.sleep(self.rng.uniform(0.0, 0.2))
            else:  # "write": just after the 1st or 2nd new checkpoint write began
                stale, wanted, started = set(temp_files(self.out)), int(self.rng.integers(1, 3)), set()

                def writing():
                    started.update(n for n in temp_files(self.out) if n.startswith(".checkpoint.h5.") and n not in stale)
                    return len(started) >= wanted

                wait_until(proc, writing)
                time.sleep(self.rng.uniform(0.0, 0.02))
        finally:
            proc.kill()
            rc = proc.wait()
        if rc != -9:  # it ended before the kill: it must have finished the run
            assert rc == 0, self.log.read_text()[-2000:]
            return False
        self.kills += 1
        self.inside_writes += [(how, name) for name in temp_files(self.out) if name not in left_before]
        return True

    def finish(self) -> None:
        proc = self.start()
        assert proc.wait(timeout=600) == 0, self.log.read_text()[-2000:]


def assert_same_run(reference: Path, resumed: Path) -> None:
    """Every checkpoint dataset bit for bit, every attribute, the metrics and the report but for timings."""
    with h5py.File(reference / "checkpoint.h5", "r") as a, h5py.File(resumed / "checkpoint.h5", "r") as b:
        names = []
        a.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
        other = []
        b.visititems(lambda name, obj: other.append(name) if isinstance(obj, h5py.Dataset) else None)
        assert names == other and len(names) > 4
        for name in names:
            x, y = a[name][()], b[name][()]
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), name
        for group in ["/", *{name.rsplit("/", 1)[0] for name in names}]:
            attrs_a, attrs_b = dict(a[group].attrs), dict(b[group].attrs)
            assert attrs_a.keys() == attrs_b.keys(), group
            for key in attrs_a:
                if key == "history":
                    assert untimed(json.loads(attrs_a[key])) == untimed(json.loads(attrs_b[key]))
                else:
                    assert attrs_a[key] == attrs_b[key], (group, key)
    metrics = [[json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
               for run in (reference, resumed)]
    assert untimed(metrics[0]) == untimed(metrics[1])
    reports = [json.loads((run / "report.json").read_text()) for run in (reference, resumed)]
    assert untimed([reports[0]]) == untimed([reports[1]])
    assert temp_files(resumed) == []


def untimed(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING} for r in records]


@pytest.fixture()
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def killed_and_resumed(env: Path, options: list[str], schedule: list[str], seed: int) -> Killer:
    """The reference run (which also fills the data cache), then a run killed as ``schedule`` says and finished."""
    assert main(["train", "nmnist", "--out", str(env / "reference"), *options]) == 0
    killer = Killer(env / "run", options, np.random.default_rng(seed))
    for how in schedule:
        if not killer.kill_once(how):
            break
    killer.finish()
    assert_same_run(env / "reference", env / "run")
    kinds = {how: schedule[: killer.kills].count(how) for how in dict.fromkeys(schedule)}
    inside = {how: sum(1 for h, _ in killer.inside_writes if h == how) for how in kinds}
    print(f"\n{killer.kills} kills {kinds}; inside a write: {len(killer.inside_writes)} {inside}, leaving "
          f"{sorted({name.split('.')[1] + '.' + name.split('.')[2] for _, name in killer.inside_writes})}")
    return killer


def test_a_few_kills_one_aimed_at_a_checkpoint_write(env):
    killer = killed_and_resumed(env, ["--epochs", "1", "--train-limit", "100", *OPTIONS],
                                ["startup", "between", "write"], seed=1)
    assert killer.kills == 3


@pytest.mark.slow
def test_twenty_four_kills_many_inside_checkpoint_writes(env):
    schedule = ["startup", "between", "write", "write"] * 6
    killer = killed_and_resumed(env, ["--epochs", "2", "--train-limit", "300", *OPTIONS], schedule, seed=2)
    assert killer.kills == len(schedule)
    # Half the kills aim at writes; how many land inside one depends on the
    # machine's load (3 to 11 of the 12 aimed, measured), so the test asks for
    # at least one: without it the run would not show what it claims.
    assert len(killer.inside_writes) >= 1
