"""Gallery thumbnails made off the GUI thread: images scaled while decoding, audio waveforms,
text snippets. Results are cached by (path, mtime) and announced with ``ready(path)``."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject, QRunnable, QSize, Qt, QThreadPool, Signal
from PySide6.QtGui import QColor, QImage, QImageReader

from studio.ui.waveform import load_samples, waveform_image

SNIPPET_CHARS = 220
#: Thumbnails kept in memory (about 100 KB each); the oldest are dropped first.
CACHE_LIMIT = 1000


def make_image_thumb(path: Path, size: QSize) -> QImage:
    """Decode ``path`` scaled to fit ``size`` (QImageReader scales while decoding: cheap)."""
    reader = QImageReader(str(path))
    reader.setAutoTransform(True)
    src = reader.size()
    if src.isValid():
        reader.setScaledSize(src.scaled(size, Qt.AspectRatioMode.KeepAspectRatio))
    image = reader.read()
    return image


def make_audio_thumb(path: Path, size: QSize) -> QImage:
    samples, _rate = load_samples(path)
    return waveform_image(samples, size, QColor(96, 170, 255), QColor(32, 36, 44))


def read_snippet(path: Path, chars: int = SNIPPET_CHARS) -> str:
    with open(path, encoding="utf-8", errors="replace") as fh:
        return fh.read(chars)


class _Signals(QObject):
    done = Signal(str, object)  # key, QImage | str | None


class _Job(QRunnable):
    def __init__(self, key: str, path: Path, modality: str, size: QSize, signals: _Signals) -> None:
        super().__init__()
        self.key, self.path, self.modality, self.size = key, path, modality, size
        self.signals = signals

    def run(self) -> None:
        result: QImage | str | None
        try:
            if self.modality == "image":
                result = make_image_thumb(self.path, self.size)
            elif self.modality == "audio":
                result = make_audio_thumb(self.path, self.size)
            elif self.modality == "text":
                result = read_snippet(self.path)
            else:
                result = None
        except Exception:  # unreadable or deleted file: the tile shows a placeholder
            result = None
        try:
            self.signals.done.emit(self.key, result)
        except RuntimeError:  # loader deleted during shutdown
            pass


class ThumbnailLoader(QObject):
    """Loads thumbnails on a private thread pool; ``get`` never blocks."""

    ready = Signal(str)

    def __init__(self, size: QSize | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.size = size or QSize(160, 160)
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._cache: dict[str, QImage | str | None] = {}
        self._pending: set[str] = set()
        self._signals = _Signals(self)
        self._signals.done.connect(self._done)

    @staticmethod
    def key(path: Path) -> str:
        try:
            mtime = path.stat().st_mtime_ns
        except OSError:
            mtime = 0
        return f"{path}|{mtime}"

    def get(self, path: Path, modality: str) -> QImage | str | None:
        """The cached thumbnail (QImage, or text snippet), or ``None`` after queueing a load."""
        key = self.key(path)
        if key in self._cache:
            return self._cache[key]
        if key not in self._pending:
            self._pending.add(key)
            self.pool.start(_Job(key, path, modality, self.size, self._signals))
        return None

    def is_loading(self) -> bool:
        return bool(self._pending)

    def _done(self, key: str, result: object) -> None:
        self._pending.discard(key)
        self._cache[key] = result if isinstance(result, QImage | str) else None
        while len(self._cache) > CACHE_LIMIT:
            self._cache.pop(next(iter(self._cache)))
        self.ready.emit(key.rsplit("|", 1)[0])

    def shutdown(self, timeout_ms: int = 5000) -> None:
        """Drop queued loads and wait (bounded) for the running ones."""
        self.pool.clear()
        self.pool.waitForDone(timeout_ms)
        self._pending.clear()
