"""The device worker: one thread per device runs every job, fed by a priority queue.

All model work happens here, never on the GUI thread. The :class:`JobQueue` orders jobs by
:class:`~studio.core.records.Priority` (interactive, then batch, then training) and, within a
priority, by position (first in, first out unless the user moved a job). A :class:`DeviceWorker`
takes the next job and runs it:

* a generation: builds a :class:`~studio.core.context.RunContext`, iterates ``Generator.run``,
  forwards every event, and turns each ``Result`` into an artifact file with its recipe;
* a training: builds a :class:`~studio.core.context.TrainContext` with a checkpoint store. At each
  step boundary the worker runs waiting higher-priority jobs right there, on the same thread (the
  training is ``paused`` meanwhile), and it holds the training while the user paused it, still
  serving other jobs.

Any exception fails that job alone, with its error recorded (one line on the job, the traceback
in its events and the log); after an out-of-memory error the model cache frees what it can. The
worker then goes on with the queue.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import shutil
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core import artifacts, devices
from studio.core.checkpoints import CheckpointStore
from studio.core.context import RunContext, TrainContext
from studio.core.errors import Cancelled, StudioError
from studio.core.events import (
    AdapterOutput,
    ArtifactSaved,
    JobEvent,
    JobState,
    JobStateChanged,
    Note,
    Partial,
    Preview,
    Progress,
    Result,
    Sample,
    TrainStep,
    event_type,
)
from studio.core.generator import GenerationRun, Generator
from studio.core.imports import import_model_libraries
from studio.core.quiet import LIBRARIES, quiet_model_loading
from studio.core.records import AdapterRecord, ArtifactRecord, JobKind, JobRecord, Priority
from studio.core.training import Trainer, TrainingRun

if TYPE_CHECKING:
    from studio.core.cache import ModelCache
    from studio.core.paths import StudioPaths
    from studio.core.plugins import PluginHost
    from studio.core.settings import Settings
    from studio.core.store import Store

log = logging.getLogger(__name__)

_PLUGIN_EVENTS = (Progress, Preview, Partial, Note, Result, TrainStep, Sample)
#: How long a held (paused) training sleeps between looks at the queue, at most (seconds).
_HOLD_POLL = 0.5
#: How often, at most, streamed text and progress are written to the job history (seconds).
_FLUSH_INTERVAL = 0.25


# --- jobs ----------------------------------------------------------------------------------------


@dataclass
class Prepared:
    """A job ready to run: the plugin class and its validated request."""

    component: type[Generator] | type[Trainer]
    request: GenerationRun | TrainingRun
    #: generations: the folder artifacts are written to.
    out_dir: Path | None = None
    #: generations: only outputs with these indices are kept (``None``: all).
    keep_indices: frozenset[int] | None = None


@dataclass(eq=False)
class Job:
    """A queued or running job: its stored record plus the flags the studio and worker share.

    ``prepared`` is ``None`` for jobs re-queued from the database; the worker prepares them just
    before they run (so a plugin that went missing fails that job, not the studio).
    """

    record: JobRecord
    prepared: Prepared | None = None
    cancel_event: threading.Event = field(default_factory=threading.Event)
    #: the user paused this training: held in the queue, or held at its next step boundary.
    pause_requested: bool = False
    #: the studio is closing: a cancel ends this job as interrupted (resumable), not cancelled.
    interrupting: bool = False
    # time accounting for the ETA: seconds spent running (pauses excluded)
    active_seconds: float = 0.0
    active_since: float | None = None
    step_origin: int | None = None
    history: _History = field(default_factory=lambda: _History())

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def priority(self) -> Priority:
        return self.record.priority

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left, from the running pace so far; ``None`` when it cannot be told yet."""
        rec = self.record
        if rec.state not in (JobState.RUNNING, JobState.PAUSED) or self.step_origin is None:
            return None
        done = rec.step - self.step_origin
        if done <= 0 or rec.total <= rec.step:
            return None if rec.total <= 0 else 0.0
        active = self.active_seconds
        if self.active_since is not None:
            active += (time.monotonic() if now is None else now) - self.active_since
        return active / done * (rec.total - rec.step)


