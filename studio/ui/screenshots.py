"""Make the user guide's screenshots: ``python -m studio.ui.screenshots docs/images``.

Runs offline in a temporary studio home with the built-in plugins and a small demo plugin
(procedural pictures, words and tones, and a demo trainer: no model, no download), fills the
gallery, the queue and a training run, and saves one PNG per panel. ``make screenshots`` runs it.
"""

from __future__ import annotations

import hashlib
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
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

SIZE = (1280, 820)
PROMPTS = (
    "quiet valley at dawn, mist over the hills",
    "red sunset over a calm sea",
    "violet night, a pale moon over the mountains",
    "green spring hills under a soft sky",
    "amber evening in the desert",
    "cold blue morning above the fjord",
)


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
    default_model = "demo/procedural"
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
    default_model = "demo/procedural"
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
    default_model = "demo/procedural"
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

    __version__ = "1.0"

    @hookimpl
    def register_generators(self, register: Callable[[type], None]) -> None:
        for cls in (DemoPictures, DemoWords, DemoTones):
            register(cls)

    @hookimpl
    def register_trainers(self, register: Callable[[type], None]) -> None:
        register(DemoTrainer)


# --- the screenshot run --------------------------------------------------------------------------


def _pump(app: Any, seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def _wait(app: Any, predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise TimeoutError("the demo did not get there in time")
        app.processEvents()
        time.sleep(0.01)


def _fill(studio: Any, dataset: Path) -> None:
    from PIL import Image

    from studio.core.generator import GenerationRequest

    jobs = [
        studio.submit(GenerationRequest(generator="demo-pictures", prompt=p, seed=11 + i))
        for i, p in enumerate(PROMPTS)
    ]
    jobs.append(
        studio.submit(
            GenerationRequest(generator="demo-words", prompt="a lighthouse in winter", seed=3)
        )
    )
    jobs.append(
        studio.submit(
            GenerationRequest(generator="demo-tones", prompt="glass chimes in the wind", seed=4)
        )
    )
    jobs.append(
        studio.submit(
            GenerationRequest(generator="demo-words", prompt="the harbour at night", seed=8)
        )
    )
    for job in jobs:
        studio.wait(job, timeout=60)
    dataset.mkdir(parents=True, exist_ok=True)
    for i, prompt in enumerate(PROMPTS[:4]):
        Image.fromarray(landscape(prompt, i, 64, 64)).save(dataset / f"view-{i}.png")
        (dataset / f"view-{i}.txt").write_text(prompt, encoding="utf-8")
    (dataset / "notes.pdf").write_bytes(b"%PDF")


def make_screenshots(out_dir: Path) -> list[Path]:
    """Build the demo studio in a temporary home and save one PNG per panel into ``out_dir``."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6.QtWidgets import QApplication

    from studio.core.plugins import PluginInfo
    from studio.core.studio import Studio
    from studio.ui.app import grab
    from studio.ui.main_window import MainWindow
    from studio.ui.theme import apply_theme

    app = QApplication.instance() or QApplication(sys.argv[:1])
    apply_theme("light")
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="studio-shots-") as tmp:
        os.environ["HF_HUB_CACHE"] = str(Path(tmp) / "hub")  # list no model of this machine
        os.environ["HF_HUB_OFFLINE"] = "1"
        studio = Studio.open(Path(tmp) / "home")
        try:
            studio.plugins.register(
                DemoPlugin(), PluginInfo("demo", DemoPlugin.__version__, __name__, False)
            )
            dataset = Path(tmp) / "my-landscapes"
            _fill(studio, dataset)
            window = MainWindow(studio)
            window.resize(*SIZE)
            window.show()
            _wait(app, window.is_loaded)

            def shoot(name: str, panel: str) -> None:
                if panel != "settings":
                    window.show_panel(panel)
                _pump(app, 0.4)
                if panel == "gallery":
                    _wait(app, lambda: not window.gallery.thumbnails_pending())
                path = out_dir / f"{name}.png"
                grab(window, panel).save(str(path))
                saved.append(path)

            gen = window.generate

            def run_form(generator: str, prompt: str, seed: int) -> None:
                gen.select_generator(generator)
                gen.prompt.setPlainText(prompt)
                gen.seed.set_value(seed)
                job = gen.generate()
                if job is None:
                    raise RuntimeError(f"the demo form for {generator} was refused")
                _wait(app, lambda: studio.job(job).state.finished)
                _pump(app, 0.3)

            run_form("demo-pictures", "quiet valley at dawn, mist over the hills", 11)
            shoot("generate-image", "generate")
            run_form("demo-words", "a lighthouse in winter", 3)
            shoot("generate-text", "generate")
            run_form("demo-tones", "glass chimes in the wind", 4)
            _wait(app, lambda: gen.output.audio.waveform.duration > 0)
            shoot("generate-audio", "generate")

            gallery = window.gallery
            window.show_panel("gallery")
            gallery.reload()
            first_image = next(r for r in gallery.model.records if r.modality == "image")
            gallery.select(first_image.id)
            shoot("gallery", "gallery")

            training = window.training
            training.select_trainer("demo-style")
            training.set_dataset(dataset)
            training.name.setText("misty hills")
            assert training.form is not None
            training.form.set_values({"steps": 60, "sample_every": 6, "delay": 0.02})
            _wait(app, lambda: training.ingest.report is not None)
            train_job = training.start()
            if train_job is None:
                raise RuntimeError(f"the demo training was refused: {training.error.text()}")
            _wait(app, lambda: studio.job(train_job).state.finished)
            _wait(app, lambda: training.use_button.isVisibleTo(training))
            shoot("training", "training")

            from studio.core.generator import GenerationRequest

            slow = studio.submit(
                GenerationRequest(
                    generator="demo-pictures", prompt="slow render", options={"delay": 0.5}
                )
            )
            queued = [
                studio.submit(GenerationRequest(generator="demo-words", prompt=p))
                for p in ("a song for the river", "letters from the coast")
            ]
            _wait(app, lambda: studio.job(slow).state.value == "running")
            _pump(app, 2.5)
            shoot("queue", "queue")
            for job_id in [slow, *queued]:
                studio.cancel(job_id)

            apply_theme("dark")
            window.show_panel("gallery")
            shoot("gallery-dark", "gallery")
            apply_theme("light")
            shoot("models", "models")
            window.plugins.populate()
            shoot("plugins", "plugins")
            shoot("settings", "settings")
            window.close()
        finally:
            studio.close()
    return saved


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = Path(args[0]) if args else Path("docs/images")
    for path in make_screenshots(out):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
