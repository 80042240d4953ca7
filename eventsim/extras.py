"""Optional dependencies and the command that installs them.

eventsim's core needs numpy, numba, scipy and h5py; plotting, PyTorch
candidates, NIR, snnTorch, tonic and the oracle kit's hypothesis are
*extras*, imported only inside the functions that need them. When one is
missing, the error says what to type, and that depends on how eventsim was
installed: from a checkout in editable mode (``pip install -e ".[plot]"``,
run in the checkout) or as a package (``pip install "eventsim[plot]"``).
Telling a package user to run an editable install in a folder they do not
have is a dead end, so the install mode is read from the package metadata
(PEP 610's ``direct_url.json``).
"""

from __future__ import annotations

import importlib
import json
from importlib import metadata
from types import ModuleType

from eventsim.errors import MissingExtraError

#: The extra of eventsim (pyproject.toml, [project.optional-dependencies]) that installs each optional module.
EXTRAS = {
    "matplotlib": "plot",
    "torch": "torch",
    "nir": "nir",
    "nirtorch": "snntorch",
    "snntorch": "snntorch",
    "tonic": "tonic",
    "hypothesis": "test",
    "dask": "cluster",
    "distributed": "cluster",
    "neurobench": "neurobench",
}
#: Optional modules that no extra installs, with how to install them.
OTHERS = {
    # Norse pins old torch versions; without --no-deps pip would downgrade the torch eventsim tests against.
    "norse": 'pip install --no-deps norse nirtorch (docs/conventions.md, "Installing Norse")',
    # These frameworks' requirements also replace the CPU torch (or pull hardware libraries);
    # on CPU they import with torch and the few packages named (docs/conformance.md).
    "sinabs": "pip install --no-deps sinabs==3.1.3 pbr (docs/conformance.md)",
    "spikingjelly": "pip install --no-deps spikingjelly==2.0.0 loguru (docs/conformance.md)",
    "rockpool": "pip install --no-deps rockpool==3.1.0 (docs/conformance.md)",
}


def from_checkout() -> bool:
    """Whether eventsim runs from a source checkout: an editable install, or not installed at all.

    Every installed copy on ``sys.path`` is looked at, because a checkout
    also holds the ``eventsim.egg-info`` of its build, which has no
    ``direct_url.json`` and would pass for a package install. Not installed
    means imported from a source tree on ``sys.path``, where the checkout's
    command is the one that works. Metadata that cannot be read counts as a
    package install: its command works anywhere.
    """
    found = False
    for dist in metadata.distributions(name="eventsim"):
        found = True
        try:
            if json.loads(dist.read_text("direct_url.json") or "{}")["dir_info"]["editable"] is True:
                return True
        except (ValueError, TypeError, KeyError):
            continue
    return not found


def install_command(extra: str) -> str:
    """The pip command that installs the extra ``extra`` of eventsim, for how eventsim was installed."""
    return f'pip install -e ".[{extra}]"' if from_checkout() else f'pip install "eventsim[{extra}]"'


def install_hint(module: str) -> str | None:
    """How to install the optional module ``module`` (or the package it belongs to); None if it is not optional."""
    top = module.partition(".")[0]
    if top in EXTRAS:
        return install_command(EXTRAS[top])
    return OTHERS.get(top)


def require(module: str, purpose: str) -> ModuleType:
    """Import and return ``module``, or raise MissingExtraError saying what ``purpose`` needs and how to install it.

    ``purpose`` names what needs it (``"eventsim plot"``, ``"TorchCandidate"``).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        missing = missing_extra(exc, purpose)
        if missing is None:  # a module of the extra is there but broken: that is not "not installed"
            raise
        raise missing from exc


def missing_extra(exc: ImportError, purpose: str = "this") -> MissingExtraError | None:
    """The MissingExtraError for ``exc`` when it is an optional module that is not installed, else None.

    Only a module that could not be found counts (``exc.name``, set by the
    import system); an ImportError from inside an installed package is a
    broken installation or a bug, and stays as it is.
    """
    if isinstance(exc, MissingExtraError):
        return exc
    name = getattr(exc, "name", None)
    hint = install_hint(name) if isinstance(exc, ModuleNotFoundError) and name else None
    if hint is None:
        return None
    return MissingExtraError(f"{purpose} needs {name.partition('.')[0]}, which is not installed: {hint}")