class _History:
    """What a job has yet to write to its stored history, coalesced.

    Storing each streamed chunk and progress tick in its own transaction would cost more than a
    fast model's token; instead consecutive text chunks are joined, only the last progress is
    kept, and step/total are written with them, at most every :data:`_FLUSH_INTERVAL` seconds
    and always before any other event (so the stored order stays true).
    """

    def __init__(self) -> None:
        self._text: dict[int, list[str]] = {}
        self._progress: Progress | None = None
        self._step_changed = False
        self._since: float | None = None

    def _touch(self) -> None:
        if self._since is None:
            self._since = time.monotonic()

    def add_text(self, event: Partial) -> None:
        self._text.setdefault(event.index, []).append(event.text)
        self._touch()

    def add_progress(self, event: Progress) -> None:
        self._progress = event
        self._touch()

    def step_changed(self) -> None:
        self._step_changed = True
        self._touch()

    def due(self) -> bool:
        return self._since is not None and time.monotonic() - self._since >= _FLUSH_INTERVAL

    def drain(self) -> tuple[list[Partial | Progress], bool]:
        """The events to store now, and whether step/total changed; empties the buffer."""
        events: list[Partial | Progress] = [
            Partial("".join(chunks), index) for index, chunks in self._text.items()
        ]
        if self._progress is not None:
            events.append(self._progress)
        changed = self._step_changed
        self._text, self._progress, self._step_changed, self._since = {}, None, False, None
        return events, changed


class JobQueue:
    """Queued jobs in run order: priority, then position (FIFO unless moved). Thread-safe.

    The queue's condition also wakes the worker when anything changes (a new job, a cancel, a
    resume), so a held training notices at once.
    """

    def __init__(self) -> None:
        self._jobs: list[Job] = []
        self._cond = threading.Condition()
        self._closed = False
        self._next_position = 0
        self._seq = itertools.count()
        self._order: dict[str, int] = {}  # job id -> push sequence (tie-break)

    # -- positions --------------------------------------------------------------------------------
    def next_position(self) -> int:
        """A position after every job seen so far (for a new job's record)."""
        with self._cond:
            position = self._next_position
            self._next_position += 1
            return position

    def _key(self, job: Job) -> tuple[int, int, int]:
        return (int(job.priority), job.record.position, self._order[job.id])

    # -- adding and taking -------------------------------------------------------------------
    def push(self, job: Job) -> None:
        """Add ``job`` at its record's priority and position."""
        with self._cond:
            self._order[job.id] = next(self._seq)
            self._next_position = max(self._next_position, job.record.position + 1)
            self._jobs.append(job)
            self._jobs.sort(key=self._key)
            self._cond.notify_all()

    def pop_next(self, below: Priority | None = None) -> Job | None:
        """Take the first job that is not held (only one of a priority above ``below``, if
        given); ``None`` if there is none. A closed queue gives nothing."""
        with self._cond:
            index = self._first_runnable()
            if index is None:
                return None
            if below is not None and self._jobs[index].priority >= below:
                return None
            return self._take(index)

    def wait_next(self, timeout: float | None = None) -> Job | None:
        """Block until a job can be taken and take it; ``None`` once closed (or on timeout)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while (index := self._first_runnable()) is None:
                remaining = None if deadline is None else deadline - time.monotonic()
                if self._closed or (remaining is not None and remaining <= 0):
                    return None
                self._cond.wait(remaining)
            return self._take(index)

    def _first_runnable(self) -> int | None:
        if self._closed:
            return None
        return next((i for i, job in enumerate(self._jobs) if not job.pause_requested), None)

    def hold(self, job_id: str) -> bool:
        """Keep a queued job from starting until :meth:`release`; ``False`` if not queued."""
        with self._cond:
            job = next((j for j in self._jobs if j.id == job_id), None)
            if job is None:
                return False
            job.pause_requested = True
            return True

    def release(self, job_id: str) -> bool:
        """Let a held job start again; ``False`` if it is not a held, queued job."""
        with self._cond:
            job = next((j for j in self._jobs if j.id == job_id and j.pause_requested), None)
            if job is None:
                return False
            job.pause_requested = False
            self._cond.notify_all()
            return True

    def _take(self, index: int) -> Job:
        job = self._jobs.pop(index)
        self._order.pop(job.id, None)
        return job

    def remove(self, job_id: str) -> Job | None:
        """Take ``job_id`` out of the queue (cancel); ``None`` if it is not queued."""
        with self._cond:
            for i, job in enumerate(self._jobs):
                if job.id == job_id:
                    taken = self._take(i)
                    self._cond.notify_all()
                    return taken
            return None

    def move(self, job_id: str, delta: int) -> list[Job] | None:
        """Move a queued job ``delta`` places (negative: earlier) among jobs of its priority.

        Returns the jobs whose position changed (to be stored), ``[]`` when it cannot move
        further, or ``None`` when ``job_id`` is not queued.
        """
        with self._cond:
            job = next((j for j in self._jobs if j.id == job_id), None)
            if job is None:
                return None
            group = [j for j in self._jobs if j.priority == job.priority]
            old = group.index(job)
            new = min(max(old + delta, 0), len(group) - 1)
            if new == old:
                return []
            positions = [j.record.position for j in group]
            group.insert(new, group.pop(old))
            changed = []
            for j, position in zip(group, positions, strict=True):
                if j.record.position != position:
                    j.record.position = position
                    changed.append(j)
            self._jobs.sort(key=self._key)
            self._cond.notify_all()
            return changed

    # -- looking -----------------------------------------------------------------------------
    def snapshot(self) -> list[Job]:
        """The queued jobs in run order."""
        with self._cond:
            return list(self._jobs)

    def __len__(self) -> int:
        with self._cond:
            return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        with self._cond:
            return any(j.id == job_id for j in self._jobs)

    # -- waking ------------------------------------------------------------------------------
    def notify(self) -> None:
        """Wake whoever waits on the queue (a resume or cancel changed what it waits for)."""
        with self._cond:
            self._cond.notify_all()

    def wait_change(self, timeout: float) -> None:
        """Sleep until the queue changes or ``timeout`` passes."""
        with self._cond:
            if not self._closed:
                self._cond.wait(timeout)

    def close(self) -> None:
        """Stop handing out jobs (those still queued stay queued in the database)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


