"""Objects from their JSON-ready configurations.

Rules, surrogates, losses, optimizers and schedules each describe themselves
with ``config()`` (a dict with a ``"name"`` and the constructor's arguments)
and are rebuilt from it, or from their bare name, by :func:`from_config`,
which is how checkpoints and the command line name them.
"""

from __future__ import annotations

from typing import Mapping, TypeVar

from eventsim.errors import OptionError

T = TypeVar("T")


def from_config(what: str, registry: Mapping[str, type[T]], config: dict | str) -> T:
    """Build ``registry[name](**arguments)`` from a name or a config dict.

    Raises
    ------
    OptionError
        An unknown name (the message lists the known ones) or arguments the
        constructor does not take.
    """
    cfg = {"name": config} if isinstance(config, str) else dict(config)
    name = cfg.pop("name", None)
    if name not in registry:
        raise OptionError(f"unknown {what} {name!r}; choose one of {', '.join(map(repr, registry))}")
    try:
        return registry[name](**cfg)
    except TypeError as exc:
        raise OptionError(f"{what} {name!r}: {exc}") from None
