"""The generate form's LoRA adapters: a list of rows, each an adapter and its weight.

Every row picks an adapter from the library (for the generator's modality), or takes any file,
folder or hub id (typed, or chosen in a file dialog), and a weight from -4 to 4. The rows become
``GenerationRequest.loras`` in order. A reference the studio cannot find (an adapter deleted since a
recipe was made) stays in its row, marked with a warning, so nothing is silently dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSlider,
    QStyle,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import InvalidRequest
from studio.core.generator import LoraSpec
from studio.core.records import AdapterRecord
from studio.ui.util import discard

#: combo item data of the two "choose a file / folder" entries (never a reference)
BROWSE_FILE = "\x00file"
BROWSE_FOLDER = "\x00folder"
#: weight files the core accepts as a path-like reference (as ``Studio.prepare`` does)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")
WEIGHT_FILTER = "Adapter weights (*.safetensors *.bin *.ckpt *.pt *.pth);;All files (*)"


def made_for(adapter: AdapterRecord) -> str:
    """What an adapter applies to, in words: its base model, else the generators it names."""
    if adapter.base_model:
        return adapter.base_model
    if adapter.generators:
        return ", ".join(adapter.generators)
    return "no base model"


def adapter_tip(adapter: AdapterRecord) -> str:
    """The tooltip of a library adapter: its file and what it was made for."""
    lines = [f"{adapter.name}: {adapter.path}"]
    lines.append(f"base model: {adapter.base_model or 'none (trained from no model)'}")
    if adapter.generators:
        lines.append(f"for: {', '.join(adapter.generators)}")
    return "\n".join(lines)


class AdapterLibrary:
    """The library adapters of one modality, found by id, name or file path.

    Those made for the current choice come first: for the chosen ``base_model``, or naming the
    chosen ``generator`` (a model-free trainer's adapter names its generators, not a model).
    """

    def __init__(
        self,
        adapters: Iterable[AdapterRecord] = (),
        base_model: str | None = None,
        generator: str | None = None,
    ):
        self.base_model = base_model
        self.generator = generator
        # made for the current choice first, then newest first
        self.adapters = sorted(adapters, key=lambda a: (not self.suits(a), -a.created))
        names = [a.name for a in self.adapters]
        self._by_ref: dict[str, AdapterRecord] = {}
        for adapter in reversed(self.adapters):  # the newest wins a shared name, as in the core
            self._by_ref[str(adapter.path)] = adapter
            self._by_ref[adapter.name] = adapter
        for adapter in self.adapters:
            self._by_ref[adapter.id] = adapter
        self._duplicate = {n for n in names if names.count(n) > 1}

    def find(self, ref: str) -> AdapterRecord | None:
        return self._by_ref.get(ref)

    def suits(self, adapter: AdapterRecord) -> bool:
        """Whether ``adapter`` is made for the chosen generator or base model."""
        if self.generator is not None and self.generator in adapter.generators:
            return True
        if adapter.base_model is None:
            # made from no model: for the generators it names (all, when it names none)
            return not adapter.generators
        return adapter.base_model == self.base_model

    def key(self, adapter: AdapterRecord) -> str:
        """The reference a row sends: the readable name, or the id when names repeat."""
        return adapter.id if adapter.name in self._duplicate else adapter.name

    def canonical(self, ref: str) -> str:
        """``ref`` as a row holds it: the library key when it names a library adapter."""
        found = self.find(ref)
        return self.key(found) if found is not None else ref


def missing_reason(ref: str) -> str | None:
    """Why the studio would not find ``ref`` outside the library (``None``: it looks usable).

    Mirrors ``Studio.prepare``: an existing file or folder is used; anything path-like, or a bare
    name, must exist; ``org/name`` is a hub id, downloaded when the generation runs.
    """
    path = Path(ref).expanduser()
    try:
        if path.exists():
            return None
    except OSError:  # a name too long or otherwise impossible for this file system
        pass
    path_like = (
        ref.lower().endswith(WEIGHT_SUFFIXES)
        or ref.startswith(("/", ".", "~"))
        or "\\" in ref
        or path.is_absolute()
    )
    if path_like:
        return "No such file or folder, and no adapter in the library has this path."
    if "/" not in ref:
        return "No adapter in the library has this name (it may have been deleted)."
    return None


class AdapterRow(QWidget):
    """One adapter: the reference (editable combo), its weight (slider + spin box), remove."""

    removed = Signal(object)

    def __init__(self, library: AdapterLibrary, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.library = library
        self._last_ref: str | None = None
        self.combo = QComboBox()
        self.combo.setEditable(True)
        self.combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.combo.setSizeAdjustPolicy(
            QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon
        )
        self.combo.setMinimumContentsLength(10)
        line = self.combo.lineEdit()
        assert line is not None
        line.setPlaceholderText("adapter, hub id, folder or .safetensors")
        # inside the field, so a marked row keeps the columns of the others
        self.warning = QAction(
            self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning), "", self
        )
        line.addAction(self.warning, QLineEdit.ActionPosition.LeadingPosition)
        self.warning.setVisible(False)
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(-400, 400)
        self.slider.setValue(100)
        self.slider.setMinimumWidth(50)
        self.weight = QDoubleSpinBox()
        self.weight.setRange(-4.0, 4.0)
        self.weight.setSingleStep(0.05)
        self.weight.setDecimals(2)
        self.weight.setValue(1.0)
        self.weight.setToolTip("Adapter weight: 1 is full strength, 0 is off, negative inverts.")
        self.slider.setToolTip(self.weight.toolTip())
        self.remove_button = QToolButton()
        self.remove_button.setIcon(
            self.style().standardIcon(QStyle.StandardPixmap.SP_TitleBarCloseButton)
        )
        self.remove_button.setAutoRaise(True)
        self.remove_button.setToolTip("Remove this adapter")
        self.remove_button.clicked.connect(lambda: self.removed.emit(self))
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addWidget(self.combo, 5)
        row.addWidget(self.slider, 2)
        row.addWidget(self.weight)
        row.addWidget(self.remove_button)
        self.slider.valueChanged.connect(lambda v: self.weight.setValue(v / 100))
        self.weight.valueChanged.connect(self._weight_changed)
        self.combo.activated.connect(self._activated)
        self.combo.currentIndexChanged.connect(lambda _i: self._update_status())
        line.editingFinished.connect(self._update_status)
        self._fill()

    # -- the list of choices --------------------------------------------------------------------
    def set_library(self, library: AdapterLibrary) -> None:
        """Re-list the choices, keeping the chosen reference (as its library entry if it is one)."""
        keep = self.ref()
        self.library = library
        self._fill()
        self.set_ref(keep)

    def _fill(self) -> None:
        self.combo.blockSignals(True)
        self.combo.clear()
        chosen = self.library.base_model or self.library.generator
        for adapter in self.library.adapters:
            label = adapter.name
            if chosen and not self.library.suits(adapter):
                label += f" (for {made_for(adapter)})"
            self.combo.addItem(label, self.library.key(adapter))
            self.combo.setItemData(
                self.combo.count() - 1, adapter_tip(adapter), Qt.ItemDataRole.ToolTipRole
            )
        if self.library.adapters:
            self.combo.insertSeparator(self.combo.count())
        self.combo.addItem("Choose a file…", BROWSE_FILE)
        self.combo.addItem("Choose a folder…", BROWSE_FOLDER)
        self.combo.setCurrentIndex(-1)
        self.combo.blockSignals(False)

    def _activated(self, index: int) -> None:
        data = self.combo.itemData(index)
        if data not in (BROWSE_FILE, BROWSE_FOLDER):
            return
        self.set_ref(self._last_ref)  # the entry is an action, never the choice
        # after the popup has closed: a modal dialog from inside it would grab a dying popup
        # (with the row as context: no call once the row is gone)
        QTimer.singleShot(0, self, lambda: self.browse(folder=data == BROWSE_FOLDER))

    def browse(self, folder: bool = False) -> str | None:
        """Choose a weights file (or a diffusers/peft adapter folder) for this row."""
        if folder:
            path = QFileDialog.getExistingDirectory(self, "Choose an adapter folder")
        else:
            path, _ = QFileDialog.getOpenFileName(self, "Choose an adapter file", "", WEIGHT_FILTER)
        if path:
            self.set_ref(path)
            return path
        return None

    # -- value ----------------------------------------------------------------------------------
    def ref(self) -> str | None:
        """The chosen reference (a library name or id, a path, a hub id); ``None`` when empty."""
        index = self.combo.currentIndex()
        text = self.combo.currentText().strip()
        if index >= 0 and self.combo.itemText(index) == self.combo.currentText():
            data = self.combo.itemData(index)
            if data in (BROWSE_FILE, BROWSE_FOLDER):
                return None
            return str(data) if data else None
        return text or None

    def set_ref(self, ref: str | None) -> None:
        """Show ``ref``: its library entry when it names one, else the reference as written."""
        self.combo.blockSignals(True)
        if ref is None:
            self.combo.setCurrentIndex(-1)
            self.combo.setEditText("")
        else:
            key = self.library.canonical(ref)
            index = self.combo.findData(key)
            if index >= 0 and key not in (BROWSE_FILE, BROWSE_FOLDER):
                self.combo.setCurrentIndex(index)
            else:
                self.combo.setCurrentIndex(-1)
                self.combo.setEditText(ref)
            line = self.combo.lineEdit()
            if line is not None:  # a path's end (the file name) says most; a name's start
                path_like = Path(ref).is_absolute() or ref.startswith(("~", "."))
                line.setCursorPosition(len(line.text()) if path_like else 0)
        self.combo.blockSignals(False)
        self._update_status()

    def weight_value(self) -> float:
        return float(self.weight.value())

    def set_weight(self, weight: float) -> None:
        self.weight.setValue(weight)

    def spec(self) -> LoraSpec | None:
        ref = self.ref()
        return LoraSpec(ref=ref, weight=self.weight_value()) if ref else None

    def problem(self) -> str | None:
        """Why this row would not apply (shown as a warning), or ``None``."""
        ref = self.ref()
        if ref is None or self.library.find(ref) is not None:
            return None
        return missing_reason(ref)

    def set_invalid(self, invalid: bool) -> None:
        """Outline the reference in red (an empty row at generate time)."""
        self.combo.setProperty("invalid", invalid)
        self.combo.style().unpolish(self.combo)
        self.combo.style().polish(self.combo)

    def _weight_changed(self, value: float) -> None:
        self.slider.blockSignals(True)
        self.slider.setValue(round(value * 100))
        self.slider.blockSignals(False)

    def _update_status(self) -> None:
        ref = self.ref()
        if self.combo.currentData() not in (BROWSE_FILE, BROWSE_FOLDER):
            self._last_ref = ref  # what to show again after a "Choose…" entry
        if ref is not None:
            self.set_invalid(False)
        problem = self.problem()
        self.warning.setVisible(problem is not None)
        found = self.library.find(ref) if ref else None
        if problem is not None:
            tip = f"{ref}\n{problem} Generating will fail until it is found or removed."
        elif found is not None:
            tip = adapter_tip(found)
        elif ref is not None and "/" in ref and not Path(ref).expanduser().exists():
            tip = f"{ref}\nA hub adapter: downloaded when the generation runs."
        else:
            tip = ref or "Pick an adapter from your library, or type a hub id, folder or file."
        self.warning.setToolTip(tip)
        self.combo.setToolTip(tip)


class AdapterList(QGroupBox):
    """The LoRA adapters of a generation, in order; the rows are kept per modality.

    Shown only for a generator that takes adapters (``set_modality(None)`` hides it).
    """

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__("LoRA adapters", parent)
        self.rows: list[AdapterRow] = []
        self.modality: str | None = None
        self.saved: dict[str, list[tuple[str, float]]] = {}
        self._all: list[AdapterRecord] = []
        self._base_model: str | None = None
        self._generator: str | None = None
        self.library = AdapterLibrary()
        self.rows_layout = QVBoxLayout()
        self.rows_layout.setContentsMargins(0, 0, 0, 0)
        self.rows_layout.setSpacing(4)
        self.add_button = QPushButton("Add adapter")
        self.add_button.setToolTip(
            "Apply another adapter: from your library, a hub id, a folder or a .safetensors file"
        )
        self.add_button.clicked.connect(self._add_clicked)
        self.hint = QLabel("None: the model as it is.")
        self.hint.setObjectName("hint")
        footer = QHBoxLayout()
        footer.addWidget(self.add_button)
        footer.addWidget(self.hint)
        footer.addStretch(1)
        column = QVBoxLayout(self)
        column.addLayout(self.rows_layout)
        column.addLayout(footer)

    # -- context --------------------------------------------------------------------------------
    def set_library(
        self,
        adapters: list[AdapterRecord],
        base_model: str | None = None,
        generator: str | None = None,
    ) -> None:
        """The whole adapter library; rows list those of the current modality, those made for
        ``base_model`` or ``generator`` (the chosen one's id) first."""
        self._all = list(adapters)
        self._base_model = base_model
        self._generator = generator
        self._relist()

    def set_modality(self, modality: str | None) -> None:
        """Switch to the adapters of ``modality`` (``None``: the generator takes none; hidden).

        The rows of each modality are remembered, so switching between image generators keeps
        the adapters, and switching to text and back restores the image ones.
        """
        self.setVisible(modality is not None)
        if modality == self.modality or modality is None:
            return
        if self.modality is not None:
            self.saved[self.modality] = self.entries()
        self.modality = modality
        self._relist()
        self.set_entries(self.saved.get(modality, []))

    def _relist(self) -> None:
        mine = [a for a in self._all if a.modality == self.modality]
        self.library = AdapterLibrary(mine, self._base_model, self._generator)
        for row in self.rows:
            row.set_library(self.library)

    # -- rows -----------------------------------------------------------------------------------
    def add_row(self, ref: str | None = None, weight: float = 1.0) -> AdapterRow:
        """Append a row showing ``ref`` (empty when ``None``) at ``weight``."""
        row = AdapterRow(self.library, self)
        row.set_ref(ref)
        row.set_weight(weight)
        row.removed.connect(self.remove_row)
        self.rows.append(row)
        self.rows_layout.addWidget(row)
        self._update_hint()
        return row

    def remove_row(self, row: AdapterRow) -> None:
        if row not in self.rows:
            return
        self.rows.remove(row)
        self.rows_layout.removeWidget(row)
        discard(row)
        self._update_hint()

    def clear(self) -> None:
        for row in list(self.rows):
            self.remove_row(row)

    def _add_clicked(self) -> None:
        """A new row with the first library adapter not used yet (else empty, ready to type)."""
        used = {row.ref() for row in self.rows}
        free = [a for a in self.library.adapters if self.library.key(a) not in used]
        row = self.add_row(self.library.key(free[0]) if free else None)
        row.combo.setFocus()

    def use(self, ref: str, weight: float = 1.0) -> AdapterRow:
        """Select the row of ``ref`` if there is one, else add it (a trained adapter's hand-off)."""
        key = self.library.canonical(ref)
        for row in self.rows:
            if row.ref() == key:
                row.combo.setFocus()
                return row
        return self.add_row(ref, weight)

    def _update_hint(self) -> None:
        self.hint.setVisible(not self.rows)

    # -- values ---------------------------------------------------------------------------------
    def specs(self) -> list[LoraSpec]:
        """The adapters to apply, in row order; :class:`InvalidRequest` for an empty row."""
        out: list[LoraSpec] = []
        for number, row in enumerate(self.rows, start=1):
            spec = row.spec()
            if spec is None:
                row.set_invalid(True)
                raise InvalidRequest(
                    f"adapter row {number} is empty: choose an adapter, type a hub id, folder or "
                    "file, or remove the row"
                )
            out.append(spec)
        return out

    def set_specs(self, specs: Iterable[LoraSpec]) -> None:
        """Replace the rows with ``specs`` (a recipe's adapters), unknown ones included."""
        self.set_entries([(s.ref, s.weight) for s in specs])

    def entries(self) -> list[tuple[str, float]]:
        """The non-empty rows as ``(ref, weight)``."""
        return [(ref, row.weight_value()) for row in self.rows if (ref := row.ref())]

    def set_entries(self, entries: Iterable[tuple[str, float]]) -> None:
        self.clear()
        for ref, weight in entries:
            self.add_row(ref, weight)

    # -- window state ---------------------------------------------------------------------------
    def state(self) -> dict[str, list[list[Any]]]:
        """The rows of every modality, for the window state."""
        saved = dict(self.saved)
        if self.modality is not None:
            saved[self.modality] = self.entries()
        return {m: [[ref, weight] for ref, weight in rows] for m, rows in saved.items()}

    def restore_state(self, state: object) -> None:
        """Apply a saved :meth:`state` (malformed entries are skipped)."""
        if not isinstance(state, dict):
            return
        for modality, rows in state.items():
            if not isinstance(modality, str) or not isinstance(rows, list):
                continue
            good = [
                (str(r[0]), max(-4.0, min(4.0, float(r[1]))))
                for r in rows
                if isinstance(r, list | tuple)
                and len(r) == 2
                and isinstance(r[0], str)
                and r[0]
                and isinstance(r[1], int | float)
            ]
            self.saved[modality] = good
        if self.modality is not None and self.modality in self.saved:
            self.set_entries(self.saved[self.modality])
