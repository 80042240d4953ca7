"""References to an object by the name users import it under.

Users write ``eventsim.LIF`` or ``eventsim.learning.Trainer``; the reference
documents each object once, in the module that defines it
(``eventsim.layers.LIF``). This resolves a Python reference that found no
target by importing the name and retrying with the names the object is
documented under: its defining module and qualified name, or, for data such
as ``eventsim.ENERGY_MODELS``, a documented module that holds the same object.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from docutils import nodes
from sphinx.addnodes import pending_xref
from sphinx.application import Sphinx
from sphinx.environment import BuildEnvironment

_NOTHING = object()
#: The package whose references are retried.
ROOT = "eventsim"


def _import(name: str) -> Any:
    """The object ``name`` (``package.module.attribute...``), or ``_NOTHING``."""
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        for attribute in parts[split:]:
            obj = getattr(obj, attribute, _NOTHING)
            if obj is _NOTHING:
                return _NOTHING
        return obj
    return _NOTHING


def documented_names(name: str) -> list[str]:
    """Other names ``name``'s object may be documented under, best first."""
    obj = _import(name)
    if obj is _NOTHING:
        return []
    names = []
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if isinstance(module, str) and isinstance(qualname, str):
        names.append(f"{module}.{qualname}")
    root, attribute = name.split(".")[0], name.rsplit(".", 1)[-1]
    names += [f"{held}.{attribute}" for held, mod in list(sys.modules.items())
              if held.startswith(root + ".") and getattr(mod, attribute, _NOTHING) is obj]
    return [candidate for candidate in names if candidate != name]


def resolve_public_name(app: Sphinx, env: BuildEnvironment, node: pending_xref,
                        contnode: nodes.TextElement) -> nodes.reference | None:
    """``missing-reference`` handler: retry a Python reference under the
    names its object is documented under."""
    if node.get("refdomain") != "py":
        return None
    target, module = node["reftarget"].lstrip(".~"), node.get("py:module")
    names = [target] if target.startswith(f"{ROOT}.") else []
    if module and module.startswith(ROOT):
        names.append(f"{module}.{target}")
    domain = env.get_domain("py")
    for candidate in (c for name in names for c in documented_names(name)):
        if candidate in domain.objects:
            return domain.resolve_xref(env, node["refdoc"], app.builder, node["reftype"],
                                       candidate, node, contnode)
    return None


def setup(app: Sphinx) -> dict:
    app.connect("missing-reference", resolve_public_name)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
