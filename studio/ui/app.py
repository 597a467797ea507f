"""Start the desktop studio: ``run_gui()`` (the ``aigc-studio`` command with no subcommand).

``run_gui(screenshot=FILE, panel=NAME)`` opens the window offscreen, waits until the plugins,
the models and the gallery (with its thumbnails) are loaded, saves a PNG of the window with that
panel shown, and returns 0: used for the docs and for checking the layout by eye.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from PySide6.QtGui import QImage

#: The window size of screenshots (the offscreen screen is smaller; Qt allows it).
SCREENSHOT_SIZE = (1280, 820)
#: How long a screenshot run waits for the studio to load before giving up.
SCREENSHOT_TIMEOUT_S = 60.0


#: GIL switch interval for the GUI process. CPython's default (5 ms) lets a busy worker thread
#: keep the GUI thread waiting several intervals in a row; 1 ms keeps the event loop's lag low
#: while torch kernels (which release the GIL) are unaffected.
GUI_SWITCH_INTERVAL_S = 0.001


def prepare_process() -> None:
    """Process-wide settings for a responsive window (call before the studio starts work)."""
    sys.setswitchinterval(GUI_SWITCH_INTERVAL_S)


def run_gui(
    screenshot: Path | None = None, panel: str | None = None, home: Path | None = None
) -> int:
    """Open the studio window; return the process exit code.

    ``panel``: generate, gallery, queue, training, models, plugins or settings (shown first).
    ``home``: the studio home (default ``$STUDIO_HOME`` or the platform folder).
    """
    from studio.ui.main_window import PANEL_NAMES

    if panel is not None and panel not in PANEL_NAMES:
        print(
            f"aigc-studio: unknown panel {panel!r}; allowed: {', '.join(PANEL_NAMES)}",
            file=sys.stderr,
        )
        return 2
    if screenshot is not None and "QT_QPA_PLATFORM" not in os.environ:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"  # must be set before the QApplication
    from PySide6.QtWidgets import QApplication

    from studio.ui.main_window import MainWindow
    from studio.ui.theme import apply_theme

    prepare_process()
    app = QApplication.instance()
    if not isinstance(app, QApplication):
        app = QApplication(sys.argv[:1])
    app.setApplicationName("aigc-studio")
    app.setApplicationDisplayName("aigc-studio")
    app.setDesktopFileName("aigc-studio")
    apply_theme("system", app)
    from studio.ui.util import icon

    app.setWindowIcon(icon("aigc-studio"))
    window = MainWindow(home=home, owns_studio=True)
    window.show()
    if screenshot is None:
        if panel is not None:
            window.studio_ready.connect(lambda: window.show_panel(panel))
        return app.exec()
    # A fixed size, whatever was saved: screenshots are compared and put in the docs.
    window.studio_ready.connect(lambda: window.resize(SCREENSHOT_SIZE[0], SCREENSHOT_SIZE[1]))
    shooter = _Screenshot(window, Path(screenshot), panel or "generate")
    window.studio_failed.connect(shooter.fail)
    code = app.exec()
    return shooter.code if shooter.code is not None else code


class _Screenshot:
    """Waits until the window is loaded, saves the PNG, then quits the event loop."""

    def __init__(self, window: object, path: Path, panel: str) -> None:
        from PySide6.QtCore import QTimer

        from studio.ui.main_window import MainWindow

        assert isinstance(window, MainWindow)
        self.window = window
        self.path = path
        self.panel = panel
        self.code: int | None = None
        self.started = time.monotonic()
        self.timer = QTimer()
        self.timer.setInterval(50)
        self.timer.timeout.connect(self.poll)
        self.timer.start()

    def poll(self) -> None:
        if self.window.studio is None:
            if time.monotonic() - self.started > SCREENSHOT_TIMEOUT_S:
                self.fail("the studio did not open in time")
            return
        if self.window.current_panel() != self.panel and self.panel != "settings":
            self.window.show_panel(self.panel)
        if not self.window.is_loaded():
            if time.monotonic() - self.started > SCREENSHOT_TIMEOUT_S:
                self.fail("the window did not finish loading in time")
            return
        self.timer.stop()
        try:
            image = grab(self.window, self.panel)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not image.save(str(self.path)):
                raise OSError(f"could not write {self.path}")
        except Exception as exc:
            self.fail(str(exc))
            return
        print(f"saved {self.path}", file=sys.stderr)
        self.code = 0
        self.window.close()
        self._quit()

    def fail(self, message: str) -> None:
        self.timer.stop()
        print(f"aigc-studio: screenshot failed: {message}", file=sys.stderr)
        self.code = 1
        self.window.close()
        self._quit()

    @staticmethod
    def _quit() -> None:
        from PySide6.QtWidgets import QApplication

        QApplication.quit()


def grab(window: object, panel: str) -> QImage:
    """The window as an image; for ``settings`` with the dialog drawn over it, centred."""
    from PySide6.QtGui import QColor, QPainter
    from PySide6.QtWidgets import QApplication

    from studio.ui.main_window import MainWindow

    assert isinstance(window, MainWindow)
    if panel != "settings":
        QApplication.processEvents()
        return window.grab().toImage()
    dialog = window.open_settings()
    QApplication.processEvents()
    base = window.grab().toImage()
    if dialog is not None:
        over = dialog.grab().toImage()
        painter = QPainter(base)
        painter.fillRect(base.rect(), QColor(0, 0, 0, 90))
        x = (base.width() - over.width()) // 2
        y = (base.height() - over.height()) // 2
        painter.drawImage(max(0, x), max(0, y), over)
        painter.end()
        dialog.close()
    return base
