"""The gallery: thumbnails loaded off the GUI thread, filters, details, and the actions."""

from __future__ import annotations

import dataclasses
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QImage
from PySide6.QtWidgets import QMessageBox

from studio.core.errors import PluginVersionMismatch
from studio.core.generator import GenerationRequest
from studio.ui.gallery_panel import RECORD_ROLE, THUMB_ROLE

WAIT = 10_000


def make(studio: Any, generator: str, prompt: str, **options: Any) -> str:
    job_id = studio.submit(
        GenerationRequest(generator=generator, prompt=prompt, seed=5, options=options)
    )
    studio.wait(job_id, timeout=10)
    return job_id


def fill(studio: Any) -> None:
    make(studio, "fake-image", "a red fox in snow", width=32, height=32, steps=1)
    make(studio, "fake-image", "a blue whale", width=48, height=32, steps=1)
    make(studio, "fake-text", "a poem about snow", max_tokens=8)
    make(studio, "test-tone", "a low hum", seconds=0.2)


def open_gallery(window: Any, qtbot: Any) -> Any:
    gallery = window.gallery
    window.show_panel("gallery")
    gallery.reload()
    qtbot.waitUntil(lambda: gallery.loaded, timeout=WAIT)
    return gallery


def prompts(gallery: Any) -> list[str]:
    return [r.prompt for r in gallery.model.records]


def test_thumbnails_for_every_kind(window: Any, studio: Any, qtbot: Any) -> None:
    fill(studio)
    gallery = open_gallery(window, qtbot)
    assert len(gallery.model.records) == 4
    for row in range(4):  # asking starts the loads; they finish on the pool
        gallery.model.index(row).data(THUMB_ROLE)
    qtbot.waitUntil(lambda: not gallery.thumbnails_pending(), timeout=WAIT)
    thumbs = {
        gallery.model.index(r).data(RECORD_ROLE).modality: gallery.model.index(r).data(THUMB_ROLE)
        for r in range(4)
    }
    assert isinstance(thumbs["image"], QImage) and not thumbs["image"].isNull()
    assert isinstance(thumbs["audio"], QImage) and thumbs["audio"].width() == 160  # a waveform
    assert isinstance(thumbs["text"], str) and len(thumbs["text"]) > 0
    assert gallery.view.grab().toImage().isNull() is False


def test_filters(window: Any, studio: Any, qtbot: Any) -> None:
    fill(studio)
    gallery = open_gallery(window, qtbot)
    assert gallery.count.text() == "4 items"
    gallery.modality.setCurrentIndex(gallery.modality.findData("image"))
    assert sorted(prompts(gallery)) == ["a blue whale", "a red fox in snow"]
    gallery.modality.setCurrentIndex(0)
    gallery.search.setText("snow")
    qtbot.waitUntil(lambda: len(gallery.model.records) == 2, timeout=WAIT)  # debounced
    assert sorted(prompts(gallery)) == ["a poem about snow", "a red fox in snow"]
    gallery.search.setText("")
    qtbot.waitUntil(lambda: len(gallery.model.records) == 4, timeout=WAIT)
    # an image made ten days ago with another model (as an older session would have left it)
    newest = gallery.model.records[0]
    old = dataclasses.replace(
        newest,
        id="old-one",
        model="other/model",
        prompt="an old sketch",
        created=time.time() - 10 * 86400,
        path=newest.path.with_name("old.png"),
    )
    shutil.copyfile(newest.path, old.path)
    studio.store.add_artifact(old)
    gallery.reload()
    assert gallery.count.text() == "5 items"
    # the model filter lists the models seen
    models = [gallery.model_filter.itemData(i) for i in range(gallery.model_filter.count())]
    assert models == [None, "fake/tiny-model", "other/model"]
    gallery.model_filter.setCurrentIndex(gallery.model_filter.findData("other/model"))
    assert prompts(gallery) == ["an old sketch"]
    gallery.model_filter.setCurrentIndex(gallery.model_filter.findData("fake/tiny-model"))
    assert len(gallery.model.records) == 4 and "an old sketch" not in prompts(gallery)
    gallery.model_filter.setCurrentIndex(0)
    gallery.date.setCurrentIndex(gallery.date.findText("Today"))
    assert len(gallery.model.records) == 4 and "an old sketch" not in prompts(gallery)
    assert gallery.filters()["since"] <= time.time()
    gallery.date.setCurrentIndex(0)  # any date
    assert len(gallery.model.records) == 5


def test_details_and_use_these_settings(window: Any, studio: Any, qtbot: Any) -> None:
    make(studio, "fake-image", "a green frog", width=40, height=24, steps=2, negative_prompt="dull")
    gallery = open_gallery(window, qtbot)
    rec = gallery.model.records[0]
    assert gallery.select(rec.id)
    details = gallery.details
    assert details.fact_labels["Prompt"].text() == "a green frog"
    assert '"generator": "fake-image"' in details.recipe.toPlainText()
    assert details.image.image.width() == 40
    window.show_panel("queue")
    request = gallery.use_current()
    assert request is not None
    assert window.current_panel() == "generate"
    panel = window.generate
    assert panel.generator.id == "fake-image"
    assert panel.prompt.toPlainText() == "a green frog"
    assert panel.seed.value() == 5
    values = panel.form.values()
    assert (values["width"], values["height"], values["negative_prompt"]) == (40, 24, "dull")


