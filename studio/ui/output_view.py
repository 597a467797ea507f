"""What a generation shows while it runs and when it is done: images, streamed text, audio."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QMimeData, QPoint, QRect, QSize, Qt, QUrl
from PySide6.QtGui import QDrag, QImage, QMouseEvent, QPainter, QPaintEvent, QPixmap, QTextCursor
from PySide6.QtWidgets import (
    QCheckBox,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPlainTextEdit,
    QSizePolicy,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.ui.audio_player import AudioPlayer, StreamPlayer
from studio.ui.util import to_qimage
from studio.ui.waveform import WaveformView


class ImageCanvas(QWidget):
    """One image scaled to fit (aspect kept); drag it out as a file once it is saved."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.image = QImage()
        self.path: Path | None = None
        self.caption = ""
        self._press: QPoint | None = None
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(160, 160)

    def set_image(self, image: QImage | None, path: Path | None = None, caption: str = "") -> None:
        self.image = image if image is not None else QImage()
        self.path = path
        self.caption = caption
        self.setToolTip("Drag the image to another application" if path else "")
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(512, 512)

    def image_rect(self) -> QRect:
        if self.image.isNull():
            return QRect()
        scaled = self.image.size().scaled(self.size(), Qt.AspectRatioMode.KeepAspectRatio)
        # Never blow tiny images up beyond 4x: they become mush.
        if scaled.width() > self.image.width() * 4:
            scaled = self.image.size() * 4
        x = (self.width() - scaled.width()) // 2
        y = (self.height() - scaled.height()) // 2
        return QRect(QPoint(x, y), scaled)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.fillRect(self.rect(), self.palette().base())
        if self.image.isNull():
            painter.setPen(self.palette().placeholderText().color())
            painter.drawText(
                self.rect(), Qt.AlignmentFlag.AlignCenter, self.caption or "No image yet"
            )
        else:
            small = self.image.width() < 128
            painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, not small)
            painter.drawImage(self.image_rect(), self.image)
            if self.caption:
                painter.setPen(self.palette().text().color())
                painter.drawText(
                    self.rect().adjusted(6, 0, -6, -4),
                    Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft,
                    self.caption,
                )
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        self._press = event.position().toPoint()

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        if self._press is None or self.path is None:
            return
        if (event.position().toPoint() - self._press).manhattanLength() < 8:
            return
        drag = QDrag(self)
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(self.path))])
        mime.setImageData(self.image)
        drag.setMimeData(mime)
        drag.setPixmap(
            QPixmap.fromImage(self.image).scaled(96, 96, Qt.AspectRatioMode.KeepAspectRatio)
        )
        self._press = None
        drag.exec(Qt.DropAction.CopyAction)


class ImageOutputView(QWidget):
    """The selected image large, a strip of the batch below when there is more than one."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.canvas = ImageCanvas()
        self.strip = QListWidget()
        self.strip.setViewMode(QListWidget.ViewMode.IconMode)
        self.strip.setFlow(QListWidget.Flow.LeftToRight)
        self.strip.setWrapping(False)
        self.strip.setIconSize(QSize(64, 64))
        self.strip.setFixedHeight(90)
        self.strip.hide()
        self.strip.currentRowChanged.connect(self._select)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.strip)
        self.images: dict[int, tuple[QImage, Path | None]] = {}
        self.current = 0
        self.step_caption = ""

    def clear(self, caption: str = "") -> None:
        self.images.clear()
        self.strip.clear()
        self.strip.hide()
        self.current = 0
        self.canvas.set_image(None, None, caption)

    def set_image(
        self, index: int, image: QImage, path: Path | None = None, caption: str = ""
    ) -> None:
        self.images[index] = (image, path)
        icon_pm = QPixmap.fromImage(image).scaled(
            64, 64, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
        )
        indices = sorted(self.images)
        if len(indices) > 1:
            self.strip.show()
        while self.strip.count() < len(indices):
            self.strip.addItem(QListWidgetItem())
        row = indices.index(index)
        item = self.strip.item(row)
        if item is not None:
            item.setIcon(icon_pm)
            item.setData(Qt.ItemDataRole.UserRole, index)
        if index == self.current or len(indices) == 1:
            self.current = index
            self.canvas.set_image(image, path, caption)

    def _select(self, row: int) -> None:
        item = self.strip.item(row)
        if item is None:
            return
        index = item.data(Qt.ItemDataRole.UserRole)
        if index in self.images:
            self.current = index
            image, path = self.images[index]
            self.canvas.set_image(image, path)


class TextOutputView(QTabWidget):
    """Streamed text: one read-only page per candidate (tabs only when there are several)."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDocumentMode(True)
        self.pages: dict[int, QPlainTextEdit] = {}
        self.clear()

    def clear(self) -> None:
        while self.count():
            page = self.widget(0)
            self.removeTab(0)
            if page is not None:
                page.deleteLater()
        self.pages = {}
        self.page(0)

    def page(self, index: int) -> QPlainTextEdit:
        if index not in self.pages:
            view = QPlainTextEdit()
            view.setReadOnly(True)
            view.setObjectName("textOutput")
            view.setPlaceholderText("The text appears here as it is written.")
            self.pages[index] = view
            self.addTab(view, f"#{index + 1}")
        self.tabBar().setVisible(len(self.pages) > 1)
        return self.pages[index]

    def append(self, text: str, index: int = 0) -> None:
        """Add a streamed chunk at the end (keeps the view scrolled to the end if it was)."""
        view = self.page(index)
        bar = view.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 2
        cursor = view.textCursor()
        cursor.movePosition(QTextCursor.MoveOperation.End)
        cursor.insertText(text)
        if at_end:
            bar.setValue(bar.maximum())

    def set_text(self, text: str, index: int = 0) -> None:
        self.page(index).setPlainText(text)

    def text(self, index: int = 0) -> str:
        return self.pages[index].toPlainText() if index in self.pages else ""


