"""A texture generator that needs no model: seeded noise patterns, coloured by a palette.

It shows what every generator does (class-level metadata, Options, ``check``, ``run`` yielding
progress, previews and a result, cancel) and two things specific to it: it declares that it uses
no model, and it takes learned palettes (from :mod:`studio_patterns.trainer`) as adapters.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from studio import (
    BaseOptions,
    GenerationRun,
    Generator,
    ImageOutput,
    InvalidRequest,
    PluginEvent,
    Preview,
    Progress,
    Result,
)
from studio_patterns.palette import load_palette, palette_file

if TYPE_CHECKING:
    from studio import RunContext

Palette = Literal["auto", "sea", "ember", "forest", "dusk", "mono"]


class PatternOptions(BaseOptions):
    """What the user can set (``--set KEY=VALUE`` on the command line, a form in the window)."""

    pattern: Literal["clouds", "marble", "rings"] = Field(
        "clouds", description="The kind of texture: soft clouds, marble veins or wood rings."
    )
    width: int = Field(256, ge=16, le=2048, multiple_of=8, description="Width in pixels.")
    height: int = Field(256, ge=16, le=2048, multiple_of=8, description="Height in pixels.")
    scale: float = Field(
        4.0, ge=0.5, le=64.0, description="How many features across the image: larger is busier."
    )
    octaves: int = Field(
        5, ge=1, le=8, description="Layers of ever finer detail (one preview per layer)."
    )
    palette: Palette = Field(
        "auto", description="The colours; 'auto' picks one from the seed (the recipe keeps it)."
    )


class PatternGenerator(Generator[PatternOptions]):
    """Sums octaves of value noise (a preview after each), then colours the result."""

    id = "patterns"
    name = "Patterns"
    modality = "image"
    task = "texture"
    uses_model = False  # no weights: no model picker, no --model, "model": null in the recipe
    prompt_required = False  # the prompt is kept in the recipe, but the pattern ignores it
    supports_lora = True  # --lora PALETTE applies a palette learned by PaletteTrainer
    Options = PatternOptions
    description = "Procedural textures (clouds, marble, wood) from a seed; no model needed."

    def check(self, request: GenerationRun[PatternOptions]) -> None:
        """Refuse adapters that are no palettes before the job is queued (cheap: no model)."""
        for lora in request.loras:
            if not 0.0 <= lora.weight <= 1.0:
                raise InvalidRequest(
                    f"palette {lora.ref!r}: weight {lora.weight} is outside 0..1 "
                    "(1 uses the learned colours alone, 0.5 mixes them with --set palette)"
                )
            load_palette(lora.ref)  # raises InvalidRequest naming the file

    def run(self, request: GenerationRun[PatternOptions], ctx: RunContext) -> Iterator[PluginEvent]:
        import numpy as np  # imported here: listing plugins must stay cheap
        from PIL import Image

        from studio_patterns import patterns

        options = request.options  # a PatternOptions, validated
        palette = options.palette
        if palette == "auto":
            palette = sorted(patterns.PALETTES)[request.seed % len(patterns.PALETTES)]
            ctx.record_options(palette=palette)  # the recipe replays the palette that was used
        table = patterns.gradient(patterns.hex_colours(patterns.PALETTES[palette]))
        for lora in request.loras:
            colours, shares = load_palette(lora.ref)
            table = (1 - lora.weight) * table + lora.weight * patterns.gradient(colours, shares)
            ctx.record_adapter(lora.ref, lora.weight, palette_file(lora.ref))

        rng = np.random.default_rng(request.seed)
        noise = np.zeros((options.height, options.width))
        weight = 0.0
        for octave in range(options.octaves):
            ctx.check_cancelled()  # between steps: a cancel ends the job here
            amplitude = 0.5**octave
            frequency = options.scale * 2**octave
            noise += amplitude * patterns.value_noise(rng, options.height, options.width, frequency)
            weight += amplitude
            field = patterns.shape(options.pattern, noise / weight, options.scale)
            image = Image.fromarray(patterns.render(field, table))
            yield Preview(image, step=octave + 1)
            yield Progress(octave + 1, options.octaves, f"octave {octave + 1}")
        yield Result(ImageOutput(image, seed=request.seed, extra={"palette": palette}))
