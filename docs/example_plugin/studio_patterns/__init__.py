"""studio-patterns: an example aigc-studio plugin (see the plugin guide, docs/plugins.md).

The studio imports this module through the ``studio.plugins`` entry point and calls its hook
implementations. Keep it light: it runs whenever the studio starts or lists plugins, so numpy,
Pillow and any model library are imported inside ``run``, never here.
"""

from __future__ import annotations

from collections.abc import Callable

from studio import Generator, Trainer, hookimpl
from studio_patterns.generator import PatternGenerator
from studio_patterns.trainer import PaletteTrainer

__version__ = "0.1.0"

#: The studio API versions this plugin works with (PEP 440); checked before it registers.
studio_api = ">=1.0,<2"


@hookimpl
def register_generators(register: Callable[[type[Generator]], None]) -> None:
    """Contribute the pattern generator."""
    register(PatternGenerator)


@hookimpl
def register_trainers(register: Callable[[type[Trainer]], None]) -> None:
    """Contribute the palette trainer."""
    register(PaletteTrainer)
