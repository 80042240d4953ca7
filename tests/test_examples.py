"""Every teaching example in examples/ runs as written and its lessons hold.

Each example asserts the facts it teaches (closed forms, gradients, the
planted bug found), so running it is the test. It runs as a user would run
it, `python examples/<name>.py --out DIR`, from a different directory, with
the data folder the tests use; an example that needs an extra the machine
lacks is skipped, naming the extra.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from eventsim.extras import install_hint
from shared_data import data_root

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: What each example needs beyond the core: extras, and whether it reads the data folder.
NEEDS = {
    "one_neuron": ((), False),
    "events_vs_frames": ((), True),
    "lee2020_gradient": ((), False),
    "training_on_cpu": ((), True),
    "conversion": ((), True),
    "deep_networks": ((), False),
    "testing_your_implementation": (("torch",), False),
    "recurrent_synaptic": ((), True),
    "own_data": (("nir",), False),
}


def test_every_example_is_listed():
    assert {p.stem for p in EXAMPLES.glob("*.py")} == set(NEEDS)


@pytest.mark.parametrize("name", sorted(NEEDS))
def test_example_runs_and_its_lessons_hold(name, tmp_path):
    extras, data = NEEDS[name]
    for module in ("matplotlib",) + extras:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{name} needs {module} ({install_hint(module)})")
    env = dict(os.environ)
    if data:
        env["EVENTSIM_DATA"] = str(data_root())
    out = tmp_path / "figures"
    run = subprocess.run([sys.executable, str(EXAMPLES / f"{name}.py"), "--out", str(out)],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, f"{name} failed:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    pngs = sorted(out.glob("*.png"))
    assert pngs, f"{name} wrote no figure into {out}"
    assert all(p.stat().st_size > 10_000 for p in pngs), [p.name for p in pngs if p.stat().st_size <= 10_000]
