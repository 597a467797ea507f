"""Play audio through QtMultimedia, imported lazily: without it (no libpulse, no backend) the
waveform still shows and a visible note says why playback is off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, QUrl
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QWidget

from studio.ui.waveform import WaveformView

_backend_error: str | None = None


def multimedia_error() -> str | None:
    """Why QtMultimedia cannot be used here, or ``None`` when it can (checked once)."""
    global _backend_error
    if _backend_error is None:
        try:
            from PySide6 import QtMultimedia  # noqa: F401 - the import is the check
        except (ImportError, OSError) as exc:
            _backend_error = (
                f"Playback unavailable: QtMultimedia could not load ({exc}). "
                "On Linux install libpulse0 (PulseAudio client library)."
            )
        else:
            _backend_error = ""
    return _backend_error or None


class AudioPlayer(QWidget):
    """Play / stop for one audio file, moving the play head of a :class:`WaveformView`."""

    def __init__(self, waveform: WaveformView, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.waveform = waveform
        self.path: Path | None = None
        self._player: Any = None
        self._output: Any = None
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        self.play_button = QPushButton("▶ Play")
        self.play_button.setEnabled(False)
        self.play_button.clicked.connect(self.toggle)
        self.note = QLabel()
        self.note.setObjectName("hint")
        self.note.setWordWrap(True)
        self.note.hide()
        row.addWidget(self.play_button)
        row.addWidget(self.note, 1)
        waveform.seek_requested.connect(self.seek)

    def set_file(self, path: Path | None) -> None:
        """The file to play (``None`` disables the button)."""
        self.stop()
        self.path = path
        error = multimedia_error() if path is not None else None
        self.note.setText(error or "")
        self.note.setVisible(bool(error))
        self.play_button.setEnabled(path is not None and error is None)

    def _ensure_player(self) -> Any:
        if self._player is None:
            from PySide6.QtMultimedia import QAudioOutput, QMediaPlayer

            self._output = QAudioOutput(self)
            self._player = QMediaPlayer(self)
            self._player.setAudioOutput(self._output)
            self._player.positionChanged.connect(lambda ms: self.waveform.set_position(ms / 1000.0))
            self._player.playbackStateChanged.connect(self._state_changed)
            self._player.errorOccurred.connect(self._error)
        return self._player

    def toggle(self) -> None:
        if self.path is None:
            return
        player = self._ensure_player()
        if self.is_playing():
            player.pause()
            return
        if player.source() != QUrl.fromLocalFile(str(self.path)):
            player.setSource(QUrl.fromLocalFile(str(self.path)))
        player.play()

    def is_playing(self) -> bool:
        if self._player is None:
            return False
        from PySide6.QtMultimedia import QMediaPlayer

        return bool(self._player.playbackState() == QMediaPlayer.PlaybackState.PlayingState)

    def seek(self, seconds: float) -> None:
        if self._player is not None:
            self._player.setPosition(int(seconds * 1000))
        self.waveform.set_position(seconds)

    def stop(self) -> None:
        if self._player is not None:
            self._player.stop()
        self.waveform.set_position(0.0)

    def _state_changed(self, _state: Any) -> None:
        self.play_button.setText("⏸ Pause" if self.is_playing() else "▶ Play")

    def _error(self, _error: Any, message: str) -> None:
        self.note.setText(f"Playback failed: {message}")
        self.note.show()


class StreamPlayer(QObject):
    """Plays audio chunks as a generator streams them (QAudioSink in push mode).

    Chunks are float arrays (mono or frames x channels) at one sample rate; they are queued and
    fed to the sink as it has room, from a 20 ms timer on the GUI thread (a few KB each time).
    """

    def __init__(self, parent: QObject | None = None, sink_factory: Any = None) -> None:
        super().__init__(parent)
        self._sink_factory = sink_factory or _make_sink
        self._sink: Any = None
        self._io: Any = None
        self.rate = 0
        self.channels = 0
        self.pending = bytearray()
        self.error: str | None = None
        self.timer = QTimer(self)
        self.timer.setInterval(20)
        self.timer.timeout.connect(self.feed)

    @property
    def active(self) -> bool:
        return self._io is not None

    def push(self, chunk: Any, rate: int) -> bool:
        """Queue a chunk; the first one opens the sink. False when it cannot play (see error)."""
        import numpy as np

        data = np.asarray(chunk, dtype=np.float32)
        channels = 1 if data.ndim == 1 else int(data.shape[1])
        if self._io is None:
            if self.error is not None:
                return False
            try:
                self._sink, self._io = self._sink_factory(rate, channels, self)
            except RuntimeError as exc:
                self.error = str(exc)
                return False
            self.rate, self.channels = rate, channels
            self.timer.start()
        elif rate != self.rate or channels != self.channels:
            return False  # a generator changing format mid-stream: keep what plays
        self.pending += np.ascontiguousarray(data).tobytes()
        self.feed()
        return True

    def feed(self) -> None:
        if self._io is None or self._sink is None:
            return
        room = int(self._sink.bytesFree())
        if room > 0 and self.pending:
            written = int(self._io.write(bytes(self.pending[:room])))
            if written > 0:
                del self.pending[:written]

    def stop(self) -> None:
        self.timer.stop()
        if self._sink is not None:
            self._sink.stop()
        self._sink = self._io = None
        self.pending.clear()
        self.error = None


def _make_sink(rate: int, channels: int, parent: QObject) -> tuple[Any, Any]:
    """A started QAudioSink for float samples; RuntimeError saying why when there is none."""
    error = multimedia_error()
    if error:
        raise RuntimeError(error)
    from PySide6.QtMultimedia import QAudioFormat, QAudioSink, QMediaDevices

    device = QMediaDevices.defaultAudioOutput()
    if device.isNull():
        raise RuntimeError("No audio output device: streamed audio is drawn, not played.")
    fmt = QAudioFormat()
    fmt.setSampleRate(rate)
    fmt.setChannelCount(channels)
    fmt.setSampleFormat(QAudioFormat.SampleFormat.Float)
    if not device.isFormatSupported(fmt):
        raise RuntimeError(f"The audio device cannot play {rate} Hz float audio.")
    sink = QAudioSink(device, fmt, parent)
    sink.setBufferSize(rate * channels * 4)  # one second
    io = sink.start()
    if io is None:
        raise RuntimeError("The audio device could not be opened.")
    return sink, io
