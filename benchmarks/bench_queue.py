"""Queue overhead: what the studio adds per job over calling a generator's ``run`` directly.

*Studio* is the full path a user's job takes: ``Studio.submit`` (validation, the job stored in
SQLite), the device worker taking it, the run context, every event stored and dispatched, state
changes, and ``Studio.wait`` seeing it finished. *Bare* is iterating the same generator's ``run``
with a context built once. The generators are the testing kit's fakes, so the model work is nil and
the difference is the queue's own cost, in milliseconds per job (medians).

Rows: a no-op job one at a time (latency), many no-op jobs queued at once (throughput), the cost
of each streamed text chunk, and the delay before a training lends the device to an interactive
job (preemption latency, against the length of one training step).
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Goals (ms): added latency of one job, cost per job when queued in bulk, per streamed chunk
#: (a fast model on a GPU streams a token every few ms: the studio should add a few percent).
GOAL_LATENCY_MS = 10.0
GOAL_THROUGHPUT_MS = 10.0
GOAL_CHUNK_MS = 0.1
#: A waiting interactive job starts within one training step plus this much (ms).
GOAL_PREEMPT_SLACK_MS = 20.0


def _open_studio(home: Path) -> Any:
    from studio.core.studio import Studio
    from studio.testing import fake_plugin

    app = Studio.open(home, load_plugins=False, start_workers=False)
    app.plugins.register(fake_plugin)
    app.start()
    return app


def _bare(app: Any, request: Any, repeats: int) -> float:
    """Median ms of iterating the generator's ``run`` directly (context built once)."""
    from studio.core.context import RunContext

    prepared = app.prepare(request)
    cls = app.find_generator(request.generator)
    ctx = RunContext(
        job_id="bench",
        device="cpu",
        cache=app.cache,
        settings=app.settings,
        scratch=app.paths.scratch,
        log=logging.getLogger("bench"),
    )

    def once() -> None:
        for _ in cls().run(prepared, ctx):
            pass

    return _median_ms(once, repeats)


