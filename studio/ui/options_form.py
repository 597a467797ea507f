"""A form built only from an Options model's field specs (``studio.core.options.field_specs``).

No form is hand-written per generator, trainer or for the settings: each field's kind, range,
choices, default, description and widget hint decide its editor:

- ``bool`` -> check box; ``int``/``float`` -> spin box (with a slider when both ends are bounded);
- ``choice`` (``Literal``) -> combo box; ``path`` / widget ``image|mask|audio|file|folder`` -> a
  file picker (images accept drops, show a thumbnail); ``str`` -> line edit (``multiline``: a box);
- ``list`` -> comma-separated line edit (``multiline``: a box, one item per line); a field
  named ``seed`` -> number + dice button;
- optional fields (``X | None``) get a check box: unchecked means "default" (the field is left out).

Validation goes through ``studio.core.options.validate_options``; the offending field
(``OptionsError.field``) shows the message right under its editor.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel
from PySide6.QtCore import QMimeData, QRegularExpression, QSize, Qt, Signal
from PySide6.QtGui import QDragEnterEvent, QDropEvent, QImage, QPixmap, QRegularExpressionValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import OptionsError
from studio.core.options import FieldSpec, allowed_text, field_specs, validate_options
from studio.ui.util import icon

INT_MIN, INT_MAX = -(2**31), 2**31 - 1
SEED_MAX = 2**32 - 1
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
AUDIO_FILTER = "Audio (*.wav *.flac *.ogg *.mp3)"
_FILTERS = {"image": IMAGE_FILTER, "mask": IMAGE_FILTER, "audio": AUDIO_FILTER}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
_AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")


#: Words shown in capitals in field titles made from names ("cpu_threads" -> "CPU threads").
_ACRONYMS = {
    "gb": "GB",
    "mb": "MB",
    "cpu": "CPU",
    "gpu": "GPU",
    "cfg": "CFG",
    "lr": "LR",
    "lora": "LoRA",
    "vae": "VAE",
    "id": "ID",
    "url": "URL",
    "tts": "TTS",
    "hz": "Hz",
}


def display_title(spec: FieldSpec) -> str:
    """The label for a field: its own title, with acronyms written as such."""
    words = spec.title.split(" ")
    return " ".join(_ACRONYMS.get(w.lower(), w) if w else w for w in words)


def _decimals_for(*values: float | None) -> int:
    """Enough decimals to show every given number (2 at least, 6 at most)."""
    best = 2
    for v in values:
        if v is None or v == 0 or not math.isfinite(v):
            continue
        text = f"{abs(v):.6f}".rstrip("0")
        frac = text.split(".")[1] if "." in text else ""
        best = max(best, len(frac))
    return min(best, 6)


class FieldEditor(QWidget):
    """One field's editor: ``value()`` / ``set_value()`` and a ``changed`` signal."""

    changed = Signal()

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.row = QHBoxLayout(self)
        self.row.setContentsMargins(0, 0, 0, 0)

    def value(self) -> Any:
        raise NotImplementedError

    def set_value(self, value: Any) -> None:
        raise NotImplementedError


class BoolEditor(FieldEditor):
    def __init__(self, spec: FieldSpec, parent: QWidget | None = None) -> None:
        super().__init__(spec, parent)
        self.box = QCheckBox()
        self.box.toggled.connect(self.changed)
        self.row.addWidget(self.box)
        self.row.addStretch(1)

    def value(self) -> bool:
        return self.box.isChecked()

    def set_value(self, value: Any) -> None:
        self.box.setChecked(bool(value))


