"""Where the studio keeps its things: one home folder (``STUDIO_HOME`` overrides the default)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import platformdirs

APP_NAME = "aigc-studio"


def default_home() -> Path:
    """``$STUDIO_HOME`` if set, else the home chosen in the settings (:func:`choose_home`), else
    the platform's user data folder for the studio."""
    env = os.environ.get("STUDIO_HOME")
    if env:
        return Path(env).expanduser()
    return chosen_home() or platform_home()


def platform_home() -> Path:
    """The platform's user data folder for the studio (the home when none was chosen)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def home_pointer() -> Path:
    """The file that remembers a chosen home. It lives in the user's config folder, outside any
    home, since it says which home to open."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False)) / "home.txt"


def chosen_home() -> Path | None:
    """The home chosen in the settings, or ``None`` (none chosen, or the file is unreadable)."""
    try:
        text = home_pointer().read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return Path(text).expanduser() if text else None


def choose_home(folder: Path | None) -> None:
    """Open ``folder`` as the studio home from the next start on (``None``: the platform default).

    The folder must be empty or already a studio home, so that nobody's files get mixed in
    with the studio's; it is created if missing. Nothing moves: the old home stays as it is
    and can be chosen again. ``STUDIO_HOME``, when set, still wins.

    :raises InvalidRequest: the folder is not usable (a file, not writable, a non-empty folder
        that is not a studio home).
    """
    from studio.core.atomic import atomic_write_text
    from studio.core.errors import InvalidRequest

    pointer = home_pointer()
    if folder is None:
        pointer.unlink(missing_ok=True)
        return
    folder = Path(folder).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise InvalidRequest(f"{folder} is a file; choose a folder for the studio home")
    if folder.is_dir() and any(folder.iterdir()) and not StudioPaths(folder).database.exists():
        raise InvalidRequest(
            f"{folder} has files in it but is not a studio home: choose an empty folder (or an "
            "existing studio home) so that the studio's files do not mix with others"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / ".studio-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InvalidRequest(f"cannot write in {folder}: {exc.strerror or exc}") from None
    pointer.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(pointer, f"{folder}\n")


def check_out_dir(folder: Path | str | None) -> Path | None:
    """An output folder as the user gave it (``--out``, the Output folder setting), made absolute
    with ``~`` expanded; ``None`` stays ``None`` (the home's ``outputs/``).

    The one check for both the command line and the studio. A missing folder is fine (it is
    created when the first artifact is saved).

    :raises InvalidRequest: the path exists and is not a folder.
    """
    from studio.core.errors import InvalidRequest

    if folder is None:
        return None
    path = Path(folder).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InvalidRequest(
            f"output folder {path} exists and is not a folder: give a folder (a missing one is "
            "created)"
        )
    return path


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
