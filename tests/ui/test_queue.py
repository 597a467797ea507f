"""The queue panel: states, progress, ETA, cancel, move up / down, pause / resume training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.core.events import JobState
from studio.core.generator import GenerationRequest
from studio.core.training import TrainingRequest
from studio.ui.queue_panel import JOB_ROLE, PROGRESS_COL

WAIT = 10_000


def submit_text(studio: Any, prompt: str, tokens: int = 3, delay: float = 0.0) -> str:
    return studio.submit(
        GenerationRequest(
            generator="fake-text", prompt=prompt, options={"max_tokens": tokens, "delay": delay}
        )
    )


def rows(queue: Any) -> list[str]:
    return [
        queue.tree.topLevelItem(i).data(0, JOB_ROLE) for i in range(queue.tree.topLevelItemCount())
    ]


def state(studio: Any, job_id: str) -> JobState:
    return studio.job(job_id).state


def test_jobs_listed_with_progress_and_eta(window: Any, studio: Any, qtbot: Any) -> None:
    queue = window.queue
    window.show_panel("queue")
    running = submit_text(studio, "slow", tokens=100, delay=0.05)
    qtbot.waitUntil(lambda: running in queue.items and queue.jobs[running].step >= 3, timeout=WAIT)
    item = queue.items[running]
    step, total = item.data(PROGRESS_COL, 0x0100)  # Qt.UserRole
    assert total == 100 and step >= 3
    assert item.text(2) == "running"
    qtbot.waitUntil(lambda: queue.items[running].text(4) != "", timeout=WAIT)  # an ETA shows
    assert queue.items[running].text(4)[0].isdigit()  # e.g. "4.2 s" or "1:05"
    queue.select(running)
    assert queue.cancel_selected()
    qtbot.waitUntil(lambda: state(studio, running) == JobState.CANCELLED, timeout=WAIT)
    qtbot.waitUntil(lambda: queue.items[running].text(2) == "cancelled", timeout=WAIT)
    assert not queue.cancel_button.isEnabled()


def test_move_and_cancel_queued_jobs(window: Any, studio: Any, qtbot: Any) -> None:
    queue = window.queue
    blocker = submit_text(studio, "blocker", tokens=400, delay=0.05)
    qtbot.waitUntil(lambda: state(studio, blocker) == JobState.RUNNING, timeout=WAIT)
    a, b, c = (submit_text(studio, name) for name in ("a", "b", "c"))
    qtbot.waitUntil(lambda: all(j in queue.items for j in (a, b, c)), timeout=WAIT)
    assert rows(queue)[:4] == [blocker, a, b, c]
    queue.select(c)
    assert queue.up_button.isEnabled() and queue.pause_button.isEnabled() is False
    assert queue.move_selected(-1)
    assert rows(queue)[:4] == [blocker, a, c, b]
    assert queue.selected_id() == c  # the selection follows the job
    queue.select(a)
    assert queue.move_selected(1)
    assert rows(queue)[:4] == [blocker, c, a, b]
    queue.select(b)
    assert queue.cancel_selected()
    assert state(studio, b) == JobState.CANCELLED
    for job in (blocker,):
        studio.cancel(job)
    for job in (blocker, a, c):
        studio.wait(job, timeout=10)
    # the queued ones ran in the new order: c before a
    assert studio.job(c).started <= studio.job(a).started


def test_pause_and_resume_training(window: Any, studio: Any, qtbot: Any, dataset: Path) -> None:
    queue = window.queue
    job = studio.submit_training(
        TrainingRequest(
            trainer="fake-lora",
            dataset=dataset,
            name="paused",
            options={"steps": 400, "delay": 0.02, "checkpoint_every": 1000},
        )
    )
    qtbot.waitUntil(lambda: state(studio, job) == JobState.RUNNING, timeout=WAIT)
    qtbot.waitUntil(lambda: job in queue.items, timeout=WAIT)
    queue.select(job)
    assert queue.pause_button.isEnabled() and not queue.resume_button.isEnabled()
    assert queue.pause_selected()
    qtbot.waitUntil(lambda: state(studio, job) == JobState.PAUSED, timeout=WAIT)
    qtbot.waitUntil(lambda: queue.items[job].text(2) == "paused", timeout=WAIT)
    queue.select(job)
    assert queue.resume_button.isEnabled()
    assert queue.resume_selected()
    qtbot.waitUntil(lambda: state(studio, job) == JobState.RUNNING, timeout=WAIT)
    queue.select(job)
    assert queue.cancel_selected()
    qtbot.waitUntil(lambda: state(studio, job).finished, timeout=WAIT)
    # a cancelled training can go on (from its last checkpoint): Resume re-queues it
    qtbot.waitUntil(lambda: queue.items[job].text(2) == "cancelled", timeout=WAIT)
    queue.select(job)
    assert queue.resume_button.isEnabled() and not queue.cancel_button.isEnabled()
    assert queue.resume_selected()
    qtbot.waitUntil(lambda: state(studio, job) == JobState.RUNNING, timeout=WAIT)
    studio.cancel(job)
    qtbot.waitUntil(lambda: state(studio, job).finished, timeout=WAIT)


def test_failed_job_shows_its_error(window: Any, studio: Any, qtbot: Any) -> None:
    queue = window.queue
    job = studio.submit(GenerationRequest(generator="fake-fail", options={"error": "value"}))
    studio.wait(job, timeout=10)
    qtbot.waitUntil(
        lambda: job in queue.items and queue.items[job].text(2) == "failed", timeout=WAIT
    )
    queue.select(job)
    assert queue.error.isVisibleTo(queue)
    assert "fake failure" in queue.error.text()
    assert not queue.resume_button.isEnabled()  # a failed generation is not re-run
