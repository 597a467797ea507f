"""The form is built only from an Options model: editors by type, ranges, defaults, validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import Field
from PySide6.QtCore import QMimeData, QPoint, Qt, QUrl
from PySide6.QtGui import QDropEvent
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSlider, QSpinBox

from studio import BaseOptions
from studio.core.settings import Settings
from studio.ui.options_form import (
    BoolEditor,
    ChoiceEditor,
    NumberEditor,
    OptionsForm,
    PathEditor,
    SeedEditor,
    TextEditor,
)

T = TypeVar("T")


def child(widget: Any, cls: type[T]) -> T:
    """The first child of ``widget`` of type ``cls`` (the test fails if there is none)."""
    found = widget.findChild(cls)
    assert found is not None, f"no {cls.__name__} in {widget!r}"
    return found


class SampleOptions(BaseOptions):
    steps: int = Field(20, ge=1, le=150, description="Denoising steps.")
    width: int = Field(512, ge=64, le=2048, multiple_of=8, description="Width in pixels.")
    guidance: float = Field(7.5, ge=0.0, le=30.0, description="Guidance scale.")
    strength: float = Field(0.75, gt=0.0, le=1.0, description="How much to change the image.")
    sampler: Literal["euler", "ddim", "dpm"] = Field("euler", description="The sampler.")
    tiled: bool = Field(False, description="Tile the output.")
    negative: str = Field(
        "", description="What to avoid.", json_schema_extra={"widget": "multiline"}
    )
    init_image: Path | None = Field(
        None, description="Start image.", json_schema_extra={"widget": "image"}
    )
    seed: int | None = Field(None, ge=0, lt=2**32, description="Seed.")
    temperature: float | None = Field(None, gt=0, le=5, description="Sampling temperature.")
    tags: list[str] = Field(default_factory=list, description="Tags.")


def make_form(qtbot: Any, **values: Any) -> OptionsForm:
    form = OptionsForm(SampleOptions, values=values or None)
    qtbot.addWidget(form)
    return form


def test_editor_per_type(qtbot: Any) -> None:
    form = make_form(qtbot)
    kinds = {name: type(row.editor) for name, row in form.rows.items()}
    assert kinds == {
        "steps": NumberEditor,
        "width": NumberEditor,
        "guidance": NumberEditor,
        "strength": NumberEditor,
        "sampler": ChoiceEditor,
        "tiled": BoolEditor,
        "negative": TextEditor,
        "init_image": PathEditor,
        "seed": SeedEditor,
        "temperature": NumberEditor,
        "tags": TextEditor,
    }
    assert isinstance(form.editor("steps").findChild(QSpinBox), QSpinBox)
    assert isinstance(form.editor("guidance").findChild(QDoubleSpinBox), QDoubleSpinBox)
    assert isinstance(form.editor("tiled").findChild(QCheckBox), QCheckBox)
    combo = child(form.editor("sampler"), QComboBox)
    assert [combo.itemText(i) for i in range(combo.count())] == ["euler", "ddim", "dpm"]


def test_ranges_defaults_and_tooltips(qtbot: Any) -> None:
    form = make_form(qtbot)
    steps = form.editor("steps")
    assert isinstance(steps, NumberEditor)
    assert (steps.spin.minimum(), steps.spin.maximum()) == (1, 150)
    assert steps.slider is not None  # bounded both ends -> a slider too
    width = form.editor("width")
    assert isinstance(width, NumberEditor)
    assert width.spin.singleStep() == 8
    strength = form.editor("strength")
    assert isinstance(strength, NumberEditor)
    assert 0.0 < strength.spin.minimum() < 0.05  # gt=0: zero itself is not offered
    assert form.values()["steps"] == 20 and form.values()["sampler"] == "euler"
    assert "Denoising steps." in form.rows["steps"].toolTip()
    assert "Allowed: an integer >= 1 and <= 150" in form.rows["steps"].toolTip()
    assert form.labels["steps"].toolTip() == form.rows["steps"].toolTip()


def test_slider_moves_spin_snapped_to_multiple(qtbot: Any) -> None:
    form = make_form(qtbot)
    width = form.editor("width")
    assert isinstance(width, NumberEditor) and width.slider is not None
    width.slider.setValue(500)
    assert width.value() % 8 == 0
    assert 64 <= width.value() <= 2048
    width.spin.setValue(1024)
    assert width.slider.value() == round((1024 - 64) / (2048 - 64) * 1000)


def test_optional_fields_default_state(qtbot: Any) -> None:
    form = make_form(qtbot)
    row = form.rows["temperature"]
    assert row.enabled_box is not None and not row.enabled_box.isChecked()
    assert not row.editor.isEnabled()
    assert "temperature" not in form.values()
    row.enabled_box.setChecked(True)
    row.editor.set_value(0.7)
    assert form.values()["temperature"] == 0.7
    form.set_values({"temperature": None})
    assert "temperature" not in form.values()


def test_seed_dice_and_empty_means_random(qtbot: Any) -> None:
    form = make_form(qtbot)
    seed = form.editor("seed")
    assert isinstance(seed, SeedEditor)
    assert "seed" not in form.values()
    rolled = seed.roll()
    assert 0 <= rolled < 2**32
    assert form.values()["seed"] == rolled
    qtbot.mouseClick(seed.dice, Qt.MouseButton.LeftButton)
    assert isinstance(form.values()["seed"], int)


def test_values_round_trip(qtbot: Any) -> None:
    values = {
        "steps": 33,
        "width": 640,
        "guidance": 3.25,
        "sampler": "ddim",
        "tiled": True,
        "negative": "blurry",
        "tags": ["a", "b"],
    }
    form = make_form(qtbot, **values)
    got = form.values()
    for key, value in values.items():
        assert got[key] == value
    model = form.validate()
    assert model is not None and model.steps == 33  # type: ignore[attr-defined]
    form.reset()
    assert form.values()["steps"] == 20


def test_validation_error_shown_next_to_field(qtbot: Any) -> None:
    form = make_form(qtbot)
    form.show()
    editor = form.editor("init_image")
    assert isinstance(editor, PathEditor)
    form.rows["init_image"].set_value(123)  # a path that pydantic accepts as text
    form.rows["tags"].editor.set_value("ok")
    # a value the spin box cannot produce, but a stored state or recipe can: validation says why
    form.rows["steps"].editor.spin.setMaximum(1000)  # type: ignore[attr-defined]
    form.rows["steps"].editor.set_value(500)
    assert form.validate() is None
    error = form.error_of("steps")
    assert error is not None and "steps" in error and "<= 150" in error
    assert form.rows["steps"].error.isVisible()
    assert form.rows["steps"].editor.spin.property("invalid") is True  # type: ignore[attr-defined]
    # editing the field clears its error
    form.rows["steps"].editor.set_value(100)
    assert form.error_of("steps") is None
    assert form.validate() is not None


def test_image_field_accepts_dropped_file(qtbot: Any, tmp_path: Path) -> None:
    from PIL import Image

    image = tmp_path / "init.png"
    Image.new("RGB", (16, 16), (10, 200, 10)).save(image)
    form = make_form(qtbot)
    editor = form.editor("init_image")
    assert isinstance(editor, PathEditor)
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(tmp_path / "notes.txt")), QUrl.fromLocalFile(str(image))])
    assert editor.accepts(mime) == image
    drop = QDropEvent(
        QPoint(5, 5).toPointF(),
        Qt.DropAction.CopyAction,
        mime,
        Qt.MouseButton.LeftButton,
        Qt.KeyboardModifier.NoModifier,
    )
    editor.dropEvent(drop)
    form.rows["init_image"].enabled_box.setChecked(True)  # type: ignore[union-attr]
    assert form.values()["init_image"] == str(image)
    assert editor.thumb is not None and not editor.thumb.pixmap().isNull()
    assert form.first_image_field() == "init_image"


def test_settings_form_uses_the_same_builder(qtbot: Any) -> None:
    form = OptionsForm(Settings, exclude=("disabled_plugins",))
    qtbot.addWidget(form)
    assert "disabled_plugins" not in form.rows
    theme = child(form.editor("theme"), QComboBox)
    assert [theme.itemText(i) for i in range(theme.count())] == ["system", "light", "dark"]
    out_dir = form.editor("output_dir")
    assert isinstance(out_dir, PathEditor) and out_dir.folder
    device = child(form.editor("device"), QLineEdit)
    device.setText("gpu")
    assert form.validate() is None
    assert form.error_of("device") is not None
    cpu = form.editor("cpu_threads")
    assert isinstance(cpu, NumberEditor) and isinstance(cpu.slider, QSlider)
