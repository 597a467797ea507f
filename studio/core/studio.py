"""The Studio facade: the one object the CLI and the GUI use.

``Studio.open(home)`` opens a studio home (database, settings, plugins, model cache) and starts a
device worker. Requests are validated completely in :meth:`Studio.prepare` (before any job is
stored or any model is touched), then queued; events reach observers through
:meth:`Studio.subscribe` (callbacks) or :meth:`Studio.stream` (an iterator).

One process at a time *owns* a studio home's queue (an advisory lock file): it marks the jobs a
dead process left running as interrupted, and runs the queued jobs left in the database. Another
process opened on the same home (the CLI next to the GUI) runs only the jobs it submits itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import secrets
import shutil
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from pydantic import ValidationError

from studio.core import devices
from studio.core.artifacts import artifact_files, read_recipe, slug
from studio.core.cache import ModelCache
from studio.core.catalog import catalog
from studio.core.datasets import DatasetManifest, ManifestChanges, compare_manifests
from studio.core.downloads import DownloadManager
from studio.core.errors import InvalidRequest, PluginVersionMismatch, StudioError, one_line
from studio.core.events import (
    JobEvent,
    JobState,
    JobStateChanged,
    Preview,
    Sample,
    event_type,
    stored_payload,
)
from studio.core.generator import GenerationRequest, GenerationRun, Generator, LoraSpec
from studio.core.jobs import Job, Prepared
from studio.core.options import validate_options
from studio.core.paths import StudioPaths, check_out_dir, default_home
from studio.core.plugins import PluginHost
from studio.core.records import (
    SAMPLE_KIND,
    AdapterRecord,
    ArtifactRecord,
    DatasetRecord,
    JobKind,
    JobRecord,
    ModelEntry,
    Priority,
)
from studio.core.refs import is_local_path
from studio.core.settings import Settings
from studio.core.store import Store
from studio.core.training import IngestReport, Trainer, TrainingRequest, TrainingRun
from studio.core.worker import DeviceWorker, WorkerServices

log = logging.getLogger(__name__)

#: Share of an accelerator's memory the model cache may use when no budget is set.
DEVICE_BUDGET_SHARE = 0.85
#: Finished jobs whose events :meth:`Studio.stream` can still replay from memory.
_HISTORY_JOBS = 64
#: Events kept per job for that replay (the oldest go first; the database keeps them all).
_HISTORY_EVENTS = 10_000
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


class Studio:
    """A studio home opened: plugins, database, model cache and the device worker.

    Create it with :meth:`open`; close it with :meth:`close` (or use it as a context manager).
    Every method is safe to call from any thread; event callbacks run on the worker thread.
    """

    paths: StudioPaths
    settings: Settings
    plugins: PluginHost
    store: Store
    cache: ModelCache

    def __init__(
        self,
        paths: StudioPaths,
        settings: Settings,
        plugins: PluginHost,
        store: Store,
        cache: ModelCache,
    ) -> None:
        self.paths = paths
        self.settings = settings
        self.plugins = plugins
        self.store = store
        self.cache = cache
        self._lock_file: HomeLock | None = None  # held while this studio owns the queue
        self._swept = False  # jobs a dead studio left running were marked interrupted
        self._closed = False
        self._device_total: int | None = None
        self._subscribers: list[Callable[[JobEvent], None]] = []
        self._events_lock = threading.RLock()
        self._listeners: dict[str, list[Callable[[JobEvent], None]]] = {}
        self._history: dict[str, deque[JobEvent]] = {}
        self._finished_jobs: OrderedDict[str, None] = OrderedDict()
        self._finished_cv = threading.Condition()
        self._log_handler: logging.Handler | None = None
        services = WorkerServices(
            store=store,
            cache=cache,
            plugins=plugins,
            paths=paths,
            settings=lambda: self.settings,
            prepare=self._prepare_record,
            emit=self._emit,
            on_device=self._on_device,
        )
        self._worker = DeviceWorker(settings.device, services)
        # downloads run on their own thread: they never hold up the device worker
        self.downloads = DownloadManager(store, self._emit)

    # -- life cycle --------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        home: Path | str | None = None,
        *,
        load_plugins: bool = True,
        start_workers: bool = True,
    ) -> Studio:
        """Open the studio home ``home`` (default: ``$STUDIO_HOME`` or the platform's folder).

        ``load_plugins=False`` loads no entry-point plugin (tests register their own);
        ``start_workers=False`` opens it for looking only (listing jobs, models, plugins): no
        thread starts and nothing left in the queue runs.
        """
        paths = StudioPaths(Path(home).expanduser() if home is not None else default_home())
        paths.ensure()
        store = Store(paths.database)
        try:
            settings = store.load_settings()
            lock = HomeLock(paths.home / "studio.lock")
            swept = lock.acquire()
            if swept:  # no live studio on this home: what it left running is dead
                _mark_interrupted(store)
                lock.release()  # start() takes it for good
            plugins = PluginHost(disabled=settings.disabled_plugins)
            if load_plugins:
                plugins.load_entry_points()
            cache = ModelCache(
                device_budget=_gb(settings.device_budget_gb),
                host_budget=_gb(settings.host_budget_gb) or devices.host_memory_total() // 2,
            )
            studio = cls(paths, settings, plugins, store, cache)
            studio._swept = swept
        except BaseException:
            store.close()
            raise
        if start_workers:
            studio.start()
        return studio

    def start(self, *, adopt_queue: bool = True) -> None:
        """Start the device worker (``open`` does, unless ``start_workers=False``); idempotent.

        With ``adopt_queue`` (the GUI), if no other process runs this home's queue, this studio
        takes it over: jobs left queued in the database are queued again (register plugins
        before, when not loading them). Without it (a one-shot command line), the studio runs
        only the jobs it submits and leaves the rest to the next studio that adopts the queue.
        """
        self._check_open()
        if self._worker.alive:
            return
        if adopt_queue and self._lock_file is None:
            lock = HomeLock(self.paths.home / "studio.lock")
            if lock.acquire():
                self._lock_file = lock
                if not self._swept:  # the owner of the queue at open time has stopped since
                    _mark_interrupted(self.store)
                    self._swept = True
                self._requeue_stored()
                self.downloads.requeue_stored()
        if self._log_handler is None:
            handler = logging.FileHandler(
                self.paths.logs / "studio.log", encoding="utf-8", delay=True
            )
            handler.setFormatter(
                logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(threadName)s] %(message)s")
            )
            logging.getLogger("studio").addHandler(handler)
            self._log_handler = handler
        self._worker.start()

    def close(self, timeout: float = 10.0) -> None:
        """Stop the worker (a running job is interrupted, resumable; queued jobs stay queued)
        and close the database. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.downloads.close(timeout)
        stopped = self._worker.stop(timeout)
        if self._log_handler is not None:
            logging.getLogger("studio").removeHandler(self._log_handler)
            self._log_handler.close()
            self._log_handler = None
        if self._lock_file is not None:
            self._lock_file.release()
        if stopped:
            self.store.close()
        else:  # the thread still runs a job that ignores cancel: it may still write its end state
            log.warning("the studio database stays open: a job did not stop in %.1f s", timeout)

    def __enter__(self) -> Studio:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def device(self) -> str:
        """The device jobs run on (the setting until the worker has resolved it)."""
        return self._worker.device or self.settings.device

    def _check_open(self) -> None:
        if self._closed:
            raise StudioError("the studio is closed")

    # -- plugins ------------------------------------------------------------------------------
    def generators(self) -> list[type[Generator]]:
        """Every registered generator class."""
        return list(self.plugins.generators.values())

    def find_generator(self, id_or_task: str) -> type[Generator]:
        """A generator by id or task name (:class:`InvalidRequest` naming the available ones)."""
        return self.plugins.find_generator(id_or_task)

    def trainers(self) -> list[type[Trainer]]:
        """Every registered trainer class."""
        return list(self.plugins.trainers.values())

    # -- validation ------------------------------------------------------------------------------
    def prepare(self, request: GenerationRequest) -> GenerationRun:
        """Validate ``request`` completely, before any model work; return what ``run`` gets.

        Checks the generator, prompt, options, model, adapters (library names resolve to their
        files), parent artifact and output folder, then the generator's own ``check``. Chooses a
        seed when none is given. Raises :class:`InvalidRequest` naming the problem and what is
        allowed.
        """
        prepared, _ = self._prepare_generation(request)
        assert isinstance(prepared.request, GenerationRun)
        return prepared.request

    def _prepare_generation(self, request: GenerationRequest) -> tuple[Prepared, dict[str, Any]]:
        cls = self.plugins.find_generator(request.generator)
        if cls.prompt_required and not request.prompt.strip():
            raise InvalidRequest(f"generator {cls.id!r} needs a prompt (--prompt TEXT)")
        options = validate_options(cls.Options, request.options)
        model = self._model_for(cls, request.model)
        if request.loras and not cls.supports_lora:
            able = sorted(g.id for g in self.generators() if g.supports_lora)
            raise InvalidRequest(
                f"generator {cls.id!r} does not support LoRA adapters; remove --lora, or use one "
                f"that does: {', '.join(able) or '(none installed)'}"
            )
        if request.keep_indices is not None and any(i < 0 for i in request.keep_indices):
            raise InvalidRequest("keep_indices must be output indices >= 0")
        out_dir = self._check_out_dir(request.out_dir)
        seed = request.seed if request.seed is not None else secrets.randbelow(2**32)
        run_request = GenerationRun(
            generator=cls.id,
            prompt=request.prompt,
            model=model,
            seed=seed,
            options=options,
            loras=[self._resolve_lora(lora) for lora in request.loras],
            parent_recipes=self._parent_recipes(request.parent),
            parent=request.parent,
            keep_indices=request.keep_indices,
        )
        try:
            cls().check(run_request)
        except StudioError:
            raise
        except Exception as exc:
            raise InvalidRequest(
                f"generator {cls.id!r} rejected the request: {one_line(exc)}"
            ) from exc
        stored = request.model_copy(
            update={
                "generator": cls.id,
                "model": model,
                "seed": seed,
                "options": options.model_dump(mode="json"),
                "out_dir": out_dir,
            }
        ).model_dump(mode="json")
        keep = None if request.keep_indices is None else frozenset(request.keep_indices)
        return Prepared(cls, run_request, out_dir, keep, request.threads), stored

    @staticmethod
    def _model_for(cls: type[Generator], ref: str | None) -> str | None:
        """The model a generation loads (see :func:`_chosen_model`)."""
        return _chosen_model(
            ref,
            cls.uses_model,
            cls.default_model,
            refused=f"generator {cls.id!r} uses no model: remove --model {ref!r}",
            missing=f"generator {cls.id!r} has no default model: name one (--model REF: a hub "
            "id, a local folder or a .safetensors file)",
            what="model",
        )

    def _check_out_dir(self, out_dir: Path | None) -> Path | None:
        return check_out_dir(out_dir if out_dir is not None else self.settings.output_dir)

    def _resolve_lora(self, lora: LoraSpec) -> LoraSpec:
        """A library adapter (by id or name) becomes its file; a path must exist; a hub id
        (``org/name``) is left for the plugin to resolve."""
        found = self.store.find_adapter(lora.ref)
        if found is not None:
            return LoraSpec(ref=str(found.path), weight=lora.weight)
        ref = lora.ref
        path = Path(ref).expanduser()
        path_like = (
            ref.lower().endswith(_WEIGHT_SUFFIXES)
            or ref.startswith(("/", ".", "~"))
            or "\\" in ref
            or path.is_absolute()
        )
        if path.exists():
            return LoraSpec(ref=str(path.resolve()), weight=lora.weight)
        if path_like or "/" not in ref:
            names = sorted({a.name for a in self.store.list_adapters()})
            raise InvalidRequest(
                f"LoRA {ref!r} not found: it is no file, and no adapter in the library has that "
                f"name or id (library: {', '.join(names) or 'empty'}); a hub adapter is "
                "written org/name"
            )
        return lora

    def _parent_recipes(self, parent: str | None) -> list[dict[str, Any]]:
        if parent is None:
            return []
        try:
            return [self.store.get_artifact(parent).recipe]
        except KeyError:
            raise InvalidRequest(f"parent artifact {parent!r} does not exist") from None

    def _prepare_training(
        self, request: TrainingRequest, job_id: str, submitted_manifest: str | None = None
    ) -> tuple[Prepared, dict[str, Any], IngestReport]:
        cls = self.plugins.find_trainer(request.trainer)
        dataset = Path(request.dataset).expanduser().resolve()
        if not dataset.is_dir():
            raise InvalidRequest(
                f"dataset {dataset} is not a folder: give the folder holding your files"
            )
        options = validate_options(cls.Options, request.options)
        base_model = self._base_model_for(cls, request.base_model)
        report = self._ingest(cls, dataset, options)
        if not report.ok:
            skipped = "; ".join(f"{k}: {v}" for k, v in list(report.skipped.items())[:5])
            raise InvalidRequest(
                f"no usable files in {dataset} for trainer {cls.id!r}"
                + (f" (skipped {skipped})" if skipped else " (the folder is empty)")
            )
        manifest = report.manifest
        if submitted_manifest is not None and manifest.sha256 != submitted_manifest:
            raise InvalidRequest(
                self._dataset_changed(dataset, submitted_manifest, manifest, job_id)
            )
        run_request = TrainingRun(
            trainer=cls.id,
            base_model=base_model,
            dataset=dataset,
            name=request.name,
            options=options,
            output_dir=self.paths.adapters / f"{slug(request.name)}-{job_id[:8]}",
        )
        stored = request.model_copy(
            update={
                "trainer": cls.id,
                "base_model": base_model,
                "dataset": dataset,
                "options": options.model_dump(mode="json"),
            }
        ).model_dump(mode="json")
        # the files as submitted: a resume after a restart refuses a dataset changed since
        stored["dataset_manifest"] = manifest.sha256
        return Prepared(cls, run_request), stored, report

    @staticmethod
    def _base_model_for(cls: type[Trainer], ref: str | None) -> str | None:
        """The model a training starts from (see :func:`_chosen_model`)."""
        return _chosen_model(
            ref,
            cls.uses_model,
            cls.default_model,
            refused=f"trainer {cls.id!r} uses no base model (it learns from the dataset alone): "
            f"remove the base model {ref!r}",
            missing=f"trainer {cls.id!r} has no default base model: name the model to train on "
            "(a hub id, a local folder or a .safetensors file)",
            what="base model",
        )

    @staticmethod
    def _ingest(cls: type[Trainer], dataset: Path, options: Any) -> IngestReport:
        try:
            report = cls().ingest(dataset, options)
            if report.root is None:  # made by hand, not by studio.ingest_dataset
                report.root = Path(os.path.abspath(dataset))
            return report
        except StudioError:
            raise
        except Exception as exc:
            raise InvalidRequest(
                f"trainer {cls.id!r} could not read dataset {dataset}: {one_line(exc)}"
            ) from exc

    def _prepare_record(self, record: JobRecord) -> Prepared:
        """Rebuild a stored job (re-queued after a restart) just before it runs."""
        try:
            if record.kind == JobKind.TRAIN:
                training = TrainingRequest.model_validate(record.request)
                submitted = record.request.get("dataset_manifest")
                return self._prepare_training(training, record.id, submitted)[0]
            generation = GenerationRequest.model_validate(record.request)
        except ValidationError as exc:
            raise InvalidRequest(
                f"the stored request of job {record.id} is damaged: {exc}"
            ) from exc
        return self._prepare_generation(generation)[0]

    # -- submitting ------------------------------------------------------------------------------
    def submit(
        self, request: GenerationRequest, *, priority: Priority = Priority.INTERACTIVE
    ) -> str:
        """Validate (see :meth:`prepare`) and queue a generation; return the job id."""
        self._check_open()
        prepared, stored = self._prepare_generation(request)
        return self._enqueue(
            uuid.uuid4().hex,
            JobKind.GENERATE,
            Priority(priority),
            prepared.component.id,
            stored,
            prepared,
        )

    def submit_training(self, request: TrainingRequest) -> str:
        """Validate and queue a fine-tuning job (lowest priority, preemptible); return its id."""
        self._check_open()
        job_id = uuid.uuid4().hex
        prepared, stored, report = self._prepare_training(request, job_id)
        self.record_dataset(Path(stored["dataset"]), report)
        return self._enqueue(
            job_id, JobKind.TRAIN, Priority.TRAINING, prepared.component.id, stored, prepared
        )

    def ingest(self, trainer_id: str, dataset: Path, options: dict[str, Any]) -> IngestReport:
        """What a trainer would use from ``dataset`` (no model is loaded)."""
        cls = self.plugins.find_trainer(trainer_id)
        folder = Path(dataset).expanduser()
        if not folder.is_dir():
            raise InvalidRequest(f"dataset {folder} is not a folder: give the folder of your files")
        return self._ingest(cls, folder, validate_options(cls.Options, options))

    def _enqueue(
        self,
        job_id: str,
        kind: JobKind,
        priority: Priority,
        component: str,
        stored: dict[str, Any],
        prepared: Prepared | None,
    ) -> str:
        record = JobRecord(
            id=job_id,
            kind=kind,
            state=JobState.QUEUED,
            priority=priority,
            component=component,
            request=stored,
            created=time.time(),
            position=self._worker.queue.next_position(),
        )
        self.store.add_job(record)
        self._announce_queued(record)
        self._worker.enqueue(Job(record, prepared))
        return job_id

    def _announce_queued(self, record: JobRecord) -> None:
        event = JobStateChanged(JobState.QUEUED)
        self.store.add_job_event(record.id, event_type(event), stored_payload(event) or {})
        self._emit(JobEvent(record.id, event))

    def _requeue_stored(self) -> None:
        """Queue the jobs a previous studio left queued (they are prepared when they run)."""
        for record in self.store.queued_jobs():
            if record.kind == JobKind.DOWNLOAD:  # the download manager adopts its own
                continue
            if self._worker.get(record.id) is None:  # not one this studio queued itself
                self._worker.enqueue(Job(record))

    # -- controlling jobs -----------------------------------------------------------------------
    def cancel(self, job_id: str) -> bool:
        """Cancel a queued job (removed) or a running one (ends at its next cancel check).

        Returns ``False`` for a job that already ended. Output already saved stays.
        """
        if self._is_download(job_id):
            return self.downloads.cancel(job_id)
        if self._worker.cancel(job_id):
            return True
        record = self.store.get_job(job_id)
        if record.state != JobState.QUEUED:
            return False
        # queued in the database only (another process owns the queue, or none runs it)
        self.store.update_job(job_id, state=JobState.CANCELLED, finished=time.time())
        event = JobStateChanged(JobState.CANCELLED)
        self.store.add_job_event(job_id, event_type(event), stored_payload(event) or {})
        self._emit(JobEvent(job_id, event))
        return True

    def pause(self, job_id: str) -> bool:
        """Pause a training: a running one at its next step boundary (the device serves the
        other jobs meanwhile), a queued one at once (it will not start until resumed)."""
        return self._worker.pause(job_id)

    def resume(self, job_id: str) -> bool:
        """Resume a paused training, or re-queue an interrupted job (and a failed or cancelled
        training, which goes on from its last checkpoint). Nothing else re-runs a job.

        A training paused while queued comes back as interrupted after a restart: resume it."""
        if self._is_download(job_id):
            return self.downloads.resume(job_id)
        if self._worker.resume(job_id):
            return True
        record = self.store.get_job(job_id)
        resumable = record.state == JobState.INTERRUPTED or (
            record.kind == JobKind.TRAIN and record.state in (JobState.FAILED, JobState.CANCELLED)
        )
        if not resumable or self._worker.get(job_id) is not None:
            return False
        self._check_open()
        record.position = self._worker.queue.next_position()
        record.state, record.finished, record.error = JobState.QUEUED, None, None
        self.store.update_job(
            job_id, state=JobState.QUEUED, finished=None, error=None, position=record.position
        )
        self._announce_queued(record)
        self._worker.enqueue(Job(record))
        return True

    def move(self, job_id: str, delta: int) -> bool:
        """Move a queued job ``delta`` places (negative: sooner) among jobs of its priority."""
        changed = self._worker.move(job_id, delta)
        for job in changed or ():
            self.store.update_job(job.id, position=job.record.position)
        return bool(changed)

    def eta(self, job_id: str) -> float | None:
        """Seconds a running job still needs, from its pace so far (``None``: unknown)."""
        if self._is_download(job_id):
            return self.downloads.eta(job_id)
        return self._worker.eta(job_id)

    def _is_download(self, job_id: str) -> bool:
        try:
            return self.store.get_job(job_id).kind == JobKind.DOWNLOAD
        except KeyError:
            return False

    # -- models on disk -------------------------------------------------------------------------
    def download(self, ref: str) -> str:
        """Download a hub model into the hub cache as a job (progress events, cancel, resume)."""
        self._check_open()
        if self.settings.offline:
            raise InvalidRequest(
                f"cannot download {ref!r}: the studio is set to offline (settings: offline)"
            )
        return self.downloads.start(ref, allow_pickle=ref in self.settings.allow_pickle)

    def delete_model(self, ref: str) -> int:
        """Delete a hub model from the hub cache (or forget a library model); bytes freed."""
        self._check_open()
        return self.downloads.delete(ref)

    # -- looking at jobs ------------------------------------------------------------------------
    def job(self, job_id: str) -> JobRecord:
        """The stored job (:class:`KeyError` if unknown)."""
        return self.store.get_job(job_id)

    def jobs(self, limit: int = 200) -> list[JobRecord]:
        """Jobs, newest first."""
        return self.store.list_jobs(limit=limit)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord:
        """Block until the job has ended; return its record (:class:`TimeoutError` on timeout).

        Do not call it from an event callback (that runs on the worker thread).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._finished_cv:
            while True:
                record = self.store.get_job(job_id)
                if record.state.finished:
                    return record
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"job {job_id} is still {record.state} after {timeout} s")
                # the poll also sees jobs ended by another process
                self._finished_cv.wait(0.25 if remaining is None else min(remaining, 0.25))

    # -- events -------------------------------------------------------------------------------
    def subscribe(self, callback: Callable[[JobEvent], None]) -> Callable[[], None]:
        """Call ``callback(JobEvent)`` for every event of every job; returns ``unsubscribe``.

        Callbacks run on the worker thread and must be quick (the GUI queues them to its
        thread). One that raises is logged and ignored.
        """
        with self._events_lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._events_lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)

        return unsubscribe

    def stream(self, job_id: str) -> Iterator[JobEvent]:
        """The events of one job, from its start (replayed) until it ends; blocking.

        Events this process saw before the call are replayed first (not previews and samples), so
        ``stream(submit(...))`` misses nothing.
        """
        self.store.get_job(job_id)  # KeyError now for an unknown job
        inbox: queue.Queue[JobEvent] = queue.Queue()
        with self._events_lock:
            past = list(self._history.get(job_id, ()))
            self._listeners.setdefault(job_id, []).append(inbox.put)
        return self._stream(job_id, past, inbox)

    def _stream(
        self, job_id: str, past: list[JobEvent], inbox: queue.Queue[JobEvent]
    ) -> Iterator[JobEvent]:
        try:
            for event in past:
                yield event
                if _ends(event):
                    return
            while True:
                try:
                    event = inbox.get(timeout=0.5)
                except queue.Empty:
                    record = self.store.get_job(job_id)
                    if record.state.finished and inbox.empty():  # ended unseen (another process)
                        yield JobEvent(job_id, JobStateChanged(record.state, record.error))
                        return
                    continue
                yield event
                if _ends(event):
                    return
        finally:
            with self._events_lock:
                listeners = self._listeners.get(job_id, [])
                if inbox.put in listeners:
                    listeners.remove(inbox.put)
                if not listeners:
                    self._listeners.pop(job_id, None)

    def _emit(self, event: JobEvent) -> None:
        """Deliver one event: replay history, per-job streams, then the subscribers."""
        with self._events_lock:
            self._remember(event)
            for put in self._listeners.get(event.job_id, ()):
                put(event)
            if _ends(event):  # every stream of this job ends here (even one never iterated)
                self._listeners.pop(event.job_id, None)
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("an event subscriber (%r) failed; it is skipped", callback)
        if _ends(event):
            with self._finished_cv:
                self._finished_cv.notify_all()

    def _remember(self, event: JobEvent) -> None:
        if isinstance(event.event, Preview | Sample):  # images: live only, never kept
            return
        history = self._history.get(event.job_id)
        if history is None:
            history = self._history[event.job_id] = deque(maxlen=_HISTORY_EVENTS)
        history.append(event)
        if _ends(event):
            self._finished_jobs[event.job_id] = None
            while len(self._finished_jobs) > _HISTORY_JOBS:
                old, _ = self._finished_jobs.popitem(last=False)
                self._history.pop(old, None)

    # -- artifacts ------------------------------------------------------------------------------
    def artifacts(self, **filters: Any) -> list[ArtifactRecord]:
        """Saved artifacts, newest first (filters: modality, query, model, generator, since,
        until, job_id, limit)."""
        return self.store.list_artifacts(**filters)

    def delete_artifact(self, artifact_id: str) -> Path | None:
        """Move an artifact's files to the system trash and forget it. Where there is no
        system trash, they go to ``home/trash`` instead: nothing is ever lost.

        Returns ``None`` when everything went to the system trash, else the studio's trash
        folder (so the caller can say where the files are).
        """
        record = self.store.get_artifact(artifact_id)
        fallback = None
        for path in artifact_files(record.path):
            if not self._to_trash(path, artifact_id):
                fallback = self.paths.home / "trash"
        self.store.delete_artifact(artifact_id)
        return fallback

    def _to_trash(self, path: Path, artifact_id: str) -> bool:
        """Trash one file; True if the system trash took it, False if the studio's did."""
        from send2trash import send2trash

        try:
            send2trash(path)
            return True
        except Exception as exc:  # no trash on this system or volume
            log.info("no system trash for %s (%s): using the studio's trash", path, exc)
        trash = self.paths.home / "trash"
        trash.mkdir(parents=True, exist_ok=True)
        target = trash / f"{artifact_id[:8]}-{path.name}"
        n = 1
        while target.exists():
            n += 1
            target = trash / f"{artifact_id[:8]}-{n}-{path.name}"
        shutil.move(str(path), str(target))
        return False

    def request_from_recipe(self, recipe: dict[str, Any]) -> GenerationRequest:
        """The request that made an artifact: generator, prompt, model, adapters, options, the
        run's seed (for one image of a batch, regenerate it with ``keep_indices``) and CPU thread
        count. Reads recipes of every schema (keys a recipe lacks read as ``None``)."""
        if isinstance(recipe, dict) and recipe.get("kind") == SAMPLE_KIND:
            training = recipe.get("training") or {}
            raise InvalidRequest(
                f"a training's sample is not regenerated: it was made with the adapter as it was "
                f"at step {training.get('step')} of training job {training.get('job_id')}; "
                "generate with the finished adapter instead"
            )
        if not isinstance(recipe, dict) or not recipe.get("generator"):
            raise InvalidRequest("not a studio recipe: it names no 'generator'")
        extra = recipe.get("extra") or {}
        seed = extra.get("request_seed", recipe.get("seed"))
        try:
            return GenerationRequest(
                generator=recipe["generator"],
                prompt=recipe.get("prompt") or "",
                model=(recipe.get("model") or {}).get("ref"),
                seed=seed,
                options=dict(recipe.get("options") or {}),
                loras=[
                    LoraSpec(ref=a["ref"], weight=a.get("weight", 1.0))
                    for a in recipe.get("adapters") or []
                ],
                parent=recipe.get("parent"),
                threads=recipe.get("threads"),
            )
        except (ValidationError, KeyError, TypeError) as exc:
            raise InvalidRequest(f"the recipe cannot be replayed: {exc}") from exc

    def regenerate(
        self,
        artifact: str | Path,
        *,
        out_dir: Path | None = None,
        allow_other_version: bool = False,
    ) -> str:
        """Re-run the recipe of an artifact (id or file) with the same seed, options, model,
        adapters and CPU thread count, by the generator of the plugin that made it; only that
        artifact's output index is kept. Returns the job id.

        :raises InvalidRequest: the recipe's plugin is not installed, or its generator id is now
            another plugin's (the message names the recorded plugin and version and what is
            installed); or the request is no longer valid.
        :raises PluginVersionMismatch: (an InvalidRequest) the plugin is installed in another
            version, unless ``allow_other_version``.
        """
        recipe = self._recipe_of(artifact)
        request = self.request_from_recipe(recipe)
        self._check_recipe_plugin(recipe, allow_other_version)
        index = recipe.get("index")
        request = request.model_copy(
            update={
                "keep_indices": None if index is None else [int(index)],
                "out_dir": out_dir,
            }
        )
        return self.submit(request)

    def _check_recipe_plugin(self, recipe: dict[str, Any], allow_other_version: bool) -> None:
        """Refuse to replay a recipe with another plugin's generator, or (unless allowed) with
        another version of its plugin. A recipe that names no plugin cannot be checked."""
        generator = recipe["generator"]
        recorded = recipe.get("plugin") or {}
        name, version = recorded.get("name"), recorded.get("version")
        if not name or name == "unknown":
            return
        made_by = f"{generator!r} was made by plugin {name!r} {version}"
        owner = self.plugins.owner.get(generator)
        if owner is None or owner.name != name:
            installed = self.plugins.plugins.get(name)
            if installed is None:
                here = f"plugin {name!r} is not installed"
            else:
                here = f"plugin {name!r} {installed.version} provides no {generator!r}"
            if owner is None:
                now = f"no installed plugin provides {generator!r}"
            else:
                now = f"{generator!r} is now provided by plugin {owner.name!r} {owner.version}"
            raise InvalidRequest(
                f"cannot regenerate: {made_by}; {here}, and {now}. Install {name!r} {version} "
                "to regenerate it"
            )
        if owner.version != version and not allow_other_version:
            raise PluginVersionMismatch(
                f"cannot regenerate exactly: {made_by}, but {owner.version} is installed; the "
                "result may differ. Regenerate anyway with --allow-other-version "
                "(allow_other_version=True), or install the recorded version",
                plugin=name,
                recorded=str(version),
                installed=owner.version,
            )

    def _recipe_of(self, artifact: str | Path) -> dict[str, Any]:
        if isinstance(artifact, str):
            try:
                return self.store.get_artifact(artifact).recipe
            except KeyError:
                pass
        path = Path(artifact).expanduser()
        record = self.store.artifact_by_path(path)
        if record is not None:
            return record.recipe
        if not path.exists():
            raise InvalidRequest(f"{str(artifact)!r} is neither an artifact id nor a file")
        return read_recipe(path)

    # -- models, adapters, settings ------------------------------------------------------------
    def models(self) -> list[ModelEntry]:
        """Models in the hub cache and the studio library, then catalog models not downloaded."""
        from studio.core.hub import list_hub_models

        try:
            hub = list_hub_models()
        except Exception as exc:  # an unreadable cache must not hide the rest
            log.warning("could not scan the Hugging Face cache: %s", one_line(exc))
            hub = []
        by_ref = {entry.ref: entry for entry in hub}
        missing = []
        for item in catalog():
            entry = by_ref.get(item.id)
            if entry is not None:
                entry.name = entry.name or item.name
                entry.licence = entry.licence or item.licence
                entry.modality = entry.modality or item.modality
            else:
                missing.append(
                    ModelEntry(
                        ref=item.id,
                        source="catalog",
                        modality=item.modality,
                        size_bytes=item.size_bytes,
                        downloaded=False,
                        licence=item.licence,
                        name=item.name,
                    )
                )
        return [*hub, *self.store.list_library_models(), *missing]

    def adapters(self, modality: str | None = None) -> list[AdapterRecord]:
        """Adapters in the library, newest first."""
        return self.store.list_adapters(modality)

    def save_settings(self, settings: Settings) -> None:
        """Store new settings; budgets apply now, device and plugins on the next start."""
        if not isinstance(settings, Settings):
            raise InvalidRequest(f"expected Settings, got {type(settings).__name__}")
        self.store.save_settings(settings)
        self.settings = settings
        self._apply_budgets()

    def set_preferred_generator(self, task: str, generator_id: str | None) -> Settings:
        """Save the generator the user prefers for ``task`` (``None`` clears the preference);
        the other settings stay as they are. Returns the saved settings.

        The preference is what :meth:`PluginHost.choose_generator` follows when a task is named
        and several generators serve it. Clearing is allowed for a task no installed generator
        serves any more (its plugin may be gone), as long as a preference for it is stored.

        :raises InvalidRequest: no installed generator serves ``task``; no generator has the id
            ``generator_id``; or it serves another task. The message says what is allowed.
        """
        preferred = dict(self.settings.preferred_generators)
        serving = [g.id for g in self.plugins.generators_for(task)]
        if not serving and not (generator_id is None and task in preferred):
            tasks = sorted({g.task for g in self.plugins.generators.values()})
            known = self.plugins.generators.get(task)
            hint = f" ({task!r} is a generator id; its task is {known.task!r})" if known else ""
            raise InvalidRequest(
                f"no installed generator serves the task {task!r}{hint}; tasks: "
                f"{', '.join(tasks) or '(none)'}"
            )
        if generator_id is None:
            preferred.pop(task, None)
        elif generator_id not in serving:
            other = self.plugins.generators.get(generator_id)
            problem = (
                f"no generator has the id {generator_id!r}"
                if other is None
                else f"generator {generator_id!r} serves {other.task!r}, not {task!r}"
            )
            raise InvalidRequest(f"{problem}; serving {task!r}: {', '.join(serving)}")
        else:
            preferred[task] = generator_id
        settings = self.settings.model_copy(update={"preferred_generators": preferred})
        self.save_settings(settings)
        return settings

    def _on_device(self, device: str) -> None:
        """On the worker thread, once the device is known: derive the cache budgets."""
        self._device_total = devices.device_memory_total(device)
        self._apply_budgets()

    def _apply_budgets(self) -> None:
        device_budget = _gb(self.settings.device_budget_gb)
        if device_budget is None and self._device_total:
            device_budget = int(self._device_total * DEVICE_BUDGET_SHARE)
        host_budget = _gb(self.settings.host_budget_gb) or devices.host_memory_total() // 2
        self.cache.set_budgets(device_budget, host_budget)

    # -- lookups for the command line and the window (they never reach into the store) -------
    def artifact(self, artifact_id: str) -> ArtifactRecord:
        """The artifact ``artifact_id``; :class:`KeyError` if there is none."""
        return self.store.get_artifact(artifact_id)

    def artifact_at(self, path: Path | str) -> ArtifactRecord | None:
        """The artifact whose main file is ``path`` (made absolute), or ``None``."""
        return self.store.artifact_by_path(Path(path).expanduser().resolve())

    def job_events(self, job_id: str) -> list[dict[str, Any]]:
        """A job's stored events, oldest first: ``{id, job_id, time, type, payload}`` dicts."""
        return self.store.job_events(job_id)

    @staticmethod
    def saved_settings(home: Path | str | None = None) -> Settings:
        """The settings stored in a studio home, read without opening it (no lock, no plugins,
        nothing created); the defaults when the home has no database yet."""
        paths = StudioPaths(Path(home).expanduser() if home is not None else default_home())
        if not paths.database.is_file():
            return Settings()
        store = Store(paths.database)
        try:
            return store.load_settings()
        finally:
            store.close()

    # -- datasets --------------------------------------------------------------------------------
    def datasets(self) -> list[DatasetRecord]:
        """The dataset library (every folder a training was submitted with, one record per
        manifest of its files), most recently used first."""
        return self.store.list_datasets()

    def find_dataset(self, ref: str) -> DatasetRecord | None:
        """The dataset with this id, else the most recently used one with this name."""
        return self.store.find_dataset(ref)

    def record_dataset(
        self, folder: Path | str, report: IngestReport, *, name: str | None = None
    ) -> DatasetRecord:
        """Keep ``folder`` in the dataset library with the manifest of ``report`` (a trainer's
        ingest report of it), used now; :meth:`submit_training` calls it. ``name`` defaults to
        the name it had (a folder recorded before), else the folder's name."""
        if name is not None and not name.strip():
            raise InvalidRequest("a dataset's name cannot be empty")
        if report.root is None:
            report.root = Path(os.path.abspath(Path(folder).expanduser()))
        return self.store.record_dataset(Path(folder).expanduser(), report.manifest, name=name)

    def dataset_changes(
        self, dataset: str, trainer_id: str, options: dict[str, Any] | None = None
    ) -> ManifestChanges:
        """What changed in a recorded dataset's folder (by id or name) since it was recorded,
        as trainer ``trainer_id`` reads the folder now: files added, removed, modified. Falsy
        when it is the same material, ready to train on again.

        :raises InvalidRequest: no such dataset, or its folder is gone.
        """
        record = self.store.find_dataset(dataset)
        if record is None:
            names = sorted({r.name for r in self.store.list_datasets()})
            raise InvalidRequest(
                f"no dataset {dataset!r} in the library (datasets: {', '.join(names) or 'none'})"
            )
        report = self.ingest(trainer_id, record.folder, options or {})
        return compare_manifests(record.manifest, report.manifest)

    def _dataset_changed(
        self, folder: Path, submitted: str, now: DatasetManifest, job_id: str | None = None
    ) -> str:
        """Why a training cannot go on with ``folder`` as it is now (naming the checkpoint it
        would resume from, when job ``job_id`` has one)."""
        from studio.core.checkpoints import CheckpointStore

        before = self.store.dataset_version(folder, submitted)
        what = (
            compare_manifests(before.manifest, now).describe()
            if before is not None
            else f"manifest {submitted[:12]} then, {now.sha256[:12]} now"
        )
        start = ""
        if job_id is not None:
            checkpoints = CheckpointStore(self.paths.checkpoints / job_id)
            latest = checkpoints.latest()
            if latest is not None:
                with contextlib.suppress(OSError, ValueError, KeyError):
                    step = checkpoints.step_of(latest)
                    start = f"cannot resume from the checkpoint of step {step}: "
        return (
            f"{start}the dataset {folder} changed since this training was submitted ({what}): "
            "put the files back as they were to resume it, or start a new training on them as "
            "they are"
        )

    # -- trainings, for the command line and the window ------------------------------------------
    def check_training(
        self, request: TrainingRequest, *, job_id: str | None = None
    ) -> IngestReport:
        """Validate a training request as :meth:`submit_training` does, without queueing it:
        the trainer, the dataset folder, the options, the base model, then the trainer's
        ``ingest``. Returns the ingest report, also when it found no usable file (``report.ok``
        is then false, and :meth:`submit_training` would refuse the request).

        ``job_id``: the stored training ``request`` comes from, about to be resumed: a dataset
        whose files changed since it was submitted is refused, as the resume would be.

        :raises InvalidRequest: naming the problem and what is allowed.
        """
        cls = self.plugins.find_trainer(request.trainer)
        dataset = Path(request.dataset).expanduser()
        if not dataset.is_dir():
            raise InvalidRequest(
                f"dataset {dataset} is not a folder: give the folder holding your files"
            )
        dataset = dataset.resolve()
        options = validate_options(cls.Options, request.options)
        self._base_model_for(cls, request.base_model)
        report = self._ingest(cls, dataset, options)
        submitted = None if job_id is None else self.job(job_id).request.get("dataset_manifest")
        if isinstance(submitted, str) and report.ok:
            manifest = report.manifest
            if manifest.sha256 != submitted:
                raise InvalidRequest(self._dataset_changed(dataset, submitted, manifest, job_id))
        return report

    def checkpoint_step(self, job_id: str) -> int | None:
        """The step of a training's newest complete checkpoint (where a resume goes on from),
        or ``None`` when it has none."""
        from studio.core.checkpoints import CheckpointStore

        store = CheckpointStore(self.paths.checkpoints / job_id)
        latest = store.latest()
        if latest is None:
            return None
        try:
            return store.step_of(latest)
        except (OSError, ValueError, KeyError):
            return None

    def training_recipe(self, adapter: AdapterRecord) -> dict[str, Any] | None:
        """The training recipe saved with an adapter, or ``None`` when it has none that reads.

        A trainer names its recipe file in the adapter's ``extra["recipe"]`` (a file in the
        adapter's folder, or next to its file); ``training_recipe.json`` is looked for otherwise.
        """
        import json

        path = Path(adapter.path)
        folder = path if path.is_dir() else path.parent
        name = adapter.extra.get("recipe")
        name = name if isinstance(name, str) and name else "training_recipe.json"
        candidate = folder / name
        try:
            candidate.resolve().relative_to(folder.resolve())  # the recipe stays in the folder
            recipe = json.loads(candidate.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return recipe if isinstance(recipe, dict) else None


class HomeLock:
    """An advisory, process-wide lock on a studio home (released when the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def acquire(self) -> bool:
        """Take the lock if it is free; ``False`` when another process (or studio) holds it."""
        fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        try:
            if os.name == "nt":  # pragma: no cover - Windows
                import msvcrt

                msvcrt.locking(fh.fileno(), msvcrt.LK_NBLCK, 1)  # type: ignore[attr-defined]
            else:
                import fcntl

                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        fh, self._fh = self._fh, None
        if fh is not None:
            fh.close()  # closing the file releases flock / msvcrt locks


def _mark_interrupted(store: Store) -> None:
    interrupted = store.mark_interrupted()
    if interrupted:
        log.warning(
            "%d job(s) were running when the studio last stopped; they are marked "
            "interrupted (resume them explicitly)",
            len(interrupted),
        )


def _ends(event: JobEvent) -> bool:
    return isinstance(event.event, JobStateChanged) and event.event.state.finished


def _gb(value: float | None) -> int | None:
    """A budget setting in GB to bytes: decimal (10**9), as :func:`~studio.core.units.human_size`
    shows sizes, so that a budget of 8 is shown as "8.0 GB"."""
    return None if value is None else int(value * 10**9)


def _chosen_model(
    ref: str | None,
    uses_model: bool,
    default: str | None,
    *,
    refused: str,
    missing: str,
    what: str,
) -> str | None:
    """The one rule for a generator's model and a trainer's base model: none when the component
    uses no model (a reference given is refused), else the one asked for or the default. A local
    path must exist: checked before the job is queued; the plugin resolves the reference later."""
    if not uses_model:
        if ref:
            raise InvalidRequest(refused)
        return None
    model = ref or default
    if not model:
        raise InvalidRequest(missing)
    path = Path(model).expanduser()
    if is_local_path(model) and not path.exists():
        raise InvalidRequest(
            f"{what} {model!r}: no such file or folder ({path.absolute()}); a local model is a "
            "folder in diffusers/transformers layout or a single .safetensors file"
        )
    return model