class NumberEditor(FieldEditor):
    """Spin box for ints/floats; a slider beside it when the range is bounded on both ends."""

    SLIDER_TICKS = 1000

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None) -> None:
        super().__init__(spec, parent)
        self.is_int = spec.kind == "int"
        lo, hi = self._bounds()
        self.spin: QSpinBox | QDoubleSpinBox
        if self.is_int:
            spin = QSpinBox()
            spin.setRange(int(lo), int(hi))
            spin.setSingleStep(int(spec.multiple_of or 1))
            self.spin = spin
        else:
            dspin = QDoubleSpinBox()
            dspin.setDecimals(
                _decimals_for(spec.default, spec.minimum, spec.maximum, spec.multiple_of)
            )
            dspin.setRange(lo, hi)
            dspin.setSingleStep(self._float_step(lo, hi))
            self.spin = dspin
        self.spin.setKeyboardTracking(False)
        self.spin.setMinimumWidth(90)
        self.spin.setAccelerated(True)
        self.slider: QSlider | None = None
        bounded = spec.minimum is not None and spec.maximum is not None
        if bounded and (spec.widget == "slider" or hi - lo <= 100_000):
            self.slider = QSlider(Qt.Orientation.Horizontal)
            self.slider.setRange(0, self.SLIDER_TICKS)
            self.slider.setMinimumWidth(80)
            self.slider.valueChanged.connect(self._from_slider)
            self.row.addWidget(self.slider, 1)
        self.row.addWidget(self.spin, 0 if self.slider else 1)
        self.spin.valueChanged.connect(self._from_spin)
        self._syncing = False

    def _bounds(self) -> tuple[float, float]:
        spec = self.spec
        if self.is_int:
            lo = INT_MIN if spec.minimum is None else math.ceil(spec.minimum)
            hi = INT_MAX if spec.maximum is None else math.floor(spec.maximum)
            lo += 1 if spec.exclusive_minimum and spec.minimum is not None else 0
            hi -= 1 if spec.exclusive_maximum and spec.maximum is not None else 0
            return lo, hi
        tiny = 10.0 ** -_decimals_for(spec.default, spec.minimum, spec.maximum, spec.multiple_of)
        flo = -1e12 if spec.minimum is None else float(spec.minimum)
        fhi = 1e12 if spec.maximum is None else float(spec.maximum)
        flo += tiny if spec.exclusive_minimum and spec.minimum is not None else 0.0
        fhi -= tiny if spec.exclusive_maximum and spec.maximum is not None else 0.0
        return flo, fhi

    def _float_step(self, lo: float, hi: float) -> float:
        if self.spec.multiple_of:
            return float(self.spec.multiple_of)
        if self.spec.minimum is not None and self.spec.maximum is not None and hi > lo:
            span = hi - lo
            return 10 ** math.floor(math.log10(span / 20)) if span > 0 else 0.1
        default = self.spec.default
        if isinstance(default, int | float) and default:
            return 10 ** math.floor(math.log10(abs(default)))
        return 0.1

    def _from_spin(self, value: float) -> None:
        if self.slider is not None and not self._syncing:
            lo, hi = self.spin.minimum(), self.spin.maximum()
            self._syncing = True
            self.slider.setValue(
                round((value - lo) / (hi - lo) * self.SLIDER_TICKS) if hi > lo else 0
            )
            self._syncing = False
        self.changed.emit()

    def _from_slider(self, tick: int) -> None:
        if self._syncing:
            return
        lo, hi = self.spin.minimum(), self.spin.maximum()
        value = lo + (hi - lo) * tick / self.SLIDER_TICKS
        step = self.spin.singleStep()
        if step:  # snap to the step grid (multiple_of for ints and floats alike)
            value = lo + round((value - lo) / step) * step
        self._syncing = True
        if isinstance(self.spin, QSpinBox):
            self.spin.setValue(round(value))
        else:
            self.spin.setValue(value)
        self._syncing = False
        self.changed.emit()

    def value(self) -> int | float:
        v = self.spin.value()
        return int(v) if self.is_int else float(v)

    def set_value(self, value: Any) -> None:
        if value is None:
            return
        if isinstance(self.spin, QSpinBox):
            self.spin.setValue(int(value))
        else:
            self.spin.setValue(float(value))
        self._from_spin(self.spin.value())


class ChoiceEditor(FieldEditor):
    def __init__(self, spec: FieldSpec, parent: QWidget | None = None) -> None:
        super().__init__(spec, parent)
        self.combo = QComboBox()
        for choice in spec.choices:
            self.combo.addItem(str(choice), choice)
        self.combo.currentIndexChanged.connect(self.changed)
        self.row.addWidget(self.combo, 1)

    def value(self) -> Any:
        return self.combo.currentData()

    def set_value(self, value: Any) -> None:
        for i in range(self.combo.count()):
            if self.combo.itemData(i) == value or self.combo.itemText(i) == str(value):
                self.combo.setCurrentIndex(i)
                return


