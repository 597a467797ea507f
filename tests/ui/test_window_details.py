"""The model selector's list, the themes (and following the desktop), Open folder, audio fields."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field
from PySide6.QtCore import QMimeData, QObject, Qt, QUrl, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication, QPalette, QStyleHints
from safetensors.numpy import save_file

from studio import BaseOptions
from studio.core.generator import GenerationRequest
from studio.core.studio import Studio
from studio.testing.hub import save_to_hub_cache
from studio.ui import options_form
from studio.ui.model_picker import REF_ROLE
from studio.ui.options_form import OptionsForm, PathEditor

WAIT = 10_000


def picker_rows(picker: Any) -> list[tuple[str, str | None]]:
    return [(picker.itemText(i), picker.itemData(i, REF_ROLE)) for i in range(picker.count())]


def test_the_model_selector_lists_catalog_hub_and_library_models(
    window: Any, studio: Studio, hub_cache: Path, tmp_path: Path, qtbot: Any
) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    save_file({"w": np.zeros((64, 64), dtype="float32")}, str(source / "model.safetensors"))
    save_to_hub_cache(source, "test-org/tiny-text", hub_cache)
    studio.store.add_library_model(
        "my-poems", source, "transformers", 16_000, modality="text", name="My poems model"
    )
    window.session.refresh_models()
    qtbot.waitUntil(
        lambda: {"test-org/tiny-text", "my-poems"} <= {m.ref for m in window.session.models},
        timeout=WAIT,
    )
    panel = window.generate
    panel.select_generator("fake-text")  # modality text, task text-generation
    rows = picker_rows(panel.model_picker)
    refs = [ref for _label, ref in rows]

    assert rows[0][1] is None and rows[0][0].startswith("Default: ")  # the generator's own
    labels = dict((ref, label) for label, ref in rows)
    assert labels["my-poems"] == "My poems model · 16.0 kB · downloaded · library"
    assert labels["test-org/tiny-text"].startswith("test-org/tiny-text · ")
    assert labels["test-org/tiny-text"].endswith(" · downloaded")
    smol = "HuggingFaceTB/SmolLM2-360M-Instruct"
    assert labels[smol] == "SmolLM2 360M Instruct · 724.0 MB · not downloaded"
    # what is on disk first (the library before the hub cache), then the catalog
    assert refs.index("my-poems") < refs.index("test-org/tiny-text") < refs.index(smol)
    # only models for this task: no image or audio catalog entries
    assert "stable-diffusion-v1-5/stable-diffusion-v1-5" not in refs
    assert "facebook/musicgen-small" not in refs
    # choosing one is what the request uses
    panel.model_picker.set_ref("my-poems")
    panel.prompt.setPlainText("a poem")
    request = panel.build_request()
    assert request is not None and request.model == "my-poems"


def test_dark_light_and_following_the_desktop(
    window: Any, studio: Studio, qtbot: Any, monkeypatch: Any
) -> None:
    app = QGuiApplication.instance()
    assert app is not None

    def window_colour() -> str:
        return str(app.palette().color(QPalette.ColorRole.Window).name())

    dialog = window.open_settings()
    theme = dialog.body.form.editor("theme")
    theme.set_value("dark")
    assert dialog.save()
    assert window_colour() == "#23262c"
    dialog = window.open_settings()
    dialog.body.form.editor("theme").set_value("light")
    assert dialog.save()
    assert window_colour() == "#f3f4f6"
    # "system": the desktop switching to dark switches the window (offscreen Qt cannot switch
    # its scheme, so the hint answers dark and the desktop's signal is sent by hand)
    dialog = window.open_settings()
    dialog.body.form.editor("theme").set_value("system")
    assert dialog.save()
    assert window_colour() == "#f3f4f6"
    monkeypatch.setattr(QStyleHints, "colorScheme", lambda _self: Qt.ColorScheme.Dark)
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Dark)
    assert window_colour() == "#23262c"
    monkeypatch.setattr(QStyleHints, "colorScheme", lambda _self: Qt.ColorScheme.Light)
    app.styleHints().colorSchemeChanged.emit(Qt.ColorScheme.Light)
    assert window_colour() == "#f3f4f6"


class _Opened(QObject):
    """Stands in for the file manager: records the URLs the window asks to open."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[QUrl] = []

    @Slot(QUrl)
    def open(self, url: QUrl) -> None:
        self.urls.append(url)


def test_open_folder_from_the_gallery_and_the_models_panel(
    window: Any, studio: Studio, hub_cache: Path, tmp_path: Path, qtbot: Any
) -> None:
    opened = _Opened()
    QDesktopServices.setUrlHandler("file", opened, "open")
    try:
        job = studio.submit(GenerationRequest(generator="fake-text", prompt="hello", seed=1))
        studio.wait(job, timeout=10)
        gallery = window.gallery
        window.show_panel("gallery")
        gallery.reload()
        qtbot.waitUntil(lambda: gallery.loaded and gallery.details.record is not None, timeout=WAIT)
        gallery.open_folder()
        record = gallery.details.record
        assert opened.urls == [QUrl.fromLocalFile(str(Path(record.path).parent))]

        source = tmp_path / "src"
        source.mkdir()
        (source / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
        save_to_hub_cache(source, "test-org/folder", hub_cache)
        window.session.refresh_models()
        qtbot.waitUntil(
            lambda: any(m.ref == "test-org/folder" for m in window.session.models), timeout=WAIT
        )
        models = window.models
        assert models.reveal("test-org/folder")
        assert models.folder_button.isEnabled()
        models.open_folder()
        entry = models.selected()
        assert entry is not None and entry.path is not None
        assert opened.urls[-1] == QUrl.fromLocalFile(str(entry.path))
        assert Path(opened.urls[-1].toLocalFile()).is_dir()
    finally:
        QDesktopServices.unsetUrlHandler("file")


class _MelodyOptions(BaseOptions):
    melody: str | None = Field(
        None, description="A melody to follow.", json_schema_extra={"widget": "audio"}
    )


def test_an_audio_field_takes_sound_files_only(
    qtbot: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    form = OptionsForm(_MelodyOptions)
    qtbot.addWidget(form)
    editor = form.editor("melody")
    assert isinstance(editor, PathEditor) and editor.thumb is None
    wav, png = tmp_path / "tune.wav", tmp_path / "cover.png"
    wav.write_bytes(b"RIFF")
    png.write_bytes(b"\x89PNG")

    def dropped(*paths: Path) -> QMimeData:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
        return mime

    assert editor.accepts(dropped(png)) is None
    assert editor.accepts(dropped(png, wav)) == wav  # the first sound among the files
    # Browse offers sound files
    asked: list[str] = []

    def choose(_parent: Any, _title: str, _start: str, filters: str) -> tuple[str, str]:
        asked.append(filters)
        return str(wav), filters

    monkeypatch.setattr(options_form.QFileDialog, "getOpenFileName", choose)
    editor.pick()
    assert asked == [options_form.AUDIO_FILTER]
    assert editor.value() == str(wav)
