"""Hook specifications: the whole plugin interface of the studio, in one module.

Plugins implement these with ``@studio.hookimpl``. Every hook is documented in
docs/hooks.md; a test keeps that reference complete. Grouped by purpose:

Contributions
    :func:`register_generators`, :func:`register_trainers`
"""

from __future__ import annotations

from collections.abc import Callable

import pluggy

PROJECT = "studio"

#: The plugin API's version (semver). A plugin declares the range it supports in a module
#: attribute, ``studio_api = ">=1.0,<2"``; the host refuses a plugin whose range excludes this.
API_VERSION = "1.0.0"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


# --- contributions -------------------------------------------------------------------------


@hookspec
def register_generators(register: Callable[[type], None]) -> None:
    """Contribute generators: call ``register(GeneratorClass)`` once per class.

    :param register: takes a :class:`studio.Generator` subclass. Its metadata (id, name, modality,
        task, default model, Options) is read from the class; nothing is instantiated and no
        model library may be imported here.
    """


@hookspec
def register_trainers(register: Callable[[type], None]) -> None:
    """Contribute fine-tuning trainers: call ``register(TrainerClass)`` once per class.

    :param register: takes a :class:`studio.Trainer` subclass, read at class level like
        generators.
    """