class TextEditor(FieldEditor):
    def __init__(self, spec: FieldSpec, parent: QWidget | None = None) -> None:
        super().__init__(spec, parent)
        self.multiline = spec.widget == "multiline"
        self.edit: QLineEdit | QPlainTextEdit
        if self.multiline:
            box = QPlainTextEdit()
            box.setTabChangesFocus(True)
            box.setFixedHeight(64)
            box.textChanged.connect(self.changed)
            if spec.kind == "list":  # a list of sentences (prompts): one per line
                box.setPlaceholderText("one per line")
            self.edit = box
        else:
            line = QLineEdit()
            line.textChanged.connect(self.changed)
            if spec.kind == "list":
                line.setPlaceholderText("comma-separated")
            self.edit = line
        self.row.addWidget(self.edit, 1)

    def text(self) -> str:
        if isinstance(self.edit, QPlainTextEdit):
            return self.edit.toPlainText()
        return self.edit.text()

    def value(self) -> Any:
        text = self.text()
        if self.spec.kind == "list":
            parts = text.splitlines() if self.multiline else text.split(",")
            return [part.strip() for part in parts if part.strip()]
        return text

    def set_value(self, value: Any) -> None:
        if value is None:
            value = ""
        if self.spec.kind == "list" and isinstance(value, list | tuple):
            value = ("\n" if self.multiline else ", ").join(str(v) for v in value)
        if isinstance(self.edit, QPlainTextEdit):
            self.edit.setPlainText(str(value))
        else:
            self.edit.setText(str(value))


class SeedEditor(FieldEditor):
    """A seed: digits only (0 .. 2**32-1), empty for random, and a dice button for a fresh one."""

    def __init__(self, spec: FieldSpec | None = None, parent: QWidget | None = None) -> None:
        super().__init__(spec or FieldSpec("seed", "int", None, "", "Seed"), parent)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText("random")
        self.edit.setValidator(QRegularExpressionValidator(QRegularExpression(r"\d{0,10}")))
        self.edit.textChanged.connect(self.changed)
        self.dice = QToolButton()
        dice = icon("dice")
        if dice.isNull():
            self.dice.setText("Roll")
        else:
            self.dice.setIcon(dice)
        self.dice.setToolTip("Roll a new random seed")
        self.dice.clicked.connect(self.roll)
        self.row.addWidget(self.edit, 1)
        self.row.addWidget(self.dice)

    def roll(self) -> int:
        """Put a fresh random seed in the field and return it."""
        seed = random.randint(0, SEED_MAX)
        self.edit.setText(str(seed))
        return seed

    def value(self) -> int | None:
        text = self.edit.text().strip()
        return int(text) if text else None

    def set_value(self, value: Any) -> None:
        self.edit.setText("" if value is None else str(int(value)))


