"""The documentation site builds with warnings as errors.

The build runs on a copy of docs/, examples/ and README.md, so that the files
a build generates next to its sources (the API pages, the gallery) never mix
with those of a build of the real tree. The gallery is built without running
the examples (tests/test_examples.py runs them); CI builds the full site
(``python -m sphinx -W --keep-going -b html docs docs/_build/html``).
"""

from __future__ import annotations

import html
import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: What the build needs beyond the test extra (the ``docs`` extra), by module name.
DOCS_EXTRA = ("sphinx", "numpydoc", "myst_parser", "sphinx_gallery", "pydata_sphinx_theme")
GENERATED = ("_build", "gallery", "generated")


@pytest.mark.slow  # half a minute; .ci/run runs it, next to the full build of the site
def test_site_builds_without_warnings(tmp_path):
    missing = [module for module in DOCS_EXTRA if importlib.util.find_spec(module) is None]
    if missing:
        pytest.skip(f"the docs extra is not installed ({', '.join(missing)}): pip install -e \".[docs]\"")
    copy = tmp_path / "repo"
    shutil.copytree(ROOT / "docs", copy / "docs", ignore=shutil.ignore_patterns(*GENERATED))
    shutil.copytree(ROOT / "examples", copy / "examples", ignore=shutil.ignore_patterns("eventsim-figures"))
    shutil.copy(ROOT / "README.md", copy / "README.md")
    out = tmp_path / "html"
    build = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-D", "plot_gallery=0", str(copy / "docs"), str(out)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, f"the site has warnings:\n{build.stderr[-5000:]}"
    # Every kind of page is there: the landing page, a Markdown page, an API page, a gallery page.
    pages = ("index.html", "semantics.html", "api/generated/eventsim.layers.html", "gallery/one_neuron.html")
    for page in pages:
        assert (out / page).is_file(), page
    layers = (out / "api/generated/eventsim.layers.html").read_text(encoding="utf-8")
    assert 'id="eventsim.layers.LIF"' in layers, "the API page documents no LIF"
    # A name exported by a package links to the module that defines it.
    package = (out / "api/generated/eventsim.html").read_text(encoding="utf-8")
    assert 'href="eventsim.layers.html#eventsim.layers.LIF"' in package
    # The examples' Markdown cells render as Markdown: a "## " heading is a
    # section heading, and neither cell markers nor the directive show.
    heading = re.search(r"^# ## (.+)$", (ROOT / "examples/one_neuron.py").read_text(encoding="utf-8"), re.M)[1]
    example = (out / "gallery/one_neuron.html").read_text(encoding="utf-8")
    assert f"<h2>{html.escape(heading, quote=False)}<a" in example, f"'## {heading}' is not a heading"
    assert "%%" not in example and "markdown::" not in example