# --- what the worker needs from the studio ------------------------------------------------------


@dataclass
class WorkerServices:
    """The studio's parts a worker uses (kept narrow so the worker is testable on its own)."""

    store: Store
    cache: ModelCache
    plugins: PluginHost
    paths: StudioPaths
    #: the current settings (they may change while the studio runs).
    settings: Callable[[], Settings]
    #: turn a stored job record into a :class:`Prepared` job (raises InvalidRequest).
    prepare: Callable[[JobRecord], Prepared]
    #: hand a job event to the studio's subscribers.
    emit: Callable[[JobEvent], None]
    #: called on the worker thread once the device is known (cache budgets and the like).
    on_device: Callable[[str], None] | None = None


def stored_payload(event: object) -> dict[str, Any] | None:
    """The JSON payload stored for an event in the job history (``None``: not stored).

    Previews keep only their step (images are large); results and samples keep a summary (the
    artifact itself is stored as an artifact).
    """
    if isinstance(event, Preview):
        return {"step": event.step, "index": event.index}
    if isinstance(event, Result):
        output = event.output
        summary: dict[str, Any] = {"output": type(output).__name__}
        if isinstance(output, AdapterOutput):
            summary.update(path=str(output.path), name=output.name, modality=output.modality)
        else:
            summary.update(index=output.index, seed=output.seed, modality=output.modality)
        return summary
    if isinstance(event, Sample):
        return {"step": event.step, "modality": event.output.modality, "index": event.output.index}
    if isinstance(event, JobStateChanged):
        return {"state": str(event.state), "error": event.error}
    if isinstance(event, ArtifactSaved):
        return {
            "artifact_id": event.artifact_id,
            "path": str(event.path),
            "modality": event.modality,
        }
    if isinstance(event, Progress | Partial | Note | TrainStep):
        return asdict(event)
    return None


