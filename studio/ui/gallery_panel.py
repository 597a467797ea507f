"""The gallery / history: every artifact as a thumbnail, filters, a details pane with the recipe,
and the actions on it (use these settings, regenerate, open folder, delete, drag out)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import (
    QAbstractListModel,
    QMimeData,
    QModelIndex,
    QPersistentModelIndex,
    QRect,
    QSize,
    Qt,
    QTimer,
    QUrl,
    Signal,
)
from PySide6.QtGui import QDesktopServices, QImage, QPainter, QPalette
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QStackedWidget,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import PluginVersionMismatch, StudioError
from studio.core.records import ArtifactRecord
from studio.ui.output_view import AudioOutputView, ImageCanvas
from studio.ui.thumbnails import ThumbnailLoader
from studio.ui.util import when

if TYPE_CHECKING:
    from studio.core.generator import GenerationRequest
    from studio.ui.session import Session

RECORD_ROLE = Qt.ItemDataRole.UserRole + 1
THUMB_ROLE = Qt.ItemDataRole.UserRole + 2
TILE = QSize(168, 200)
DATE_RANGES = (("Any time", None), ("Today", 1), ("Last 7 days", 7), ("Last 30 days", 30))


class ArtifactModel(QAbstractListModel):
    """Artifacts as list items; thumbnails are asked of the loader lazily, when painted."""

    def __init__(self, loader: ThumbnailLoader, parent: Any = None) -> None:
        super().__init__(parent)
        self.loader = loader
        self.records: list[ArtifactRecord] = []
        self._rows: dict[str, int] = {}
        loader.ready.connect(self._thumb_ready)

    def set_records(self, records: list[ArtifactRecord]) -> None:
        self.beginResetModel()
        self.records = list(records)
        self._rows = {str(r.path): i for i, r in enumerate(self.records)}
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self.records)

    def data(
        self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if not index.isValid() or index.row() >= len(self.records):
            return None
        rec = self.records[index.row()]
        if role == Qt.ItemDataRole.DisplayRole:
            return rec.prompt or Path(rec.path).name
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{rec.prompt}\n{rec.generator} · {rec.model or ''}\n{when(rec.created)}".strip()
        if role == RECORD_ROLE:
            return rec
        if role == THUMB_ROLE:
            return self.loader.get(Path(rec.path), rec.modality)
        return None

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = super().flags(index)
        return base | Qt.ItemFlag.ItemIsDragEnabled if index.isValid() else base

    def mimeTypes(self) -> list[str]:
        return ["text/uri-list"]

    def mimeData(self, indexes: Any) -> QMimeData:
        """Dragged tiles give file URLs (other apps and the form's image fields take them)."""
        mime = QMimeData()
        rows = sorted({i.row() for i in indexes if i.isValid()})
        mime.setUrls([QUrl.fromLocalFile(str(self.records[r].path)) for r in rows])
        if len(rows) == 1 and self.records[rows[0]].modality == "image":
            image = QImage(str(self.records[rows[0]].path))
            if not image.isNull():
                mime.setImageData(image)
        return mime

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.CopyAction

    def _thumb_ready(self, path: str) -> None:
        row = self._rows.get(path)
        if row is not None:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [THUMB_ROLE])


