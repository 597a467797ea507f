"""The training panel on the testing kit's fake trainer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.core.events import JobState
from studio.testing.fakes import fake_loss

WAIT = 10_000


def test_ingest_report_for_a_folder(window: Any, studio: Any, qtbot: Any, dataset: Path) -> None:
    panel = window.training
    assert panel.trainer is not None and panel.trainer.id == "fake-lora"
    panel.set_dataset(dataset)
    qtbot.waitUntil(lambda: panel.ingest.report is not None, timeout=WAIT)
    report = panel.ingest.report
    assert len(report.usable) == 3
    assert report.skipped == {
        "notes.doc": "unknown file type (.doc): this trainer takes text (.txt) and images (.png)"
    }
    text = panel.ingest.text()
    assert "3 usable files" in text and "notes.doc" in text
    assert all(note in text for note in report.notes)
    assert panel.name.placeholderText() == "my-pictures"


def test_empty_folder_and_bad_options_are_reported(window: Any, tmp_path: Path, qtbot: Any) -> None:
    panel = window.training
    empty = tmp_path / "empty"
    empty.mkdir()
    panel.set_dataset(empty)
    qtbot.waitUntil(lambda: panel.ingest.report is not None, timeout=WAIT)
    assert "No usable file" in panel.ingest.text()
    assert panel.start() is None
    assert "no usable files" in panel.error.text()
    panel.dataset.set_value("")
    assert panel.start() is None and "folder" in panel.error.text()


def test_train_plot_samples_and_use_adapter(
    window: Any, studio: Any, qtbot: Any, dataset: Path
) -> None:
    panel = window.training
    window.show_panel("training")
    panel.set_dataset(dataset)
    panel.name.setText("fox style")
    panel.form.set_values({"steps": 12, "sample_every": 4, "checkpoint_every": 6, "delay": 0.01})
    job_id = panel.start()
    assert job_id is not None
    qtbot.waitUntil(lambda: studio.job(job_id).state.finished, timeout=WAIT)
    assert studio.job(job_id).state == JobState.SUCCEEDED
    qtbot.waitUntil(lambda: panel.use_button.isVisibleTo(panel), timeout=WAIT)
    # the curve has every step's loss, the grid every sample
    assert [p[0] for p in panel.plot.train] == list(range(1, 13))
    assert panel.plot.train[-1][1] == fake_loss(12, "fox style")
    assert panel.samples.count() == 3
    assert panel.samples.item(0).text() == "step 4"
    assert not panel.samples.item(0).icon().isNull()
    image = panel.plot.grab().toImage()
    assert not image.isNull()
    assert "fox style" in panel.status.text()
    # one click: the adapter is added to the generate form's adapter list
    panel.use_button.click()
    assert window.current_panel() == "generate"
    gen = window.generate
    assert gen.generator.supports_lora and gen.generator.modality == "image"
    assert [row.ref() for row in gen.adapter_list.rows] == ["fox style"]
    gen.prompt.setPlainText("a fox")
    job = gen.generate()
    assert job is not None
    studio.wait(job, timeout=10)
    [art] = studio.artifacts(job_id=job)
    assert art.recipe["adapters"][0]["weight"] == 1.0


def test_pause_resume_cancel_from_the_panel(
    window: Any, studio: Any, qtbot: Any, dataset: Path
) -> None:
    panel = window.training
    panel.set_dataset(dataset)
    panel.form.set_values({"steps": 500, "delay": 0.02, "checkpoint_every": 1000})
    job_id = panel.start()
    assert job_id is not None
    qtbot.waitUntil(lambda: len(panel.plot.train) >= 2, timeout=WAIT)
    panel.toggle_pause()
    qtbot.waitUntil(lambda: panel.pause_button.text() == "Resume", timeout=WAIT)
    assert studio.job(job_id).state == JobState.PAUSED
    assert panel.stats.text("eta") == "—" and "left" not in panel.progress.format()
    panel.toggle_pause()
    qtbot.waitUntil(lambda: studio.job(job_id).state == JobState.RUNNING, timeout=WAIT)
    panel.cancel()
    qtbot.waitUntil(lambda: studio.job(job_id).state.finished, timeout=WAIT)
    qtbot.waitUntil(lambda: panel.status.text().startswith("Cancelled."), timeout=WAIT)
    assert not panel.cancel_button.isEnabled()
    # a cancelled training can still go on from its last checkpoint
    assert panel.pause_button.text() == "Resume" and panel.pause_button.isEnabled()


def test_a_generation_preempts_training(
    window: Any, studio: Any, qtbot: Any, dataset: Path
) -> None:
    panel = window.training
    panel.set_dataset(dataset)
    panel.form.set_values({"steps": 300, "delay": 0.02, "checkpoint_every": 1000})
    job_id = panel.start()
    qtbot.waitUntil(lambda: len(panel.plot.train) >= 2, timeout=WAIT)
    gen = window.generate
    gen.select_generator("fake-text")
    gen.prompt.setPlainText("quick")
    text_job = gen.generate()
    qtbot.waitUntil(lambda: studio.job(text_job).state.finished, timeout=WAIT)
    assert studio.job(job_id).state in (JobState.RUNNING, JobState.PAUSED)
    studio.cancel(job_id)
    qtbot.waitUntil(lambda: studio.job(job_id).state.finished, timeout=WAIT)
