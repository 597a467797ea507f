"""The testing kit's plugin: the fake generators and trainer of :mod:`studio.testing.fakes`.

Register it in a test with ``studio.plugins.register(fake_plugin)`` (or the ``studio_app`` fixture,
which does so). It is never loaded through entry points, so users never see it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from studio import __version__ as __version__
from studio import hookimpl
from studio.testing import fakes

if TYPE_CHECKING:
    from studio.core.studio import Studio

#: Name the testing kit registers this plugin under.
PLUGIN_NAME = "studio-fakes"
#: the plugin API versions this plugin works with.
studio_api = ">=1.0,<2"


@hookimpl
def register_generators(register: Callable[[type], None]) -> None:
    """Contribute every fake generator."""
    for cls in fakes.GENERATORS:
        register(cls)


@hookimpl
def register_trainers(register: Callable[[type], None]) -> None:
    """Contribute the fake trainer."""
    for cls in fakes.TRAINERS:
        register(cls)


def open_fake_studio(home: Path, *, start: bool = True) -> Studio:
    """A studio on ``home`` with only this fake plugin; ``start=False`` leaves the worker idle."""
    import sys

    from studio.core.studio import Studio

    app = Studio.open(home, load_plugins=False, start_workers=False)
    app.plugins.register(sys.modules[__name__])
    if start:
        app.start()
    return app