def one_line(exc: BaseException) -> str:
    """An exception as one line for the user: the message (with its type unless ours)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, StudioError) and text:
        return text
    name = type(exc).__name__
    return f"{name}: {text}" if text else name


# --- the worker ---------------------------------------------------------------------------------


class DeviceWorker:
    """One thread that runs every job of one device, in queue order (see the module doc).

    The thread is not a daemon: :meth:`stop` ends it cleanly (the running job is interrupted at
    its next cancel check and stays resumable; queued jobs stay queued in the database).
    """

    def __init__(self, device_setting: str, services: WorkerServices, name: str = "") -> None:
        self.device_setting = device_setting
        self.services = services
        self.queue = JobQueue()
        self.name = name or f"studio-worker-{device_setting}"
        #: the concrete device (``cpu``, ``cuda:0``, ...), known once the thread has started.
        self.device: str | None = None
        self._ready = threading.Event()
        self._lock = threading.Lock()
        self._live: dict[str, Job] = {}  # queued or running, by id
        self._running: list[Job] = []  # the outer job first, then jobs run inline
        self._thread: threading.Thread | None = None
        self._stopping = False

    # -- life cycle --------------------------------------------------------------------------
    def start(self) -> None:
        """Start the thread (idempotent)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name=self.name, daemon=False)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> bool:
        """Stop taking jobs, interrupt the running ones and join; ``False`` if still alive."""
        with self._lock:
            self._stopping = True
            running = list(self._running)
        for job in running:
            job.interrupting = True
            job.cancel_event.set()
        self.queue.close()
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        if thread.is_alive():
            log.warning(
                "worker %s did not stop within %.1f s (a job ignores cancel)", self.name, timeout
            )
            return False
        return True

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- what the studio asks ------------------------------------------------------------------
    def enqueue(self, job: Job) -> None:
        """Queue a job (its record is already stored, state queued)."""
        with self._lock:
            self._live[job.id] = job
        self.queue.push(job)

    def get(self, job_id: str) -> Job | None:
        """The live (queued or running) job ``job_id``, if this worker has it."""
        with self._lock:
            return self._live.get(job_id)

    def running(self) -> list[Job]:
        """The jobs running now: the outer one first, then any it lent the device to."""
        with self._lock:
            return list(self._running)

    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job (removed at once) or a running one (at its next check)."""
        job = self.get(job_id)
        if job is None:
            return False
        job.cancel_event.set()  # first: a job taken meanwhile sees it before it starts
        if self.queue.remove(job_id) is not None:
            self._forget(job)
            self._set_state(job, JobState.CANCELLED)
        else:
            self.queue.notify()  # wakes a held training so it ends now
        return True

    def pause(self, job_id: str) -> bool:
        """Pause a training: a running one at its next step boundary, a queued one at once (it
        keeps its place but does not start until resumed)."""
        job = self.get(job_id)
        if job is None or job.record.kind != JobKind.TRAIN or job.pause_requested:
            return False
        if self.queue.hold(job_id):
            self._set_state(job, JobState.PAUSED)
            return True
        job.pause_requested = True  # running (or just taken): its step boundary holds it
        return True

    def resume(self, job_id: str) -> bool:
        """Let a paused training go on (a held queued one becomes runnable again)."""
        job = self.get(job_id)
        if job is None or not job.pause_requested:
            return False
        if job_id in self.queue:
            self._set_state(job, JobState.QUEUED)  # before release: nothing can take it yet
            return self.queue.release(job_id)
        job.pause_requested = False
        self.queue.notify()
        return True

    def move(self, job_id: str, delta: int) -> list[Job] | None:
        """Reorder a queued job (see :meth:`JobQueue.move`)."""
        return self.queue.move(job_id, delta)

    def eta(self, job_id: str) -> float | None:
        """Seconds left for a running job, from its pace so far."""
        job = self.get(job_id)
        return None if job is None else job.eta()

    # -- the thread ------------------------------------------------------------------------------
    def _main(self) -> None:
        while True:
            job = self.queue.wait_next()
            if job is None:
                break
            if not self._ready.is_set():
                # at the first job, not at start: picking the device imports torch, which
                # would hold the GIL while the window is still building
                self._set_up_device()
            self._execute(job)

    def _set_up_device(self) -> None:
        settings = self.services.settings()
        try:
            # torch's first import is the longest hold of the GIL in a session: done this way,
            # the window's event loop keeps running through it (see studio.core.imports)
            import_model_libraries("torch")
        except Exception as exc:  # the device check below falls back to the CPU and says why
            log.error("torch could not be imported (%s)", one_line(exc))
        try:
            self.device = devices.resolve_device(self.device_setting)
        except Exception as exc:
            log.error(
                "device %r is not usable (%s); running on the CPU",
                self.device_setting,
                one_line(exc),
            )
            self.device = "cpu"
        try:
            devices.configure_cpu_threads(settings.cpu_threads)
        except Exception:
            log.exception("could not set the CPU threads")
        if self.services.on_device is not None:
            try:
                self.services.on_device(self.device)
            except Exception:
                log.exception("device set-up hook failed")
        self._ready.set()

    def _execute(self, job: Job) -> None:
        """Run one job to its end state; never raises (a failure is the job's, not the worker's)."""
        with self._lock:
            if self._stopping:  # taken just as the studio closes: it stays queued
                self._live.pop(job.id, None)
                return
            self._running.append(job)
        out_of_memory = False
        try:
            if job.cancel_event.is_set() or self._cancelled_elsewhere(job):
                raise Cancelled()
            self._set_state(job, JobState.RUNNING)
            prepared = job.prepared or self.services.prepare(job.record)
            job.prepared = prepared
            self._import_for(job, prepared.component)
            if job.record.kind == JobKind.TRAIN:
                self._run_training(job, prepared)
            else:
                self._run_generation(job, prepared)
        except Cancelled:
            self._set_state(job, JobState.INTERRUPTED if job.interrupting else JobState.CANCELLED)
        except (Exception, SystemExit) as exc:
            out_of_memory = devices.is_out_of_memory(exc)
            self._fail(job, exc, out_of_memory)
        else:
            self._set_state(job, JobState.SUCCEEDED)
        finally:
            with self._lock:
                self._running.remove(job)
            self._forget(job)
            shutil.rmtree(self.services.paths.scratch / job.id, ignore_errors=True)
        if out_of_memory:
            # after the except block: the traceback's frames (and their tensors) are gone now
            freed = self.services.cache.free(self.device)
            log.info("out of memory: the model cache freed %d bytes", freed)

    def _import_for(self, job: Job, component: type[Generator] | type[Trainer]) -> None:
        """Import what a plugin's ``run`` will import, keeping the window responsive meanwhile."""
        if all(name in sys.modules for name in component.imports):
            return
        libraries = {name.partition(".")[0] for name in component.imports}
        self._emit(job, Progress(0, 0, f"importing {', '.join(sorted(libraries))}"))
        # quietly: the libraries talk while they import (optional extras missing, deprecations)
        quiet = libraries & set(LIBRARIES)
        with quiet_model_loading(*sorted(quiet)) if quiet else contextlib.nullcontext():
            import_model_libraries(*component.imports)

    def _cancelled_elsewhere(self, job: Job) -> bool:
        """Whether another process on the same home cancelled this queued job in the database."""
        try:
            return self.services.store.get_job(job.id).state == JobState.CANCELLED
        except KeyError:
            return False

    def _forget(self, job: Job) -> None:
        with self._lock:
            self._live.pop(job.id, None)

    def _fail(self, job: Job, exc: BaseException, out_of_memory: bool) -> None:
        message = one_line(exc)
        if out_of_memory:
            message = (
                f"out of memory on {self.device}: {message} (the model cache was freed; try a "
                "smaller size or batch, or free memory)"
            )
        details = "".join(traceback.format_exception(exc))
        log.error("job %s (%s) failed: %s\n%s", job.id, job.record.component, message, details)
        try:
            self.services.store.add_job_event(
                job.id, "error", {"message": message, "traceback": details}
            )
        except Exception:
            log.exception("could not store the error of job %s", job.id)
        self._set_state(job, JobState.FAILED, message)

    # -- state and events ------------------------------------------------------------------------
    def _set_state(self, job: Job, state: JobState, error: str | None = None) -> None:
        """Record a transition (database, subscribers); never raises (it runs while failing)."""
        rec = job.record
        now = time.time()
        self._flush(job, store_failures=False)  # history before the state that follows it
        fields: dict[str, Any] = {"state": state}
        if state == JobState.RUNNING and rec.started is None:
            fields["started"] = now
        if state.finished:
            fields.update(finished=now, error=error)
        self._clock(job, running=state == JobState.RUNNING)
        for name, value in fields.items():
            setattr(rec, name, value)
        try:
            self.services.store.update_job(job.id, **fields)
        except Exception:
            log.exception("could not store the state %s of job %s", state, job.id)
        self._emit(job, JobStateChanged(state, error), store_failures=False)

    @staticmethod
    def _clock(job: Job, running: bool) -> None:
        now = time.monotonic()
        if job.active_since is not None:
            job.active_seconds += now - job.active_since
            job.active_since = None
        if running:
            job.active_since = now

    def _emit(self, job: Job, event: Any, store_failures: bool = True) -> None:
        """Store ``event`` in the job's history and hand it to the studio's subscribers.

        Text chunks and progress are stored coalesced (see :class:`_History`); subscribers get
        every event as it comes.
        """
        buffer = job.history
        if isinstance(event, Partial):
            buffer.add_text(event)
        elif isinstance(event, Progress):
            buffer.add_progress(event)
        else:
            self._flush(job, store_failures)
            self._store(job, event, store_failures)
        if buffer.due():
            self._flush(job, store_failures)
        self.services.emit(JobEvent(job.id, event))

    def _store(self, job: Job, event: Any, store_failures: bool = True) -> None:
        payload = stored_payload(event)
        if payload is None:
            return
        try:
            self.services.store.add_job_event(job.id, event_type(event), payload)
        except Exception:
            if store_failures:
                raise
            log.exception("could not store a %s event of job %s", event_type(event), job.id)

    def _flush(self, job: Job, store_failures: bool = True) -> None:
        """Write the coalesced history of ``job`` (text, last progress, step/total)."""
        events, step_changed = job.history.drain()
        for event in events:
            self._store(job, event, store_failures)
        if step_changed:
            try:
                self.services.store.update_job(job.id, step=job.record.step, total=job.record.total)
            except Exception:
                if store_failures:
                    raise
                log.exception("could not store the progress of job %s", job.id)

    def _track_progress(self, job: Job, step: int, total: int) -> None:
        if job.step_origin is None:
            job.step_origin = max(0, step - 1)
        job.record.step, job.record.total = step, total
        job.history.step_changed()

    # -- generations -----------------------------------------------------------------------------
    def _context(self, job: Job, cls: type[RunContext] = RunContext, **extra: Any) -> Any:
        scratch = self.services.paths.scratch / job.id
        scratch.mkdir(parents=True, exist_ok=True)
        return cls(
            job_id=job.id,
            device=self.device or "cpu",
            cache=self.services.cache,
            settings=self.services.settings(),
            scratch=scratch,
            log=logging.getLogger(f"studio.job.{job.record.component}"),
            cancel_event=job.cancel_event,
            hash_file=self.services.store.file_sha256,
            **extra,
        )

    def _run_generation(self, job: Job, prepared: Prepared) -> None:
        generator = prepared.component()
        assert isinstance(generator, Generator) and isinstance(prepared.request, GenerationRun)
        ctx: RunContext = self._context(job)
        for event in _closing(generator.run(prepared.request, ctx)):
            self._handle(job, prepared, ctx, event)

    def _handle(self, job: Job, prepared: Prepared, ctx: RunContext, event: object) -> None:
        """One plugin event: filter, track progress, forward; results become files."""
        if not isinstance(event, _PLUGIN_EVENTS):
            raise TypeError(
                f"{job.record.component} yielded {type(event).__name__}, not a studio event "
                "(Progress, Preview, Partial, Note, Result, TrainStep or Sample)"
            )
        index = _index_of(event)
        keep = prepared.keep_indices
        if keep is not None and index is not None and index not in keep:
            return
        if isinstance(event, Progress | TrainStep):
            self._track_progress(job, event.step, event.total)
        if isinstance(event, Result) and isinstance(event.output, AdapterOutput):
            self._save_adapter(job, event.output)
            self._emit(job, event)
            return
        self._emit(job, event)
        if isinstance(event, Result):
            if isinstance(prepared.request, GenerationRun):
                self._save_artifact(job, prepared, ctx, event)
            else:
                log.warning(
                    "%s yielded a %s result, which only generators may: not saved",
                    job.record.component,
                    event.output.modality,
                )

    def _save_artifact(self, job: Job, prepared: Prepared, ctx: RunContext, result: Result) -> None:
        output = result.output
        assert not isinstance(output, AdapterOutput)
        request = prepared.request
        assert isinstance(request, GenerationRun)
        cls = prepared.component
        assert issubclass(cls, Generator)
        plugin_name, plugin_version = self._plugin_of(cls.id)
        recipe = artifacts.build_recipe(
            plugin_name=plugin_name,
            plugin_version=plugin_version,
            generator_cls=cls,
            task=cls.task,
            request=request,
            notes=ctx.recipe,
            device=self.device or "cpu",
            output=output,
        )
        # the run's seed: with it (and the index) ``regenerate`` re-runs one image of a batch
        recipe.setdefault("extra", {}).setdefault("request_seed", request.seed)
        out_dir = prepared.out_dir or self.services.paths.outputs
        stem = artifacts.artifact_stem(job.id, output.index)
        path = artifacts.write_artifact(output, recipe, out_dir, stem)
        model = (recipe.get("model") or {}).get("ref") or request.model
        record = ArtifactRecord(
            id=uuid.uuid4().hex,
            job_id=job.id,
            path=path,
            modality=output.modality,
            generator=cls.id,
            model=model,
            prompt=request.prompt,
            created=time.time(),
            recipe=recipe,
        )
        self.services.store.add_artifact(record)
        job.record.artifact_ids.append(record.id)
        self._emit(job, ArtifactSaved(record.id, path, output.modality, recipe))

    def _plugin_of(self, component_id: str) -> tuple[str, str]:
        try:
            info = self.services.plugins.plugin_of(component_id)
        except KeyError:
            return "unknown", "unknown"
        return info.name, info.version

    # -- trainings ---------------------------------------------------------------------------------
    def _run_training(self, job: Job, prepared: Prepared) -> None:
        trainer = prepared.component()
        assert isinstance(trainer, Trainer) and isinstance(prepared.request, TrainingRun)
        checkpoints = CheckpointStore(self.services.paths.checkpoints / job.id)
        ctx: TrainContext = self._context(
            job,
            TrainContext,
            checkpoints=checkpoints,
            on_step_boundary=lambda: self._step_boundary(job),
        )
        for event in _closing(trainer.run(prepared.request, ctx)):
            self._handle(job, prepared, ctx, event)
        # the adapter is saved: the checkpoints have served (failed or stopped runs keep theirs)
        shutil.rmtree(checkpoints.root, ignore_errors=True)

    def _step_boundary(self, job: Job) -> None:
        """Lend the device to waiting higher-priority jobs; hold while the user paused ``job``."""
        paused = False
        while not job.cancel_event.is_set() and not self._stopping:
            waiting = self.queue.pop_next(below=job.priority)
            if waiting is None and not job.pause_requested:
                break
            if not paused:
                paused = True
                self._set_state(job, JobState.PAUSED)
            if waiting is not None:
                self._execute(waiting)
            else:
                self.queue.wait_change(_HOLD_POLL)
        if paused and not job.cancel_event.is_set():
            self._set_state(job, JobState.RUNNING)

    def _save_adapter(self, job: Job, output: AdapterOutput) -> None:
        """Put a trained adapter into the adapter library (copied there if written elsewhere)."""
        library = self.services.paths.adapters
        path = Path(output.path)
        if not path.exists():
            raise FileNotFoundError(f"the trainer reported adapter {path}, which does not exist")
        if not _is_within(path, library):
            target = library / f"{slug(output.name)}-{job.id[:8]}"
            if path.is_dir():
                shutil.copytree(path, target, dirs_exist_ok=True)
                path = target
            else:
                target.mkdir(parents=True, exist_ok=True)
                path = Path(shutil.copy2(path, target / path.name))
        digest = self.services.store.file_sha256(path) if path.is_file() else None
        record = AdapterRecord(
            id=uuid.uuid4().hex,
            name=output.name,
            path=path,
            modality=output.modality,
            base_model=output.base_model,
            sha256=digest,
            created=time.time(),
            job_id=job.id,
            extra=dict(output.extra),
        )
        self.services.store.add_adapter(record)
        output.path = path
        output.extra["adapter_id"] = record.id


# --- helpers -------------------------------------------------------------------------------------


def _closing(events: Iterable[Any]) -> Iterator[Any]:
    """Iterate a plugin's events and close its generator whatever happens (its finally runs)."""
    try:
        yield from events
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            with contextlib.suppress(Exception):
                close()


def _index_of(event: object) -> int | None:
    """The output index an event belongs to (``None``: it belongs to the whole job)."""
    if isinstance(event, Preview | Partial):
        return event.index
    if isinstance(event, Result) and not isinstance(event.output, AdapterOutput):
        return event.output.index
    return None


def slug(text: str) -> str:
    """A file-name-safe, lower-case form of ``text`` (for adapter folders)."""
    cleaned = "".join(c if c.isalnum() or c in "-_" else "-" for c in text.strip().lower())
    return "-".join(p for p in cleaned.split("-") if p)[:60] or "adapter"


def _is_within(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder.resolve())
    except ValueError:
        return False
    return True