def _median_ms(action: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def _row(name: str, studio: float, bare: float, goal: str, met: bool, notes: str) -> dict:
    return {
        "name": name,
        "studio": studio,
        "bare": bare,
        "unit": "ms/job",
        "ratio": studio / bare if bare else None,
        "goal": goal,
        "met": met,
        "notes": notes,
    }


def _latency(app: Any, repeats: int) -> dict:
    from studio import GenerationRequest

    request = GenerationRequest(generator="fake-noop", seed=0)
    studio = _median_ms(lambda: app.wait(app.submit(request), 30), repeats)
    bare = _bare(app, request, repeats)
    return _row(
        "queue: one no-op job, submit -> finished",
        studio,
        bare,
        f"overhead < {GOAL_LATENCY_MS:g} ms",
        studio - bare < GOAL_LATENCY_MS,
        f"median of {repeats}; overhead {studio - bare:.2f} ms",
    )


def _throughput(app: Any, jobs: int) -> dict:
    from studio import GenerationRequest

    request = GenerationRequest(generator="fake-noop", seed=0)
    started = time.perf_counter()
    ids = [app.submit(request) for _ in range(jobs)]
    for job_id in ids:
        app.wait(job_id, 60)
    studio = (time.perf_counter() - started) * 1000 / jobs
    bare = _bare(app, request, jobs)
    return _row(
        f"queue: {jobs} no-op jobs queued at once",
        studio,
        bare,
        f"< {GOAL_THROUGHPUT_MS:g} ms per job",
        studio < GOAL_THROUGHPUT_MS,
        "wall time / jobs, submit of the first to end of the last",
    )


def _streaming(app: Any, repeats: int, tokens: int = 512) -> dict:
    """Cost per streamed chunk: a long text minus a one-chunk text, over the extra chunks.

    The difference removes what every job pays once (queue, states, the artifact's fsyncs), so
    what is left is the price of each chunk's events (a Partial and a Progress): stored
    (coalesced) and dispatched to subscribers.
    """
    from studio import GenerationRequest

    def request(n: int) -> GenerationRequest:
        return GenerationRequest(
            generator="fake-text", prompt="bench", seed=1, options={"max_tokens": n}
        )

    def studio_ms(n: int) -> float:
        return _median_ms(lambda: app.wait(app.submit(request(n)), 60), repeats)

    extra = tokens - 1
    studio = (studio_ms(tokens) - studio_ms(1)) / extra
    bare = (_bare(app, request(tokens), repeats) - _bare(app, request(1), repeats)) / extra
    return {
        "name": "queue: streamed text, per chunk",
        "studio": studio,
        "bare": bare,
        "unit": "ms/chunk",
        "ratio": studio / bare if bare > 0 else None,
        "goal": f"overhead < {GOAL_CHUNK_MS:g} ms per chunk",
        "met": studio - bare < GOAL_CHUNK_MS,
        "notes": f"({tokens} chunks - 1 chunk) / {extra}, medians of {repeats}",
    }


def _preemption(app: Any, dataset: Path, tries: int, step_ms: float = 20.0) -> dict:
    """Delay from submitting an interactive job during a training to that job running."""
    from studio import GenerationRequest, TrainingRequest
    from studio.core.events import JobState, JobStateChanged, TrainStep

    steps_seen = threading.Event()
    started_at: dict[str, float] = {}

    def watch(event: Any) -> None:
        if isinstance(event.event, TrainStep) and event.event.step >= 2:
            steps_seen.set()
        if isinstance(event.event, JobStateChanged) and event.event.state == JobState.RUNNING:
            started_at.setdefault(event.job_id, time.perf_counter())

    unsubscribe = app.subscribe(watch)
    train = app.submit_training(
        TrainingRequest(
            trainer="fake-lora",
            dataset=dataset,
            name="bench",
            options={"steps": 10_000, "delay": step_ms / 1000},
        )
    )
    delays = []
    try:
        steps_seen.wait(60)
        for _ in range(tries):
            submitted = time.perf_counter()
            job = app.submit(GenerationRequest(generator="fake-noop", seed=0))
            app.wait(job, 30)
            delays.append((started_at[job] - submitted) * 1000)
            time.sleep(step_ms / 1000 * 1.5)  # let the training take a step again
    finally:
        app.cancel(train)
        app.wait(train, 30)
        unsubscribe()
    studio = statistics.median(delays)
    return {
        "name": "queue: training preemption latency",
        "studio": studio,
        "bare": step_ms,
        "unit": "ms",
        "ratio": studio / step_ms,
        "goal": f"< one step ({step_ms:g} ms) + {GOAL_PREEMPT_SLACK_MS:g} ms",
        "met": studio < step_ms + GOAL_PREEMPT_SLACK_MS,
        "notes": f"median of {tries}; bare = one training step (the most a job may wait)",
    }


def run(quick: bool = False) -> list[dict]:
    """Rows for one-job latency, bulk throughput, streaming and preemption (see module doc)."""
    from studio import GenerationRequest

    repeats, bulk, stream_repeats, tries = (30, 100, 5, 5) if quick else (200, 500, 20, 20)
    with tempfile.TemporaryDirectory(prefix="bench-queue-") as tmp:
        home = Path(tmp) / "home"
        dataset = Path(tmp) / "dataset"
        dataset.mkdir()
        (dataset / "caption.txt").write_text("bench")
        app = _open_studio(home)
        try:
            # warm up: the worker imports torch and configures threads on its first job
            app.wait(app.submit(GenerationRequest(generator="fake-noop", seed=0)), 120)
            return [
                _latency(app, repeats),
                _throughput(app, bulk),
                _streaming(app, stream_repeats),
                _preemption(app, dataset, tries),
            ]
        finally:
            app.close()


if __name__ == "__main__":
    for row in run(quick=True):
        print(row)
