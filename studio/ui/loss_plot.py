"""A live loss plot drawn with QPainter: the training loss and, when the trainer measures it, the
validation loss (the loss on files held out from training), each its own series in the legend.

The training loss of one step is noisy (one small batch), so once there are enough points it is
drawn faint, with a smoothed line over it; the validation loss is drawn with a dot at each
measurement (they are few). A step that comes again (a training resumed from an earlier
checkpoint, or rolled back) replaces the points from there on.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

TRAIN_COLOR = QColor(66, 133, 244)
VALID_COLOR = QColor(232, 120, 20)
#: from this many training points on, the raw curve is drawn faint under a smoothed one
SMOOTH_FROM = 12


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


def smoothed(points: list[tuple[int, float]], weight: float = 0.8) -> list[tuple[int, float]]:
    """An exponential moving average of ``points`` (bias-corrected, so it starts on the data)."""
    out: list[tuple[int, float]] = []
    avg, norm = 0.0, 0.0
    for step, value in points:
        avg = weight * avg + (1 - weight) * value
        norm = weight * norm + (1 - weight)
        out.append((step, avg / norm))
    return out


def _cut(series: list[tuple[int, float]], step: int) -> list[tuple[int, float]]:
    """The points before ``step`` (the run went back to an earlier state)."""
    return [p for p in series if p[0] < step]


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
        """One training step's loss (and the validation loss measured at it, if any)."""
        if self.train and step <= self.train[-1][0]:
            self.train = _cut(self.train, step)
            self.valid = _cut(self.valid, step)
        if math.isfinite(loss):
            self.train.append((step, loss))
        if validation is not None:
            self.add_validation(step, validation)
        self.total = max(self.total, total)
        self.update()

    def add_validation(self, step: int, loss: float) -> None:
        """A validation loss at ``step`` (0: before training), replacing one already there."""
        if not math.isfinite(loss):
            return
        self.valid = sorted([p for p in self.valid if p[0] != step] + [(step, loss)])
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
        top = fm.height() + 14  # room for the legend above the plot
        plot = QRectF(left, top, self.width() - left - 12, self.height() - top - fm.height() - 22)
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
        painter.setPen(QPen(pal.mid().color(), 1))
        painter.drawRect(plot)
        painter.setPen(text)
        painter.drawText(
            QRectF(plot.left(), self.height() - fm.height() - 2, plot.width(), fm.height()),
            Qt.AlignmentFlag.AlignHCenter,
            "step",
        )
        if not self.train and not self.valid:
            painter.setPen(pal.placeholderText().color())
            painter.drawText(plot, Qt.AlignmentFlag.AlignCenter, "The loss curve appears here.")
        painter.setClipRect(plot.adjusted(-4, -4, 4, 4))
        if len(self.train) >= SMOOTH_FROM:
            faint = QColor(TRAIN_COLOR)
            faint.setAlpha(70)
            self._line(painter, self.train, faint, 1.2, to_px)
            self._line(painter, smoothed(self.train), TRAIN_COLOR, 2.2, to_px)
        elif self.train:
            self._line(painter, self.train, TRAIN_COLOR, 2.0, to_px)
        if self.valid:
            self._line(painter, self.valid, VALID_COLOR, 2.0, to_px)
            painter.setPen(QPen(pal.base().color(), 1.5))
            painter.setBrush(VALID_COLOR)
            for point in self.valid:
                painter.drawEllipse(to_px(*point), 4, 4)
        painter.setClipping(False)
        self._legend(painter, plot)
        painter.end()

    @staticmethod
    def _line(
        painter: QPainter,
        series: list[tuple[int, float]],
        color: QColor,
        width: float,
        to_px: Callable[[float, float], QPointF],
    ) -> None:
        painter.setPen(QPen(color, width))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        if len(series) == 1:
            painter.setBrush(color)
            painter.drawEllipse(to_px(*series[0]), 3, 3)
            return
        path = QPainterPath(to_px(*series[0]))
        for x, y in series[1:]:
            path.lineTo(to_px(x, y))
        painter.drawPath(path)

    def legend(self) -> list[str]:
        """The legend's entries as shown: each series with its latest value."""
        return [label for label, _color in self._entries()]

    def _entries(self) -> list[tuple[str, QColor]]:
        entries = []
        if self.train or not self.valid:
            value = f" {self.train[-1][1]:.4g}" if self.train else ""
            entries.append((f"training loss{value}", TRAIN_COLOR))
        if self.valid:
            entries.append((f"validation loss {self.valid[-1][1]:.4g}", VALID_COLOR))
        return entries

    def _legend(self, painter: QPainter, plot: QRectF) -> None:
        fm = painter.fontMetrics()
        x = plot.left()
        y = (plot.top() - fm.height()) / 2
        for label, color in self._entries():
            mid = y + fm.height() / 2
            painter.setPen(QPen(color, 3))
            painter.drawLine(QPointF(x, mid), QPointF(x + 18, mid))
            if color == VALID_COLOR:
                painter.setPen(QPen(self.palette().base().color(), 1.5))
                painter.setBrush(color)
                painter.drawEllipse(QPointF(x + 9, mid), 4, 4)
            x += 24
            painter.setPen(self.palette().text().color())
            painter.drawText(QPointF(x, y + fm.ascent()), label)
            x += fm.horizontalAdvance(label) + 22
