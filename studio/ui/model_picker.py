"""The model selector of the generate form (adapters: :mod:`studio.ui.adapter_list`)."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QColor, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import QComboBox, QWidget

from studio.core.catalog import catalog_entry
from studio.core.records import ModelEntry
from studio.core.units import human_size

REF_ROLE = Qt.ItemDataRole.UserRole + 1


def model_label(entry: ModelEntry) -> str:
    """``name · 2.1 GB · downloaded`` as shown in the list (the reference is in the tooltip)."""
    parts = [entry.name or entry.ref]
    if entry.size_bytes:
        parts.append(human_size(entry.size_bytes))
    parts.append("downloaded" if entry.downloaded else "not downloaded")
    if entry.source == "library":
        parts.append("library")
    return " · ".join(parts)


class ModelPicker(QComboBox):
    """The model for a generator: its default first, then matching catalog / hub / library models.

    Editable: any hub id, folder or .safetensors path may be typed. ``ref()`` is ``None`` for the
    generator's default.
    """

    model_changed = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setEditable(True)
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(18)
        line = self.lineEdit()
        assert line is not None
        line.setPlaceholderText("default model, or a hub id / folder / .safetensors")
        self._model = QStandardItemModel(self)
        self.setModel(self._model)
        self.default_ref: str | None = None
        self.currentIndexChanged.connect(self._index_changed)
        line.editingFinished.connect(self.model_changed)

    def populate(
        self, entries: list[ModelEntry], default_ref: str | None, modality: str, task: str
    ) -> None:
        """Fill with the default model and every entry fitting ``modality``/``task``."""
        keep = self.ref()
        self.blockSignals(True)
        self._model.clear()
        self.default_ref = default_ref
        seen: set[str] = set()
        by_ref = {e.ref: e for e in sorted(entries, key=lambda e: not e.downloaded)}
        if default_ref:
            entry = by_ref.get(default_ref)
            label = f"Default: {model_label(entry)}" if entry else f"Default: {default_ref}"
            self._add(label, None, entry)
            seen.add(default_ref)
        else:
            self._add("Default (the generator's own)", None, None)
        for entry in sorted(
            entries, key=lambda e: (not e.downloaded, e.source != "library", e.ref)
        ):
            if entry.ref in seen or not self._fits(entry, modality, task):
                continue
            seen.add(entry.ref)
            self._add(model_label(entry), entry.ref, entry)
        self.blockSignals(False)
        self.set_ref(keep)
        line = self.lineEdit()
        if line is not None:
            line.setCursorPosition(0)

    @staticmethod
    def _fits(entry: ModelEntry, modality: str, task: str) -> bool:
        if entry.source == "catalog":
            cat = catalog_entry(entry.ref)
            if cat is None:
                return False
            return task in cat.tasks if task else cat.modality == modality
        return entry.modality in (None, modality)

    def _add(self, label: str, ref: str | None, entry: ModelEntry | None) -> None:
        item = QStandardItem(label)
        item.setData(ref, REF_ROLE)
        tip = ref or (entry.ref if entry is not None else "")
        if entry is not None and not entry.downloaded:
            item.setForeground(QColor(140, 140, 140))
            tip += "\nDownloads on first use (or from the Models panel)."
        elif entry is not None and entry.path:
            tip += f"\n{entry.path}"
        item.setToolTip(tip.strip())
        self._model.appendRow(item)

    def _index_changed(self, _index: int) -> None:
        line = self.lineEdit()
        if line is not None:
            line.setCursorPosition(0)  # show the start of a long name, not its end
        self.model_changed.emit()

    def ref(self) -> str | None:
        """The chosen reference; ``None`` means the generator's default."""
        index = self.currentIndex()
        text = self.currentText().strip()
        if index >= 0 and self.itemText(index) == self.currentText():
            return self.itemData(index, REF_ROLE)
        return text or None

    def set_ref(self, ref: str | None) -> None:
        if ref is None or ref == self.default_ref:
            self.setCurrentIndex(0 if self.count() else -1)
            return
        for i in range(self.count()):
            if self.itemData(i, REF_ROLE) == ref:
                self.setCurrentIndex(i)
                return
        self.setEditText(ref)  # a reference not listed (typed or from a recipe)

    def effective_ref(self) -> str | None:
        return self.ref() or self.default_ref
