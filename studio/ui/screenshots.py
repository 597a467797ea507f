"""Make the user guide's screenshots: ``python -m studio.ui.screenshots docs/images``.

Runs offline in a temporary studio home with the built-in plugins (no other installed one) and
the testing kit's demo plugin (:mod:`studio.testing.demo`: procedural pictures, words and tones;
no model, no download), fills the gallery and the queue, and saves one PNG per panel.

The training pictures come from a real training: the built-in text LoRA trainer on a tiny GPT-2
made by the testing kit (:mod:`studio.testing.models_text`), first taught the kit's few sentences
for a moment so that, like any base model, it knows some words, then fine-tuned for a few dozen
steps on a folder of short poems written from those words. Then "Use this adapter" opens the
text generator with the new adapter. ``make screenshots`` runs it all in well under a minute.
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


#: The tiny base model's hub id in the screenshots' own hub cache.
TINY_MODEL = "studio-demo/tiny-gpt2"
#: The artist's folder of the training pictures: short poems made of the words the tiny model
#: knows (the testing kit's sentences), and two files the trainer skips.
POEMS = {
    "the-sea.txt": "Once upon a time there was a small studio by the sea.\n"
    "The wind came in, and the door opened.\n"
    "The sea is blue, the sea is green,\n"
    "and the painter looked at the sea until the end.\n",
    "spring.txt": "The painter mixed blue and yellow until the green looked like spring.\n"
    "Roses are red, the sea is blue,\n"
    "and the wind came in by the door.\n",
    "music.txt": "Music is the space between the notes, said the old composer.\n"
    "The notes are stars drawn in the margin,\n"
    "the stars are hearts, the hearts are arrows.\n",
    "story.md": "A writer continues the story: the door opened, and the wind came in.\n"
    "The old composer said: the sea is the space between the stars.\n"
    "The end of the chapter.\n",
    "today.txt": "How are you today? I am fine, thank you.\n"
    "The sea is fine, the wind is fine,\n"
    "the small studio by the sea is fine.\n",
}
#: The text training of the pictures: small and quick, validated often so the curve has points.
TEXT_TRAINING = {
    "steps": 60,
    "batch_size": 4,
    "sequence_length": 48,
    "overlap": 8,
    "learning_rate": 0.005,
    "target_modules": "all-linear",
    "validate_every": 5,
    "checkpoint_every": 20,
    "sample_every": 20,
    "sample_prompts": ["The sea", "Music is"],
    "sample_max_tokens": 24,
}


def _tiny_base_model(hub: Path, work: Path) -> None:
    """A tiny GPT-2 from the testing kit, taught the kit's sentences (a few seconds on a CPU),
    saved into the hub cache ``hub`` as :data:`TINY_MODEL`."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from studio.testing.hub import save_to_hub_cache
    from studio.testing.models_text import CORPUS, make_tiny_causal_lm

    folder = make_tiny_causal_lm(work / "tiny-gpt2", "gpt2", seed=0, hidden_size=64)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    ids = torch.tensor(tokenizer(tokenizer.eos_token.join(CORPUS))["input_ids"])
    window = 48
    threads = torch.get_num_threads()
    # one thread: the fastest for so small a model on a busy machine, and the same weights on
    # every machine
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)  # the same pictures every time (dropout draws from this)
            optimizer = torch.optim.AdamW(model.parameters(), lr=0.01)
            model.train()
            for _ in range(300):  # random windows of the sentences, 8 at a time
                starts = torch.randint(0, len(ids) - window, (8,))
                batch = torch.stack([ids[int(i) : int(i) + window] for i in starts])
                model(input_ids=batch, labels=batch).loss.backward()
                optimizer.step()
                optimizer.zero_grad()
    finally:
        torch.set_num_threads(threads)
    model.save_pretrained(folder)
    save_to_hub_cache(folder, TINY_MODEL, hub)


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
        hub = Path(tmp) / "hub"
        os.environ["HF_HUB_CACHE"] = str(hub)  # list no model of this machine
        os.environ["HF_HUB_OFFLINE"] = "1"
        _tiny_base_model(hub, Path(tmp))
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
            poems = Path(tmp) / "my-poems"
            poems.mkdir()
            for name, text in POEMS.items():
                (poems / name).write_text(text, encoding="utf-8")
            (poems / "cover.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a picture")
            (poems / "ideas.txt").write_bytes(b"")
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
            apply_theme("dark")  # the same gallery, before the training adds its samples
            shoot("gallery-dark", "gallery")
            apply_theme("light")

            training = window.training
            training.select_trainer("text-lora")
            training.base_model.set_ref(TINY_MODEL)
            training.set_dataset(poems)
            training.name.setText("sea poems")
            assert training.form is not None
            training.form.set_values(TEXT_TRAINING)
            _wait(app, lambda: training.ingest.report is not None)
            train_job = training.start()
            if train_job is None:
                raise RuntimeError(f"the text training was refused: {training.error.text()}")
            _wait(app, lambda: studio.job(train_job).state.finished, timeout=120)
            if studio.job(train_job).state.value != "succeeded":
                raise RuntimeError(f"the text training failed: {studio.job(train_job).error}")
            _wait(app, lambda: training.use_button.isVisibleTo(training))
            shoot("training", "training")

            training.use_button.click()  # the text generator, with the adapter and its model
            gen.prompt.setPlainText("Once upon a time")
            gen.seed.set_value(2)
            assert gen.form is not None
            gen.form.set_values({"max_new_tokens": 40})  # the tiny model's context is short
            job = gen.generate()
            if job is None:
                raise RuntimeError(f"the adapter's generation was refused: {gen.error.text()}")
            _wait(app, lambda: studio.job(job).state.finished)
            _pump(app, 0.3)
            shoot("training-use-adapter", "generate")

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