def test_regenerate_gives_the_same_image(window: Any, studio: Any, qtbot: Any) -> None:
    make(studio, "fake-image", "a cat", width=16, height=16, steps=1)
    gallery = open_gallery(window, qtbot)
    original = gallery.model.records[0]
    gallery.select(original.id)
    job_id = gallery.regenerate_current()
    assert job_id is not None
    assert window.generate.job_id == job_id and window.current_panel() == "generate"
    studio.wait(job_id, timeout=10)
    [again] = studio.artifacts(job_id=job_id)
    assert Path(again.path).read_bytes() != b""
    assert QImage(str(again.path)) == QImage(str(original.path))


def test_delete_moves_to_trash(window: Any, studio: Any, qtbot: Any) -> None:
    make(studio, "fake-text", "to be deleted", max_tokens=3)
    gallery = open_gallery(window, qtbot)
    rec = gallery.model.records[0]
    gallery.select(rec.id)
    said: list[str] = []
    window.session.status.connect(said.append)
    assert gallery.delete_current()
    assert said[-1] == f"Moved {Path(rec.path).name} to the system trash"
    assert not Path(rec.path).exists()
    trash = Path(os.environ["XDG_DATA_HOME"]) / "Trash" / "files"  # the kit's private trash
    assert (trash / Path(rec.path).name).is_file()
    assert gallery.model.records == []
    assert gallery.empty.isVisibleTo(gallery)


def test_drag_out_gives_file_urls_and_new_artifacts_appear(
    window: Any, studio: Any, qtbot: Any
) -> None:
    gallery = open_gallery(window, qtbot)
    assert gallery.model.records == []
    make(studio, "fake-image", "a dragged owl", width=16, height=16, steps=1)
    qtbot.waitUntil(lambda: len(gallery.model.records) == 1, timeout=WAIT)  # reloads on its own
    rec = gallery.model.records[0]
    mime = gallery.model.mimeData([gallery.model.index(0)])
    assert mime.urls() == [QUrl.fromLocalFile(str(rec.path))]
    assert mime.hasImage()
    # dropped on the image field of an image-to-image form, it becomes the init image
    panel = window.generate
    panel.select_generator("test-variation")
    editor = panel.form.editor("init_image")
    assert editor.accepts(mime) == Path(rec.path)
    drop = QDropEvent(
        QPointF(4, 4),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    editor.dropEvent(drop)
    assert panel.form.values()["init_image"] == str(rec.path)
    job_id = panel.generate()
    assert job_id is not None
    studio.wait(job_id, timeout=10)


def test_a_new_artifact_does_not_interrupt_the_one_shown(
    window: Any, studio: Any, qtbot: Any, monkeypatch: Any
) -> None:
    """The gallery reloads when anything is saved; the audio being listened to keeps playing."""
    make(studio, "test-tone", "a low hum", seconds=0.2)
    gallery = open_gallery(window, qtbot)
    tone = gallery.model.records[0]
    assert gallery.select(tone.id) and gallery.details.audio.player.path == Path(tone.path)
    reloaded: list[Any] = []
    monkeypatch.setattr(gallery.details.audio.player, "set_file", reloaded.append)

    make(studio, "fake-image", "meanwhile, an owl", width=16, height=16, steps=1)
    qtbot.waitUntil(lambda: len(gallery.model.records) == 2, timeout=WAIT)

    assert gallery.details.record is not None and gallery.details.record.id == tone.id
    assert reloaded == []  # the player was not reset (which would stop playback)


def test_use_as_init_image_button(window: Any, studio: Any, qtbot: Any) -> None:
    make(studio, "fake-image", "a source", width=16, height=16, steps=1)
    window.generate.select_generator("test-variation")
    gallery = open_gallery(window, qtbot)
    rec = gallery.model.records[0]
    gallery.select(rec.id)
    assert gallery.details.init_button.isVisibleTo(gallery)
    gallery.details.init_button.click()
    assert window.current_panel() == "generate"
    assert window.generate.form.values()["init_image"] == str(rec.path)


@pytest.mark.parametrize("answer", ["Yes", "Cancel"])
def test_regenerate_asks_before_another_plugin_version(
    window: Any, studio: Any, qtbot: Any, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    make(studio, "fake-image", "a cat", width=16, height=16, steps=1)
    gallery = open_gallery(window, qtbot)
    gallery.select(gallery.model.records[0].id)
    calls: list[bool] = []
    real = studio.regenerate

    def regenerate(artifact: str, *, allow_other_version: bool = False) -> str:
        calls.append(allow_other_version)
        if not allow_other_version:
            raise PluginVersionMismatch("other version", plugin="fake", recorded="1", installed="2")
        return real(artifact, allow_other_version=True)

    asked: list[str] = []

    def question(parent: Any, title: str, text: str, *args: Any) -> Any:
        asked.append(text)
        return getattr(QMessageBox.StandardButton, answer)

    monkeypatch.setattr(studio, "regenerate", regenerate)
    monkeypatch.setattr(QMessageBox, "question", question)
    job_id = gallery.regenerate_current()
    assert asked and "fake 1; 2 is installed" in asked[0]
    if answer == "Yes":
        assert calls == [False, True] and job_id is not None
        studio.wait(job_id, timeout=10)
    else:
        assert calls == [False] and job_id is None
