"""The device worker: one thread per device runs every job, taken from its :class:`JobQueue`.

All model work happens here, never on the GUI thread. A :class:`DeviceWorker` takes the next job
(see :mod:`studio.core.jobs` for the queue's order) and runs it:

* a generation: builds a :class:`~studio.core.context.RunContext`, iterates ``Generator.run``,
  forwards every event, and turns each ``Result`` into an artifact file with its recipe
  (:mod:`studio.core.results`);
* a training: builds a :class:`~studio.core.context.TrainContext` with a checkpoint store. At each
  step boundary the worker runs waiting higher-priority jobs right there, on the same thread (the
  training is ``paused`` meanwhile), and it holds the training while the user paused it, still
  serving other jobs (the trainer's ``before_hold`` of ``ctx.step_boundary`` runs first, so
  that it checkpoints).
  Each ``Sample`` becomes an artifact too, its recipe naming the training, the step and the
  generator used (:func:`studio.core.results.save_sample`).

Any exception fails that job alone, with its error recorded (one line on the job, the traceback
in its events and the log); after an out-of-memory error the model cache frees what it can. The
worker then goes on with the queue.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import platform
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from studio.core import devices, results
from studio.core.checkpoints import CheckpointStore
from studio.core.context import RunContext, TrainContext
from studio.core.errors import Cancelled, one_line
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
    stored_payload,
)
from studio.core.generator import GenerationRun, Generator
from studio.core.imports import import_model_libraries
from studio.core.jobs import Job, JobQueue, Prepared
from studio.core.quiet import LIBRARIES, quiet_model_loading
from studio.core.records import JobKind, JobRecord
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
        #: the device's hardware (the GPU's name, or the CPU model) for recipes, when known.
        self.device_name: str | None = None
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
        """The live (queued or running) job ``job_id``, if this worker has it.

        A job whose end state was announced is no longer live, even while the worker finishes
        its bookkeeping: a subscriber that resumes a training as it ends must find it gone."""
        with self._lock:
            job = self._live.get(job_id)
        return None if job is None or job.record.state.finished else job

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
        self.device_name = _hardware_name(self.device)
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
            if self._live.get(job.id) is job:  # not the same job resumed meanwhile
                del self._live[job.id]

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

        Text chunks and progress are stored coalesced (see :class:`~studio.core.jobs.JobHistory`);
        subscribers get every event as it comes.
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
        generator, request = prepared.component(), prepared.request
        assert isinstance(generator, Generator) and isinstance(request, GenerationRun)
        ctx: RunContext = self._context(job)
        with _cpu_threads(prepared.threads):
            # the plugin gets a copy: the recipe records the request as validated, whatever the
            # plugin does to its own (values it chooses go through ctx.record_options)
            self._run_events(job, prepared, ctx, generator.run(copy.deepcopy(request), ctx))

    def _run_events(
        self, job: Job, prepared: Prepared, ctx: RunContext, events: Iterable[object]
    ) -> None:
        """Handle every event a plugin yields, checking the cancel flag after each yield.

        So a plugin that yields progress stops at its next event even if it never calls
        ``ctx.check_cancelled()``; what it yields after the cancel is dropped, and its generator
        is closed (its ``finally`` blocks run).
        """
        for event in _closing(events):
            ctx.check_cancelled()
            self._handle(job, prepared, ctx, event)

    def _handle(self, job: Job, prepared: Prepared, ctx: RunContext, event: object) -> None:
        """One plugin event: filter, track progress, forward; results and samples become
        files."""
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
            results.save_adapter(
                self.services.store, self.services.paths.adapters, job.id, event.output
            )
            self._emit(job, event)
            return
        self._emit(job, event)
        if isinstance(event, Sample) and isinstance(prepared.request, TrainingRun):
            self._save_sample(job, prepared, ctx, event)
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
        request, cls = prepared.request, prepared.component
        assert isinstance(request, GenerationRun) and issubclass(cls, Generator)
        record = results.save_artifact(
            self.services.store,
            job_id=job.id,
            generator_cls=cls,
            plugin=self._plugin_of(cls.id),
            request=request,
            notes=ctx.recipe,
            output=result.output,
            device=self.device or "cpu",
            device_name=self.device_name,
            threads=_torch_threads(),
            out_dir=prepared.out_dir or self.services.paths.outputs,
        )
        job.record.artifact_ids.append(record.id)
        self._emit(
            job, ArtifactSaved(record.id, record.path, result.output.modality, record.recipe)
        )

    def _save_sample(self, job: Job, prepared: Prepared, ctx: RunContext, sample: Sample) -> None:
        """Save a training's sample in the library (its recipe names the training); a sample
        that cannot be saved is a warning, not the end of the training."""
        request, cls = prepared.request, prepared.component
        assert isinstance(request, TrainingRun) and issubclass(cls, Trainer)
        try:
            record = results.save_sample(
                self.services.store,
                job_id=job.id,
                trainer_cls=cls,
                plugin=self._plugin_of(cls.id),
                request=request,
                notes=ctx.recipe,
                sample=sample,
                device=self.device or "cpu",
                device_name=self.device_name,
                threads=_torch_threads(),
                out_dir=self.services.paths.outputs / results.SAMPLES_FOLDER,
            )
        except Exception as exc:
            log.exception("job %s: the sample of step %s was not saved", job.id, sample.step)
            message = f"the sample of step {sample.step} was not saved: {one_line(exc)}"
            self._emit(job, Note(message, "warning"))
            return
        job.record.artifact_ids.append(record.id)
        self._emit(
            job, ArtifactSaved(record.id, record.path, sample.output.modality, record.recipe)
        )

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
            pause_flag=lambda: job.pause_requested,
        )
        ctx.on_step_boundary = lambda: self._step_boundary(job, ctx)
        self._run_events(job, prepared, ctx, trainer.run(prepared.request, ctx))
        # the adapter is saved: the checkpoints have served (failed or stopped runs keep theirs)
        shutil.rmtree(checkpoints.root, ignore_errors=True)

    def _step_boundary(self, job: Job, ctx: TrainContext | None = None) -> None:
        """Lend the device to waiting higher-priority jobs; hold while the user paused ``job``
        (the trainer's ``before_hold`` checkpoints first)."""
        paused = False
        while not job.cancel_event.is_set() and not self._stopping:
            waiting = self.queue.pop_next(below=job.priority)
            if waiting is None and not job.pause_requested:
                break
            if waiting is None and ctx is not None:
                ctx.about_to_hold()  # once: before the first hold of this boundary
            if not paused:
                paused = True
                self._set_state(job, JobState.PAUSED)
            if waiting is not None:
                self._execute(waiting)
            else:
                self.queue.wait_change(_HOLD_POLL)
        if paused and not job.cancel_event.is_set():
            self._set_state(job, JobState.RUNNING)


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


@contextlib.contextmanager
def _cpu_threads(n: int | None) -> Iterator[None]:
    """Run a block with torch using ``n`` CPU threads on this thread (``None``: as set), then
    put the count back (a job run inline at a training's step boundary restores the training's)."""
    torch = sys.modules.get("torch")
    if n is None or torch is None:  # without torch, no thread count to pin
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _torch_threads() -> int | None:
    """The CPU threads torch uses on this thread (``None`` when torch is not imported)."""
    torch = sys.modules.get("torch")
    return None if torch is None else int(torch.get_num_threads())


def _hardware_name(device: str) -> str | None:
    """What ``device`` is, for the recipe: the CUDA device's name, else the CPU model."""
    try:
        if device.startswith("cuda"):
            import torch

            return str(torch.cuda.get_device_name(int(device.partition(":")[2] or 0)))
        if sys.platform.startswith("linux"):
            with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    if line.startswith("model name"):
                        return line.partition(":")[2].strip() or None
        return platform.processor() or platform.machine() or None
    except Exception:  # a fact for the recipe, never a reason to fail
        log.debug("could not tell the hardware of %s", device, exc_info=True)
        return None


def _index_of(event: object) -> int | None:
    """The output index an event belongs to (``None``: it belongs to the whole job)."""
    if isinstance(event, Preview | Partial):
        return event.index
    if isinstance(event, Result) and not isinstance(event.output, AdapterOutput):
        return event.output.index
    return None
