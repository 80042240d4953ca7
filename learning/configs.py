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

    Configs come from files (checkpoints, ``prepared.json``) as well as from
    code, so any JSON value may stand where a name or an argument belongs.

    Raises
    ------
    OptionError
        A config that is not a name or an object, an unknown name (the
        message lists the known ones), arguments the constructor does not
        take, or argument values it cannot use (a list for a number: the
        TypeError or ValueError of NumPy inside the constructor).
    """
    if not isinstance(config, (str, Mapping)):
        raise OptionError(f"a {what} is given by its name or a config object, got {type(config).__name__}")
    cfg = {"name": config} if isinstance(config, str) else dict(config)
    name = cfg.pop("name", None)
    if not isinstance(name, str) or name not in registry:
        raise OptionError(f"unknown {what} {name!r}; choose one of {', '.join(map(repr, registry))}")
    try:
        return registry[name](**cfg)
    except OptionError:
        raise
    except (TypeError, ValueError) as exc:
        raise OptionError(f"{what} {name!r}: {exc}") from None