class PathEditor(FieldEditor):
    """A file (or folder) picker; image fields accept dropped images and show a thumbnail."""

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None) -> None:
        super().__init__(spec, parent)
        self.widget_kind = spec.widget or "file"
        self.folder = self.widget_kind == "folder" or spec.name.endswith(("_dir", "_folder"))
        self.thumb: QLabel | None = None
        if self.widget_kind in ("image", "mask"):
            self.thumb = QLabel()
            self.thumb.setFixedSize(40, 40)
            self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
            self.thumb.setObjectName("fieldThumb")
            self.row.addWidget(self.thumb)
        self.edit = QLineEdit()
        self.edit.setPlaceholderText(
            "drop an image here or browse"
            if self.thumb is not None
            else ("choose a folder" if self.folder else "choose a file")
        )
        self.edit.textChanged.connect(self._changed)
        self.browse = QToolButton()
        self.browse.setText("…")
        self.browse.setToolTip("Browse")
        self.browse.clicked.connect(self.pick)
        self.clear = QToolButton()
        self.clear.setText("✕")
        self.clear.setToolTip("Clear")
        self.clear.clicked.connect(lambda: self.edit.setText(""))
        self.row.addWidget(self.edit, 1)
        self.row.addWidget(self.browse)
        self.row.addWidget(self.clear)
        self.setAcceptDrops(True)

    def pick(self) -> None:
        start = self.edit.text() or str(Path.home())
        if self.folder:
            chosen = QFileDialog.getExistingDirectory(self, self.spec.title, start)
        else:
            filt = _FILTERS.get(self.widget_kind, "All files (*)")
            chosen, _ = QFileDialog.getOpenFileName(self, self.spec.title, start, filt)
        if chosen:
            self.edit.setText(chosen)

    def _changed(self) -> None:
        if self.thumb is not None:
            path = self.edit.text().strip()
            img = QImage(path) if path else QImage()
            if img.isNull():
                self.thumb.clear()
            else:
                self.thumb.setPixmap(
                    QPixmap.fromImage(img).scaled(
                        QSize(40, 40),
                        Qt.AspectRatioMode.KeepAspectRatio,
                        Qt.TransformationMode.SmoothTransformation,
                    )
                )
        self.changed.emit()

    def accepts(self, mime: QMimeData) -> Path | None:
        """The first local file in ``mime`` this field can take, else ``None``."""
        for url in mime.urls():
            if not url.isLocalFile():
                continue
            path = Path(url.toLocalFile())
            if self.folder:
                return path if path.is_dir() else None
            if self.thumb is not None and path.suffix.lower() not in _IMAGE_SUFFIXES:
                continue
            if self.widget_kind == "audio" and path.suffix.lower() not in _AUDIO_SUFFIXES:
                continue
            return path
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:
        if self.accepts(event.mimeData()) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:
        path = self.accepts(event.mimeData())
        if path is not None:
            self.edit.setText(str(path))
            event.acceptProposedAction()

    def value(self) -> str | None:
        text = self.edit.text().strip()
        return text or None

    def set_value(self, value: Any) -> None:
        self.edit.setText("" if value is None else str(value))


def make_editor(spec: FieldSpec) -> FieldEditor:
    """The editor for one field spec."""
    if spec.name == "seed" and spec.kind == "int":
        return SeedEditor(spec)
    if spec.kind == "bool":
        return BoolEditor(spec)
    if spec.kind in ("int", "float"):
        return NumberEditor(spec)
    if spec.kind == "choice":
        return ChoiceEditor(spec)
    if spec.kind == "path" or spec.widget in ("image", "mask", "audio", "file", "folder"):
        return PathEditor(spec)
    return TextEditor(spec)


