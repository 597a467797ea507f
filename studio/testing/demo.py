"""A demo plugin: procedural pictures, verses and chimes, and a demo trainer; no model at all.

It fills the studio with something to look at without any model or download: the user guide's
screenshots (``make screenshots``, :mod:`studio.ui.screenshots`) and benchmarks of the window use
it. Register it in code (``studio.plugins.register(DemoPlugin(), info)``); it is never loaded
through an entry point, so users never see it.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterator
from typing import Any

from pydantic import Field

from studio import (
    AudioOutput,
    BaseOptions,
    Generator,
    ImageOutput,
    Partial,
    Preview,
    Progress,
    Result,
    TextOutput,
    hookimpl,
)
from studio.testing.fakes import FakeTrainer

#: The plugin name the demo registers under.
PLUGIN_NAME = "demo"


def _rng_of(*parts: object) -> Any:
    import numpy as np

    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "big"))


def landscape(prompt: str, seed: int, width: int, height: int) -> Any:
    """A procedural landscape (sky gradient, a sun, three ridges) as a uint8 RGB array."""
    import numpy as np

    rng = _rng_of(prompt, seed)
    hue = {"red": 0.0, "amber": 0.08, "green": 0.3, "blue": 0.58, "violet": 0.75}
    base = next((h for word, h in hue.items() if word in prompt), rng.random())

    def colour(h: float, s: float, v: float) -> Any:
        import colorsys

        return np.array(colorsys.hsv_to_rgb(h % 1.0, s, v), dtype="float32")

    y = np.linspace(0, 1, height, dtype="float32")[:, None, None]
    top, bottom = colour(base + 0.55, 0.55, 0.55), colour(base, 0.45, 1.0)
    img = np.broadcast_to(top * (1 - y) + bottom * y, (height, width, 3)).copy()
    xs, ys = np.meshgrid(np.arange(width), np.arange(height))
    cx, cy, r = width * (0.25 + 0.5 * rng.random()), height * 0.45, min(width, height) * 0.09
    glow = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * (r * 2.5) ** 2))[..., None]
    img = img + glow * colour(base + 0.05, 0.3, 1.0) * 0.6
    img[(xs - cx) ** 2 + (ys - cy) ** 2 < r**2] = colour(base + 0.1, 0.15, 1.0)
    for layer in range(3):
        phase, freq = rng.random() * 6.28, 2 + layer * 1.5 + rng.random()
        level = 0.55 + 0.13 * layer
        ridge = level + 0.06 * np.sin(np.linspace(0, freq * math.pi, width) + phase)
        ridge += 0.02 * np.sin(np.linspace(0, freq * 7, width) + phase * 3)
        mask = y[:, :, 0] > ridge[None, :]
        img[mask] = colour(base + 0.5, 0.5, 0.5 - 0.14 * layer)
    return (np.clip(img, 0, 1) * 255).astype("uint8")


class PictureOptions(BaseOptions):
    width: int = Field(512, ge=64, le=1024, multiple_of=8, description="Width in pixels.")
    height: int = Field(384, ge=64, le=1024, multiple_of=8, description="Height in pixels.")
    steps: int = Field(12, ge=1, le=50, description="Steps (one preview each).")
    negative_prompt: str = Field(
        "", description="What to avoid.", json_schema_extra={"widget": "multiline"}
    )
    delay: float = Field(0.0, ge=0, le=2, description="Seconds per step (to watch previews).")


class DemoPictures(Generator):
    """Procedural landscapes coloured by the prompt: shows the window without any model."""

    id = "demo-pictures"
    name = "Demo landscapes"
    modality = "image"
    task = "text-to-image"
    uses_model = False
    Options = PictureOptions
    supports_lora = True
    description = "Procedural landscapes for demos and screenshots; no model."

    def run(self, request: Any, ctx: Any) -> Iterator[Any]:
        import numpy as np
        from PIL import Image

        opts: PictureOptions = request.options
        final = landscape(request.prompt, request.seed, opts.width, opts.height).astype("float32")
        noise = _rng_of("noise", request.seed).random(final.shape, dtype="float32") * 255
        for step in range(1, opts.steps + 1):
            ctx.check_cancelled()
            if opts.delay:
                ctx.cancel_event.wait(opts.delay)
            t = step / opts.steps
            frame = (noise * (1 - t) + final * t).astype(np.uint8)
            yield Preview(Image.fromarray(frame), step=step)
            yield Progress(step, opts.steps)
        yield Result(ImageOutput(Image.fromarray(final.astype(np.uint8)), seed=request.seed))


class WordsOptions(BaseOptions):
    lines: int = Field(6, ge=1, le=40, description="Lines to write.")
    delay: float = Field(0.0, ge=0, le=2, description="Seconds per word (to watch streaming).")


_WORDS = (
    "the light",
    "slow rivers",
    "a hush of pines",
    "salt wind",
    "old stone",
    "the first bird",
    "amber grass",
    "cold water",
    "a far bell",
    "the tide",
    "soft rain",
    "the long road",
)


class DemoWords(Generator):
    """Streams short verses built from the prompt."""

    id = "demo-words"
    name = "Demo verses"
    modality = "text"
    task = "text-generation"
    uses_model = False
    Options = WordsOptions
    description = "Streams short verses for demos and screenshots; no model."

    def run(self, request: Any, ctx: Any) -> Iterator[Any]:
        opts: WordsOptions = request.options
        rng = _rng_of(request.prompt, request.seed)
        subject = request.prompt.strip().rstrip(".") or "the evening"
        lines = [f"{subject.capitalize()},"]
        while len(lines) < opts.lines:
            a, b = rng.choice(len(_WORDS), 2, replace=False)
            lines.append(f"{_WORDS[a]} over {_WORDS[b]},")
        text = "\n".join(lines).rstrip(",") + "."
        pieces = text.split(" ")
        for i, piece in enumerate(pieces):
            ctx.check_cancelled()
            if opts.delay:
                ctx.cancel_event.wait(opts.delay)
            yield Partial(piece if i == 0 else " " + piece)
            yield Progress(i + 1, len(pieces))
        yield Result(TextOutput(text, seed=request.seed))


class TonesOptions(BaseOptions):
    seconds: float = Field(3.0, gt=0, le=30, description="Length in seconds.")
    tempo: int = Field(96, ge=40, le=200, description="Beats per minute.")


class DemoTones(Generator):
    """A soft arpeggio, streamed in chunks."""

    id = "demo-tones"
    name = "Demo chimes"
    modality = "audio"
    task = "text-to-music"
    uses_model = False
    Options = TonesOptions
    description = "A chime arpeggio for demos and screenshots; no model."

    def run(self, request: Any, ctx: Any) -> Iterator[Any]:
        import numpy as np

        opts: TonesOptions = request.options
        rate = 22050
        rng = _rng_of(request.prompt, request.seed)
        beat = 60.0 / opts.tempo / 2
        total = int(opts.seconds * rate)
        out = np.zeros(total, dtype="float32")
        scale = [0, 2, 4, 7, 9, 12]
        root = 220.0 * 2 ** (rng.integers(0, 12) / 12)
        t0 = 0.0
        while t0 < opts.seconds:
            f = root * 2 ** (scale[int(rng.integers(0, len(scale)))] / 12)
            start = int(t0 * rate)
            n = min(total - start, int(rate * 1.2))
            t = np.arange(n) / rate
            out[start : start + n] += 0.3 * np.sin(2 * np.pi * f * t) * np.exp(-3 * t)
            t0 += beat
        out /= max(1.0, float(np.abs(out).max()) / 0.9)
        chunks = np.array_split(out, 8)
        for i, chunk in enumerate(chunks, start=1):
            ctx.check_cancelled()
            yield Preview(chunk, step=i, sample_rate=rate)
            yield Progress(i, len(chunks))
        yield Result(AudioOutput(out, rate, seed=request.seed))


class DemoTrainer(FakeTrainer):
    """The testing kit's trainer with landscape samples: a loss curve and a small adapter file."""

    id = "demo-style"
    name = "Demo style trainer"
    default_model = "demo/procedural"
    description = "Learns nothing, shows everything: loss curve, samples, adapter. No model."

    @staticmethod
    def _sample(step: int) -> ImageOutput:
        from PIL import Image

        return ImageOutput(Image.fromarray(landscape("green hills", step, 96, 96)), seed=step)


class DemoPlugin:
    """The demo plugin (registered in code, never through an entry point)."""

    studio_api = ">=1.0,<2"

    __version__ = "1.0"

    @hookimpl
    def register_generators(self, register: Callable[[type], None]) -> None:
        for cls in (DemoPictures, DemoWords, DemoTones):
            register(cls)

    @hookimpl
    def register_trainers(self, register: Callable[[type], None]) -> None:
        register(DemoTrainer)
