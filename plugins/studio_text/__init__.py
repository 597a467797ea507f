"""Built-in text plugin: text generation with any transformers causal language model, and LoRA
training of such a model on the artist's text.

Registered through the ``studio.plugins`` entry point (``text = "studio_text"``) like any
third-party plugin. Importing it imports no model library: transformers, torch, peft and
accelerate load inside ``run``.
"""

from __future__ import annotations

from collections.abc import Callable

from studio import hookimpl

from .generator import DEFAULT_MODEL, TextGenerator
from .options import TextOptions
from .train_options import TextLoraOptions
from .trainer import TextLoraTrainer

__version__ = "0.1.0"
#: the plugin API versions this plugin works with (checked by the studio at load).
studio_api = ">=1.0,<2"

__all__ = [
    "DEFAULT_MODEL",
    "TextGenerator",
    "TextLoraOptions",
    "TextLoraTrainer",
    "TextOptions",
    "__version__",
    "register_generators",
    "register_trainers",
]


@hookimpl
def register_generators(register: Callable[[type], None]) -> None:
    """Contribute the text generator."""
    register(TextGenerator)


@hookimpl
def register_trainers(register: Callable[[type], None]) -> None:
    """Contribute the text LoRA trainer."""
    register(TextLoraTrainer)
