"""The device worker and its queue: order, cancel, failures, training preemption and pause.

Everything runs on the fake plugins of the testing kit (no model, no torch work), and every wait
has a timeout so that a broken worker fails the test instead of hanging the suite.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import pytest

from studio import (
    AdapterOutput,
    GenerationRequest,
    GenerationRun,
    Generator,
    IngestReport,
    PluginEvent,
    Result,
    RunContext,
    TrainContext,
    Trainer,
    TrainingRequest,
    TrainingRun,
    hookimpl,
)
from studio.core.cache import CacheKey
from studio.core.errors import InvalidRequest, one_line
from studio.core.events import (
    ArtifactSaved,
    JobState,
    JobStateChanged,
    Partial,
    Progress,
    Sample,
    TrainStep,
    stored_payload,
)
from studio.core.jobs import Job, JobQueue
from studio.core.records import JobKind, JobRecord, Priority
from studio.core.studio import Studio
from studio.testing.fake_plugin import open_fake_studio
from studio.testing.fakes import EventRecorder, wait_until

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0


# --- helpers -----------------------------------------------------------------------------------


@pytest.fixture
def held(studio_home: Path) -> Iterator[Studio]:
    """A studio whose worker has not started: jobs pile up, then ``start()`` runs them."""
    studio = open_fake_studio(studio_home, start=False)
    yield studio
    studio.close()


@pytest.fixture
def recorder(app: Studio) -> EventRecorder:
    rec = EventRecorder()
    app.subscribe(rec)
    return rec


def text(prompt: str = "hello", **options: object) -> GenerationRequest:
    return GenerationRequest(generator="fake-text", prompt=prompt, seed=1, options=options)


def slow_image(steps: int = 100, delay: float = 0.05) -> GenerationRequest:
    return GenerationRequest(
        generator="fake-image", prompt="slow", seed=3, options={"steps": steps, "delay": delay}
    )


def training(dataset: Path, **options: object) -> TrainingRequest:
    return TrainingRequest(trainer="fake-lora", dataset=dataset, name="style", options=options)


def train_steps(rec: EventRecorder, job_id: str) -> list[int]:
    return [e.step for e in rec.of(job_id) if isinstance(e, TrainStep)]


def progress_count(rec: EventRecorder, job_id: str) -> int:
    return sum(isinstance(e, Progress) for e in rec.of(job_id))


def started_order(rec: EventRecorder, ids: list[str]) -> list[str]:
    """Job ids in the order they first started running."""
    order: list[str] = []
    for job_id, label in rec.timeline():
        if label == "running" and job_id in ids and job_id not in order:
            order.append(job_id)
    return order


# --- the queue on its own ----------------------------------------------------------------------


def make_job(job_id: str, priority: Priority, queue: JobQueue) -> Job:
    record = JobRecord(
        id=job_id,
        kind=JobKind.GENERATE,
        state=JobState.QUEUED,
        priority=priority,
        component="fake-text",
        request={},
        created=time.time(),
        position=queue.next_position(),
    )
    return Job(record)


def test_queue_orders_by_priority_then_first_in_first_out() -> None:
    queue = JobQueue()
    for job_id, priority in [
        ("train", Priority.TRAINING),
        ("batch1", Priority.BATCH),
        ("ui1", Priority.INTERACTIVE),
        ("batch2", Priority.BATCH),
        ("ui2", Priority.INTERACTIVE),
    ]:
        queue.push(make_job(job_id, priority, queue))
    assert [j.id for j in queue.snapshot()] == ["ui1", "ui2", "batch1", "batch2", "train"]
    taken = [queue.pop_next() for _ in range(5)]
    assert [j.id for j in taken if j] == ["ui1", "ui2", "batch1", "batch2", "train"]
    assert queue.pop_next() is None


def test_queue_pop_below_only_takes_higher_priority_jobs() -> None:
    queue = JobQueue()
    queue.push(make_job("train2", Priority.TRAINING, queue))
    assert queue.pop_next(below=Priority.TRAINING) is None
    queue.push(make_job("batch", Priority.BATCH, queue))
    job = queue.pop_next(below=Priority.TRAINING)
    assert job is not None and job.id == "batch"
    assert queue.pop_next(below=Priority.BATCH) is None
    assert len(queue) == 1


def test_queue_move_reorders_within_a_priority_and_clamps() -> None:
    queue = JobQueue()
    for job_id in ("a", "b", "c"):
        queue.push(make_job(job_id, Priority.INTERACTIVE, queue))
    queue.push(make_job("batch", Priority.BATCH, queue))
    changed = queue.move("c", -2)
    assert changed is not None and {j.id for j in changed} == {"a", "b", "c"}
    assert [j.id for j in queue.snapshot()] == ["c", "a", "b", "batch"]
    assert queue.move("c", -1) == []  # already first
    assert queue.move("batch", -1) == []  # alone in its priority: stays behind interactive jobs
    moved = queue.move("a", +5)  # clamped to the end of its priority
    assert moved is not None and [j.id for j in queue.snapshot()] == ["c", "b", "a", "batch"]
    assert queue.move("nope", 1) is None
    positions = [j.record.position for j in queue.snapshot()[:3]]
    assert positions == sorted(positions) and len(set(positions)) == 3


def test_queue_skips_held_jobs_until_released() -> None:
    queue = JobQueue()
    first = make_job("first", Priority.INTERACTIVE, queue)
    queue.push(first)
    queue.push(make_job("second", Priority.BATCH, queue))
    assert queue.hold("first") and not queue.hold("nope")
    taken = queue.pop_next()
    assert taken is not None and taken.id == "second"
    assert queue.wait_next(timeout=0.05) is None  # only a held job left
    assert queue.release("first") and not queue.release("first")
    again = queue.wait_next(timeout=1)
    assert again is first


def test_queue_remove_wait_and_close() -> None:
    queue = JobQueue()
    queue.push(make_job("a", Priority.INTERACTIVE, queue))
    assert "a" in queue
    removed = queue.remove("a")
    assert removed is not None and removed.id == "a"
    assert queue.remove("a") is None
    assert queue.wait_next(timeout=0.05) is None  # empty: times out
    queue.push(make_job("b", Priority.INTERACTIVE, queue))
    queue.close()
    assert queue.wait_next(timeout=1) is None and queue.pop_next() is None  # closed gives none


def test_stored_payloads_keep_previews_small_and_partials_whole() -> None:
    from studio.core.events import Preview

    assert stored_payload(Preview(data=object(), step=3, index=1)) == {"step": 3, "index": 1}
    assert stored_payload(Partial("some text")) == {"text": "some text", "index": 0}
    assert stored_payload(object()) is None


def test_one_line_errors() -> None:
    assert one_line(ValueError("bad\nsecond line")) == "ValueError: bad"
    assert one_line(MemoryError()) == "MemoryError"


# --- order ---------------------------------------------------------------------------------------


def test_jobs_run_by_priority_and_in_submission_order(held: Studio, dataset: Path) -> None:
    rec = EventRecorder()
    held.subscribe(rec)
    batch = held.submit(text("batch"), priority=Priority.BATCH)
    train = held.submit_training(training(dataset, steps=3))
    first = held.submit(text("first"))
    second = held.submit(text("second"))
    held.start()
    for job_id in (batch, train, first, second):
        assert held.wait(job_id, WAIT).state == JobState.SUCCEEDED
    assert started_order(rec, [batch, train, first, second]) == [first, second, batch, train]


def test_move_changes_the_run_order_and_is_stored(held: Studio) -> None:
    rec = EventRecorder()
    held.subscribe(rec)
    a, b, c = (held.submit(text(p)) for p in "abc")
    assert held.move(c, -2)
    assert not held.move(c, -1)  # already first
    assert not held.move("no-such-job", 1)
    assert held.job(c).position < held.job(a).position < held.job(b).position
    held.start()
    for job_id in (a, b, c):
        assert held.wait(job_id, WAIT).state == JobState.SUCCEEDED
    assert started_order(rec, [a, b, c]) == [c, a, b]
    assert not held.move(a, 1)  # finished jobs do not move


# --- cancel --------------------------------------------------------------------------------------


def test_cancel_a_queued_job_removes_it(held: Studio) -> None:
    rec = EventRecorder()
    held.subscribe(rec)
    doomed = held.submit(text("doomed"))
    kept = held.submit(text("kept"))
    assert held.cancel(doomed)
    assert held.job(doomed).state == JobState.CANCELLED
    held.start()
    assert held.wait(kept, WAIT).state == JobState.SUCCEEDED
    assert rec.states(doomed) == [JobState.QUEUED, JobState.CANCELLED]  # never ran
    assert held.job(doomed).artifact_ids == []
    assert not held.cancel(doomed)  # already over


def test_cancel_a_running_job_stops_it_within_one_step(
    app: Studio, recorder: EventRecorder
) -> None:
    job = app.submit(slow_image(steps=100, delay=0.05))
    assert recorder.wait_for(lambda: progress_count(recorder, job) >= 2, WAIT)
    at_cancel = progress_count(recorder, job)
    assert app.cancel(job)
    record = app.wait(job, WAIT)
    assert record.state == JobState.CANCELLED
    # within one step: counted in steps, not seconds (a loaded machine is slow, not wrong)
    assert progress_count(recorder, job) - at_cancel <= 1
    assert record.artifact_ids == []
    # the worker goes on
    assert app.wait(app.submit(text()), WAIT).state == JobState.SUCCEEDED


class _Spinner(Generator):
    """Yields progress forever and never checks the cancel flag; notes when it is closed."""

    id = "spinner"
    name = "Spinner"
    modality = "text"
    task = "spin"
    default_model = "fake/tiny-model"
    prompt_required = False
    closed = threading.Event()

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        try:
            for step in range(1, 5000):  # bounded: a broken worker does not spin forever
                time.sleep(0.002)
                yield Progress(step, 0)
        finally:
            type(self).closed.set()


class _SpinningTrainer(Trainer):
    """Yields steps forever without a step boundary (so without any cancel check)."""

    id = "spinning-trainer"
    name = "Spinning trainer"
    modality = "image"
    default_model = "fake/tiny-model"
    closed = threading.Event()

    def ingest(self, dataset: Path, options: object) -> IngestReport:
        return IngestReport(usable=sorted(dataset.iterdir()))

    def run(self, request: TrainingRun, ctx: TrainContext) -> Iterator[PluginEvent]:
        try:
            for step in range(1, 5000):
                time.sleep(0.002)
                yield TrainStep(step, 5000, loss=1.0)
        finally:
            type(self).closed.set()


@hookimpl
def _register_spinner(register: Callable[[type], None]) -> None:
    register(_Spinner)


@hookimpl
def _register_spinning_trainer(register: Callable[[type], None]) -> None:
    register(_SpinningTrainer)


def _spinners() -> ModuleType:
    plugin = ModuleType("spinners")
    plugin.studio_api = ">=1.0,<2"  # type: ignore[attr-defined]
    plugin.register_generators = _register_spinner  # type: ignore[attr-defined]
    plugin.register_trainers = _register_spinning_trainer  # type: ignore[attr-defined]
    return plugin


def test_a_plugin_that_never_checks_cancel_stops_at_its_next_yield(
    app: Studio, recorder: EventRecorder, dataset: Path
) -> None:
    _Spinner.closed.clear()
    _SpinningTrainer.closed.clear()
    assert app.plugins.register(_spinners()).error is None
    generation = app.submit(GenerationRequest(generator="spinner"))
    assert recorder.wait_for(lambda: progress_count(recorder, generation) >= 2, WAIT)
    assert app.cancel(generation)
    assert app.wait(generation, WAIT).state == JobState.CANCELLED
    assert _Spinner.closed.wait(WAIT)  # its generator was closed: its finally ran
    training = app.submit_training(
        TrainingRequest(trainer="spinning-trainer", dataset=dataset, name="spin")
    )
    assert recorder.wait_for(lambda: len(train_steps(recorder, training)) >= 2, WAIT)
    assert app.cancel(training)
    assert app.wait(training, WAIT).state == JobState.CANCELLED
    assert _SpinningTrainer.closed.wait(WAIT)
    assert app.adapters() == []
    # nothing yielded after the cancel reached the subscribers
    last = recorder.of(generation)[-1]
    assert isinstance(last, JobStateChanged) and last.state == JobState.CANCELLED


# --- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("error", "name"), [("value", "ValueError"), ("memory", "MemoryError")])
def test_a_failing_job_fails_alone_and_the_next_one_runs(
    app: Studio, error: str, name: str
) -> None:
    bad = app.submit(
        GenerationRequest(generator="fake-fail", options={"error": error, "after_steps": 2})
    )
    good = app.submit(text())
    failed = app.wait(bad, WAIT)
    assert failed.state == JobState.FAILED
    assert failed.error is not None and name in failed.error and "\n" not in failed.error
    assert failed.step == 2  # progress before the failure was recorded
    errors = [e for e in app.store.job_events(bad) if e["type"] == "error"]
    assert len(errors) == 1 and "fakes.py" in errors[0]["payload"]["traceback"]
    assert app.wait(good, WAIT).state == JobState.SUCCEEDED


def test_out_of_memory_frees_the_cache_and_the_worker_goes_on(
    app: Studio, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert app.wait(app.submit(text()), WAIT).state == JobState.SUCCEEDED  # device is known
    key = CacheKey(
        ref="fake/weights", revision=None, kind="test", dtype="float32", device=app.device
    )
    with app.cache.acquire(key, lambda: bytearray(1000), size_bytes=1000):
        pass
    assert key in app.cache
    freed: list[str | None] = []
    original = app.cache.free

    def spy(device: str | None = None) -> int:
        freed.append(device)
        return original(device)

    monkeypatch.setattr(app.cache, "free", spy)
    value_error = app.submit(GenerationRequest(generator="fake-fail", options={"error": "value"}))
    oom = app.submit(GenerationRequest(generator="fake-fail", options={"error": "oom"}))
    after = app.submit(text())
    assert app.wait(value_error, WAIT).state == JobState.FAILED
    record = app.wait(oom, WAIT)
    assert record.state == JobState.FAILED
    assert record.error is not None and record.error.startswith("out of memory on")
    assert app.wait(after, WAIT).state == JobState.SUCCEEDED
    assert freed == [app.device]  # only after the out-of-memory error
    assert key not in app.cache


def test_a_failing_subscriber_is_logged_and_the_worker_goes_on(
    app: Studio, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: object) -> None:
        raise RuntimeError("subscriber bug")

    app.subscribe(broken)
    rec = EventRecorder()
    unsubscribe = app.subscribe(rec)
    with caplog.at_level(logging.ERROR, logger="studio"):
        job = app.submit(text())
        assert app.wait(job, WAIT).state == JobState.SUCCEEDED
    assert rec.states(job) == [JobState.QUEUED, JobState.RUNNING, JobState.SUCCEEDED]
    assert any("subscriber" in r.getMessage() for r in caplog.records)
    unsubscribe()
    second = app.submit(text())
    assert app.wait(second, WAIT).state == JobState.SUCCEEDED
    assert rec.of(second) == []


def test_events_are_stored_with_previews_reduced_to_their_step(app: Studio) -> None:
    image = app.submit(GenerationRequest(generator="fake-image", prompt="x", options={"steps": 2}))
    words = app.submit(text(max_tokens=40))
    app.wait(image, WAIT)
    app.wait(words, WAIT)
    previews = [e["payload"] for e in app.store.job_events(image) if e["type"] == "preview"]
    assert previews == [{"step": 1, "index": 0}, {"step": 2, "index": 0}]
    partials = [e["payload"] for e in app.store.job_events(words) if e["type"] == "partial"]
    artifact = app.store.get_artifact(app.job(words).artifact_ids[0])
    assert "".join(p["text"] for p in partials) == artifact.path.read_text()
    assert 1 <= len(partials) < 40  # streamed chunks are stored joined
    types = [e["type"] for e in app.store.job_events(words)]
    assert types[0] == "jobstatechanged" and types[-1] == "jobstatechanged"
    assert types.index("partial") < types.index("result") < types.index("artifactsaved")
    assert app.job(words).step == 40 and app.job(words).total == 40


# --- training: preemption, pause, cancel ---------------------------------------------------------


@pytest.mark.parametrize("priority", [Priority.INTERACTIVE, Priority.BATCH])
def test_training_lends_the_device_to_a_generation_at_a_step_boundary(
    app: Studio, recorder: EventRecorder, dataset: Path, priority: Priority
) -> None:
    train = app.submit_training(training(dataset, steps=30, delay=0.02, checkpoint_every=10))
    assert recorder.wait_for(lambda: len(train_steps(recorder, train)) >= 3, WAIT)
    gen = app.submit(text(), priority=priority)
    assert app.wait(gen, WAIT).state == JobState.SUCCEEDED
    assert app.wait(train, WAIT).state == JobState.SUCCEEDED

    timeline = recorder.timeline()
    paused = timeline.index((train, "paused"))
    gen_running = timeline.index((gen, "running"))
    gen_done = timeline.index((gen, "succeeded"))
    resumed = timeline.index((train, "running"), gen_done)
    assert paused < gen_running < gen_done < resumed
    assert (train, "trainstep") not in timeline[paused:resumed]  # no step while lent out
    assert train_steps(recorder, train) == list(range(1, 31))  # nothing lost, nothing repeated
    assert recorder.states(train) == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.PAUSED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]
    assert len(app.adapters()) == 1


def test_training_does_not_yield_to_another_training(
    app: Studio, recorder: EventRecorder, dataset: Path
) -> None:
    first = app.submit_training(training(dataset, steps=10, delay=0.01))
    assert recorder.wait_for(lambda: len(train_steps(recorder, first)) >= 1, WAIT)
    second = app.submit_training(training(dataset, steps=2))
    assert app.wait(first, WAIT).state == JobState.SUCCEEDED
    assert app.wait(second, WAIT).state == JobState.SUCCEEDED
    assert JobState.PAUSED not in recorder.states(first)
    timeline = recorder.timeline()
    assert timeline.index((first, "succeeded")) < timeline.index((second, "running"))


def test_user_pause_holds_the_training_while_other_jobs_run(
    app: Studio, recorder: EventRecorder, dataset: Path
) -> None:
    train = app.submit_training(training(dataset, steps=100, delay=0.01, checkpoint_every=50))
    assert recorder.wait_for(lambda: len(train_steps(recorder, train)) >= 2, WAIT)
    assert not app.pause("no-such-job")
    assert app.pause(train)
    assert wait_until(lambda: app.job(train).state == JobState.PAUSED, WAIT)
    held_at = len(train_steps(recorder, train))
    gen = app.submit(text())
    assert app.wait(gen, WAIT).state == JobState.SUCCEEDED  # served while the training is held
    time.sleep(0.2)
    assert len(train_steps(recorder, train)) == held_at
    assert app.job(train).state == JobState.PAUSED
    assert app.resume(train)
    assert not app.resume(train)  # not paused any more
    assert app.wait(train, WAIT).state == JobState.SUCCEEDED
    assert train_steps(recorder, train) == list(range(1, 101))
    assert recorder.states(train) == [
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.PAUSED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]


def test_a_queued_training_paused_waits_until_resumed(held: Studio, dataset: Path) -> None:
    rec = EventRecorder()
    held.subscribe(rec)
    gen = held.submit(text())
    train = held.submit_training(training(dataset, steps=2))
    later = held.submit_training(training(dataset, steps=2))
    assert not held.pause(gen)  # generations do not pause
    assert held.pause(train)
    assert not held.pause(train)  # already paused
    assert held.job(train).state == JobState.PAUSED
    held.start()
    assert held.wait(gen, WAIT).state == JobState.SUCCEEDED
    assert held.wait(later, WAIT).state == JobState.SUCCEEDED  # the held one does not block
    assert held.job(train).state == JobState.PAUSED
    assert held.resume(train)
    assert held.wait(train, WAIT).state == JobState.SUCCEEDED
    assert rec.states(train) == [
        JobState.QUEUED,
        JobState.PAUSED,
        JobState.QUEUED,
        JobState.RUNNING,
        JobState.SUCCEEDED,
    ]


def test_cancel_a_paused_training(app: Studio, recorder: EventRecorder, dataset: Path) -> None:
    train = app.submit_training(training(dataset, steps=500, delay=0.01))
    assert recorder.wait_for(lambda: len(train_steps(recorder, train)) >= 1, WAIT)
    assert app.pause(train)
    assert wait_until(lambda: app.job(train).state == JobState.PAUSED, WAIT)
    assert app.cancel(train)
    assert app.wait(train, WAIT).state == JobState.CANCELLED
    assert app.adapters() == []


def test_eta_of_a_running_training(app: Studio, recorder: EventRecorder, dataset: Path) -> None:
    train = app.submit_training(training(dataset, steps=200, delay=0.01))
    assert recorder.wait_for(lambda: len(train_steps(recorder, train)) >= 5, WAIT)
    eta = app.eta(train)
    assert eta is not None and 0 < eta < 60
    app.cancel(train)
    app.wait(train, WAIT)
    assert app.eta(train) is None


# --- a pause checkpoints first; samples land in the library -------------------------------------


class _HoldRecorder(Trainer):
    """Ten steps; its ``before_hold`` records the step it would checkpoint (and whether the
    pause was visible to it as ``ctx.pause_requested``)."""

    id = "hold-recorder"
    name = "Hold recorder"
    modality = "image"
    default_model = "fake/tiny-model"
    holds: ClassVar[list[tuple[int, bool]]] = []

    def ingest(self, dataset: Path, options: object) -> IngestReport:
        return IngestReport(usable=sorted(dataset.iterdir()))

    def run(self, request: TrainingRun, ctx: TrainContext) -> Iterator[PluginEvent]:
        step = 0

        def before_hold() -> None:
            type(self).holds.append((step, ctx.pause_requested))

        while step < 10:
            ctx.step_boundary(before_hold=before_hold)
            step += 1
            yield TrainStep(step, 10, loss=1.0 / step)
        yield Result(AdapterOutput(path=request.dataset, name=request.name, modality="image"))


@hookimpl
def _register_hold_recorder(register: Callable[[type], None]) -> None:
    register(_HoldRecorder)


def test_before_hold_runs_once_before_a_pause_holds_never_for_a_lent_device(
    app: Studio, recorder: EventRecorder, dataset: Path
) -> None:
    plugin = ModuleType("hold_recorder")
    plugin.studio_api = ">=1.0,<2"  # type: ignore[attr-defined]
    plugin.register_trainers = _register_hold_recorder  # type: ignore[attr-defined]
    assert app.plugins.register(plugin).error is None
    _HoldRecorder.holds.clear()
    generations: list[str] = []
    request = TrainingRequest(trainer=_HoldRecorder.id, dataset=dataset, name="holds")

    def act(event: Any) -> None:  # on the worker thread, as the events come
        inner = event.event
        if isinstance(inner, TrainStep) and inner.step == 2:
            app.pause(event.job_id)  # held at the next boundary
        elif isinstance(inner, TrainStep) and inner.step in (4, 6):
            generations.append(app.submit(text()))  # lent the device at the next boundary
        elif (
            isinstance(inner, JobStateChanged)
            and inner.state == JobState.RUNNING
            and event.job_id in generations[1:]
        ):
            app.pause(train)  # while the second generation runs on the lent device

    stop = app.subscribe(act)
    train = app.submit_training(request)
    try:
        assert wait_until(lambda: len(_HoldRecorder.holds) == 1, WAIT)
        assert wait_until(lambda: app.job(train).state == JobState.PAUSED, WAIT)
        assert app.resume(train)
        assert wait_until(lambda: len(_HoldRecorder.holds) == 2, WAIT)
        assert app.resume(train)
        assert app.wait(train, WAIT).state == JobState.SUCCEEDED
    finally:
        stop()
    # the user's pauses after steps 2 and 6 (the second while a generation ran), nothing when
    # the device was only lent (after step 4)
    assert _HoldRecorder.holds == [(2, True), (6, True)]
    assert train_steps(recorder, train) == list(range(1, 11))
    assert all(app.job(g).state == JobState.SUCCEEDED for g in generations)


def test_samples_of_a_training_are_saved_in_the_library(
    app: Studio, recorder: EventRecorder, dataset: Path
) -> None:
    train = app.submit_training(training(dataset, steps=4, sample_every=2))
    assert app.wait(train, WAIT).state == JobState.SUCCEEDED
    events = recorder.of(train)
    saved = [e for e in events if isinstance(e, ArtifactSaved)]
    samples = [i for i, e in enumerate(events) if isinstance(e, Sample)]
    assert len(saved) == len(samples) == 2
    assert all(isinstance(events[i + 1], ArtifactSaved) for i in samples)  # each as it comes
    records = sorted(app.artifacts(job_id=train), key=lambda r: r.recipe["training"]["step"])
    assert {r.id for r in records} == {e.artifact_id for e in saved}
    for record, step in zip(records, (2, 4), strict=True):
        assert record.is_sample and record.path.is_file() and record.modality == "image"
        assert record.path.is_relative_to(app.paths.outputs / "samples")
        recipe = record.recipe
        assert recipe["kind"] == "sample" and recipe["seed"] == step
        assert recipe["training"] == {
            "job_id": train,
            "trainer": "fake-lora",
            "name": "style",
            "step": step,
            "dataset": str(dataset),
            "adapter": {"name": "style", "step": step, "in_progress": True},
        }
        assert recipe["adapters"][0]["in_progress"] is True
        assert recipe["generator"] is None and record.generator == "fake-lora"  # none named
        assert recipe["model"]["ref"] == "fake/tiny-model"
    assert set(app.job(train).artifact_ids) == {r.id for r in records}
    # the gallery's queries find them, and can tell them from generations
    generated = app.wait(app.submit(text()), WAIT).artifact_ids
    assert [r.is_sample for r in app.artifacts()] == [False, True, True]
    assert {r.id for r in app.artifacts(generator="fake-lora")} == {r.id for r in records}
    assert not app.store.get_artifact(generated[0]).is_sample
    with pytest.raises(InvalidRequest, match=r"sample is not regenerated: .* step 2 of training"):
        app.regenerate(records[0].id)