class TileDelegate(QStyledItemDelegate):
    """A tile: the thumbnail (or the text snippet) and the prompt under it."""

    def sizeHint(self, option: QStyleOptionViewItem, index: Any) -> QSize:
        return TILE

    def paint(self, painter: QPainter, option: QStyleOptionViewItem, index: Any) -> None:
        rec: ArtifactRecord | None = index.data(RECORD_ROLE)
        if rec is None:
            return
        painter.save()
        pal = option.palette  # type: ignore[attr-defined]
        rect: QRect = option.rect.adjusted(4, 4, -4, -4)  # type: ignore[attr-defined]
        selected = bool(option.state & QStyle.StateFlag.State_Selected)  # type: ignore[attr-defined]
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(
            pal.color(QPalette.ColorRole.Highlight)
            if selected
            else pal.color(QPalette.ColorRole.Mid)
        )
        if selected:  # a tint of the highlight: readable on light and dark themes
            tint = pal.color(QPalette.ColorRole.Highlight)
            tint.setAlpha(60)
            painter.setBrush(tint)
        else:
            painter.setBrush(pal.base())
        painter.drawRoundedRect(rect, 6, 6)
        thumb_rect = QRect(rect.left() + 4, rect.top() + 4, rect.width() - 8, rect.width() - 8)
        thumb = index.data(THUMB_ROLE)
        painter.setPen(pal.color(QPalette.ColorRole.Text))
        if isinstance(thumb, QImage) and not thumb.isNull():
            size = thumb.size().scaled(thumb_rect.size(), Qt.AspectRatioMode.KeepAspectRatio)
            target = QRect(0, 0, size.width(), size.height())
            target.moveCenter(thumb_rect.center())
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, thumb.width() >= 64)
            painter.drawImage(target, thumb)
        elif isinstance(thumb, str):
            painter.fillRect(thumb_rect, pal.alternateBase())
            painter.drawText(
                thumb_rect.adjusted(6, 6, -6, -6),
                Qt.TextFlag.TextWordWrap | Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop,
                thumb,
            )
        else:
            painter.fillRect(thumb_rect, pal.alternateBase())
            painter.drawText(thumb_rect, Qt.AlignmentFlag.AlignCenter, rec.modality)
        caption = QRect(
            rect.left() + 6,
            thumb_rect.bottom() + 4,
            rect.width() - 12,
            rect.bottom() - thumb_rect.bottom() - 6,
        )
        badge = {"image": "IMG", "audio": "AUD", "text": "TXT"}.get(rec.modality, "?")
        room = caption.width() - painter.fontMetrics().horizontalAdvance(badge) - 6
        text = painter.fontMetrics().elidedText(
            rec.prompt or Path(rec.path).name, Qt.TextElideMode.ElideRight, room
        )
        painter.drawText(caption, Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter, text)
        painter.setPen(pal.color(QPalette.ColorRole.PlaceholderText))
        painter.drawText(
            caption, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter, badge
        )
        painter.restore()


