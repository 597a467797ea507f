"""Window state kept between runs (size, splitters, panel, last generator and options).

Stored with QSettings in an INI file inside the studio home (``ui.ini``), so every studio home has
its own and tests never touch the user's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings

FILE_NAME = "ui.ini"


class WindowState:
    """Typed access to the window's QSettings file."""

    def __init__(self, home: Path) -> None:
        self.path = Path(home) / FILE_NAME
        self.qsettings = QSettings(str(self.path), QSettings.Format.IniFormat)

    def get_bytes(self, key: str) -> QByteArray | None:
        value = self.qsettings.value(key)
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def set_bytes(self, key: str, value: QByteArray) -> None:
        self.qsettings.setValue(key, value)

    def get_json(self, key: str) -> dict[str, Any]:
        """A JSON object stored under ``key`` (``{}`` when missing or damaged)."""
        raw = self.qsettings.value(key)
        if not isinstance(raw, str):
            return {}
        try:
            value = json.loads(raw)
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}

    def set_json(self, key: str, value: dict[str, Any]) -> None:
        self.qsettings.setValue(key, json.dumps(value, default=str))

    def get_str(self, key: str, default: str = "") -> str:
        value = self.qsettings.value(key, default)
        return value if isinstance(value, str) else default

    def set_str(self, key: str, value: str) -> None:
        self.qsettings.setValue(key, value)

    def sync(self) -> None:
        self.qsettings.sync()
