"""Fixtures for the window tests (pytest-qt, offscreen).

``no_leaks`` (autouse) fails a test that leaves a top-level window visible, a QThreadPool thread
busy, or a Python thread (a device worker) running. Every wait is bounded.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from PySide6.QtCore import QThreadPool
from PySide6.QtWidgets import QApplication

from studio import AudioOutput, BaseOptions, Generator, Preview, Progress, Result, hookimpl
from studio.core.studio import Studio

WAIT_MS = 10_000


class ToneOptions(BaseOptions):
    seconds: float = Field(0.5, gt=0, le=10, description="Length of the tone.")
    frequency: float = Field(440.0, ge=20, le=4000, description="Pitch in Hz.")
    chunks: int = Field(4, ge=1, le=50, description="Streamed chunks (one preview each).")


class ToneGenerator(Generator):
    """A test audio generator: a sine tone streamed in chunks (no model)."""

    id = "test-tone"
    name = "Test tone"
    modality = "audio"
    task = "text-to-speech"
    default_model = "fake/tiny-model"
    Options = ToneOptions
    description = "A sine tone for the UI tests."

    def run(self, request: Any, ctx: Any) -> Any:
        import numpy as np

        opts: ToneOptions = request.options
        rate = 8000
        total = int(opts.seconds * rate)
        t = np.arange(total) / rate
        wave = (0.5 * np.sin(2 * math.pi * opts.frequency * t)).astype("float32")
        parts = np.array_split(wave, opts.chunks)
        for i, part in enumerate(parts, start=1):
            ctx.check_cancelled()
            yield Preview(part, step=i, sample_rate=rate)
            yield Progress(i, len(parts))
        yield Result(AudioOutput(wave, rate, seed=request.seed))


class VariationOptions(BaseOptions):
    init_image: Path = Field(
        ..., description="The image to vary.", json_schema_extra={"widget": "image"}
    )
    strength: float = Field(0.5, ge=0, le=1, description="How far from the init image.")


class VariationGenerator(Generator):
    """A test image-to-image generator: returns the init image (no model)."""

    id = "test-variation"
    name = "Test variation"
    modality = "image"
    task = "image-to-image"
    default_model = "fake/tiny-model"
    Options = VariationOptions
    prompt_required = False
    description = "Returns its init image."

    def run(self, request: Any, ctx: Any) -> Any:
        from PIL import Image

        from studio import ImageOutput

        yield Progress(1, 1)
        yield Result(
            ImageOutput(Image.open(request.options.init_image).convert("RGB"), seed=request.seed)
        )


class TonePlugin:
    """The UI tests' own plugin: an audio generator and an image-to-image one."""

    studio_api = ">=1.0,<2"

    @hookimpl
    def register_generators(self, register: Callable[[type], None]) -> None:
        register(ToneGenerator)
        register(VariationGenerator)


@pytest.fixture(autouse=True)
def no_leaks(qapp: QApplication) -> Iterator[None]:
    """Fail on windows left open, busy pool threads, or Python threads left running."""
    threads_before = set(threading.enumerate())
    yield
    qapp.processEvents()
    # Qt's global pool, and the windows' own (the session's and the thumbnail loader's)
    pools = [QThreadPool.globalInstance()]
    for w in qapp.topLevelWidgets():
        pools += w.findChildren(QThreadPool)
    problems = []
    for pool in pools:
        if not pool.waitForDone(5000) or pool.activeThreadCount():
            owner = pool.parent()
            where = type(owner).__name__ if owner is not None else "global"
            problems.append(f"{pool.activeThreadCount()} {where} pool thread(s) still busy")
    leaked_windows = [w for w in qapp.topLevelWidgets() if w.isVisible()]
    for w in leaked_windows:
        problems.append(f"top-level window left open: {type(w).__name__} {w.windowTitle()!r}")
        w.close()
    deadline = time.monotonic() + 5.0
    extra = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    while extra and time.monotonic() < deadline:
        time.sleep(0.02)
        extra = [t for t in extra if t.is_alive()]
    problems += [f"thread still running: {t.name}" for t in extra]
    for w in qapp.topLevelWidgets():
        w.deleteLater()
    qapp.processEvents()
    if problems:
        pytest.fail("; ".join(problems))


@pytest.fixture
def studio(studio_app: Studio) -> Studio:
    """The testing kit's studio (fake plugin) plus an audio test generator."""
    studio_app.plugins.register(TonePlugin(), None)
    return studio_app


@pytest.fixture
def window(studio: Studio, qtbot: Any) -> Any:
    """The main window on the test studio, shown, models listed."""
    from studio.ui.main_window import MainWindow

    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.session is not None and win.session.models_loaded, timeout=WAIT_MS)
    return win


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """A folder the fake trainer can ingest: two captions, one image, one file it skips."""
    from PIL import Image

    folder = tmp_path / "my-pictures"
    folder.mkdir()
    (folder / "a.txt").write_text("a red fox", encoding="utf-8")
    (folder / "b.txt").write_text("a blue bird", encoding="utf-8")
    Image.new("RGB", (8, 8), (200, 30, 30)).save(folder / "a.png")
    (folder / "notes.doc").write_bytes(b"x")
    return folder
