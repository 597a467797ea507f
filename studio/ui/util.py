"""Small helpers shared by the panels: background calls, image conversion, formatting, icons."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal
from PySide6.QtGui import QIcon, QImage
from PySide6.QtWidgets import QWidget

from studio.core.paths import resources_dir

# --- background calls --------------------------------------------------------------------------


class _CallSignals(QObject):
    done = Signal(object)
    failed = Signal(object)


class _Call(QRunnable):
    def __init__(self, fn: Callable[[], Any], signals: _CallSignals) -> None:
        super().__init__()
        self.fn = fn
        self.signals = signals

    def run(self) -> None:
        try:
            result = self.fn()
        except BaseException as exc:  # reported to the GUI thread, never lost in the pool
            try:
                self.signals.failed.emit(exc)
            except RuntimeError:  # the receiver was deleted while we ran
                pass
            return
        try:
            self.signals.done.emit(result)
        except RuntimeError:
            pass


_live: set[_CallSignals] = set()


def call_async(
    owner: QObject,
    fn: Callable[[], Any],
    on_done: Callable[[Any], None] | None = None,
    on_error: Callable[[BaseException], None] | None = None,
    pool: QThreadPool | None = None,
) -> None:
    """Run ``fn`` on the thread pool; deliver its result (or exception) on ``owner``'s thread.

    The callbacks are dropped when ``owner`` is destroyed first, so a closed panel never receives
    a late answer.
    """
    signals = _CallSignals()
    signals.moveToThread(owner.thread())
    _live.add(signals)
    alive = [True]

    def _owner_gone() -> None:
        alive[0] = False

    owner.destroyed.connect(_owner_gone)

    def _finish(callback: Callable[[Any], None] | None, value: Any) -> None:
        _live.discard(signals)
        try:
            owner.destroyed.disconnect(_owner_gone)
        except (RuntimeError, TypeError):
            pass
        if alive[0] and callback is not None:
            callback(value)

    signals.done.connect(lambda value: _finish(on_done, value))
    signals.failed.connect(lambda exc: _finish(on_error, exc))
    (pool or QThreadPool.globalInstance()).start(_Call(fn, signals))


# --- images ------------------------------------------------------------------------------------


def pil_to_qimage(image: Any) -> QImage:
    """Convert a PIL image to a QImage that owns its pixels (safe on any thread)."""
    rgba = image.convert("RGBA")
    data = rgba.tobytes("raw", "RGBA")
    qimg = QImage(data, rgba.width, rgba.height, rgba.width * 4, QImage.Format.Format_RGBA8888)
    return qimg.copy()


def array_to_qimage(array: Any) -> QImage:
    """Convert an HxW or HxWx{3,4} numpy array (uint8 or float in [0, 1]) to a QImage."""
    import numpy as np

    arr = np.asarray(array)
    if arr.dtype != np.uint8:
        arr = (np.clip(arr, 0.0, 1.0) * 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    if arr.shape[-1] == 3:
        arr = np.concatenate([arr, np.full((*arr.shape[:2], 1), 255, np.uint8)], axis=-1)
    arr = np.ascontiguousarray(arr)
    h, w = arr.shape[:2]
    return QImage(arr.data, w, h, w * 4, QImage.Format.Format_RGBA8888).copy()


def to_qimage(data: Any) -> QImage | None:
    """A preview payload (PIL image, numpy array, QImage, or path) as a QImage, else ``None``."""
    if isinstance(data, QImage):
        return data
    if isinstance(data, str | Path):
        img = QImage(str(data))
        return None if img.isNull() else img
    if hasattr(data, "convert") and hasattr(data, "tobytes"):
        return pil_to_qimage(data)
    if hasattr(data, "shape") and len(getattr(data, "shape", ())) in (2, 3):
        return array_to_qimage(data)
    return None


# --- formatting --------------------------------------------------------------------------------


def human_duration(seconds: float | None) -> str:
    """``2.5`` -> ``2.5 s``; ``75`` -> ``1:15``; ``3725`` -> ``1:02:05``; ``None`` -> ``""``."""
    if seconds is None or math.isnan(seconds) or seconds < 0:
        return ""
    if seconds < 10:
        return f"{seconds:.1f} s"
    s = round(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


def eta_seconds(
    started: float | None, step: int, total: int, now: float | None = None
) -> float | None:
    """Time left from the average step time so far (``None`` when it cannot be told yet)."""
    if started is None or step <= 0 or total <= 0 or step >= total:
        return None
    elapsed = (now if now is not None else time.time()) - started
    return elapsed / step * (total - step)


def when(ts: float | None) -> str:
    """A timestamp as local ``YYYY-MM-DD HH:MM``."""
    if not ts:
        return ""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


# --- icons -------------------------------------------------------------------------------------

_icons: dict[str, QIcon] = {}


def icon(name: str) -> QIcon:
    """An icon from resources/icons/NAME.svg (an empty icon if it is missing)."""
    if name not in _icons:
        try:
            path = resources_dir() / "icons" / f"{name}.svg"
        except FileNotFoundError:
            path = Path()
        _icons[name] = QIcon(str(path)) if path.is_file() else QIcon()
    return _icons[name]


def discard(widget: QWidget) -> None:
    """Remove a widget from its parent for good.

    Hidden first: a widget just added to a visible layout has a queued "show if not hidden"
    call pending, which would otherwise pop it up as a top-level window once it has no parent.
    """
    widget.hide()
    widget.setParent(None)
    widget.deleteLater()
