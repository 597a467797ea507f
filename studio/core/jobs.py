"""Jobs and their queue: what the device worker runs, in which order, and its coalesced history.

The :class:`JobQueue` orders jobs by :class:`~studio.core.records.Priority` (interactive, then
batch, then training) and, within a priority, by position (first in, first out unless the user
moved a job). A :class:`Job` is a stored :class:`~studio.core.records.JobRecord` plus the flags the
studio and the worker share (cancel, pause, interrupt) and its :class:`JobHistory`, the events it
has yet to write to the database.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from studio.core.events import JobState, Partial, Progress
from studio.core.generator import GenerationRun, Generator
from studio.core.records import JobRecord, Priority
from studio.core.training import Trainer, TrainingRun

#: How often, at most, streamed text and progress are written to the job history (seconds).
FLUSH_INTERVAL = 0.25


@dataclass
class Prepared:
    """A job ready to run: the plugin class and its validated request."""

    component: type[Generator] | type[Trainer]
    request: GenerationRun | TrainingRun
    #: generations: the folder artifacts are written to.
    out_dir: Path | None = None
    #: generations: only outputs with these indices are kept (``None``: all).
    keep_indices: frozenset[int] | None = None
    #: generations: torch's CPU threads for this job (``None``: the studio's setting).
    threads: int | None = None


class JobHistory:
    """What a job has yet to write to its stored history, coalesced.

    Storing each streamed chunk and progress tick in its own transaction would cost more than a
    fast model's token; instead consecutive text chunks are joined, only the last progress is
    kept, and step/total are written with them, at most every :data:`FLUSH_INTERVAL` seconds
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
        return self._since is not None and time.monotonic() - self._since >= FLUSH_INTERVAL

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
    history: JobHistory = field(default_factory=JobHistory)

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
