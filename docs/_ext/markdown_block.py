"""The ``markdown`` directive: a block of MyST Markdown inside a reStructuredText page.

sphinx-gallery writes reStructuredText, while the examples' text cells are
Markdown; this directive lets those cells render with the same parser as the
rest of the site instead of being translated. It does what docutils' own
``include`` directive does with a ``:parser:`` option (parse into a fresh
document, hand back its nodes), for text given inline rather than in a file.
"""

from __future__ import annotations

from docutils import nodes
from docutils.utils import new_document
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective


class MarkdownBlock(SphinxDirective):
    """``.. markdown::`` followed by an indented block of Markdown."""

    has_content = True

    def run(self) -> list[nodes.Node]:
        from myst_parser.parsers.sphinx_ import MystParser

        document = new_document(self.get_source_info()[0], self.state.document.settings)
        MystParser().parse("\n".join(self.content), document)
        return document.children


def setup(app: Sphinx) -> dict:
    app.add_directive("markdown", MarkdownBlock)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
