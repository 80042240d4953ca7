"""The README's examples run as written (the data example only where the data is)."""

import importlib.util
import pathlib
import re


from shared_data import data_root

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_examples_run(monkeypatch, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "the README has no python example"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # caches the examples write stay in the test's folder
    if importlib.util.find_spec("torch") is None:  # the oracle-kit example runs the torch extra's candidate
        blocks = [code for code in blocks if "TorchCandidate" not in code]
    needs_data = [code for code in blocks if "NMNIST(" in code]
    for code in [code for code in blocks if code not in needs_data] + needs_data:
        if code in needs_data:
            monkeypatch.setenv("EVENTSIM_DATA", str(data_root()))  # skips here when the data is missing
        exec(compile(code, str(README), "exec"), {"__name__": "readme"})