class AudioOutputView(QWidget):
    """A waveform (grows while streaming, heard as it streams if asked) and a play button."""

    def __init__(self, parent: QWidget | None = None, streaming: bool = False) -> None:
        super().__init__(parent)
        self.waveform = WaveformView()
        self.player = AudioPlayer(self.waveform)
        self.stream = StreamPlayer(self)
        #: whether this view plays streamed chunks at all (the gallery's does not)
        self.can_listen = streaming
        self.listen = QCheckBox("Listen while it is generated")
        self.listen.setToolTip("Play streamed audio as it arrives")
        self.listen.setChecked(True)
        # shown for generators known to stream: from their first streamed chunk on
        self.listen.setVisible(False)
        self.stream_note = QLabel()
        self.stream_note.setObjectName("hint")
        self.stream_note.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.waveform, 1)
        layout.addWidget(self.player)
        layout.addWidget(self.listen)
        layout.addWidget(self.stream_note)

    def clear(self) -> None:
        self.waveform.clear()
        self.player.set_file(None)
        self.stream.stop()
        self.stream_note.hide()

    def set_streams(self, streams: bool) -> None:
        """Whether the chosen generator streams audio (offers "Listen while it is generated")."""
        self.listen.setVisible(self.can_listen and streams)

    def add_chunk(self, chunk: Any, rate: int) -> None:
        """A streamed chunk: drawn, and played when listening is on and a device is there."""
        self.waveform.append_chunk(chunk, rate)
        self.set_streams(True)
        listening = self.listen.isVisibleTo(self) and self.listen.isChecked()
        if listening and not self.stream.push(chunk, rate) and self.stream.error:
            self.stream_note.setText(self.stream.error)
            self.stream_note.show()


class OutputView(QStackedWidget):
    """Switches between the image, text and audio views by the generator's modality."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.images = ImageOutputView()
        self.text = TextOutputView()
        self.audio = AudioOutputView(streaming=True)
        self.empty = QLabel("Pick a generator to start.")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setObjectName("hint")
        for page in (self.empty, self.images, self.text, self.audio):
            self.addWidget(page)
        self.modality: str | None = None

    def set_modality(self, modality: str | None) -> None:
        self.modality = modality
        page = {"image": self.images, "text": self.text, "audio": self.audio}.get(modality or "")
        self.setCurrentWidget(page or self.empty)

    def clear(self) -> None:
        self.images.clear("Generating…")
        self.text.clear()
        self.audio.clear()

    # -- events ------------------------------------------------------------------------------
    def show_preview(self, preview: Any) -> None:
        """A Preview event: an image for this step, or an audio chunk."""
        if preview.sample_rate:
            self.audio.add_chunk(preview.data, preview.sample_rate)
            return
        image = to_qimage(preview.data)
        if image is not None:
            self.images.set_image(preview.index, image, None, f"step {preview.step}")

    def append_text(self, text: str, index: int = 0) -> None:
        self.text.append(text, index)

    def show_artifact(self, modality: str, path: Path, index: int = 0) -> None:
        """A saved artifact: the final image / text / audio from its file."""
        if modality == "image":
            image = QImage(str(path))
            if not image.isNull():
                self.images.set_image(index, image, path)
        elif modality == "text":
            try:
                final = path.read_text(encoding="utf-8")
            except OSError:
                return
            if final != self.text.text(index):  # non-streaming generators, or a trimmed result
                self.text.set_text(final, index)
        elif modality == "audio":
            self.audio.player.set_file(path)

    def set_audio_samples(self, samples: Any, rate: int) -> None:
        self.audio.waveform.set_samples(samples, rate)
