"""The settings dialog: the form is built from the Settings model by the same builder as every
generator's options, plus the preferred generator of each task several generators serve; saving
goes through ``Studio.save_settings``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.paths import choose_home, chosen_home, platform_home
from studio.core.settings import Settings
from studio.ui.options_form import OptionsForm

if TYPE_CHECKING:
    from studio.core.studio import Studio

#: Not in the form: the plugins panel toggles plugins one by one; preferred generators (a
#: task -> id mapping) have their own section, :class:`PreferredGenerators`.
EXCLUDED = ("disabled_plugins", "preferred_generators")
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


class PreferredGenerators(QGroupBox):
    """One drop-down list per task that several generators serve: *Automatic* (the studio's
    rule: a built-in generator, else the plugin installed first) or one of those generators.

    Hidden when every task has one generator. A stored preference this section does not list
    (a task served by one generator, or by none any more) is kept as it is.
    """

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__("Preferred generators", parent)
        self.studio = studio
        #: task -> its drop-down list (item data: a generator id, ``None`` for automatic)
        self.combos: dict[str, QComboBox] = {}
        host = studio.plugins
        preferred = studio.settings.preferred_generators
        tasks = sorted({g.task for g in host.generators.values()})
        hint = QLabel(
            "When several generators serve a task, the one used when the task is named (as in "
            "aigc-studio generate text-to-image). Automatic: a built-in generator, else the "
            "plugin installed first."
        )
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        form = QFormLayout(self)
        form.setFieldGrowthPolicy(QFormLayout.FieldGrowthPolicy.AllNonFixedFieldsGrow)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.addRow(hint)
        for task in tasks:
            serving = host.generators_for(task)
            if len(serving) < 2:
                continue
            first = serving[0]
            rule = "built-in" if host.plugin_of(first.id).builtin else "installed first"
            combo = QComboBox()
            combo.addItem(f"Automatic: {first.name} ({rule})", None)
            for gen in serving:
                combo.addItem(f"{gen.name} ({gen.id})", gen.id)
                combo.setItemData(
                    combo.count() - 1,
                    f"{gen.id} · plugin {host.plugin_of(gen.id).name}\n{gen.description}".strip(),
                    Qt.ItemDataRole.ToolTipRole,
                )
            wanted = preferred.get(task)
            if wanted:
                index = combo.findData(wanted)
                if index < 0:  # its plugin is gone or disabled: kept (and unused) until changed
                    other = host.generators.get(wanted)
                    why = f"serves {other.task}" if other else "not installed"
                    combo.addItem(f"{wanted} ({why}: automatic is used)", wanted)
                    index = combo.count() - 1
                combo.setCurrentIndex(index)
            combo.setToolTip(f"The generator used for {task} when the task is named.")
            label = QLabel(task)
            label.setBuddy(combo)
            label.setToolTip(combo.toolTip())
            form.addRow(label, combo)
            self.combos[task] = combo
        self.setVisible(bool(self.combos))

    def values(self) -> dict[str, str]:
        """The ``preferred_generators`` setting as edited here (tasks not listed keep theirs)."""
        result = dict(self.studio.settings.preferred_generators)
        for task, combo in self.combos.items():
            generator_id = combo.currentData()
            if generator_id:
                result[task] = generator_id
            else:
                result.pop(task, None)
        return result


class SettingsWidget(QWidget):
    """The settings form and the studio home it belongs to (also used inside the dialog)."""

    def __init__(self, studio: Studio, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.home = QLineEdit(str(studio.paths.home))
        self.home.setReadOnly(True)
        self.home.setToolTip(
            "The folder with your history, outputs, adapters and settings. Another home opens "
            "from the next start; nothing is moved, and this one can be chosen again."
        )
        self.home_button = QPushButton("Choose…")
        self.home_button.clicked.connect(self.pick_home)
        self.home_default = QPushButton("Default")
        self.home_default.setToolTip(str(platform_home()))
        self.home_default.clicked.connect(lambda: self.home.setText(str(platform_home())))
        home_row = QHBoxLayout()
        home_row.addWidget(QLabel("Studio home"))
        home_row.addWidget(self.home, 1)
        home_row.addWidget(self.home_button)
        home_row.addWidget(self.home_default)
        self.home_note = QLabel()
        self.home_note.setObjectName("hint")
        self.home_note.setWordWrap(True)
        if os.environ.get("STUDIO_HOME"):
            self.home_button.setEnabled(False)
            self.home_default.setEnabled(False)
            self.home_note.setText("Set by STUDIO_HOME in the environment, which wins.")
        else:
            pending = chosen_home()
            self.home_note.setText(
                f"Each home has its own history and settings. From the next start: {pending}"
                if pending is not None and pending.resolve() != studio.paths.home.resolve()
                else "Each home has its own history and settings."
            )
        self.form = OptionsForm(
            Settings, exclude=EXCLUDED, values=studio.settings.model_dump(exclude=set(EXCLUDED))
        )
        self.preferred = PreferredGenerators(studio)
        self.error = QLabel()
        self.error.setObjectName("fieldError")
        self.error.setWordWrap(True)
        self.error.hide()
        layout = QVBoxLayout(self)
        layout.addLayout(home_row)
        layout.addWidget(self.home_note)
        layout.addWidget(self.form)
        layout.addWidget(self.preferred)
        layout.addWidget(self.error)
        layout.addStretch(1)

    def pick_home(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Studio home", self.home.text())
        if folder:
            self.home.setText(folder)

    def home_choice(self) -> Path | None:
        """The home picked here if it differs from the open one (``None``: unchanged)."""
        picked = Path(self.home.text()).expanduser()
        return None if picked.resolve() == self.studio.paths.home.resolve() else picked

    def settings(self) -> Settings | None:
        """The edited settings, or ``None`` after showing the error next to its field."""
        self.error.hide()
        model = self.form.validate()
        if model is None:
            return None
        data = self.studio.settings.model_dump()
        data.update(model.model_dump(exclude=set(EXCLUDED)))
        data["preferred_generators"] = self.preferred.values()
        return Settings.model_validate(data)


class SettingsDialog(QDialog):
    """Edit and save the studio's settings."""

    saved = Signal(object)  # Settings
    #: what needs a restart to apply (the device, the studio home)
    restart_needed = Signal(str)

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
        note = QLabel(
            "Budgets, the output folder, the theme and preferred generators apply at once; the "
            "device, CPU threads and the studio home on restart."
        )
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
        home = self.body.home_choice()
        if home is not None:
            try:  # first: a refused folder must not leave the other settings half saved
                choose_home(None if home.resolve() == platform_home().resolve() else home)
            except StudioError as exc:
                self.body.error.setText(str(exc))
                self.body.error.show()
                return False
        before = self.studio.settings
        try:
            self.studio.save_settings(settings)
        except StudioError as exc:
            self.body.error.setText(str(exc))
            self.body.error.show()
            return False
        self.saved.emit(settings)
        changed = []
        if settings.device != before.device:
            changed.append("The device changed.")
        if settings.cpu_threads != before.cpu_threads:
            changed.append("The CPU threads changed.")
        if home is not None:
            changed.append(f"The studio home is now {home}.")
        if changed:
            self.restart_needed.emit(" ".join(changed))
        self.accept()
        return True
