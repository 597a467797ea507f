"""Built-in image plugin: text-to-image, image-to-image and inpainting with diffusers.

Registered through the ``studio.plugins`` entry point (``image = "studio_image"``) like any
third-party plugin, using only studio's public API. Importing it imports no model library: torch,
diffusers, transformers and peft load inside ``run``.

Modules: ``generators`` (the three generators), ``options`` (their Options), ``schedulers`` (the
curated sampler list), ``prompts`` (emphasis syntax, long prompts in chunks), ``lora``
(adapters), ``previews`` (latent-to-RGB previews), ``images`` (init image and mask checks and
conversions), ``loading`` (pipelines from folders, hub ids and single files; device placement),
``families`` (per-family defaults), ``running`` (the pipeline call with events and cancel).
"""

from __future__ import annotations

from collections.abc import Callable

from studio import hookimpl

from .generators import DEFAULT_MODEL, GENERATORS, ImageToImage, Inpainting, TextToImage
from .options import ImageToImageOptions, InpaintingOptions, TextToImageOptions

__version__ = "0.1.0"
#: the plugin API versions this plugin works with (checked by the studio at load).
studio_api = ">=1.0,<2"

__all__ = [
    "DEFAULT_MODEL",
    "ImageToImage",
    "ImageToImageOptions",
    "Inpainting",
    "InpaintingOptions",
    "TextToImage",
    "TextToImageOptions",
    "__version__",
    "register_generators",
]


@hookimpl
def register_generators(register: Callable[[type], None]) -> None:
    """Contribute the three image generators."""
    for cls in GENERATORS:
        register(cls)
