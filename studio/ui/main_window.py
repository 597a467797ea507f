"""The main window: a navigation list of panels (generate, gallery, queue, training, models,
plugins), the settings dialog, a status bar, and the window state kept between runs.

The window shows at once; the studio (database, plugins, worker) opens on a pool thread and the
panels are built when it is ready, so a cold start never waits on the GUI thread.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QProcess, QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QCloseEvent, QGuiApplication, QKeySequence
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QStackedWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core.events import JobState
from studio.ui.state import WindowState
from studio.ui.util import call_async, icon

if TYPE_CHECKING:
    from studio.core.studio import Studio
    from studio.ui.gallery_panel import GalleryPanel
    from studio.ui.generate_panel import GeneratePanel
    from studio.ui.models_panel import ModelsPanel
    from studio.ui.plugins_panel import PluginsPanel
    from studio.ui.queue_panel import QueuePanel
    from studio.ui.session import Session
    from studio.ui.settings_dialog import SettingsDialog
    from studio.ui.training_panel import TrainingPanel

PANELS = (
    ("generate", "Generate", "generate"),
    ("gallery", "Gallery", "gallery"),
    ("queue", "Queue", "queue"),
    ("training", "Training", "training"),
    ("models", "Models", "models"),
    ("plugins", "Plugins", "plugins"),
)
PANEL_NAMES = (*tuple(p[0] for p in PANELS), "settings")


class MainWindow(QMainWindow):
    """The studio window. Give it an open ``studio``, or a ``home`` to open in the background."""

    #: the studio is attached and the panels exist
    studio_ready = Signal()
    #: the studio could not be opened (message)
    studio_failed = Signal(str)
    #: plugins, models and the gallery are loaded (what a screenshot waits for)
    loaded = Signal()

    def __init__(
        self, studio: Studio | None = None, *, home: Path | None = None, owns_studio: bool = False
    ) -> None:
        super().__init__()
        self.setWindowTitle("aigc-studio")
        self.setObjectName("mainWindow")
        self.studio: Studio | None = None
        self.session: Session | None = None
        self.owns_studio = owns_studio
        self.state: WindowState | None = None
        self.panels: dict[str, QWidget] = {}
        self.settings_dialog: SettingsDialog | None = None
        self._closing = False
        self._loaded_sent = False
        self._build_shell()
        self.resize(1280, 820)
        if studio is not None:
            self.attach(studio)
        elif home is not None or owns_studio:
            self.open_studio(home)

    # -- shell (exists before the studio) -----------------------------------------------------
    def _build_shell(self) -> None:
        self.nav = QListWidget()
        self.nav.setObjectName("nav")
        self.nav.setIconSize(QSize(20, 20))
        self.nav.setFixedWidth(168)
        for name, title, icon_name in PANELS:
            item = QListWidgetItem(icon(icon_name), title)
            item.setData(Qt.ItemDataRole.UserRole, name)
            item.setSizeHint(QSize(150, 38))
            self.nav.addItem(item)
        self.nav.setEnabled(False)
        self.nav.currentRowChanged.connect(self._nav_changed)
        self.settings_button = QPushButton(icon("settings"), "Settings")
        self.settings_button.setEnabled(False)
        self.settings_button.clicked.connect(self.open_settings)
        nav_column = QVBoxLayout()
        nav_column.setContentsMargins(6, 8, 0, 8)
        heading = QLabel("<b style='font-size:15px'>aigc-studio</b>")
        heading.setContentsMargins(10, 0, 0, 6)
        nav_column.addWidget(heading)
        nav_column.addWidget(self.nav, 1)
        nav_column.addWidget(self.settings_button)

        self.stack = QStackedWidget()
        self.loading = QLabel("Opening the studio…")
        self.loading.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.loading.setObjectName("hint")
        self.stack.addWidget(self.loading)

        self.restart_banner = QFrame()
        self.restart_banner.setObjectName("banner")
        banner_row = QHBoxLayout(self.restart_banner)
        self.restart_text = QLabel()
        self.restart_text.setWordWrap(True)
        restart_button = QPushButton("Restart now")
        restart_button.clicked.connect(self.restart)
        banner_row.addWidget(self.restart_text, 1)
        banner_row.addWidget(restart_button)
        self.restart_banner.hide()

        right = QVBoxLayout()
        right.setContentsMargins(0, 4, 4, 0)
        right.addWidget(self.restart_banner)
        right.addWidget(self.stack, 1)
        central = QWidget()
        row = QHBoxLayout(central)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        row.addLayout(nav_column)
        row.addLayout(right, 1)
        self.setCentralWidget(central)

        self.device_label = QLabel()
        self.device_label.setObjectName("hint")
        self.jobs_label = QLabel()
        self.jobs_label.setObjectName("hint")
        self.statusBar().addPermanentWidget(self.jobs_label)
        self.statusBar().addPermanentWidget(self.device_label)
        self._build_menus()

    def _build_menus(self) -> None:
        menu = self.menuBar()
        file_menu = menu.addMenu("&File")
        self.settings_action = QAction("&Settings…", self)
        self.settings_action.setShortcut(QKeySequence.StandardKey.Preferences)
        self.settings_action.triggered.connect(self.open_settings)
        self.settings_action.setEnabled(False)
        file_menu.addAction(self.settings_action)
        file_menu.addSeparator()
        quit_action = QAction("&Quit", self)
        quit_action.setShortcut(QKeySequence.StandardKey.Quit)
        quit_action.triggered.connect(self.close)
        file_menu.addAction(quit_action)
        view = menu.addMenu("&View")
        for i, (name, title, _icon) in enumerate(PANELS, start=1):
            action = QAction(title, self)
            action.setShortcut(QKeySequence(f"Ctrl+{i}"))
            action.triggered.connect(lambda _=False, n=name: self.show_panel(n))
            view.addAction(action)
        help_menu = menu.addMenu("&Help")
        about = QAction("&About aigc-studio", self)
        about.triggered.connect(self._about)
        help_menu.addAction(about)

    # -- opening the studio -------------------------------------------------------------------
    def open_studio(self, home: Path | None) -> None:
        """Open the studio home on a pool thread; ``attach`` runs on the GUI thread when done."""
        from studio.core.studio import Studio

        self.owns_studio = True
        self.loading.setText("Opening the studio…")
        call_async(self, lambda: Studio.open(home), self._opened, self._open_failed)

    def _opened(self, studio: Studio) -> None:
        if self._closing:  # closed while opening: nothing will use it
            studio.close()
            return
        self.attach(studio)

    def _open_failed(self, exc: BaseException) -> None:
        message = f"The studio could not be opened: {type(exc).__name__}: {exc}"
        self.loading.setText(message)
        self.studio_failed.emit(message)

    def attach(self, studio: Studio) -> None:
        """Build the generate panel for an open studio and restore the saved window state.

        The other panels are built the first time they are shown (or asked for), which keeps
        the cold start short.
        """
        from studio.ui.generate_panel import GeneratePanel
        from studio.ui.session import Session
        from studio.ui.theme import apply_theme

        self.studio = studio
        self.session = session = Session(studio, self)
        self.state = WindowState(studio.paths.home)
        apply_theme(studio.settings.theme)
        hints = QGuiApplication.styleHints()
        if hints is not None:  # "system" follows the desktop when it switches light / dark
            hints.colorSchemeChanged.connect(self._system_scheme_changed)
        session.status.connect(lambda msg: self.statusBar().showMessage(msg, 8000))
        session.restart_needed.connect(self._restart_needed)
        session.show_panel.connect(self.show_panel)
        session.show_model.connect(self._show_model)
        session.models_changed.connect(self._maybe_loaded)
        self.panels["generate"] = GeneratePanel(session, state=self.state.get_json("generate"))
        self.stack.addWidget(self.panels["generate"])
        session.bridge.job_state.connect(self._job_state)
        self.nav.setEnabled(True)
        self.settings_button.setEnabled(True)
        self.settings_action.setEnabled(True)
        self._restore_state()
        self._status_timer = QTimer(self)
        self._status_timer.setInterval(2000)
        self._status_timer.timeout.connect(self._update_status)
        self._status_timer.start()
        session.refresh_adapters()
        session.refresh_models()
        self._update_status()
        self.studio_ready.emit()

    def is_loaded(self) -> bool:
        """Plugins, models and gallery (and its first thumbnails) are there."""
        if self.session is None or not self.session.models_loaded:
            return False
        gallery = self.panels.get("gallery")
        if gallery is None:
            return True
        return bool(self.gallery.loaded and not self.gallery.thumbnails_pending())

    def _maybe_loaded(self) -> None:
        if not self._loaded_sent and self.session is not None and self.session.models_loaded:
            self._loaded_sent = True
            self.loaded.emit()

    # -- panels -------------------------------------------------------------------------------
    def show_panel(self, name: str) -> QWidget | None:
        """Show a panel by name (``settings`` opens the settings dialog)."""
        if name == "settings":
            return self.open_settings()
        if name not in PANEL_NAMES or self.session is None:
            return None
        panel = self.panel(name)
        names = [p[0] for p in PANELS]
        self.nav.setCurrentRow(names.index(name))
        return panel

    def current_panel(self) -> str | None:
        item = self.nav.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _nav_changed(self, row: int) -> None:
        if 0 <= row < len(PANELS) and self.session is not None:
            self.stack.setCurrentWidget(self.panel(PANELS[row][0]))

    def panel(self, name: str) -> QWidget:
        """The panel ``name``, built (and its saved state restored) on first use."""
        if name in self.panels:
            return self.panels[name]
        assert self.session is not None, "no studio attached yet"
        session = self.session
        built: QWidget
        if name == "gallery":
            from studio.ui.gallery_panel import GalleryPanel

            gallery = GalleryPanel(session)
            gallery.use_settings.connect(self._use_settings)
            gallery.regenerated.connect(self._follow_regenerated)
            gallery.use_image.connect(self._use_image)
            built = gallery
        elif name == "queue":
            from studio.ui.queue_panel import QueuePanel

            built = QueuePanel(session)
        elif name == "training":
            from studio.ui.training_panel import TrainingPanel

            training = TrainingPanel(session)
            training.use_adapter.connect(self.use_adapter)
            if self.state is not None:
                training.restore_state(self.state.get_json("training"))
            built = training
        elif name == "models":
            from studio.ui.models_panel import ModelsPanel

            built = ModelsPanel(session)
        elif name == "plugins":
            from studio.ui.plugins_panel import PluginsPanel

            built = PluginsPanel(session)
        else:
            raise KeyError(f"no panel named {name!r}; panels: {', '.join(PANEL_NAMES)}")
        self.panels[name] = built
        self.stack.addWidget(built)
        splitter = getattr(built, "splitter", None)
        if self.state is not None and splitter is not None:
            saved = self.state.get_bytes(f"splitters/{name}")
            if saved is not None:
                splitter.restoreState(saved)
        return built

    # Typed access to the panels (each built on first use).
    @property
    def generate(self) -> GeneratePanel:
        return self.panels["generate"]  # type: ignore[return-value]

    @property
    def gallery(self) -> GalleryPanel:
        return self.panel("gallery")  # type: ignore[return-value]

    @property
    def queue(self) -> QueuePanel:
        return self.panel("queue")  # type: ignore[return-value]

    @property
    def training(self) -> TrainingPanel:
        return self.panel("training")  # type: ignore[return-value]

    @property
    def models(self) -> ModelsPanel:
        return self.panel("models")  # type: ignore[return-value]

    @property
    def plugins(self) -> PluginsPanel:
        return self.panel("plugins")  # type: ignore[return-value]

    def open_settings(self) -> SettingsDialog | None:
        if self.studio is None:
            return None
        from studio.ui.settings_dialog import SettingsDialog

        if self.settings_dialog is None:
            dialog = SettingsDialog(self.studio, self)
            dialog.saved.connect(self._settings_saved)
            dialog.restart_needed.connect(self._restart_needed)
            dialog.finished.connect(self._settings_closed)
            self.settings_dialog = dialog
        self.settings_dialog.open()
        return self.settings_dialog

    def _system_scheme_changed(self, *_: Any) -> None:
        if self.studio is not None and self.studio.settings.theme == "system":
            from studio.ui.theme import apply_theme

            apply_theme("system")

    def _settings_closed(self, _result: int) -> None:
        if self.settings_dialog is not None:
            self.settings_dialog.deleteLater()
            self.settings_dialog = None

    def _settings_saved(self, settings: Any) -> None:
        from studio.ui.theme import apply_theme

        apply_theme(settings.theme)
        self.statusBar().showMessage("Settings saved.", 5000)
        if "models" in self.panels:
            self.models.populate()

    # -- cross-panel actions -------------------------------------------------------------------
    def _show_model(self, ref: str) -> None:
        self.show_panel("models")
        self.models.reveal(ref)

    def _use_settings(self, request: Any) -> None:
        self.generate.load_request(request)
        self.show_panel("generate")

    def _follow_regenerated(self, job_id: str, generator_id: str) -> None:
        gen = self.generate.generators.get(generator_id)
        if gen is not None:
            self.generate.select_generator(generator_id)
        self.generate.follow(job_id, gen)
        self.show_panel("generate")

    def _use_image(self, path: Any) -> None:
        if self.generate.set_init_image(Path(path)):
            self.show_panel("generate")
        else:
            self.statusBar().showMessage("This generator takes no init image.", 5000)

    def use_adapter(self, name: str, modality: str) -> bool:
        """Select a trained adapter in the generate form (switching to a generator that can:
        one the adapter names, such as a palette's own generator, when it names one)."""
        gen = self.generate.generator
        library = self.session.adapters if self.session is not None else []
        mine = [a for a in library if name in (a.id, a.name)]
        record = max(mine, key=lambda a: a.created) if mine else None  # the newest of a name
        named = [g for g in (record.generators if record else ()) if g in self.generate.generators]
        if named and (gen is None or gen.id not in named):
            self.generate.select_generator(named[0])
            gen = self.generate.generator
        if gen is None or not gen.supports_lora or gen.modality != modality:
            able = sorted(
                (
                    g
                    for g in self.generate.generators.values()
                    if g.supports_lora and g.modality == modality
                ),
                key=lambda g: g.name,
            )
            if not able:
                self.statusBar().showMessage(
                    f"No installed {modality} generator takes adapters.", 8000
                )
                return False
            self.generate.select_generator(able[0].id)
        ok = self.generate.use_adapter(name)
        self.show_panel("generate")
        return ok

    def _job_state(self, _job_id: str, _state: JobState, _error: Any) -> None:
        self._update_status()

    def _update_status(self) -> None:
        if self.studio is None:
            return
        self.device_label.setText(f"device: {self.studio.device}")
        try:
            jobs = self.studio.jobs(limit=100)
        except Exception:
            return
        running = sum(1 for j in jobs if j.state == JobState.RUNNING)
        queued = sum(1 for j in jobs if j.state == JobState.QUEUED)
        self.jobs_label.setText(f"{running} running · {queued} queued")

    # -- restart ------------------------------------------------------------------------------
    def _restart_needed(self, message: str) -> None:
        self.restart_text.setText(f"{message} Restart the studio to apply.")
        self.restart_banner.show()

    def restart(self) -> bool:
        """Close this window, then start a fresh studio process with the same arguments.

        In that order: closing releases the home's queue lock, and a new studio that found it
        still held would not take over the queue (jobs left queued would wait for a next start).
        """
        arguments = [*sys.orig_argv[1:]] if hasattr(sys, "orig_argv") else sys.argv
        if not self.close():
            return False
        started, _pid = QProcess.startDetached(sys.executable, arguments)
        return bool(started)

    def _about(self) -> None:
        from studio import __version__

        QMessageBox.about(
            self,
            "About aigc-studio",
            f"aigc-studio {__version__}\n"
            "Text, images and audio from local models, through plugins.",
        )

    # -- state --------------------------------------------------------------------------------
    def _restore_state(self) -> None:
        state = self.state
        if state is None:
            return
        geometry = state.get_bytes("window/geometry")
        if geometry is not None:
            self.restoreGeometry(geometry)
        window_state = state.get_bytes("window/state")
        if window_state is not None:
            self.restoreState(window_state)
        panel = state.get_str("window/panel", "generate")
        self.show_panel(panel if panel in PANEL_NAMES and panel != "settings" else "generate")

    def save_state(self) -> None:
        """Write size, splitters, panel, and the generate / training forms to ``ui.ini``."""
        state = self.state
        if state is None or self.session is None:
            return
        state.set_bytes("window/geometry", self.saveGeometry())
        state.set_bytes("window/state", self.saveState())
        state.set_str("window/panel", self.current_panel() or "generate")
        state.set_json("generate", self.generate.state())
        # panels never opened keep what was saved before
        if "training" in self.panels:
            state.set_json("training", self.training.state())
        for name, panel in self.panels.items():
            splitter = getattr(panel, "splitter", None)
            if splitter is not None and name != "generate":
                state.set_bytes(f"splitters/{name}", splitter.saveState())
        state.sync()

    # -- closing ------------------------------------------------------------------------------
    def closeEvent(self, event: QCloseEvent) -> None:
        self._closing = True
        self.save_state()
        self.shutdown()
        super().closeEvent(event)

    def shutdown(self) -> None:
        """Stop listening, stop background work (bounded), close the studio if we opened it."""
        if self.settings_dialog is not None:
            self.settings_dialog.close()
        if self.session is not None:
            for panel in self.panels.values():
                shutdown = getattr(panel, "shutdown", None)
                if shutdown is not None:
                    shutdown()
            self.session.close()
        if self.owns_studio and self.studio is not None:
            studio, self.studio = self.studio, None
            studio.close(timeout=5.0)
