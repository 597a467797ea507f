"""What every panel shares: the Studio, its event bridge, and lists that are costly to build.

Model listing scans the hub cache and the adapter list reads the database; both are refreshed off
the GUI thread and announced with signals, so panels never block on them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, QThreadPool, Signal

from studio.core.records import AdapterRecord, ModelEntry
from studio.ui.bridge import StudioBridge
from studio.ui.util import call_async

if TYPE_CHECKING:
    from studio.core.studio import Studio


def model_fits(studio: Studio, models: list[ModelEntry]) -> dict[str, tuple[bool, int, int | None]]:
    """``fits_in_memory`` for every model whose size can be told (runs off the GUI thread)."""
    from studio.core.downloads import fits_in_memory

    device = studio.device if studio.device not in ("auto", "") else "cpu"
    out: dict[str, tuple[bool, int, int | None]] = {}
    for entry in models:
        try:
            out[entry.ref] = fits_in_memory(entry, studio.cache, device=device)
        except Exception:  # size unknown (not on disk, not in the catalog): shown as "?"
            continue
    return out


class Session(QObject):
    """The studio as the window sees it (one per window)."""

    models_changed = Signal()
    adapters_changed = Signal()
    #: an artifact was saved or deleted (the gallery reloads)
    artifacts_changed = Signal()
    #: a message for the status bar
    status = Signal(str)
    #: the plugin list or its enabled state changed (restart to apply)
    restart_needed = Signal(str)
    #: ask the window to show a panel by name
    show_panel = Signal(str)
    #: a panel asks for the models panel with this model selected (ref)
    show_model = Signal(str)

    def __init__(self, studio: Studio, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.studio = studio
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)  # leave the cores to the device worker
        self.bridge = StudioBridge(studio, self)
        self.models: list[ModelEntry] = []
        self.models_loaded = False
        self.adapters: list[AdapterRecord] = []
        #: ref -> (fits, needed bytes, budget bytes) from ``downloads.fits_in_memory``
        self.fits: dict[str, tuple[bool, int, int | None]] = {}
        self.bridge.artifact_saved.connect(lambda *_: self.artifacts_changed.emit())
        self.bridge.job_state.connect(self._job_state)

    @property
    def home(self) -> Path:
        return self.studio.paths.home

    def run(self, fn: Any, on_done: Any = None, on_error: Any = None) -> None:
        """Run ``fn`` off the GUI thread on the session's pool (see :func:`call_async`)."""
        call_async(self, fn, on_done, on_error or self._report_error, pool=self.pool)

    def _report_error(self, exc: BaseException) -> None:
        self.status.emit(f"{type(exc).__name__}: {exc}")

    # -- shared lists -------------------------------------------------------------------------
    def refresh_models(self) -> None:
        """Re-list models (hub cache + library + catalog) in the background."""

        studio = self.studio

        def work() -> tuple[list[ModelEntry], dict[str, tuple[bool, int, int | None]]]:
            models = studio.models()
            return models, model_fits(studio, models)

        def done(result: tuple[list[ModelEntry], dict[str, tuple[bool, int, int | None]]]) -> None:
            self.models, self.fits = result
            self.models_loaded = True
            self.models_changed.emit()

        def failed(exc: BaseException) -> None:
            self.models_loaded = True
            self.status.emit(f"Could not list models: {exc}")
            self.models_changed.emit()

        self.run(work, done, failed)

    def refresh_adapters(self) -> None:
        """Re-list the adapter library (quick: one database query)."""
        try:
            self.adapters = list(self.studio.adapters())
        except Exception as exc:
            self.status.emit(f"Could not list adapters: {exc}")
            return
        self.adapters_changed.emit()

    def model_entry(self, ref: str | None) -> ModelEntry | None:
        """The best-known entry for a reference (a downloaded one wins over the catalog)."""
        if not ref:
            return None
        matches = [m for m in self.models if m.ref == ref or (m.path and str(m.path) == ref)]
        matches.sort(key=lambda m: not m.downloaded)
        return matches[0] if matches else None

    def any_model_downloaded(self) -> bool:
        return any(m.downloaded for m in self.models)

    def _job_state(self, job_id: str, state: Any, _error: Any) -> None:
        # A finished training job adds an adapter; a finished download adds a model.
        if getattr(state, "finished", False):
            try:
                kind = str(self.studio.job(job_id).kind)
            except Exception:
                return
            if kind == "train":
                self.refresh_adapters()
            elif kind == "download":
                self.refresh_models()

    def close(self) -> None:
        """Stop listening and wait (bounded) for background calls."""
        self.bridge.close()
        self.pool.clear()
        self.pool.waitForDone(5000)
