"""Model downloads: hub models fetched on a thread of their own, as jobs with progress and cancel.

:class:`DownloadManager` runs one download at a time on its own background thread, so a download
never holds up the device worker. Each download is a stored job (:class:`~studio.core.records.
JobRecord`, kind ``download``, batch priority, ``component`` = the model reference) that goes
``queued -> running -> succeeded | failed | cancelled`` and publishes the same events as any other
job: :class:`~studio.core.events.JobStateChanged` on every transition and
:class:`~studio.core.events.Progress` with ``step`` = bytes done and ``total`` = bytes expected,
each wrapped in a :class:`~studio.core.events.JobEvent`.

A download is :func:`studio.core.refs.resolve` with its ``cancel`` flag, so what is downloaded is
exactly what ``resolve`` would fetch: safetensors weights where a folder has them, pickle-only
weights refused unless allowed for that model, other frameworks' weights skipped. A model already
complete in the hub cache is not fetched again.

Cancel and resume, as ``huggingface_hub`` 2.4 does them:

* A file is written to a temporary ``blobs/<etag>.<random>.incomplete`` and moved into place only
  when complete; the snapshot folder holds only links to complete blobs. A cancelled (or failed)
  file's temporary file is deleted by ``huggingface_hub`` itself. So a cancelled download never
  leaves a corrupt file in a snapshot, only a snapshot with files missing, which
  :func:`studio.core.refs.resolve` does not take for a complete model (and :func:`cache_state`
  reports as ``"partial"``).
* Resuming is per file: starting the download again fetches only the files that are missing; the
  file that was being transferred when the download stopped starts again from its first byte
  (``huggingface_hub`` 2.4 resumes a byte range only within one call, after a dropped connection).
* Cancel takes effect at the next chunk of a file served over HTTP, and between files for a file
  stored with Xet (see ``resolve``'s ``cancel``): ``hf_xet`` transfers it in Rust and ignores
  exceptions raised from its progress callback, and its only abort (``XetSession.sigint_abort``)
  stops every Xet transfer of the process, so it is not used.

Nothing here imports torch; ``huggingface_hub`` is imported only when a download or a deletion
runs.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from studio.core import hub, refs
from studio.core.catalog import CatalogEntry, catalog_entry
from studio.core.errors import InvalidRequest, ModelNotFound, StudioError, one_line
from studio.core.events import (
    ERROR_KIND,
    JobEvent,
    JobState,
    JobStateChanged,
    Note,
    Progress,
    event_type,
    stored_payload,
)
from studio.core.records import JobKind, JobRecord, ModelEntry, Priority
from studio.core.refs import ResolvedModel
from studio.core.units import human_size

if TYPE_CHECKING:
    from studio.core.cache import ModelCache
    from studio.core.store import Store

log = logging.getLogger(__name__)

__all__ = ["CacheState", "DownloadManager", "cache_state", "fits_in_memory"]

#: Whether a hub model is in the cache: all of it, some of it (a stopped download), or none.
CacheState = Literal["complete", "partial", "missing"]

#: Least time between two published progress events of a download (seconds).
PUBLISH_INTERVAL = 0.1
#: Least time between two writes of a download's progress into its job record (seconds).
STORE_INTERVAL = 0.5

_RESUMABLE = (JobState.INTERRUPTED, JobState.FAILED, JobState.CANCELLED)


@dataclass(eq=False)
class _Download:
    """A queued or running download and what its threads share."""

    record: JobRecord
    allow_pickle: bool
    cancel: threading.Event = field(default_factory=threading.Event)
    #: the manager is closing: the stop ends the job as interrupted (resumable), not cancelled.
    interrupting: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: int = 0
    total: int = 0
    #: refs began downloading (the model was not complete in the cache).
    fetching: bool = False
    last_publish: float = 0.0
    last_store: float = 0.0
    #: ``time.monotonic()`` and bytes done at the first progress report (for the ETA).
    first_seen: float | None = None
    first_done: int = 0

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def ref(self) -> str:
        return self.record.component


class DownloadManager:
    """Downloads hub models on one background thread of its own, one at a time, as jobs.

    :param store: the studio database; every download is a stored job with its events.
    :param publish: called with every :class:`~studio.core.events.JobEvent` (state changes,
        progress, notes). It runs on the download thread, on ``huggingface_hub``'s download
        threads (progress) or on the caller's thread (queued, cancelled): it must be quick and
        thread-safe, like :meth:`Studio.subscribe <studio.core.studio.Studio.subscribe>`
        callbacks.
    :param cache_dir: the hub cache; default ``HF_HUB_CACHE`` / ``HF_HOME/hub`` read at each
        download (see :func:`studio.core.hub.hub_cache_dir`).

    All methods are safe to call from any thread. The thread starts with the first download and
    ends in :meth:`close`.
    """

    def __init__(
        self,
        store: Store,
        publish: Callable[[JobEvent], None],
        cache_dir: Path | None = None,
    ) -> None:
        self.store = store
        self.cache_dir = cache_dir
        self._publish_cb = publish
        self._cond = threading.Condition()
        self._queue: deque[_Download] = deque()
        self._jobs: dict[str, _Download] = {}  # queued and running, by job id
        self._running: _Download | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- starting --------------------------------------------------------------------------------
    def start(self, ref: str, *, allow_pickle: bool = False) -> str:
        """Queue the download of hub model ``ref`` (``org/name`` or ``org/name@revision``).

        Returns the job id; the same id when that reference is already queued or downloading.
        A model already complete in the hub cache gives a job that succeeds at once.

        :param allow_pickle: accept pickle-based weights for this one model (settings
            ``allow_pickle``); without it a repo with only pickle weights fails, nothing
            downloaded.
        :raises InvalidRequest: not a hub id (a local path, a malformed id), or downloads are
            off (``HF_HUB_OFFLINE``).
        :raises StudioError: the manager is closed.
        """
        text = _check_downloadable(ref)
        with self._cond:
            self._check_open()
            for job in self._jobs.values():
                if job.ref == text:
                    return job.id
            record = JobRecord(
                id=uuid.uuid4().hex,
                kind=JobKind.DOWNLOAD,
                state=JobState.QUEUED,
                priority=Priority.BATCH,
                component=text,
                request={"ref": text, "allow_pickle": bool(allow_pickle)},
                created=time.time(),
            )
            self.store.add_job(record)
            job = _Download(record, bool(allow_pickle))
            # announced before the thread can see it, so "queued" always precedes "running"
            self._record_state(job, JobState.QUEUED, store=False)
            self._enqueue(job)
        return job.id

    def resume(self, job_id: str) -> bool:
        """Queue again a download that was cancelled, failed or interrupted (a stopped studio).

        Files already complete are not fetched again. Returns ``False`` for a job that is not a
        download, is still queued or running, or succeeded; :class:`KeyError` for an unknown id.
        """
        record = self.store.get_job(job_id)
        if record.kind != JobKind.DOWNLOAD or record.state not in _RESUMABLE:
            return False
        with self._cond:
            self._check_open()
            if job_id in self._jobs:
                return False
            record.state, record.finished, record.error = JobState.QUEUED, None, None
            self.store.update_job(job_id, state=JobState.QUEUED, finished=None, error=None)
            job = _Download(record, bool(record.request.get("allow_pickle", False)))
            self._record_state(job, JobState.QUEUED, store=False)
            self._enqueue(job)
        return True

    def requeue_stored(self) -> list[str]:
        """Queue the downloads a previous studio left queued in the database; their ids.

        Call it once at start, from the process that owns the studio home's queue.
        """
        queued: list[str] = []
        with self._cond:
            self._check_open()
            for record in self.store.queued_jobs():
                if record.kind == JobKind.DOWNLOAD and record.id not in self._jobs:
                    allow_pickle = bool(record.request.get("allow_pickle", False))
                    self._enqueue(_Download(record, allow_pickle))
                    queued.append(record.id)
        return queued

    def _enqueue(self, job: _Download) -> None:
        """Add ``job`` to the queue and make sure the thread runs (call with the lock held)."""
        self._jobs[job.id] = job
        self._queue.append(job)
        if self._thread is None:
            self._thread = threading.Thread(target=self._main, name="studio-downloads", daemon=True)
            self._thread.start()
        self._cond.notify_all()

    # -- controlling -----------------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Cancel a queued download (it never starts) or a running one (see the module doc for
        when it stops). Files already complete stay in the cache; starting again resumes.

        A running download that completes before the cancel takes effect ends as succeeded
        (the model is then complete in the cache). Returns ``False`` for a job that already
        ended or is not a download; :class:`KeyError` for an unknown id.
        """
        with self._cond:
            job = self._jobs.get(job_id)
            if job is not None and job is not self._running:
                self._queue.remove(job)
                del self._jobs[job_id]
                queued = True
            elif job is not None:
                job.cancel.set()
                return True
            else:
                queued = False
        if queued:
            assert job is not None
            self._record_state(job, JobState.CANCELLED)
            return True
        # not queued here: perhaps queued in the database only (left by a stopped studio)
        record = self.store.get_job(job_id)
        if record.kind != JobKind.DOWNLOAD or record.state != JobState.QUEUED:
            return False
        self._record_state(_Download(record, False), JobState.CANCELLED)
        return True

    def eta(self, job_id: str) -> float | None:
        """Seconds a running download still needs at its pace so far (``None``: unknown).

        An early estimate is low: ``huggingface_hub`` learns a file's size only when it starts.
        """
        with self._cond:
            job = self._jobs.get(job_id)
        if job is None or job.first_seen is None:
            return None
        with job.lock:
            done, total = job.done - job.first_done, job.total
            elapsed = time.monotonic() - job.first_seen
            if done <= 0 or elapsed <= 0 or total <= 0:
                return None
            return max(0.0, (total - job.done) * elapsed / done)

    def active(self) -> list[str]:
        """Ids of the downloads queued or running in this manager, running first."""
        with self._cond:
            running = [self._running.id] if self._running is not None else []
            return running + [job.id for job in self._queue]

    def close(self, timeout: float = 10.0) -> bool:
        """Stop: a running download ends as ``interrupted`` (:meth:`resume` goes on with it),
        queued ones stay queued in the database (:meth:`requeue_stored`). Idempotent.

        Returns whether the thread ended within ``timeout`` seconds (a network call that does
        not return keeps it; the thread is a daemon and never holds the process up).
        """
        with self._cond:
            self._closed = True
            running = self._running
            if running is not None:
                running.interrupting = True
                running.cancel.set()
            for job in self._queue:
                self._jobs.pop(job.id, None)
            self._queue.clear()
            self._cond.notify_all()
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning("the download thread did not stop within %.1f s", timeout)
            return False
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise StudioError("the download manager is closed")

    # -- deleting --------------------------------------------------------------------------------
    def delete(self, ref: str) -> int:
        """Remove a model: a hub model from the hub cache, or a library model from the library.

        ``org/name`` removes every cached revision of the repo (with any leftover of a stopped
        download); ``org/name@revision`` (a branch, tag or commit hash, or its prefix) only that
        one. A library model is only forgotten by the studio: its folder is the user's own and
        stays where it is. Returns the bytes freed on disk.

        A copy loaded in the model cache stays usable until evicted (on Windows, deleting
        files that a loaded model maps may fail; the error says which file). Deleting a model
        that a job is loading at that moment is not guarded against.

        :raises InvalidRequest: the model is being downloaded (cancel it first), or ``ref`` is a
            local path that is not in the library.
        :raises ModelNotFound: nothing by that reference in the hub cache or the library.
        :raises StudioError: files could not be deleted (permissions, a file in use).
        """
        text = (ref or "").strip()
        if not text:
            raise InvalidRequest("empty model reference: give a hub id (org/name) or a library ref")
        with self._cond:
            busy = next((job for job in self._jobs.values() if job.ref == text), None)
        if busy is not None:
            raise InvalidRequest(
                f"model {text!r} is being downloaded (job {busy.id}): cancel the download first"
            )
        if any(entry.ref == text for entry in self.store.list_library_models()):
            self.store.remove_library_model(text)
            return 0
        if refs.is_local_path(text):
            raise InvalidRequest(
                f"{text!r} is a local path that is not in the studio library: the studio deletes "
                "only models in the hub cache and forgets library models; your own files stay "
                "yours to delete"
            )
        repo_id, revision = refs.parse_hub_id(text)
        return hub.delete_from_cache(text, repo_id, revision, hub.hub_cache_dir(self.cache_dir))

    # -- the thread ------------------------------------------------------------------------------
    def _main(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if self._closed:
                    self._thread = None
                    return
                job = self._queue.popleft()
                self._running = job
            try:
                self._run(job)
            except BaseException:  # never let the thread die: the next download must run
                log.exception("download job %s ended unexpectedly", job.id)
            finally:
                with self._cond:
                    self._running = None
                    self._jobs.pop(job.id, None)

    def _run(self, job: _Download) -> None:
        try:
            stored = self.store.get_job(job.id).state
        except KeyError:
            return
        if stored != JobState.QUEUED:  # cancelled meanwhile (by another process, say)
            return
        self._record_state(job, JobState.RUNNING)
        try:
            resolved, fetched = self._fetch(job)
        except BaseException as exc:  # the thread must survive anything a transfer raises
            self._store_progress(job)
            if job.cancel.is_set():
                state = JobState.INTERRUPTED if job.interrupting else JobState.CANCELLED
                self._record_state(job, state)
            else:
                self._fail(job, exc)
            return
        with job.lock:
            if fetched:
                job.total = max(job.total, job.done)
                job.done = job.total
            done, total = job.done, job.total
        if fetched:
            self._emit(job, Progress(done, total, f"downloaded {job.ref} ({human_size(total)})"))
            message = f"{job.ref} is in the hub cache: {resolved.path}"
        else:
            message = f"{job.ref} was already complete in the hub cache: {resolved.path}"
        self._store_progress(job)
        self._emit(job, Note(message))
        self._record_state(job, JobState.SUCCEEDED)

    def _fetch(self, job: _Download) -> tuple[ResolvedModel, bool]:
        """Download what the cache misses of ``job.ref``; ``(resolved, whether it fetched)``."""
        resolved = refs.resolve(
            job.ref,
            allow_pickle=job.allow_pickle,
            cache_dir=self.cache_dir,
            progress=lambda done, total: self._on_bytes(job, done, total),
            cancel=job.cancel,
        )
        return resolved, job.fetching

    # -- progress, state, events -----------------------------------------------------------------
    def _on_bytes(self, job: _Download, done: int, total: int) -> None:
        """Byte progress from ``huggingface_hub`` (any of its threads): publish it, throttled."""
        if job.cancel.is_set():
            return
        if not job.fetching:  # refs' (0, 0) as the download begins, before any transfer
            job.fetching = True
            self._emit(job, Progress(0, 0, f"downloading {job.ref}"))
            return
        now = time.monotonic()
        with job.lock:
            job.done, job.total = done, max(total, done)
            if job.first_seen is None:
                job.first_seen, job.first_done = now, done
            publish = now - job.last_publish >= PUBLISH_INTERVAL or done >= job.total
            if publish:
                job.last_publish = now
            store = now - job.last_store >= STORE_INTERVAL
            if store:
                job.last_store = now
            done, total = job.done, job.total
        if store:
            self._store_progress(job)
        if publish:
            message = f"downloading {job.ref}: {human_size(done)} of {human_size(total)}"
            self._publish(JobEvent(job.id, Progress(done, total, message)))

    def _store_progress(self, job: _Download) -> None:
        with job.lock:
            done, total = job.done, job.total
        job.record.step, job.record.total = done, total
        try:
            self.store.update_job(job.id, step=done, total=total)
        except Exception:
            log.exception("could not store the progress of download %s", job.id)

    def _emit(self, job: _Download, event: Progress | Note) -> None:
        """Store ``event`` in the job's history and publish it."""
        payload = stored_payload(event)
        if payload is not None:
            try:
                self.store.add_job_event(job.id, event_type(event), payload)
            except Exception:
                log.exception("could not store an event of download %s", job.id)
        self._publish(JobEvent(job.id, event))

    def _record_state(
        self, job: _Download, state: JobState, error: str | None = None, *, store: bool = True
    ) -> None:
        """A transition: job record, history, observers. Never raises (it runs while failing)."""
        rec = job.record
        now = time.time()
        fields: dict[str, Any] = {"state": state}
        if state == JobState.RUNNING:
            fields["started"] = now
        if state.finished:
            fields.update(finished=now, error=error)
        for name, value in fields.items():
            setattr(rec, name, value)
        event = JobStateChanged(state, error)
        try:
            if store:
                self.store.update_job(job.id, **fields)
            self.store.add_job_event(job.id, event_type(event), stored_payload(event) or {})
        except Exception:
            log.exception("could not store the state %s of download %s", state, job.id)
        self._publish(JobEvent(job.id, event))

    def _fail(self, job: _Download, exc: BaseException) -> None:
        message = one_line(exc)
        details = "".join(traceback.format_exception(exc))
        log.error("download %s (%s) failed: %s", job.id, job.ref, message)
        try:
            self.store.add_job_event(job.id, ERROR_KIND, {"message": message, "traceback": details})
        except Exception:
            log.exception("could not store the error of download %s", job.id)
        self._record_state(job, JobState.FAILED, message)

    def _publish(self, event: JobEvent) -> None:
        try:
            self._publish_cb(event)
        except Exception:
            log.exception("publishing a download event failed; it is skipped")


# --- memory estimate and cache state ------------------------------------------------------------


def fits_in_memory(
    ref_or_entry: str | ModelEntry | CatalogEntry | ResolvedModel,
    cache: ModelCache,
    *,
    device: str = "cpu",
    cache_dir: Path | None = None,
) -> tuple[bool, int, int | None]:
    """Whether a model would fit in the model cache's budget on ``device``.

    Returns ``(fits, needed_bytes, budget_bytes)``. ``needed_bytes`` is the size of the weights
    files the model loads (:func:`studio.core.refs.estimate_bytes`) when it is on disk, else the
    size the catalog (or the entry) gives: a first estimate, since weights loaded in half
    precision take half of float32 files, and activations come on top. ``budget_bytes`` is the
    cache's budget for that device (host memory for ``"cpu"``); without one, the device's total
    memory; ``None`` when even that is unknown (then ``fits`` is true). ``fits`` allows for
    entries pinned by running jobs (see :meth:`ModelCache.fits`).

    For an accelerator without a budget set this asks torch for its memory (imports torch).

    :raises ModelNotFound: the size cannot be told (not on disk, not in the catalog).
    """
    from studio.core import devices

    needed = _needed_bytes(ref_or_entry, cache_dir)
    host = devices.is_host(device)
    budget = cache.host_budget if host else cache.device_budget
    if budget is not None:
        return cache.fits(needed, device), needed, budget
    total = devices.host_memory_total() if host else devices.device_memory_total(device)
    if total is None:
        return True, needed, None
    return needed <= total, needed, total


def _needed_bytes(
    item: str | ModelEntry | CatalogEntry | ResolvedModel, cache_dir: Path | None
) -> int:
    if isinstance(item, ResolvedModel):
        return refs.estimate_bytes(item)
    if isinstance(item, CatalogEntry):
        return _on_disk_bytes(item.id, cache_dir) or item.size_bytes
    if isinstance(item, ModelEntry):
        on_disk = None
        if item.downloaded and item.path is not None:
            on_disk = _on_disk_bytes(str(item.path), cache_dir)
        if on_disk is None and item.source != "library":
            on_disk = _on_disk_bytes(item.ref, cache_dir)
        if on_disk is not None:
            return on_disk
        if item.size_bytes is not None:
            return int(item.size_bytes)
        item = item.ref
    on_disk = _on_disk_bytes(item, cache_dir)
    if on_disk is not None:
        return on_disk
    known = catalog_entry(item)
    if known is not None:
        return known.size_bytes
    raise ModelNotFound(
        f"cannot tell how much memory {item!r} needs: it is not downloaded (hub cache, local "
        "path) and not in the model catalog"
    )


def _on_disk_bytes(ref: str, cache_dir: Path | None) -> int | None:
    """Bytes of the weights a reference loads, when it resolves without any download."""
    try:
        # pickle allowed: only sizes are read here, nothing is loaded
        resolved = refs.resolve(ref, allow_pickle=True, allow_download=False, cache_dir=cache_dir)
    except (ModelNotFound, InvalidRequest):
        return None
    return refs.estimate_bytes(resolved)


def cache_state(ref: str, *, cache_dir: Path | None = None) -> CacheState:
    """How much of hub model ``ref`` is in the hub cache, without any network access.

    ``"complete"`` when it resolves offline (:func:`studio.core.refs.resolve` with downloads off;
    pickle-only weights count as complete here), ``"partial"`` when the cache holds a snapshot of
    it that does not resolve (a stopped download: :meth:`DownloadManager.start` completes it),
    else ``"missing"``.

    :raises InvalidRequest: ``ref`` is not a well-formed hub id.
    """
    text = (ref or "").strip()
    repo_id, _ = refs.parse_hub_id(text)
    cache = hub.hub_cache_dir(cache_dir)
    try:
        refs.resolve(text, allow_pickle=True, allow_download=False, cache_dir=cache)
    except ModelNotFound:
        return "partial" if hub.has_snapshot(cache, repo_id) else "missing"
    return "complete"


# --- helpers -----------------------------------------------------------------------------------


def _check_downloadable(ref: str) -> str:
    """``ref`` stripped, if it is a hub id that can be downloaded now; else InvalidRequest."""
    text = (ref or "").strip()
    if not text:
        raise InvalidRequest("empty model reference: give a hub id (org/name) to download")
    if refs.is_local_path(text):
        raise InvalidRequest(
            f"{text!r} is a local path: only hub models (org/name, optionally @revision) are "
            "downloaded; use a local folder or .safetensors file as it is"
        )
    refs.parse_hub_id(text)  # InvalidRequest naming what a hub id may contain
    if hub.hub_offline():
        raise InvalidRequest(
            f"cannot download {text!r}: HF_HUB_OFFLINE is set, so the studio stays off the "
            "network; unset it (and turn the offline setting off) to download"
        )
    return text
