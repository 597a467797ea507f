"""The bridge (worker threads -> GUI thread), the screenshot mode, the cold-start import path."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtGui import QImage

from studio.core.events import JobEvent, JobState, JobStateChanged, Partial, Preview, Progress
from studio.ui.bridge import StudioBridge


class FakeStudio:
    """Just the observer API of Studio, to drive the bridge from plain threads."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def subscribe(self, callback: Any) -> Any:
        self.callbacks.append(callback)
        return lambda: self.callbacks.remove(callback)

    def emit(self, event: JobEvent) -> None:
        for cb in list(self.callbacks):
            cb(event)


def test_bridge_delivers_on_the_gui_thread_in_order(qtbot: Any) -> None:
    studio = FakeStudio()
    bridge = StudioBridge(studio)  # type: ignore[arg-type]
    gui = threading.get_ident()
    got: list[tuple[str, int]] = []
    threads: set[int] = set()

    def on_partial(job: str, text: str, index: int) -> None:
        threads.add(threading.get_ident())
        got.append((text, index))

    bridge.partial.connect(on_partial)
    states: list[Any] = []
    bridge.job_state.connect(lambda job, state, error: states.append(state))

    def worker() -> None:
        for i in range(200):
            studio.emit(JobEvent("j1", Partial(f"t{i}")))
        studio.emit(JobEvent("j1", JobStateChanged(JobState.SUCCEEDED)))

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    qtbot.waitUntil(lambda: states == [JobState.SUCCEEDED], timeout=5000)
    assert [g[0] for g in got] == [f"t{i}" for i in range(200)]
    assert threads == {gui}
    bridge.close()
    assert studio.callbacks == []


def test_bridge_coalesces_previews_and_stops_after_close(qtbot: Any) -> None:
    studio = FakeStudio()
    bridge = StudioBridge(studio)  # type: ignore[arg-type]
    previews: list[int] = []
    progress: list[int] = []
    bridge.preview.connect(lambda job, p: previews.append(p.step))
    bridge.progress.connect(lambda job, step, total, msg: progress.append(step))

    def worker() -> None:
        for i in range(1, 51):
            studio.emit(JobEvent("j", Preview(None, step=i)))
            studio.emit(JobEvent("j", Progress(i, 50)))

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert not t.is_alive()  # all 50 previews arrived before the GUI thread took any
    qtbot.waitUntil(lambda: progress[-1:] == [50], timeout=5000)
    qtbot.waitUntil(lambda: previews[-1:] == [50], timeout=5000)
    assert progress == list(range(1, 51))  # nothing else is dropped
    assert previews == [50]  # only the newest preview is kept
    bridge.close()
    studio.callbacks.clear()
    bridge.on_job_event(JobEvent("j", Progress(1, 1)))  # late event after close: ignored
    qtbot.wait(20)
    assert progress[-1] == 50


def test_gui_modules_do_not_import_torch() -> None:
    code = (
        "import sys, studio.ui.app, studio.ui.main_window, studio.ui.generate_panel, "
        "studio.ui.gallery_panel, studio.ui.training_panel, studio.ui.models_panel, "
        "studio.ui.plugins_panel, studio.ui.settings_dialog;"
        "bad = [m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules];"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("panel", ["gallery", "settings"])
def test_screenshot_mode(panel: str, tmp_path: Path, studio_env: Any) -> None:
    out = tmp_path / f"{panel}.png"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "STUDIO_HOME": str(tmp_path / "home")}
    code = (
        f"from studio.ui.app import run_gui; import sys; sys.exit(run_gui({str(out)!r}, {panel!r}))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    image = QImage(str(out))
    assert not image.isNull() and image.width() >= 800 and image.height() >= 500


def test_screenshot_rejects_unknown_panel() -> None:
    from studio.ui.app import run_gui

    assert run_gui(Path("x.png"), "nope") == 2


def test_loss_plot_and_waveform_render(qtbot: Any) -> None:
    import numpy as np
    from PySide6.QtCore import QSize

    from studio.ui.loss_plot import LossPlot, nice_ticks
    from studio.ui.waveform import envelope, waveform_image

    assert nice_ticks(0, 1, 5) == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert nice_ticks(0, 97, 5) == [0, 20, 40, 60, 80]
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(400, 240)
    for step in range(1, 21):
        plot.add(step, 1 / step, total=20, validation=1.2 / step if step % 5 == 0 else None)
    assert len(plot.train) == 20 and len(plot.valid) == 4
    assert not plot.grab().toImage().isNull()
    lows, highs = envelope(np.array([0, 1, -1, 0.5, -0.5, 0], dtype="float32"), 3)
    assert highs == [1.0, 0.5, 0.0] and lows == [0.0, -1.0, -0.5]
    image = waveform_image(np.sin(np.linspace(0, 50, 4000)), QSize(120, 40))
    assert (image.width(), image.height()) == (120, 40)


class FakeSink:
    """Stands in for QAudioSink: takes at most ``room`` bytes per write."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.written = bytearray()
        self.stopped = False

    def bytesFree(self) -> int:  # Qt's name
        return self.room

    def write(self, data: bytes) -> int:
        self.written += data
        return len(data)

    def stop(self) -> None:
        self.stopped = True


def test_stream_player_feeds_the_sink_as_it_has_room(qtbot: Any) -> None:
    import numpy as np

    from studio.ui.audio_player import StreamPlayer

    sink = FakeSink(room=1000)
    player = StreamPlayer(sink_factory=lambda rate, ch, parent: (sink, sink))
    chunk = np.linspace(-1, 1, 600, dtype="float32")  # 2400 bytes
    assert player.push(chunk, 8000) and player.active
    assert len(sink.written) == 1000 and len(player.pending) == 1400
    qtbot.waitUntil(lambda: not player.pending, timeout=2000)  # the timer feeds the rest
    assert bytes(sink.written) == chunk.tobytes()
    assert not player.push(np.zeros((10, 2), dtype="float32"), 8000)  # format change: ignored
    player.stop()
    assert sink.stopped and not player.active


def test_stream_player_without_a_device_says_why(qtbot: Any) -> None:
    import numpy as np

    from studio.ui.audio_player import StreamPlayer

    def no_device(rate: int, channels: int, parent: Any) -> Any:
        raise RuntimeError("No audio output device: streamed audio is drawn, not played.")

    player = StreamPlayer(sink_factory=no_device)
    assert not player.push(np.zeros(10, dtype="float32"), 8000)
    assert player.error is not None and "No audio output device" in player.error
