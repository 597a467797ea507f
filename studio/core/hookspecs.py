"""Hook specifications: the whole plugin interface of the studio, in one module.

Plugins implement these with ``@studio.hookimpl``; the host calls them through pluggy, one plugin
at a time (:mod:`studio.core.plugins`). Every hook is documented in docs/hooks.md; a test keeps
that reference complete. Grouped by purpose:

Contributions
    :func:`register_generators`, :func:`register_trainers`
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from studio.core.generator import Generator
    from studio.core.training import Trainer

PROJECT = "studio"

#: The plugin API's version (semver: the major number changes when a plugin written for the
#: previous one could break). A plugin declares the range it supports in a module attribute,
#: ``studio_api = ">=1.0,<2"`` (a PEP 440 specifier set); the host refuses a plugin whose range
#: excludes this version, or that declares none, before any of its hooks runs.
API_VERSION = "1.0.0"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- contributions -------------------------------------------------------------------------


@hookspec
def register_generators(register: Callable[[type[Generator]], None]) -> None:
    """Contribute generators: call ``register(GeneratorClass)`` once per class.

    :param register: takes a :class:`studio.Generator` subclass. Its metadata (id, name, modality,
        task, default model, uses_model, Options) is read from the class and checked; nothing is
        instantiated and no model library may be imported here. Raises
        :class:`studio.PluginError` for a class it refuses (bad metadata, an id another plugin
        registered first).
    """


@hookspec
def register_trainers(register: Callable[[type[Trainer]], None]) -> None:
    """Contribute fine-tuning trainers: call ``register(TrainerClass)`` once per class.

    :param register: takes a :class:`studio.Trainer` subclass, read and checked at class level
        like generators (ids are unique across generators and trainers).
    """
