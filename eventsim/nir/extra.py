"""The optional ``nir`` package, imported only where it is needed."""

from __future__ import annotations

from types import ModuleType


def require_nir() -> ModuleType:
    """Import and return ``nir``, or raise ImportError naming the extra to install."""
    try:
        import nir
    except ImportError as exc:
        raise ImportError('NIR support needs the nir package: pip install -e ".[nir]"') from exc
    return nir
