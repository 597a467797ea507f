"""The settings dialog: the form is built from the Settings model by the same builder as every
generator's options; saving goes through ``Studio.save_settings``."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QLabel,
    QMessageBox,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.settings import Settings
from studio.ui.options_form import OptionsForm

if TYPE_CHECKING:
    from studio.core.studio import Studio

#: Managed elsewhere: the plugins panel toggles plugins one by one.
EXCLUDED = ("disabled_plugins",)
PICKLE_WARNING = (
    "Pickle-based weights (.bin, .ckpt, .pt, .pth) can run arbitrary code on this computer when "
    "they are loaded. Allow them only for models from people you trust.\n\nAllow: {refs}?"
)


def ask_pickle(parent: QWidget, refs: list[str]) -> bool:
    """The warning shown before pickle weights are allowed for new models."""
    answer = QMessageBox.warning(
        parent,
        "Allow pickle weights?",
        PICKLE_WARNING.format(refs=", ".join(refs)),
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    return answer == QMessageBox.StandardButton.Yes


class SettingsWidget(QWidget):
    """The settings form and the studio home it belongs to (also used inside the dialog)."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        home = QLabel(
            f"Studio home: <b>{studio.paths.home}</b><br>"
            "<span>To use another home, start the studio with STUDIO_HOME set to a folder.</span>"
        )
        home.setWordWrap(True)
        home.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.form = OptionsForm(
            Settings, exclude=EXCLUDED, values=studio.settings.model_dump(exclude=set(EXCLUDED))
        )
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        layout = QVBoxLayout(self)
        layout.addWidget(home)
        layout.addWidget(self.form)
        layout.addWidget(self.error)
        layout.addStretch(1)

    def settings(self) -> Settings | None:
        """The edited settings, or ``None`` after showing the error next to its field."""
        self.error.hide()
        model = self.form.validate()
        if model is None:
            return None
        data = self.studio.settings.model_dump()
        data.update(model.model_dump(exclude=set(EXCLUDED)))
        return Settings.model_validate(data)


class SettingsDialog(QDialog):
    """Edit and save the studio's settings."""

    saved = Signal(object)  # Settings

    def __init__(
        self,
        studio: Studio,
        parent: QWidget | None = None,
        confirm_pickle: Callable[[QWidget, list[str]], bool] = ask_pickle,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Settings")
        self.setObjectName("settingsDialog")
        self.studio = studio
        self.confirm_pickle = confirm_pickle
        self.body = SettingsWidget(studio)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setWidget(self.body)
        buttons = QDialogButtonBox(
            QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel
        )
        buttons.accepted.connect(self.save)
        buttons.rejected.connect(self.reject)
        self.buttons = buttons
        note = QLabel("Budgets and the theme apply at once; the device applies on restart.")
        note.setObjectName("hint")
        layout = QVBoxLayout(self)
        layout.addWidget(scroll, 1)
        layout.addWidget(note)
        layout.addWidget(buttons)
        self.resize(640, 430)

    def save(self) -> bool:
        settings = self.body.settings()
        if settings is None:
            return False
        new_pickle = sorted(set(settings.allow_pickle) - set(self.studio.settings.allow_pickle))
        if new_pickle and not self.confirm_pickle(self, new_pickle):
            self.body.form.show_error("allow_pickle", "Not allowed: remove these or confirm.")
            return False
        try:
            self.studio.save_settings(settings)
        except StudioError as exc:
            self.body.error.setText(str(exc))
            self.body.error.show()
            return False
        self.saved.emit(settings)
        self.accept()
        return True
