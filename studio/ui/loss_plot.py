"""A live training-loss plot drawn with QPainter (training loss and, when given, validation)."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

TRAIN_COLOR = QColor(66, 133, 244)
VALID_COLOR = QColor(244, 140, 40)


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """Round tick values covering [lo, hi] (1, 2, 5 x 10^n steps)."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(1, count)
    mag = 10 ** math.floor(math.log10(raw))
    # the largest round step that still gives about ``count`` ticks (never fewer than half)
    step = next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)
    if (hi - lo) / step < count / 2:
        step = next(m * mag for m in (0.5, 1, 2, 5) if (hi - lo) / (m * mag) <= count * 1.5)
    first = math.ceil(lo / step) * step
    ticks = []
    v = first
    while v <= hi + step * 1e-9:
        ticks.append(round(v, 12))
        v += step
    return ticks


class LossPlot(QWidget):
    """Loss against step. ``add`` points as TrainStep events arrive; repaints are cheap."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setMinimumSize(240, 160)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.train: list[tuple[int, float]] = []
        self.valid: list[tuple[int, float]] = []
        self.total = 0

    def clear(self) -> None:
        self.train, self.valid, self.total = [], [], 0
        self.update()

    def add(self, step: int, loss: float, total: int = 0, validation: float | None = None) -> None:
        if math.isfinite(loss):
            self.train.append((step, loss))
        if validation is not None and math.isfinite(validation):
            self.valid.append((step, validation))
        self.total = max(self.total, total)
        self.update()

    def sizeHint(self) -> QSize:
        return QSize(480, 260)

    def _ranges(self) -> tuple[float, float, float, float]:
        points = self.train + self.valid
        x_hi = float(max(self.total, max((p[0] for p in points), default=1), 1))
        ys = [p[1] for p in points]
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if y_hi - y_lo < 1e-9:
            y_lo, y_hi = y_lo - 0.5, y_hi + 0.5
        pad = (y_hi - y_lo) * 0.08
        return 0.0, x_hi, y_lo - pad, y_hi + pad

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        painter.fillRect(self.rect(), pal.base())
        fm = painter.fontMetrics()
        left = fm.horizontalAdvance("0.0000") + 12
        plot = QRectF(left, 10, self.width() - left - 12, self.height() - fm.height() - 28)
        if plot.width() < 20 or plot.height() < 20:
            painter.end()
            return
        x_lo, x_hi, y_lo, y_hi = self._ranges()

        def to_px(x: float, y: float) -> QPointF:
            return QPointF(
                plot.left() + (x - x_lo) / (x_hi - x_lo) * plot.width(),
                plot.bottom() - (y - y_lo) / (y_hi - y_lo) * plot.height(),
            )

        grid = QPen(pal.mid().color(), 1, Qt.PenStyle.DotLine)
        text = pal.text().color()
        for y in nice_ticks(y_lo, y_hi, 4):
            p = to_px(x_lo, y)
            painter.setPen(grid)
            painter.drawLine(QPointF(plot.left(), p.y()), QPointF(plot.right(), p.y()))
            painter.setPen(text)
            painter.drawText(
                QRectF(0, p.y() - fm.height() / 2, left - 6, fm.height()),
                Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter,
                f"{y:.4g}",
            )
        for x in nice_ticks(x_lo, x_hi, 5):
            p = to_px(x, y_lo)
            painter.setPen(grid)
            painter.drawLine(QPointF(p.x(), plot.top()), QPointF(p.x(), plot.bottom()))
            painter.setPen(text)
            painter.drawText(
                QRectF(p.x() - 30, plot.bottom() + 2, 60, fm.height()),
                Qt.AlignmentFlag.AlignHCenter | Qt.AlignmentFlag.AlignTop,
                f"{x:g}",
            )
        painter.setPen(QPen(text, 1))
        painter.drawRect(plot)
        painter.drawText(
            QRectF(plot.left(), self.height() - fm.height() - 2, plot.width(), fm.height()),
            Qt.AlignmentFlag.AlignHCenter,
            "step",
        )
        if not self.train and not self.valid:
            painter.setPen(pal.placeholderText().color())
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The loss curve appears here.")
        painter.setClipRect(plot.adjusted(-2, -2, 2, 2))
        for series, color in ((self.train, TRAIN_COLOR), (self.valid, VALID_COLOR)):
            if not series:
                continue
            path = QPainterPath(to_px(*series[0]))
            for x, y in series[1:]:
                path.lineTo(to_px(x, y))
            painter.setPen(QPen(color, 2))
            painter.setBrush(Qt.BrushStyle.NoBrush)
            painter.drawPath(path)
            if len(series) == 1:
                painter.setBrush(color)
                painter.drawEllipse(to_px(*series[0]), 3, 3)
        painter.setClipping(False)
        self._legend(painter, plot)
        painter.end()

    def _legend(self, painter: QPainter, plot: QRectF) -> None:
        entries = [("loss", TRAIN_COLOR)]
        if self.valid:
            entries.append(("validation", VALID_COLOR))
        if self.train:
            entries[0] = (f"loss {self.train[-1][1]:.4g}", TRAIN_COLOR)
        fm = painter.fontMetrics()
        x = plot.right() - 8
        y = plot.top() + 6
        for label, color in reversed(entries):
            w = fm.horizontalAdvance(label)
            x -= w
            painter.setPen(self.palette().text().color())
            painter.drawText(QPointF(x, y + fm.ascent()), label)
            x -= 18
            painter.setPen(QPen(color, 3))
            painter.drawLine(QPointF(x, y + fm.height() / 2), QPointF(x + 14, y + fm.height() / 2))
            x -= 12
