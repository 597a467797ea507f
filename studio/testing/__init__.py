"""The studio's testing kit: contract test mixins, helpers to run jobs, fixtures, fakes.

Registered as a pytest plugin (``pytest11`` entry point ``studio``), so third-party plugin authors
get the same fixtures (``studio_home``, ``hub_cache``, ``fake_hub``, ``studio_app``,
``register_plugin``; see :mod:`studio.testing.pytest_plugin`). A plugin's tests import the kit
from here::

    from studio.testing import GeneratorContract, TrainerContract, run_generator, run_trainer

The names below are imported on first use, so that importing this package (which pytest does in
every test run of every project that has aigc-studio installed) stays cheap. Nothing in the kit
imports a model library at import time; the tiny-model factories (``studio.testing.models_*``)
import them inside their functions.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from studio.testing.contract import (
        BAD_FILES,
        GeneratorContract,
        GeneratorRunFailed,
        RunFailed,
        TrainerContract,
        TrainerRunFailed,
        adapter_content,
        artifact_content,
        ensure_registered,
        invalid_value,
        registered,
        run_generator,
        run_trainer,
    )
    from studio.testing.dists import forget_modules, make_distribution, pythonpath_with
    from studio.testing.fake_hub import FakeHub
    from studio.testing.fake_plugin import open_fake_studio
    from studio.testing.fakes import EventRecorder, wait_until
    from studio.testing.hub import save_to_hub_cache
    from studio.testing.pytest_plugin import StudioEnv

#: public name -> the kit module that defines it
_EXPORTS = {
    "BAD_FILES": "contract",
    "GeneratorContract": "contract",
    "GeneratorRunFailed": "contract",
    "RunFailed": "contract",
    "TrainerContract": "contract",
    "TrainerRunFailed": "contract",
    "adapter_content": "contract",
    "artifact_content": "contract",
    "ensure_registered": "contract",
    "invalid_value": "contract",
    "registered": "contract",
    "run_generator": "contract",
    "run_trainer": "contract",
    "forget_modules": "dists",
    "make_distribution": "dists",
    "pythonpath_with": "dists",
    "FakeHub": "fake_hub",
    "open_fake_studio": "fake_plugin",
    "EventRecorder": "fakes",
    "wait_until": "fakes",
    "save_to_hub_cache": "hub",
    "StudioEnv": "pytest_plugin",
}

__all__ = [
    "BAD_FILES",
    "EventRecorder",
    "FakeHub",
    "GeneratorContract",
    "GeneratorRunFailed",
    "RunFailed",
    "StudioEnv",
    "TrainerContract",
    "TrainerRunFailed",
    "adapter_content",
    "artifact_content",
    "ensure_registered",
    "forget_modules",
    "invalid_value",
    "make_distribution",
    "open_fake_studio",
    "pythonpath_with",
    "registered",
    "run_generator",
    "run_trainer",
    "save_to_hub_cache",
    "wait_until",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
