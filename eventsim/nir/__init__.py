"""NIR (Neuromorphic Intermediate Representation) import and export.

:func:`to_nir` / :func:`save` write an eventsim network as a NIR graph,
:func:`from_nir` / :func:`load` read one, with NIR's continuous-time neuron
parameters mapped to eventsim's discrete step by forward Euler of step
``dt`` (:mod:`eventsim.nir.euler`). eventsim -> NIR -> eventsim gives back
the same network, bit for bit. :mod:`eventsim.nir.run_file` is the file
interface of ``eventsim run``. docs/nir.md states the mapping, the
conventions it implies and what is not supported.

Needs the ``nir`` package (``pip install -e ".[nir]"``), imported only when
one of these functions is called.
"""

from eventsim.nir.export import to_nir
from eventsim.nir.files import load, read_graph, save
from eventsim.nir.importer import from_nir, import_graph

__all__ = ["from_nir", "import_graph", "load", "read_graph", "save", "to_nir"]
