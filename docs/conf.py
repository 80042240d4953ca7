"""Sphinx configuration of eventsim's documentation site.

Build: ``python -m sphinx -W --keep-going -b html docs docs/_build/html``
(the ``docs`` extra). The gallery runs the examples, which read the data
folder (``EVENTSIM_DATA``) and need the ``plot`` and ``torch`` extras; add
``-D plot_gallery=0`` to build it from the code alone (tests/test_docs_site.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS / "_ext"))

import eventsim  # noqa: E402  (after the path: autodoc imports it anyway)
from gallery_sources import serve_original_scripts, write_gallery_sources  # noqa: E402

project = "eventsim"
author = "eventsim contributors"
copyright = "eventsim contributors"
release = version = eventsim.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "markdown_block",
    "public_names",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "_templates"]
templates_path = ["_templates"]

# The Markdown pages: headings get anchors, so that "page.md#section" links resolve.
myst_heading_anchors = 3

# The API reference: one page per module (docs/_templates/autosummary/module.rst).
autosummary_generate = True
autosummary_ignore_module_all = False  # a package's page lists exactly its __all__
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "none"  # numpydoc's "Parameters" already give the types
numpydoc_show_class_members = False  # autodoc documents the members
numpydoc_class_members_toctree = False

# The gallery: the examples, converted to sphinx-gallery's format on each
# build (docs/_ext/gallery_sources.py), run, their saved figures shown.
GALLERY_SOURCES = DOCS / "_build" / "gallery-sources"
sphinx_gallery_conf = {
    "examples_dirs": str(GALLERY_SOURCES),
    "gallery_dirs": "gallery",
    "filename_pattern": r".*\.py$",  # every example runs (when the gallery runs)
    "within_subsection_order": "gallery_sources.ExampleOrder",
    "reset_argv": "gallery_sources.EXAMPLE_ARGV",
    "image_scrapers": ("gallery_sources.SAVED_FIGURES",),
    "notebook_extensions": set(),  # the scripts open as notebooks themselves (percent cells)
    "download_all_examples": False,
    "remove_config_comments": True,
    "show_memory": False,
    "min_reported_time": 10**9,  # no per-example timing line on the pages
}
# The label lets the README's link to examples/README.md land on the gallery.
GALLERY_HEADER = """\
.. _examples/README.md:

Examples
========

Spiking networks explained with eventsim: each example is a script that runs
on a laptop CPU in seconds, asserts the facts it teaches (closed forms,
gradients, a planted bug found) and writes its figures. Run one with
``python examples/<name>.py [--out DIR] [--data DIR]``; the examples that read
N-MNIST or MNIST find them in the data folder (``--data``, else the
``EVENTSIM_DATA`` variable).
"""

html_theme = "pydata_sphinx_theme"
html_title = f"eventsim {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "header_links_before_dropdown": 6,
    "show_toc_level": 2,
    "secondary_sidebar_items": ["page-toc"],
}
html_show_sourcelink = False


def _write_gallery_sources(app) -> None:
    write_gallery_sources(GALLERY_SOURCES, DOCS, GALLERY_HEADER)


def setup(app) -> None:
    # Before sphinx-gallery reads the sources (its builder-inited handler has priority 500).
    app.connect("builder-inited", _write_gallery_sources, priority=100)
    app.connect("builder-inited", serve_original_scripts, priority=900)
