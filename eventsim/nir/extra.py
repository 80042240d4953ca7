"""The optional ``nir`` package, imported only where it is needed."""

from __future__ import annotations

from types import ModuleType

from eventsim.extras import require


def require_nir() -> ModuleType:
    """Import and return ``nir``, or raise MissingExtraError naming the extra to install."""
    return require("nir", "NIR support")
