"""Make the user guide's screenshots: ``python -m studio.ui.screenshots docs/images``.

Runs offline in a temporary studio home with the built-in plugins (no other installed one) and
the testing kit's demo plugin (:mod:`studio.testing.demo`: procedural pictures, words and tones,
and a demo trainer; no model, no download), fills the gallery, the queue and a training run, and
saves one PNG per panel. ``make screenshots`` runs it.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.testing.demo import PLUGIN_NAME, DemoPlugin, landscape

SIZE = (1280, 820)
PROMPTS = (
    "quiet valley at dawn, mist over the hills",
    "red sunset over a calm sea",
    "violet night, a pale moon over the mountains",
    "green spring hills under a soft sky",
    "amber evening in the desert",
    "cold blue morning above the fjord",
)


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
        # the built-ins and the demo only: not the plugins this machine has installed
        os.environ["STUDIO_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        studio = Studio.open(Path(tmp) / "home")
        try:
            studio.plugins.register(
                DemoPlugin(),
                PluginInfo(PLUGIN_NAME, DemoPlugin.__version__, DemoPlugin.__module__, False),
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
