"""The plugins panel: installed plugins with version, generators, trainers and load errors (the
traceback one click away); enable / disable (persisted, applied on restart); install and
uninstall through pip in a subprocess with live output and a constraints file that keeps the
studio, torch and the other core packages as they are.

The pip policy (what may be installed or uninstalled, the constraints, pip's arguments) is
:mod:`studio.core.installer`, shared with ``aigc-studio install`` / ``uninstall``; this panel
only runs those arguments in a ``QProcess`` and shows the output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QProcess, Qt, Signal
from PySide6.QtGui import QColor, QFont
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import InvalidRequest
from studio.core.installer import (
    check_install_spec,
    install_arguments,
    plugin_distributions,
    resolve_uninstall,
    uninstall_arguments,
)
from studio.core.plugins import PluginInfo
from studio.core.settings import Settings

if TYPE_CHECKING:
    from studio.ui.session import Session

COLUMNS = ("Plugin", "Version", "Enabled", "Generators", "Trainers", "Status")
NAME_ROLE = Qt.ItemDataRole.UserRole + 1


def plugin_status(info: PluginInfo, disabled: bool) -> str:
    """The status column: loaded / disabled / error, and what changes on the next start."""
    if info.error:
        return f"error: {info.error}"
    if info.enabled and disabled:
        return "loaded · disabled on restart"
    if not info.enabled:
        return "disabled" if disabled else "enabled on restart"
    return "loaded · built-in" if info.builtin else "loaded"


class TracebackDialog(QDialog):
    """A plugin's load error with its full traceback (selectable, copyable)."""

    def __init__(self, info: PluginInfo, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(f"Plugin {info.name}: error")
        self.resize(760, 420)
        text = QPlainTextEdit()
        text.setReadOnly(True)
        text.setFont(QFont("monospace"))
        text.setPlainText(f"{info.error}\n\n{info.traceback or '(no traceback recorded)'}")
        self.text = text
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(text)
        layout.addWidget(buttons)


class PipRunner(QWidget):
    """Runs pip in a QProcess and shows its output live."""

    finished = Signal(int)  # exit code

    def __init__(self, constraints: Path, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.constraints = constraints
        self.python = sys.executable
        self.process: QProcess | None = None
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setFont(QFont("monospace"))
        self.output.setPlaceholderText("pip's output appears here.")
        self.output.setMaximumBlockCount(5000)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.output)

    def running(self) -> bool:
        return self.process is not None and self.process.state() != QProcess.ProcessState.NotRunning

    def run_pip(self, args: list[str]) -> bool:
        """Start ``python -m pip ARGS``; False if pip is already running."""
        if self.running():
            return False
        process = QProcess(self)
        process.setProcessChannelMode(QProcess.ProcessChannelMode.MergedChannels)
        process.readyReadStandardOutput.connect(self._read)
        process.finished.connect(self._finished)
        process.errorOccurred.connect(self._error)
        self.process = process
        command = [self.python, "-m", "pip", *args]
        self.output.appendPlainText("$ " + " ".join(command))
        process.start(command[0], command[1:])
        return True

    def install(self, spec: str) -> bool:
        """``pip install SPEC`` with the core packages pinned by the constraints file.

        Raises :class:`InvalidRequest` for a spec the policy refuses (nothing runs).
        """
        return self.run_pip(install_arguments([spec], self.constraints))

    def uninstall(self, distribution: str) -> bool:
        """``pip uninstall --yes DISTRIBUTION`` (:class:`InvalidRequest` for a core package)."""
        return self.run_pip(uninstall_arguments([distribution]))

    def _read(self) -> None:
        if self.process is not None:
            data = bytes(self.process.readAllStandardOutput().data()).decode(errors="replace")
            self.output.moveCursor(self.output.textCursor().MoveOperation.End)
            self.output.insertPlainText(data)
            self.output.ensureCursorVisible()

    def _finished(self, code: int, _status: object) -> None:
        self._read()
        self.output.appendPlainText(f"[pip exited with code {code}]")
        self.finished.emit(code)

    def _error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self.output.appendPlainText(f"[could not start {self.python}]")
            self.finished.emit(-1)

    def stop(self) -> None:
        """Kill a running pip (window closing) and wait briefly."""
        if self.running() and self.process is not None:
            self.process.kill()
            self.process.waitForFinished(3000)


class PluginsPanel(QWidget):
    """What is installed, what failed, and pip for adding more."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.session = session
        self.studio = session.studio
        self.tree = QTreeWidget()
        self.tree.setHeaderLabels(list(COLUMNS))
        self.tree.setRootIsDecorated(False)
        self.tree.setAlternatingRowColors(True)
        header = self.tree.header()
        header.setSectionResizeMode(3, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        for col, width in ((0, 170), (1, 70), (2, 70), (4, 120), (5, 190)):
            header.resizeSection(col, width)
        self.tree.currentItemChanged.connect(lambda *_: self._show_selected())
        self.tree.itemChanged.connect(self._item_changed)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.traceback_button = QPushButton("Show traceback")
        self.traceback_button.clicked.connect(self.show_traceback)
        self.traceback_button.hide()
        detail_row = QHBoxLayout()
        detail_row.addWidget(self.detail, 1)
        detail_row.addWidget(self.traceback_button, 0, Qt.AlignmentFlag.AlignTop)
        self.restart_note = QLabel()
        self.restart_note.setObjectName("note")
        self.restart_note.hide()

        self.spec = QLineEdit()
        self.spec.setPlaceholderText("package name (e.g. studio-myplugin) or a wheel / folder path")
        self.browse = QPushButton("Wheel…")
        self.browse.clicked.connect(self._pick_wheel)
        self.install_button = QPushButton("Install")
        self.install_button.clicked.connect(self.install)
        self.uninstall_button = QPushButton("Uninstall selected")
        self.uninstall_button.clicked.connect(self.uninstall_selected)
        install_row = QHBoxLayout()
        install_row.addWidget(self.spec, 1)
        install_row.addWidget(self.browse)
        install_row.addWidget(self.install_button)
        install_row.addWidget(self.uninstall_button)
        self.pip = PipRunner(session.studio.paths.scratch / "plugin-constraints.txt")
        self.pip.finished.connect(self._pip_done)
        self._action: str | None = None
        self._distributions: dict[str, str] | None = None  # plugin -> package, read once
        note = QLabel(
            "Installs run pip in the studio's environment. torch, PySide6, the studio and its "
            "other core packages are pinned, so a plugin cannot change them."
        )
        note.setObjectName("hint")
        note.setWordWrap(True)
        install_box = QGroupBox("Install a plugin")
        install_layout = QVBoxLayout(install_box)
        install_layout.addLayout(install_row)
        install_layout.addWidget(note)
        install_layout.addWidget(self.pip, 1)

        upper = QWidget()
        upper_layout = QVBoxLayout(upper)
        upper_layout.setContentsMargins(0, 0, 0, 0)
        upper_layout.addWidget(self.tree, 1)
        upper_layout.addLayout(detail_row)
        upper_layout.addWidget(self.restart_note)
        self.splitter = QSplitter(Qt.Orientation.Vertical)
        self.splitter.setObjectName("pluginsSplitter")
        self.splitter.addWidget(upper)
        self.splitter.addWidget(install_box)
        self.splitter.setStretchFactor(0, 3)
        self.splitter.setStretchFactor(1, 2)
        layout = QVBoxLayout(self)
        layout.addWidget(self.splitter)
        self.populate()

    # -- listing ------------------------------------------------------------------------------
    def populate(self) -> None:
        self.tree.blockSignals(True)
        self.tree.clear()
        disabled = set(self.studio.settings.disabled_plugins)
        for info in sorted(
            self.studio.plugins.plugins.values(), key=lambda i: (not i.builtin, i.name)
        ):
            status = plugin_status(info, info.name in disabled)
            item = QTreeWidgetItem(
                [
                    info.name,
                    info.version,
                    "",
                    ", ".join(info.generators) or "—",
                    ", ".join(info.trainers) or "—",
                    status,
                ]
            )
            item.setData(0, NAME_ROLE, info.name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(
                2, Qt.CheckState.Unchecked if info.name in disabled else Qt.CheckState.Checked
            )
            item.setToolTip(3, "\n".join(info.generators))
            item.setToolTip(4, "\n".join(info.trainers))
            item.setToolTip(5, info.error or status)
            if info.error:
                item.setForeground(5, QColor(210, 50, 50))
            self.tree.addTopLevelItem(item)
        self.tree.blockSignals(False)
        first = self.tree.topLevelItem(0)
        if first is not None and self.tree.currentItem() is None:
            self.tree.setCurrentItem(first)
        self._show_selected()

    def selected(self) -> PluginInfo | None:
        item = self.tree.currentItem()
        return self.studio.plugins.plugins.get(item.data(0, NAME_ROLE)) if item else None

    def select(self, name: str) -> bool:
        for i in range(self.tree.topLevelItemCount()):
            item = self.tree.topLevelItem(i)
            if item is not None and item.data(0, NAME_ROLE) == name:
                self.tree.setCurrentItem(item)
                return True
        return False

    def _show_selected(self) -> None:
        info = self.selected()
        self.traceback_button.setVisible(bool(info and info.error))
        if info is None:
            self.detail.setText("No plugin is installed.")
            self.uninstall_button.setEnabled(False)
            return
        dist = self.distribution_of(info.name)
        where = f"module {info.module}" + (f" · package {dist}" if dist else "")
        kind = "built-in" if info.builtin else "third-party"
        lines = [f"<b>{info.name}</b> {info.version} ({kind}) — {where}"]
        if info.error:
            lines.append(f"<span style='color:#d33'>{info.error}</span>")
        self.detail.setText("<br>".join(lines))
        self.uninstall_button.setEnabled(self._uninstallable(info.name) is not None)

    def distribution_of(self, plugin_name: str) -> str | None:
        """The package declaring plugin ``plugin_name`` (``None``: registered in code).

        Installed metadata is scanned once (it is slow), and again after each pip run.
        """
        if self._distributions is None:
            self._distributions = plugin_distributions()
        return self._distributions.get(plugin_name)

    def _uninstallable(self, plugin_name: str) -> str | None:
        """The package to uninstall for a plugin, or ``None`` when the policy refuses it."""
        if self.distribution_of(plugin_name) is None:
            return None
        try:
            return resolve_uninstall(plugin_name)
        except InvalidRequest:
            return None

    def show_traceback(self) -> TracebackDialog | None:
        info = self.selected()
        if info is None or not info.error:
            return None
        dialog = TracebackDialog(info, self)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.open()
        return dialog

    # -- enable / disable ---------------------------------------------------------------------
    def _item_changed(self, item: QTreeWidgetItem, column: int) -> None:
        if column != 2:
            return
        name = item.data(0, NAME_ROLE)
        self.set_enabled(name, item.checkState(2) == Qt.CheckState.Checked)

    def set_enabled(self, name: str, enabled: bool) -> None:
        """Persist the choice in ``Settings.disabled_plugins``; it applies on the next start."""
        disabled = [n for n in self.studio.settings.disabled_plugins if n != name]
        if not enabled:
            disabled.append(name)
        settings = Settings.model_validate(
            {**self.studio.settings.model_dump(), "disabled_plugins": sorted(disabled)}
        )
        self.studio.save_settings(settings)
        self._restart_needed(
            f"Plugin {name} will be {'enabled' if enabled else 'disabled'} on restart."
        )
        self.populate()
        self.select(name)

    def _restart_needed(self, message: str) -> None:
        self.restart_note.setText(message)
        self.restart_note.show()
        self.session.restart_needed.emit(message)

    # -- pip ----------------------------------------------------------------------------------
    def _pick_wheel(self) -> None:
        chosen, _ = QFileDialog.getOpenFileName(
            self, "Plugin wheel", str(Path.home()), "Wheels (*.whl);;All files (*)"
        )
        if chosen:
            self.spec.setText(chosen)

    def install(self) -> bool:
        spec = self.spec.text().strip()
        if not spec:
            self.pip.output.appendPlainText("Type a package name or choose a wheel first.")
            return False
        try:
            check_install_spec(spec)
        except InvalidRequest as exc:
            self.pip.output.appendPlainText(f"Not installed: {exc}")
            return False
        return self._start(f"Installed {spec}", lambda: self.pip.install(spec))

    def uninstall_selected(self) -> bool:
        info = self.selected()
        if info is None or self.distribution_of(info.name) is None:
            self.pip.output.appendPlainText(
                "Only third-party plugin packages can be uninstalled here."
            )
            return False
        try:
            dist = resolve_uninstall(info.name)
        except InvalidRequest as exc:
            self.pip.output.appendPlainText(f"Not uninstalled: {exc}")
            return False
        return self._start(f"Uninstalled {dist}", lambda: self.pip.uninstall(dist))

    def _start(self, action: str, run: Callable[[], bool]) -> bool:
        """Run one pip command; Install and Uninstall wait until it ends."""
        if self.pip.running():
            self.pip.output.appendPlainText("pip is still running: wait until it ends.")
            return False
        if not run():
            return False
        self._action = action
        self.install_button.setEnabled(False)
        self.uninstall_button.setEnabled(False)
        return True

    def _pip_done(self, code: int) -> None:
        action = getattr(self, "_action", None)
        if code == 0 and action:
            self._restart_needed(f"{action}. Restart the studio to load the change.")
        self._action = None
        self._distributions = None  # what is installed may have changed
        self.install_button.setEnabled(True)
        self._show_selected()  # Uninstall as the selection allows

    def shutdown(self) -> None:
        self.pip.stop()
