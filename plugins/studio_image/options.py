"""Options of the three image generators: the one description the CLI and the GUI form read.

Fields left at ``None`` mean "the model's own default", resolved when the model is loaded (the
native size differs by family: SD 1.x 512, SD 2.x 768, SDXL 1024; distilled models want few steps
and no guidance). The run records the resolved values (``ctx.record_options``), so the
artifact's recipe and its A1111 ``parameters`` text show the numbers really used, and
``regenerate`` replays them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from studio import BaseOptions
from studio_image.schedulers import SchedulerName

#: Largest side accepted (VAE tiling keeps the decoder within memory up to this size).
MAX_SIDE = 4096
MIN_SIDE = 64


class TextToImageOptions(BaseOptions):
    """Options of text-to-image (and the base of the two image-conditioned generators)."""

    negative_prompt: str = Field(
        "",
        max_length=20000,
        description="What the image should not show. Same syntax as the prompt.",
        json_schema_extra={"widget": "multiline"},
    )
    width: int | None = Field(
        None,
        ge=MIN_SIDE,
        le=MAX_SIDE,
        multiple_of=8,
        description="Image width in pixels, a multiple of 8. Empty: the model's native size "
        "(SD 1.x 512, SD 2.x 768, SDXL 1024; for image-to-image and inpainting, the init "
        "image's size rounded down to a multiple of 8).",
    )
    height: int | None = Field(
        None,
        ge=MIN_SIDE,
        le=MAX_SIDE,
        multiple_of=8,
        description="Image height in pixels, a multiple of 8. Empty: as for width.",
    )
    steps: int | None = Field(
        None,
        ge=1,
        le=500,
        description="Denoising steps. Empty: 25, or 4-8 for distilled models (Turbo, "
        "Lightning, LCM, Schnell, as named in the model reference).",
    )
    guidance_scale: float | None = Field(
        None,
        ge=0.0,
        le=50.0,
        description="Classifier-free guidance (CFG scale): how strictly the prompt is followed. "
        "Empty: the model family's default (SD 7.5, SDXL 5.0; 0 for Turbo/Lightning).",
        json_schema_extra={"widget": "slider"},
    )
    scheduler: SchedulerName = Field(
        "default",
        description="Sampler. 'default' keeps the scheduler the model ships with (right for "
        "distilled models); the others are built from the model's scheduler configuration.",
    )
    batch_size: int = Field(
        1,
        ge=1,
        le=16,
        description="Images per run. Image i uses seed + i, so each one can be regenerated alone.",
    )
    clip_skip: int | None = Field(
        None,
        ge=1,
        le=12,
        description="CLIP layers to skip, A1111 convention: 1 = the last layer (no skip), "
        "2 = the one before (common for anime models). Empty: the model's default. SD/SDXL only.",
    )
    prompt_weighting: bool = Field(
        True,
        description="Read emphasis syntax in prompts: (word) x1.1, [word] /1.1, (word:1.3) "
        "sets a weight, BREAK starts a new 75-token chunk. Off: brackets are plain text.",
    )
    preview_every: int = Field(
        1,
        ge=0,
        le=1000,
        description="Show a preview every N denoising steps (a cheap latent-to-RGB "
        "approximation); 0 turns previews off.",
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto",
        description="Number format of the weights. auto: float32 on CPU, float16 on Apple MPS, "
        "bfloat16 (or float16 where unsupported) on CUDA.",
    )
    vae_tiling: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Decode the image in tiles to save memory. auto: on when the image is more "
        "than twice the model's native area.",
    )
    checkpoint_config: str | None = Field(
        None,
        description="For single-file .safetensors checkpoints only: a hub id or a local "
        "diffusers folder whose configuration describes the checkpoint. Empty: the base model "
        "inferred from the checkpoint, read from the hub cache (downloaded once, configs only, "
        "when not offline).",
    )


class _InitImage(BaseOptions):
    init_image: Path = Field(
        ...,
        description="The starting image (PNG, JPEG, WebP...). RGB, greyscale, palette and "
        "16-bit images are converted to 8-bit RGB; CMYK is refused (export it as RGB).",
        json_schema_extra={"widget": "image"},
    )
    transparent: Literal["white", "black", "error"] = Field(
        "white",
        description="What to do with transparent pixels in the init image: flatten onto white "
        "or black, or refuse the image.",
    )
    strength: float = Field(
        0.75,
        gt=0.0,
        le=1.0,
        description="How much the init image is changed: 0 keeps it, 1 replaces it. "
        "Only strength x steps denoising steps run.",
        json_schema_extra={"widget": "slider"},
    )


class ImageToImageOptions(TextToImageOptions, _InitImage):
    """Options of image-to-image: text-to-image's plus the init image and the strength."""


class _Mask(BaseOptions):
    mask_image: Path = Field(
        ...,
        description="The mask, the same size as the init image: white = repaint, black = keep "
        "(read as greyscale).",
        json_schema_extra={"widget": "mask"},
    )
    mask_blur: int = Field(
        0,
        ge=0,
        le=64,
        description="Blur radius (pixels) applied to the mask edge, for a softer transition.",
    )


class InpaintingOptions(TextToImageOptions, _Mask, _InitImage):
    """Options of inpainting: the init image, a mask of the same size, the strength."""

    strength: float = Field(
        1.0,
        gt=0.0,
        le=1.0,
        description="How much the masked area is changed: 1 repaints it from noise.",
        json_schema_extra={"widget": "slider"},
    )
