"""The one bridge between the core's observer API and Qt: job events become Qt signals.

``Studio.subscribe`` callbacks run on the device worker threads and must be quick, so the callback
only emits a signal carrying the :class:`~studio.core.events.JobEvent`; the bridge lives on the GUI
thread, so Qt queues the signal and every typed signal below is emitted on the GUI thread.

Previews (images, audio chunks) can arrive faster than the window paints them; the bridge keeps
only the newest preview per job until the GUI thread takes it, so a fast generator never floods
the event queue. Everything else is delivered in order.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Qt, Signal

from studio.core.events import (
    ArtifactSaved,
    JobEvent,
    JobStateChanged,
    Note,
    Partial,
    Preview,
    Progress,
    Result,
    Sample,
    TrainStep,
)

if TYPE_CHECKING:
    from studio.core.studio import Studio


class StudioBridge(QObject):
    """Re-emits a Studio's job events as Qt signals on the GUI thread."""

    #: every event, in arrival order (previews possibly coalesced): JobEvent
    job_event = Signal(object)
    #: job_id, JobState, error (str | None)
    job_state = Signal(str, object, object)
    #: job_id, step, total, message
    progress = Signal(str, int, int, str)
    #: job_id, Preview (the newest one; older ones of the same job may have been dropped)
    preview = Signal(str, object)
    #: job_id, text chunk, candidate index
    partial = Signal(str, str, int)
    #: job_id, message, level
    note = Signal(str, str, str)
    #: job_id, Result
    result = Signal(str, object)
    #: job_id, TrainStep
    train_step = Signal(str, object)
    #: job_id, Sample
    sample = Signal(str, object)
    #: job_id, ArtifactSaved
    artifact_saved = Signal(str, object)

    _incoming = Signal(object)
    _preview_ready = Signal(str)

    def __init__(self, studio: Studio | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._lock = threading.Lock()
        self._previews: dict[str, JobEvent] = {}
        self._unsubscribe: Callable[[], None] | None = None
        self._closed = False
        # Explicitly queued: even an event raised on the GUI thread is handled after the caller.
        self._incoming.connect(self._dispatch, Qt.ConnectionType.QueuedConnection)
        self._preview_ready.connect(self._take_preview, Qt.ConnectionType.QueuedConnection)
        if studio is not None:
            self.attach(studio)

    def attach(self, studio: Studio) -> None:
        """Subscribe to ``studio`` (once)."""
        if self._unsubscribe is not None:
            raise RuntimeError("the bridge is already attached to a studio")
        self._closed = False
        self._unsubscribe = studio.subscribe(self.on_job_event)

    def close(self) -> None:
        """Unsubscribe; later events are ignored. Call before the bridge is deleted."""
        self._closed = True
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
        with self._lock:
            self._previews.clear()

    # -- any thread ---------------------------------------------------------------------------
    def on_job_event(self, job_event: JobEvent) -> None:
        """The subscriber callback: runs on a worker thread, does nothing but queue a signal."""
        if self._closed:
            return
        try:
            if isinstance(job_event.event, Preview):
                with self._lock:
                    pending = job_event.job_id in self._previews
                    self._previews[job_event.job_id] = job_event
                if not pending:
                    self._preview_ready.emit(job_event.job_id)
            else:
                self._incoming.emit(job_event)
        except RuntimeError:  # the C++ side is gone (window closed during shutdown)
            self._closed = True

    # -- GUI thread ---------------------------------------------------------------------------
    def _take_preview(self, job_id: str) -> None:
        with self._lock:
            job_event = self._previews.pop(job_id, None)
        if job_event is not None:
            self._dispatch(job_event)

    def _dispatch(self, job_event: JobEvent) -> None:
        if self._closed:
            return
        job_id, ev = job_event.job_id, job_event.event
        self.job_event.emit(job_event)
        if isinstance(ev, JobStateChanged):
            self.job_state.emit(job_id, ev.state, ev.error)
        elif isinstance(ev, Progress):
            self.progress.emit(job_id, ev.step, ev.total, ev.message)
        elif isinstance(ev, Preview):
            self.preview.emit(job_id, ev)
        elif isinstance(ev, Partial):
            self.partial.emit(job_id, ev.text, ev.index)
        elif isinstance(ev, Note):
            self.note.emit(job_id, ev.message, ev.level)
        elif isinstance(ev, Result):
            self.result.emit(job_id, ev)
        elif isinstance(ev, TrainStep):
            self.train_step.emit(job_id, ev)
        elif isinstance(ev, Sample):
            self.sample.emit(job_id, ev)
        elif isinstance(ev, ArtifactSaved):
            self.artifact_saved.emit(job_id, ev)
