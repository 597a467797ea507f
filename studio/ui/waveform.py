"""Audio waveforms drawn with QPainter: a live widget and thumbnails (any thread, on a QImage)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QPointF, QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QImage, QMouseEvent, QPainter, QPaintEvent, QPen, QPolygonF
from PySide6.QtWidgets import QSizePolicy, QWidget

from studio.ui.util import human_duration


def envelope(samples: Any, buckets: int) -> tuple[list[float], list[float]]:
    """Min and max of the (mono-mixed) samples in ``buckets`` equal slices, for drawing."""
    import numpy as np

    data = np.asarray(samples, dtype=np.float32)
    if data.ndim == 2:
        data = data.mean(axis=1)
    if data.size == 0 or buckets <= 0:
        return [], []
    buckets = min(buckets, data.size)
    edges = np.linspace(0, data.size, buckets + 1).astype(int)
    lows = np.minimum.reduceat(data, edges[:-1])
    highs = np.maximum.reduceat(data, edges[:-1])
    return lows.tolist(), highs.tolist()


def paint_waveform(
    painter: QPainter, rect: QRectF, lows: list[float], highs: list[float], color: QColor
) -> None:
    """Draw an envelope filling ``rect`` as one closed shape (values clipped to [-1, 1])."""
    n = len(highs)
    mid = rect.center().y()
    if n == 0:
        painter.setPen(QPen(color, 1))
        painter.drawLine(QPointF(rect.left(), mid), QPointF(rect.right(), mid))
        return
    half = rect.height() / 2 * 0.95
    step = rect.width() / n
    top = QPolygonF()
    bottom = QPolygonF()
    for i in range(n):
        x = rect.left() + (i + 0.5) * step
        hi = max(-1.0, min(1.0, highs[i]))
        lo = max(-1.0, min(1.0, lows[i]))
        # at least a hairline, so silence still shows where the audio is
        top.append(QPointF(x, min(mid - 0.5, mid - hi * half)))
        bottom.append(QPointF(x, max(mid + 0.5, mid - lo * half)))
    shape = QPolygonF(top)
    for i in range(bottom.size() - 1, -1, -1):
        shape.append(bottom.at(i))
    painter.setPen(QPen(color, 1))
    painter.setBrush(color)
    painter.drawPolygon(shape)


def waveform_image(
    samples: Any, size: QSize, color: QColor | None = None, background: QColor | None = None
) -> QImage:
    """A waveform thumbnail; safe off the GUI thread (QPainter on a QImage)."""
    img = QImage(size, QImage.Format.Format_ARGB32_Premultiplied)
    img.fill(background or QColor(32, 36, 44))
    lows, highs = envelope(samples, max(8, size.width()))
    painter = QPainter(img)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    paint_waveform(
        painter,
        QRectF(4, 4, size.width() - 8, size.height() - 8),
        lows,
        highs,
        color or QColor(96, 170, 255),
    )
    painter.end()
    return img


def load_samples(path: Path) -> tuple[Any, int]:
    """Read an audio file's samples and rate with soundfile (call off the GUI thread)."""
    import soundfile

    data, rate = soundfile.read(str(path), dtype="float32", always_2d=False)
    return data, int(rate)


class WaveformView(QWidget):
    """Shows audio as a waveform; grows as streamed chunks are appended; click seeks."""

    seek_requested = Signal(float)  # seconds

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumHeight(90)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self._chunks: list[Any] = []
        self._samples: Any = None
        self.sample_rate = 0
        self.position = 0.0  # seconds, the play head
        self._cache: tuple[int, list[float], list[float]] | None = None

    # -- data ---------------------------------------------------------------------------------
    def clear(self) -> None:
        self._chunks, self._samples, self.sample_rate, self.position = [], None, 0, 0.0
        self._cache = None
        self.update()

    def set_samples(self, samples: Any, sample_rate: int) -> None:
        import numpy as np

        self._samples = np.asarray(samples, dtype=np.float32)
        self._chunks = []
        self.sample_rate = sample_rate
        self._cache = None
        self.update()

    def append_chunk(self, chunk: Any, sample_rate: int) -> None:
        """Add a streamed chunk (a Preview's numpy array)."""
        import numpy as np

        self._chunks.append(np.asarray(chunk, dtype=np.float32))
        self.sample_rate = sample_rate or self.sample_rate
        self._samples = None
        self._cache = None
        self.update()

    def samples(self) -> Any:
        import numpy as np

        if self._samples is None and self._chunks:
            self._samples = np.concatenate(self._chunks, axis=0)
        return self._samples

    @property
    def duration(self) -> float:
        data = self.samples()
        if data is None or not self.sample_rate:
            return 0.0
        return float(len(data)) / self.sample_rate

    def set_position(self, seconds: float) -> None:
        self.position = seconds
        self.update()

    # -- painting -----------------------------------------------------------------------------
    def sizeHint(self) -> QSize:
        return QSize(400, 120)

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        painter.fillRect(self.rect(), pal.base())
        rect = QRectF(self.rect()).adjusted(6, 6, -6, -18)
        buckets = max(8, int(rect.width() // 2))
        data = self.samples()
        if data is not None and (self._cache is None or self._cache[0] != buckets):
            lows, highs = envelope(data, buckets)
            self._cache = (buckets, lows, highs)
        lows, highs = (self._cache[1], self._cache[2]) if self._cache else ([], [])
        paint_waveform(painter, rect, lows, highs, pal.highlight().color())
        duration = self.duration
        painter.setPen(pal.text().color())
        label = human_duration(duration) if duration else "no audio yet"
        painter.drawText(
            QRectF(self.rect()).adjusted(6, 0, -6, -2),
            Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignRight,
            label,
        )
        if duration and self.position > 0:
            x = rect.left() + rect.width() * min(1.0, self.position / duration)
            painter.setPen(QPen(QColor(255, 90, 90), 2))
            painter.drawLine(QPointF(x, rect.top()), QPointF(x, rect.bottom()))
        painter.end()

    def mousePressEvent(self, event: QMouseEvent) -> None:
        duration = self.duration
        if duration:
            width = max(1.0, self.width() - 12.0)
            frac = min(1.0, max(0.0, (event.position().x() - 6) / width))
            self.seek_requested.emit(frac * duration)
