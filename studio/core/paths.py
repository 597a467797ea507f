"""Where the studio keeps its things: one home folder (``STUDIO_HOME`` overrides the default)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "aigc-studio"


def default_home() -> Path:
    """``$STUDIO_HOME`` if set, else the platform's user data folder for the studio."""
    env = os.environ.get("STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


@dataclass(frozen=True)
class StudioPaths:
    """The folders and files inside one studio home."""

    home: Path

    @property
    def database(self) -> Path:
        return self.home / "studio.sqlite3"

    @property
    def outputs(self) -> Path:
        return self.home / "outputs"

    @property
    def adapters(self) -> Path:
        return self.home / "adapters"

    @property
    def checkpoints(self) -> Path:
        return self.home / "checkpoints"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def models(self) -> Path:
        """The studio's own model library (local folders and single files the user imported)."""
        return self.home / "models"

    @property
    def scratch(self) -> Path:
        return self.home / "scratch"

    def ensure(self) -> StudioPaths:
        for folder in (
            self.outputs,
            self.adapters,
            self.checkpoints,
            self.logs,
            self.models,
            self.scratch,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return self


def resources_dir() -> Path:
    """The bundled resources (catalog, icons, styles): in the wheel or at the repo root."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "resources", here.parent / "resources"):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError("studio resources folder not found (broken install?)")
