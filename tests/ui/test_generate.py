"""Generate and cancel through a real Studio with the fake generators: previews, streaming text,
audio waveform, errors next to the field, keyboard shortcuts."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field
from PySide6.QtCore import Qt
from PySide6.QtTest import QTest

from studio import BaseOptions, Generator, ImageOutput, Progress, Result, hookimpl
from studio.core.events import JobState
from studio.testing.fakes import fake_text

WAIT = 10_000


def finished(studio: Any, job_id: str) -> bool:
    return studio.job(job_id).state.finished


def test_generator_picker_groups_every_generator(window: Any) -> None:
    picker = window.generate.picker
    headers = [
        picker.itemText(i)
        for i in range(picker.count())
        if not picker.itemData(i, Qt.ItemDataRole.UserRole + 1)
    ]
    ids = [picker.itemData(i, Qt.ItemDataRole.UserRole + 1) for i in range(picker.count())]
    assert headers == ["Images", "Text", "Audio"]
    assert {"fake-image", "fake-text", "fake-fail", "fake-noop", "test-tone"} <= set(ids)
    # headers cannot be chosen
    assert not picker.model().item(0).isEnabled()


def test_image_previews_update_per_step(window: Any, studio: Any, qtbot: Any) -> None:
    panel = window.generate
    assert panel.select_generator("fake-image")
    panel.prompt.setPlainText("a red fox")
    panel.form.set_values({"steps": 5, "width": 32, "height": 24, "delay": 0.02})
    canvas = panel.output.images.canvas
    shown: list[tuple[str, bool, int]] = []
    # connected after the panel's own slot: sees the canvas as each preview left it
    panel.session.bridge.preview.connect(
        lambda _job, _p: shown.append((canvas.caption, canvas.path is None, canvas.image.width()))
    )
    job_id = panel.generate()
    assert job_id is not None
    qtbot.waitUntil(lambda: finished(studio, job_id), timeout=WAIT)
    qtbot.waitUntil(lambda: canvas.path is not None, timeout=WAIT)
    # the canvas showed each step's picture (not yet a file), the newest last
    assert shown and shown[-1] == ("step 5", True, 32)
    assert all(caption.startswith("step ") and unsaved for caption, unsaved, _w in shown)
    assert (canvas.image.width(), canvas.image.height()) == (32, 24)
    assert canvas.path is not None and canvas.path.suffix == ".png"
    # the saved file can be shown a moment before the job's end state reaches the panel
    qtbot.waitUntil(lambda: panel.status.text().startswith("Done"), timeout=WAIT)
    assert not panel.cancel_button.isEnabled()


def test_text_streams_into_the_view(window: Any, studio: Any, qtbot: Any) -> None:
    panel = window.generate
    panel.select_generator("fake-text")
    panel.prompt.setPlainText("once upon a time")
    panel.seed.set_value(7)
    panel.form.set_values({"max_tokens": 12, "delay": 0.03})
    seen: list[str] = []
    panel.session.bridge.partial.connect(
        lambda _job, _text, _i: seen.append(panel.output.text.text())
    )
    job_id = panel.generate()
    assert job_id is not None
    qtbot.waitUntil(lambda: finished(studio, job_id), timeout=WAIT)
    expected = "".join(fake_text("once upon a time", 7, 12))
    qtbot.waitUntil(lambda: panel.output.text.text() == expected, timeout=WAIT)
    # it grew chunk by chunk: every intermediate view was a prefix of the final text
    assert len(seen) == 12
    assert all(expected.startswith(s) for s in seen)
    assert len(set(seen)) == 12


def test_cancel_with_escape(window: Any, studio: Any, qtbot: Any) -> None:
    panel = window.generate
    panel.select_generator("fake-text")
    panel.prompt.setPlainText("long story")
    panel.form.set_values({"max_tokens": 200, "delay": 0.05})
    job_id = panel.generate()
    assert job_id is not None
    qtbot.waitUntil(lambda: len(panel.output.text.text()) > 0, timeout=WAIT)
    assert panel.cancel_button.isEnabled()
    panel.prompt.setFocus()
    QTest.keyClick(panel.prompt, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: finished(studio, job_id), timeout=WAIT)
    assert studio.job(job_id).state == JobState.CANCELLED
    qtbot.waitUntil(lambda: panel.status.text() == "Cancelled.", timeout=WAIT)
    assert not panel.cancel_button.isEnabled()


def test_ctrl_enter_generates(window: Any, studio: Any, qtbot: Any) -> None:
    panel = window.generate
    panel.select_generator("fake-text")
    panel.prompt.setPlainText("hello")
    panel.prompt.setFocus()
    before = len(studio.jobs())
    QTest.keyClick(panel.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(studio.jobs()) == before + 1
    assert panel.job_id is not None
    qtbot.waitUntil(lambda: finished(studio, panel.job_id), timeout=WAIT)


def test_missing_prompt_and_bad_option_are_shown_not_submitted(window: Any, studio: Any) -> None:
    panel = window.generate
    panel.select_generator("fake-image")
    panel.prompt.setPlainText("")
    assert panel.generate() is None
    assert panel.prompt_error.isVisibleTo(panel) and "prompt" in panel.prompt_error.text()
    panel.prompt.setPlainText("ok")
    width = panel.form.editor("width")
    width.spin.setMaximum(5000)
    width.set_value(4096)
    assert panel.generate() is None
    error = panel.form.error_of("width")
    assert error is not None and "1024" in error
    assert studio.jobs() == []


def test_failed_job_reports_its_error(window: Any, studio: Any, qtbot: Any) -> None:
    panel = window.generate
    panel.select_generator("fake-fail")
    job_id = panel.generate()
    assert job_id is not None
    qtbot.waitUntil(lambda: panel.status.text().startswith("Failed"), timeout=WAIT)
    assert "fake failure" in panel.status.text()


def test_audio_waveform_grows_and_player_is_ready(window: Any, studio: Any, qtbot: Any) -> None:
    panel = window.generate
    panel.select_generator("test-tone")
    listen = panel.output.audio.listen
    assert not listen.isVisibleTo(panel)  # not known to stream yet
    panel.prompt.setPlainText("a tone")
    panel.form.set_values({"seconds": 0.5, "chunks": 5})
    job_id = panel.generate()
    assert job_id is not None
    wave = panel.output.audio.waveform
    qtbot.waitUntil(lambda: finished(studio, job_id), timeout=WAIT)
    qtbot.waitUntil(lambda: panel.output.audio.player.path is not None, timeout=WAIT)
    qtbot.waitUntil(lambda: abs(wave.duration - 0.5) < 1e-6, timeout=WAIT)
    assert wave.sample_rate == 8000
    audio = panel.output.audio
    # streamed chunks are heard as they come where there is a sound device; else it says why
    assert audio.stream.active or "audio" in audio.stream_note.text().lower()
    image = wave.grab().toImage()
    assert not image.isNull()
    # the waveform is drawn across the width: the middle line is covered, not background
    background = wave.palette().base().color().rgb()
    mid = 6 + (image.height() - 24) // 2  # the plot area's middle line
    drawn = sum(image.pixel(x, mid) != background for x in range(8, image.width() - 8))
    assert drawn > (image.width() - 16) * 0.9
    # it streamed: "Listen while it is generated" is offered for it from now on
    assert listen.isVisibleTo(panel)
    panel.select_generator("fake-image")
    panel.select_generator("test-tone")
    assert listen.isVisibleTo(panel)


def test_use_these_settings_round_trip(window: Any, studio: Any, qtbot: Any) -> None:
    panel = window.generate
    panel.select_generator("fake-image")
    panel.prompt.setPlainText("a blue bird")
    panel.seed.set_value(1234)
    panel.form.set_values({"steps": 3, "width": 40, "negative_prompt": "blurry"})
    job_id = panel.generate()
    qtbot.waitUntil(lambda: finished(studio, job_id), timeout=WAIT)
    panel.select_generator("fake-text")
    panel.prompt.setPlainText("something else")
    [artifact] = studio.artifacts(job_id=job_id)
    panel.load_request(studio.request_from_recipe(artifact.recipe))
    assert panel.generator.id == "fake-image"
    assert panel.prompt.toPlainText() == "a blue bird"
    assert panel.seed.value() == 1234
    values = panel.form.values()
    assert (values["steps"], values["width"], values["negative_prompt"]) == (3, 40, "blurry")


# --- the form follows the generator: optional prompt, no model picker --------------------------


class PatternOptions(BaseOptions):
    size: int = Field(16, ge=8, le=64, multiple_of=8, description="Width and height in pixels.")


class PatternGenerator(Generator):
    """A model-free image generator whose prompt may be empty (as a procedural one is)."""

    id = "test-pattern"
    name = "Test pattern"
    modality = "image"
    task = "text-to-image"
    uses_model = False
    prompt_required = False
    Options = PatternOptions
    description = "A flat grey square from the seed; no model."

    def run(self, request: Any, ctx: Any) -> Any:
        from PIL import Image

        grey = request.seed % 256
        image = Image.new("RGB", (request.options.size,) * 2, (grey, grey, grey))
        yield Progress(1, 1)
        yield Result(ImageOutput(image, seed=request.seed))


class PatternPlugin:
    studio_api = ">=1.0,<2"

    @hookimpl
    def register_generators(self, register: Callable[[type], None]) -> None:
        register(PatternGenerator)


@pytest.fixture
def pattern_window(studio: Any, qtbot: Any) -> Any:
    """The main window with the model-free test generator installed too."""
    from studio.ui.main_window import MainWindow

    info = studio.plugins.register(PatternPlugin(), None)
    assert info.error is None, info.error
    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.session is not None and win.session.models_loaded, timeout=WAIT)
    return win


def test_optional_prompt_is_marked_and_may_stay_empty(
    window: Any, studio: Any, qtbot: Any, tmp_path: Path
) -> None:
    from PIL import Image

    panel = window.generate
    panel.select_generator("fake-text")  # a prompt is required
    assert panel.prompt_label.text() == "Prompt"
    assert "optional" not in panel.prompt.placeholderText().lower()
    # prompt_required = False (image-to-image): the box stays, since a prompt still guides it
    panel.select_generator("test-variation")
    assert panel.prompt.isVisibleTo(panel)
    assert panel.prompt_label.text() == "Prompt (optional)"
    assert "optional" in panel.prompt.placeholderText().lower()
    init = tmp_path / "init.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(init)
    panel.prompt.setPlainText("")
    panel.form.set_values({"init_image": str(init)})
    job_id = panel.generate()
    assert job_id is not None and not panel.prompt_error.isVisibleTo(panel)
    qtbot.waitUntil(lambda: finished(studio, job_id), timeout=WAIT)
    assert studio.job(job_id).state == JobState.SUCCEEDED
    panel.select_generator("fake-text")
    assert panel.prompt_label.text() == "Prompt"
    assert "optional" not in panel.prompt.placeholderText().lower()


def test_model_free_generator_shows_no_model_picker(
    pattern_window: Any, studio: Any, qtbot: Any
) -> None:
    panel = pattern_window.generate
    assert panel.select_generator("fake-image")
    assert panel.model_picker.isVisibleTo(panel)
    panel.model_picker.set_ref("someone/typed-model")
    assert panel.select_generator("test-pattern")
    assert not panel.model_picker.isVisibleTo(panel)
    assert panel.basics.labelForField(panel.model_picker).isHidden()  # the "Model" label too
    assert panel.seed.isVisibleTo(panel) and not panel.banner.isVisibleTo(panel)
    panel.seed.set_value(77)
    job_id = panel.generate()  # no prompt, no model: nothing to fill in
    assert job_id is not None, panel.error.text() + panel.prompt_error.text()
    qtbot.waitUntil(lambda: finished(studio, job_id), timeout=WAIT)
    assert studio.job(job_id).state == JobState.SUCCEEDED
    [artifact] = studio.artifacts(job_id=job_id)
    assert artifact.recipe["model"] is None
    # back on a generator that takes a model: the picker and what was typed in it return
    assert panel.select_generator("fake-image")
    assert panel.model_picker.isVisibleTo(panel)
    assert panel.model_picker.ref() == "someone/typed-model"
    # "Use these settings" of the model-free artifact brings the picker-less form back
    panel.load_request(studio.request_from_recipe(artifact.recipe))
    assert panel.generator.id == "test-pattern" and panel.seed.value() == 77
    assert not panel.model_picker.isVisibleTo(panel)
    state = panel.state()
    assert "test-pattern" not in state["models"] and "test-pattern" in state["options"]