class FieldRow(QWidget):
    """An editor, its "set" box when optional, and the error label under it."""

    changed = Signal()

    def __init__(self, spec: FieldSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.editor = make_editor(spec)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.setSpacing(2)
        line = QHBoxLayout()
        line.setContentsMargins(0, 0, 0, 0)
        self.enabled_box: QCheckBox | None = None
        # A seed's empty state already means "random", so it needs no separate "set" box.
        if spec.optional and not isinstance(self.editor, SeedEditor):
            self.enabled_box = QCheckBox()
            self.enabled_box.setToolTip("Unchecked: use the default")
            self.enabled_box.toggled.connect(self._toggle)
            line.addWidget(self.enabled_box)
            self.default_label = QLabel("default (check to set)")
            self.default_label.setObjectName("defaultHint")
            line.addWidget(self.default_label, 1)
        line.addWidget(self.editor, 1)
        column.addLayout(line)
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        column.addWidget(self.error)
        tip = spec.description
        allowed = allowed_text(spec) if spec.kind in ("int", "float", "choice") else ""
        if allowed:
            tip = f"{tip}\nAllowed: {allowed}" if tip else f"Allowed: {allowed}"
        self.setToolTip(tip)
        self.editor.setToolTip(tip)
        if spec.default is not None:
            self.editor.set_value(spec.default)
        self.editor.changed.connect(self.changed)
        if self.enabled_box is not None:
            self._toggle(False)

    def _toggle(self, on: bool) -> None:
        # At "default" the editor is hidden: a greyed-out number would look like the value used.
        self.editor.setEnabled(on)
        self.editor.setVisible(on)
        if hasattr(self, "default_label"):
            self.default_label.setVisible(not on)
        self.changed.emit()

    def is_set(self) -> bool:
        """False while an optional field is left at its default."""
        return self.enabled_box is None or self.enabled_box.isChecked()

    def value(self) -> Any:
        return self.editor.value() if self.is_set() else None

    def set_value(self, value: Any) -> None:
        if self.enabled_box is not None:
            self.enabled_box.setChecked(value is not None)
        if value is not None or isinstance(self.editor, SeedEditor | PathEditor):
            self.editor.set_value(value)

    def show_error(self, message: str | None) -> None:
        self.error.setText(message or "")
        self.error.setVisible(bool(message))
        for widget in (self.editor, *self.editor.findChildren(QWidget)):
            if bool(widget.property("invalid")) != bool(message):
                widget.setProperty("invalid", bool(message))
                widget.style().unpolish(widget)
                widget.style().polish(widget)


class OptionsForm(QWidget):
    """The form for one Options model. ``values()`` feeds ``validate_options`` directly."""

    changed = Signal()

    def __init__(
        self,
        options_cls: type[BaseModel],
        parent: QWidget | None = None,
        *,
        exclude: Iterable[str] = (),
        values: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(parent)
        self.options_cls = options_cls
        skip = set(exclude)
        self.specs = [s for s in field_specs(options_cls) if s.name not in skip]
        self.rows: dict[str, FieldRow] = {}
        self.labels: dict[str, QLabel] = {}
        layout = QFormLayout(self)
        layout.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        layout.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        layout.setContentsMargins(0, 0, 0, 0)
        for spec in self.specs:
            row = FieldRow(spec)
            row.setObjectName(f"field_{spec.name}")
            label = QLabel(display_title(spec) + ("*" if spec.required else ""))
            label.setToolTip(row.toolTip())
            label.setBuddy(row.editor)
            row.changed.connect(self._on_changed)
            layout.addRow(label, row)
            self.rows[spec.name] = row
            self.labels[spec.name] = label
        if not self.specs:
            empty = QLabel("This one has no options.")
            empty.setObjectName("hint")
            layout.addRow(empty)
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Maximum)
        if values:
            self.set_values(values)

    def _on_changed(self) -> None:
        sender = self.sender()
        if isinstance(sender, FieldRow):
            sender.show_error(None)
        self.changed.emit()

    # -- values -----------------------------------------------------------------------------
    def values(self) -> dict[str, Any]:
        """Every field that is set (optional ones at "default" and empty required ones left out)."""
        out: dict[str, Any] = {}
        for name, row in self.rows.items():
            if not row.is_set():
                continue
            value = row.value()
            if value is None or (value == "" and row.spec.required):
                continue
            out[name] = value
        return out

    def set_values(self, values: dict[str, Any]) -> None:
        """Load values (a recipe's options, saved state); unknown keys are ignored."""
        for name, value in values.items():
            row = self.rows.get(name)
            if row is not None:
                row.set_value(value)

    def reset(self) -> None:
        """Back to the defaults."""
        for row in self.rows.values():
            if row.enabled_box is not None:
                row.enabled_box.setChecked(False)
            elif row.spec.default is not None:
                row.editor.set_value(row.spec.default)
        self.clear_errors()

    def editor(self, name: str) -> FieldEditor:
        return self.rows[name].editor

    # -- validation -------------------------------------------------------------------------
    def validate(self) -> BaseModel | None:
        """Validate with ``validate_options``; on error show it next to its field, return None."""
        self.clear_errors()
        try:
            return validate_options(self.options_cls, self.values())
        except OptionsError as exc:
            self.show_error(exc.field, str(exc))
            return None

    def show_error(self, field: str | None, message: str) -> bool:
        """Show ``message`` next to ``field``; False when the field is not in this form."""
        row = self.rows.get(field) if field else None
        if row is None:
            return False
        row.show_error(message)
        row.editor.setFocus()
        return True

    def error_of(self, field: str) -> str | None:
        return self.rows[field].error.text() or None

    def clear_errors(self) -> None:
        for row in self.rows.values():
            row.show_error(None)

    def first_image_field(self) -> str | None:
        """The first field that takes an init image (where a dropped gallery image goes)."""
        for spec in self.specs:
            if spec.widget == "image":
                return spec.name
        return None