class ArtifactDetails(QWidget):
    """The selected artifact large, its recipe, and the actions."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.record: ArtifactRecord | None = None
        self.preview = QStackedWidget()
        self.image = ImageCanvas()
        self.image.setMinimumSize(200, 200)
        self.audio = AudioOutputView()
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.none = QLabel("Select an item to see its recipe.")
        self.none.setObjectName("hint")
        self.none.setAlignment(Qt.AlignmentFlag.AlignCenter)
        for page in (self.none, self.image, self.audio, self.text):
            self.preview.addWidget(page)
        self.facts = QFormLayout()
        self.fact_labels: dict[str, QLabel] = {}
        for key in ("Prompt", "Generator", "Model", "Seed", "Created", "File"):
            label = QLabel()
            label.setWordWrap(True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fact_labels[key] = label
            self.facts.addRow(key, label)
        self.recipe = QPlainTextEdit()
        self.recipe.setReadOnly(True)
        self.recipe.setObjectName("recipe")
        self.use_button = QPushButton("Use these settings")
        self.use_button.setToolTip("Load this recipe into the generate form")
        self.regen_button = QPushButton("Regenerate")
        self.folder_button = QPushButton("Open folder")
        self.delete_button = QPushButton("Delete")
        self.delete_button.setToolTip(
            "Move the file and its recipe to the system trash (where there is none: to the "
            "trash folder of the studio home)"
        )
        self.init_button = QPushButton("Use as init image")
        self.init_button.setToolTip("Put this image into the generate form's image field")
        buttons = QHBoxLayout()
        for b in (self.use_button, self.init_button, self.regen_button, self.folder_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.delete_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.preview, 3)
        layout.addLayout(self.facts)
        layout.addLayout(buttons)
        layout.addWidget(QLabel("Recipe"))
        layout.addWidget(self.recipe, 2)
        self.show_record(None)

    def show_record(self, rec: ArtifactRecord | None) -> None:
        self.record = rec
        for b in (self.use_button, self.regen_button, self.folder_button, self.delete_button):
            b.setEnabled(rec is not None)
        self.init_button.setVisible(rec is not None and rec.modality == "image")
        if rec is None:
            self.preview.setCurrentWidget(self.none)
            for label in self.fact_labels.values():
                label.clear()
            self.recipe.clear()
            return
        path = Path(rec.path)
        if rec.modality == "image":
            self.image.set_image(QImage(str(path)), path)
            self.preview.setCurrentWidget(self.image)
        elif rec.modality == "audio":
            self.audio.clear()
            self.audio.player.set_file(path)
            self.preview.setCurrentWidget(self.audio)
        else:
            try:
                self.text.setPlainText(path.read_text(encoding="utf-8"))
            except OSError as exc:
                self.text.setPlainText(f"(cannot read {path}: {exc})")
            self.preview.setCurrentWidget(self.text)
        recipe = rec.recipe or {}
        model = recipe.get("model") or {}
        self.fact_labels["Prompt"].setText(rec.prompt)
        self.fact_labels["Generator"].setText(rec.generator)
        self.fact_labels["Model"].setText(
            str(model.get("ref") if isinstance(model, dict) else model or rec.model or "")
        )
        self.fact_labels["Seed"].setText(str(recipe.get("seed", "")))
        self.fact_labels["Created"].setText(when(rec.created))
        self.fact_labels["File"].setText(str(path))
        self.recipe.setPlainText(json.dumps(recipe, indent=2, default=str))


class GalleryPanel(QWidget):
    """Browse what was made; hand a recipe back to the generate form."""

    #: "Use these settings": the request rebuilt from the recipe
    use_settings = Signal(object)
    #: "Regenerate" submitted a job: job id, generator id
    regenerated = Signal(str, str)
    #: "Use as init image": the image path
    use_image = Signal(object)

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.studio = session.studio
        self.loaded = False
        self.loader = ThumbnailLoader(parent=self)
        self.model = ArtifactModel(self.loader, self)

        self.search = QLineEdit()
        self.search.setPlaceholderText("Search prompts…")
        self.search.setClearButtonEnabled(True)
        self.modality = QComboBox()
        for label, value in (
            ("All kinds", None),
            ("Images", "image"),
            ("Text", "text"),
            ("Audio", "audio"),
        ):
            self.modality.addItem(label, value)
        self.model_filter = QComboBox()
        self.model_filter.addItem("All models", None)
        self.model_filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.date = QComboBox()
        for label, days in DATE_RANGES:
            self.date.addItem(label, days)
        self.count = QLabel()
        self.count.setObjectName("hint")
        filters = QHBoxLayout()
        filters.addWidget(self.search, 2)
        filters.addWidget(self.modality)
        filters.addWidget(self.model_filter, 1)
        filters.addWidget(self.date)
        filters.addWidget(self.count)

        self.view = QListView()
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setGridSize(TILE)
        self.view.setSpacing(0)
        self.view.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.view.setDragEnabled(True)
        self.view.setDragDropMode(QListView.DragDropMode.DragOnly)
        self.view.setModel(self.model)
        self.view.setItemDelegate(TileDelegate(self.view))
        self.view.selectionModel().currentChanged.connect(self._current_changed)
        self.empty = QLabel("Nothing made yet. Generate something and it appears here.")
        self.empty.setObjectName("hint")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.hide()

        self.details = ArtifactDetails()
        self.details.use_button.clicked.connect(self.use_current)
        self.details.regen_button.clicked.connect(self.regenerate_current)
        self.details.folder_button.clicked.connect(self.open_folder)
        self.details.delete_button.clicked.connect(self.delete_current)
        self.details.init_button.clicked.connect(self.use_as_init_image)

        left = QWidget()
        left_column = QVBoxLayout(left)
        left_column.setContentsMargins(0, 0, 0, 0)
        left_column.addLayout(filters)
        left_column.addWidget(self.view, 1)
        left_column.addWidget(self.empty)
        self.splitter = QSplitter(Qt.Orientation.Horizontal)
        self.splitter.setObjectName("gallerySplitter")
        self.splitter.addWidget(left)
        self.splitter.addWidget(self.details)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        self.splitter.setSizes([700, 420])
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)

        self._debounce = QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self.reload)
        self.search.textChanged.connect(lambda _t: self._debounce.start())
        for combo in (self.modality, self.model_filter, self.date):
            combo.currentIndexChanged.connect(lambda _i: self.reload())
        session.artifacts_changed.connect(self._reload_soon)
        self.reload()

    def _reload_soon(self) -> None:
        # throttled, not pushed back: a stream of new artifacts still shows up
        if not self._debounce.isActive():
            self._debounce.start()

    # -- loading ------------------------------------------------------------------------------
    def filters(self) -> dict[str, Any]:
        """The keyword filters for ``Studio.artifacts`` from the controls."""
        out: dict[str, Any] = {}
        if self.modality.currentData():
            out["modality"] = self.modality.currentData()
        if self.model_filter.currentData():
            out["model"] = self.model_filter.currentData()
        days = self.date.currentData()
        if days:
            midnight = time.mktime((*time.localtime()[:3], 0, 0, 0, 0, 0, -1))
            out["since"] = midnight - (days - 1) * 86400
        text = self.search.text().strip()
        if text:
            out["query"] = text
        return out

    def reload(self) -> None:
        """Query the store with the current filters (one indexed SQLite query)."""
        current = self.details.record.id if self.details.record else None
        try:
            records = self.studio.artifacts(**self.filters())
        except StudioError as exc:
            self.session.status.emit(f"Gallery: {exc}")
            records = []
        self.model.set_records(records)
        self._update_models(records)
        self.count.setText(f"{len(records)} item{'s' if len(records) != 1 else ''}")
        nothing = not records and not self.filters()
        self.empty.setVisible(nothing)
        self.view.setVisible(not nothing)
        self.loaded = True
        if not (current and self.select(current)) and records:
            self.select(records[0].id)  # the newest, so the details pane is never empty

    def _update_models(self, records: list[ArtifactRecord]) -> None:
        """Offer every model seen so far in the model filter (kept across filtering)."""
        known = {self.model_filter.itemData(i) for i in range(1, self.model_filter.count())}
        for model in sorted({r.model for r in records if r.model} - known):
            self.model_filter.addItem(model, model)

    def select(self, artifact_id: str | None) -> bool:
        for row, rec in enumerate(self.model.records):
            if rec.id == artifact_id:
                self.view.setCurrentIndex(self.model.index(row))
                self._show(rec)
                return True
        self.details.show_record(None)
        return False

    def _current_changed(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._show(current.data(RECORD_ROLE) if current.isValid() else None)

    def _show(self, rec: ArtifactRecord | None) -> None:
        shown = self.details.record
        if rec is shown or (rec is not None and shown is not None and rec.id == shown.id):
            return  # the same artifact after a reload: what plays or is being read goes on
        self.details.show_record(rec)
        if rec is not None and rec.modality == "audio":
            from studio.ui.waveform import load_samples

            path = Path(rec.path)

            def done(result: tuple[Any, int]) -> None:
                if self.details.record is rec:
                    self.details.audio.waveform.set_samples(*result)

            self.session.run(lambda: load_samples(path), done)

    def thumbnails_pending(self) -> bool:
        return self.loader.is_loading()

    # -- actions ------------------------------------------------------------------------------
    def use_current(self) -> GenerationRequest | None:
        rec = self.details.record
        if rec is None:
            return None
        try:
            request = self.studio.request_from_recipe(rec.recipe)
        except StudioError as exc:
            self.session.status.emit(f"Cannot use this recipe: {exc}")
            return None
        self.use_settings.emit(request)
        return request

    def use_as_init_image(self) -> None:
        rec = self.details.record
        if rec is not None and rec.modality == "image":
            self.use_image.emit(Path(rec.path))

    def regenerate_current(self) -> str | None:
        rec = self.details.record
        if rec is None:
            return None
        try:
            try:
                job_id = self.studio.regenerate(rec.id)
            except PluginVersionMismatch as exc:
                if not self._run_with_other_version(exc):
                    return None
                job_id = self.studio.regenerate(rec.id, allow_other_version=True)
        except StudioError as exc:
            self.session.status.emit(f"Cannot regenerate: {exc}")
            return None
        self.regenerated.emit(job_id, rec.generator)
        self.session.status.emit(f"Regenerating ({job_id[:8]})")
        return job_id

    def _run_with_other_version(self, exc: PluginVersionMismatch) -> bool:
        """Ask before replaying a recipe with another version of its plugin (it may differ)."""
        answer = QMessageBox.question(
            self,
            "Regenerate with another plugin version",
            f"This was made with {exc.plugin} {exc.recorded}; {exc.installed} is installed now."
            "\n\nThe result may differ from the original. Regenerate anyway?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def open_folder(self) -> None:
        rec = self.details.record
        if rec is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(rec.path).parent)))

    def delete_current(self) -> bool:
        rec = self.details.record
        if rec is None:
            return False
        try:
            fallback = self.studio.delete_artifact(rec.id)
        except (StudioError, KeyError, OSError) as exc:
            self.session.status.emit(f"Cannot delete: {exc}")
            return False
        where = "the system trash" if fallback is None else str(fallback)
        self.session.status.emit(f"Moved {Path(rec.path).name} to {where}")
        self.details.show_record(None)
        self.reload()
        return True

    def shutdown(self) -> None:
        self.details.audio.player.stop()
        self.loader.shutdown()
