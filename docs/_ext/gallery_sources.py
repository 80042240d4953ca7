"""The examples as a sphinx-gallery: sources, arguments, figures and order.

The examples in ``examples/`` are percent-format scripts whose text cells
are Markdown (``# %% [markdown]``), which sphinx-gallery cannot read as they
are: it wants a module docstring with a reStructuredText title and
reStructuredText text blocks. :func:`write_gallery_sources` writes a copy of
each example in sphinx-gallery's format that differs only in its text: the
first cell's heading becomes the docstring's title, and every Markdown cell
is wrapped in the ``markdown`` directive (``markdown_block.py``), so the text
renders exactly as written. The code cells are copied unchanged, and the
page's download link serves the original script (:func:`serve_original_scripts`).

The examples write their figures as PNG files into ``--out DIR`` and close
them, so sphinx-gallery's matplotlib scraper sees none: :data:`EXAMPLE_ARGV`
gives every run an empty folder and :data:`SAVED_FIGURES` shows, after each
code block, the files the block wrote there.
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from pathlib import Path

from sphinx.application import Sphinx
from sphinx.errors import ExtensionError

_MARKDOWN_CELL = "# %% [markdown]"
_CODE_CELL = "# %%"
# "## 1. One neuron: integrate, leak, fire, reset — `one_neuron.py`"
_README_ENTRY = re.compile(r"^##\s.*`(?P<name>\w+)\.py`\s*$", re.MULTILINE)
_HEADING = re.compile(r"^(?P<hashes>#{1,6})\s")
#: The examples: docs/_ext/ -> the repository's examples/.
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def percent_cells(source: str, path: Path) -> list[tuple[str, list[str]]]:
    """Split a percent-format script into ``("markdown" | "code", lines)`` cells.

    Markdown cells lose their comment prefix (``# `` or a bare ``#``); code
    cells are kept line for line. Text before the first cell marker would be
    dropped by the gallery, so a script that has any is refused.
    """
    cells: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.rstrip() == _MARKDOWN_CELL:
            cells.append(("markdown", []))
        elif line.rstrip() == _CODE_CELL:
            cells.append(("code", []))
        elif not cells:
            if line.strip():
                raise ExtensionError(f"{path}: text before the first '# %%' cell; "
                                     "start the file with a cell marker")
        elif cells[-1][0] == "markdown":
            if line and not line.startswith("#"):
                raise ExtensionError(f"{path}: a Markdown cell holds a line that is not "
                                     f"a comment: {line!r}")
            cells[-1][1].append(line[2:] if line.startswith("# ") else line[1:])
        else:
            cells[-1][1].append(line)
    return cells


def _raise_headings(lines: list[str]) -> list[str]:
    """Headings one level up (``##`` -> ``#``): each block is parsed as a
    document of its own, which must start at level 1; it is placed under the
    page title, so it renders at the level it was written at."""
    raised, fenced = [], False
    for line in lines:
        if line.lstrip().startswith("```"):
            fenced = not fenced
        match = None if fenced else _HEADING.match(line)
        raised.append(line[1:] if match and len(match["hashes"]) > 1 else line)
    return raised


def _markdown_directive(lines: list[str]) -> list[str]:
    body = ["   " + line if line.strip() else "" for line in _raise_headings(lines)]
    return [".. markdown::", ""] + body


def gallery_source(path: Path, thumbnail: str | None) -> str:
    """The example at ``path`` in sphinx-gallery's format.

    ``thumbnail``: an image, relative to the documentation's source folder,
    shown in the gallery's index whether or not the examples are run.
    """
    source = path.read_text(encoding="utf-8")
    cells = percent_cells(source, path)
    if not cells or cells[0][0] != "markdown" or not cells[0][1] or not cells[0][1][0].startswith("# "):
        raise ExtensionError(f"{path}: the first cell must be Markdown starting with the title "
                             "('# %% [markdown]', then '# # Title')")
    title = cells[0][1][0][2:].strip()
    docstring = [title, "=" * len(title), ""] + _markdown_directive(cells[0][1][1:])
    text = "\n".join(docstring)
    if '"""' in text:
        raise ExtensionError(f"{path}: the first Markdown cell contains three double quotes, "
                             "which cannot go into the docstring")
    out = ['r"""', text, '"""', ""]
    # The setting goes into the first code cell, which shows nothing of it
    # (remove_config_comments); alone, it would show as an empty cell.
    setting = [] if thumbnail is None else [f"# sphinx_gallery_thumbnail_path = {thumbnail!r}"]
    for kind, lines in cells[1:]:
        if kind == "markdown":
            # The blank line ends the text block: sphinx-gallery reads every
            # comment line that follows as text, the next "# %%" included.
            out += ["# %%"] + [("# " + line).rstrip() for line in _markdown_directive(lines)] + [""]
        else:
            # A blank line after the marker: comment lines right after it
            # would otherwise be read as a text block.
            out += ["# %%", ""] + setting + lines
            setting = []
    return "\n".join(out) + "\n"


def write_gallery_sources(out: Path, src_dir: Path, header: str) -> None:
    """Write every ``examples/*.py`` in sphinx-gallery's format into ``out``,
    with ``header`` (reStructuredText) as the gallery's introduction.

    Each example's thumbnail is its summary figure ``examples/gallery/<name>.png``
    where there is one. A file already holding the same text is left alone:
    sphinx-gallery re-runs an example whose source has changed, and only those.
    """
    out.mkdir(parents=True, exist_ok=True)
    wanted = {"GALLERY_HEADER.rst": header}
    for path in sorted(EXAMPLES.glob("*.py")):
        figure = EXAMPLES / "gallery" / f"{path.stem}.png"
        thumbnail = Path(os.path.relpath(figure, src_dir)).as_posix() if figure.is_file() else None
        wanted[path.name] = gallery_source(path, thumbnail)
    for stale in {p.name for p in out.iterdir() if p.is_file()} - set(wanted):
        (out / stale).unlink()
    for name, text in wanted.items():
        target = out / name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")


class ExampleOrder:
    """sphinx-gallery's ``within_subsection_order``: the order of ``examples/README.md``
    (its ``## ... `name.py``` headings), then any other example by name.
    sphinx-gallery makes one per gallery folder, ``src_dir``."""

    def __init__(self, src_dir: str) -> None:
        readme = EXAMPLES / "README.md"
        text = readme.read_text(encoding="utf-8") if readme.is_file() else ""
        self.order = [match["name"] for match in _README_ENTRY.finditer(text)]

    def __call__(self, filename: str) -> tuple[int, str]:
        stem = Path(filename).stem
        return (self.order.index(stem) if stem in self.order else len(self.order), stem)

    def __repr__(self) -> str:
        return "ExampleOrder"


class ExampleArgv:
    """sphinx-gallery's ``reset_argv``: ``--out eventsim-figures/<name>``, the
    folder a user's run writes to (relative to the folder the example runs
    in), emptied first so that only this run's figures are found there."""

    def __call__(self, gallery_conf: dict, script_vars: dict) -> list[str]:
        folder = figures_folder(script_vars["src_file"])
        shutil.rmtree(folder, ignore_errors=True)
        return ["--out", folder.relative_to(Path(script_vars["src_file"]).parent).as_posix()]

    def __repr__(self) -> str:
        return "ExampleArgv"


def figures_folder(src_file: str) -> Path:
    """Where the example ``src_file`` writes its figures during the build."""
    return Path(src_file).parent / "eventsim-figures" / Path(src_file).stem


class SavedFigures:
    """sphinx-gallery image scraper: the PNG files a code block has written
    into the example's figure folder, shown below the block in the order
    they were written."""

    def __init__(self) -> None:
        self.shown: dict[Path, int] = {}

    def __call__(self, block, block_vars: dict, gallery_conf: dict) -> str:
        from sphinx_gallery.scrapers import figure_rst

        folder = figures_folder(block_vars["src_file"])
        written = [p for p in folder.glob("*.png") if self.shown.get(p) != p.stat().st_mtime_ns]
        written.sort(key=lambda p: p.stat().st_mtime_ns)
        images = []
        for png in written:
            self.shown[png] = png.stat().st_mtime_ns
            image = next(block_vars["image_path_iterator"])
            shutil.copyfile(png, image)
            images.append(image)
        return figure_rst(images, gallery_conf["src_dir"])

    def __repr__(self) -> str:
        return "SavedFigures"


EXAMPLE_ARGV = ExampleArgv()
SAVED_FIGURES = SavedFigures()


def serve_original_scripts(app: Sphinx) -> None:
    """Put each original example where the gallery's download links point
    (the script and its zip), in place of its sphinx-gallery copy: the two
    differ only in how the text is marked up."""
    target = Path(app.srcdir) / app.config.sphinx_gallery_conf["gallery_dirs"]
    for path in EXAMPLES.glob("*.py"):
        if (target / path.name).is_file():
            shutil.copyfile(path, target / path.name)
            with zipfile.ZipFile(target / f"{path.stem}.zip", "w", zipfile.ZIP_DEFLATED) as archive:
                archive.write(path, path.name)
