"""The training panel as an artist uses it, on fast test trainers: the loss and validation curves,
the latest numbers, perplexity, text samples to read, the run's notes, "Use this adapter" in the
matching generator with the adapter's base model, and Resume after the studio was closed."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from studio import (
    Note,
    PluginEvent,
    Result,
    Sample,
    TextOutput,
    TrainContext,
    TrainingRun,
    TrainStep,
    hookimpl,
)
from studio.core.events import JobState
from studio.core.plugins import PluginInfo
from studio.core.studio import Studio
from studio.core.training import TrainingRequest
from studio.testing import fake_plugin
from studio.testing.fakes import FakeTextGenerator, FakeTrainer, fake_loss
from studio.ui.loss_plot import LossPlot, smoothed
from studio.ui.training_panel import readable, validation_from_note

WAIT = 10_000
BASE = "org/verse-base"


def validation(step: int) -> float:
    """The test trainer's validation loss at ``step`` (0: before training)."""
    return round(2.0 / (1 + 0.1 * step), 4)


class VerseTrainer(FakeTrainer):
    """A text trainer reporting what the real one does: the validation loss before, during and
    after training (as the shared loop's notes and TrainStep), learning rate, text samples with
    their prompt (the last one twice, as at the end of a run), a warning, and perplexity."""

    id = "fake-verse"
    name = "Verse trainer"
    modality = "text"  # type: ignore[assignment]
    description = "Learns nothing about verses, reports everything."

    def run(self, request: TrainingRun, ctx: TrainContext) -> Iterator[PluginEvent]:
        opts = request.options
        start = self._restore(ctx)
        if not start:
            yield Note(f"validation loss before training: {validation(0):.4f}")
        for step in range(start + 1, opts.steps + 1):
            ctx.step_boundary()
            if opts.delay:
                ctx.cancel_event.wait(opts.delay)
            lr = opts.learning_rate * (1 - step / opts.steps)
            checked = validation(step) if step % 3 == 0 else None
            yield TrainStep(step, opts.steps, fake_loss(step, request.name), lr, checked)
            if opts.sample_every and step % opts.sample_every == 0:
                yield Sample(step, self._verse(step))
            if step % opts.checkpoint_every == 0 or step == opts.steps:
                self._save(ctx, step, request.name)
        last = opts.steps
        yield Note(
            f"validation loss: before training {validation(0):.4f}, after "
            f"{validation(last):.4f} (last weights, step {last})"
        )
        yield Note("skipped notes.doc: not a text file", level="warning")
        yield Sample(last, self._verse(last))
        output = self._write_adapter(request)
        output.modality = "text"
        output.generators = (VerseWriter.id,)  # made for it: "Use this adapter" opens it
        output.extra.update(
            perplexity_before=math.exp(validation(0)), perplexity_after=math.exp(validation(last))
        )
        yield Result(output)

    @staticmethod
    def _verse(step: int) -> TextOutput:
        text = f" rolls in at step {step}\x07\n\n\n\nand goes out\n"
        return TextOutput(text, seed=step, extra={"prompt": "The sea", "mode": "continuation"})


class VerseWriter(FakeTextGenerator):
    """A text generator that takes adapters (the one "Use this adapter" opens)."""

    id = "fake-verse-writer"
    name = "Verse writer"
    supports_lora = True


class AnotherWriter(FakeTextGenerator):
    """Another text generator that takes adapters, listed first (by name)."""

    id = "fake-another-writer"
    name = "Another writer"
    supports_lora = True


class VersePlugin:
    studio_api = ">=1.0,<2"

    @hookimpl
    def register_trainers(self, register: Callable[[type], None]) -> None:
        register(VerseTrainer)

    @hookimpl
    def register_generators(self, register: Callable[[type], None]) -> None:
        register(VerseWriter)
        register(AnotherWriter)


@pytest.fixture
def verse_window(studio: Any, qtbot: Any) -> Any:
    from studio.ui.main_window import MainWindow

    info = studio.plugins.register(VersePlugin(), None)
    assert info.error is None, info.error
    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.session is not None and win.session.models_loaded, timeout=WAIT)
    return win


# --- the pieces -----------------------------------------------------------------------------------


def test_the_loops_validation_notes_are_read() -> None:
    assert validation_from_note("validation loss before training: 3.2500") == (0, 3.25)
    note = "validation loss: before training 3.2500, after 2.1000 (best weights, step 40)"
    assert validation_from_note(note) == (40, 2.1)
    assert validation_from_note("validation loss: before training 3.2500") is None
    assert validation_from_note("resumed from the checkpoint of step 20") is None


def test_samples_are_shown_readable() -> None:
    assert readable("a\x07b\x7fc") == "a·b·c"
    assert readable("one\n\n\n\n\ntwo\n  \n") == "one\n\ntwo"
    assert readable("café ✨\n\nline") == "café ✨\n\nline"


def test_an_empty_sample_says_so(qtbot: Any) -> None:
    from studio.ui.training_panel import TextSamples

    view = TextSamples()
    qtbot.addWidget(view)
    view.add(20, TextOutput("", extra={"prompt": "The sea", "mode": "continuation"}))
    view.add(20, TextOutput(" is blue.", index=1, extra={"prompt": "The sea", "mode": "chat"}))
    assert view.toPlainText().splitlines() == [
        "Step 20",
        "The sea (wrote nothing)",
        "The sea → is blue.",
    ]


def test_the_plot_keeps_two_series_and_rewinds_to_a_resumed_step(qtbot: Any) -> None:
    plot = LossPlot()
    qtbot.addWidget(plot)
    plot.resize(480, 260)
    assert not plot.grab().toImage().isNull()  # empty: the hint, no crash
    plot.add_validation(0, 3.0)
    assert plot.legend() == ["validation loss 3"]
    assert not plot.grab().toImage().isNull()
    for step in range(1, 21):
        plot.add(step, 2.0 / step, 30, 2.5 if step % 5 == 0 else None)
    assert plot.legend() == ["training loss 0.1", "validation loss 2.5"]
    assert [p[0] for p in plot.valid] == [0, 5, 10, 15, 20]
    image = plot.grab().toImage()  # smoothed: more than SMOOTH_FROM points
    assert not image.isNull()
    # resumed from the checkpoint of step 12: steps 13.. come again and replace the old ones
    plot.add(13, 0.5, 30)
    assert [p[0] for p in plot.train] == list(range(1, 14)) and plot.train[-1] == (13, 0.5)
    assert [p[0] for p in plot.valid] == [0, 5, 10]
    plot.add_validation(10, 2.0)  # measured again: replaced, not doubled
    assert plot.valid == [(0, 3.0), (5, 2.5), (10, 2.0)]
    plot.add(14, math.nan, 30)  # a skipped (non-finite) step draws nothing
    assert plot.train[-1][0] == 13
    smooth = smoothed([(1, 1.0), (2, 3.0)])
    assert smooth[0] == (1, 1.0) and 1.0 < smooth[1][1] < 3.0


# --- a run in the window --------------------------------------------------------------------------


def test_a_text_run_shows_curves_numbers_samples_notes_and_perplexity(
    verse_window: Any, studio: Any, qtbot: Any, dataset: Path
) -> None:
    window = verse_window
    panel = window.training
    window.show_panel("training")
    assert panel.select_trainer("fake-verse")
    panel.base_model.setEditText(BASE)
    panel.set_dataset(dataset)
    panel.name.setText("tides")
    assert panel.form is not None
    panel.form.set_values({"steps": 10, "sample_every": 5, "checkpoint_every": 5})
    job_id = panel.start()
    assert job_id is not None, panel.error.text()
    qtbot.waitUntil(lambda: panel.use_button.isVisibleTo(panel), timeout=WAIT)
    assert studio.job(job_id).state == JobState.SUCCEEDED
    # two series: every step's loss; the validation before training (step 0), every third
    # step, and the final one from the loop's note
    assert [p[0] for p in panel.plot.train] == list(range(1, 11))
    assert panel.plot.valid == [(s, validation(s)) for s in (0, 3, 6, 9, 10)]
    assert panel.plot.legend() == [
        f"training loss {fake_loss(10, 'tides'):.4g}",
        f"validation loss {validation(10):.4g}",
    ]
    # the latest numbers, and perplexity before -> after (the adapter's extra)
    shown = panel.stats.shown()
    assert shown["step"] == "10 / 10"
    assert shown["loss"] == f"{fake_loss(10, 'tides'):.4g}"
    assert shown["validation"] == f"{validation(10):.4g}"
    assert shown["lr"] == "0"  # the last step's rate: the schedule's end
    before, after = math.exp(validation(0)), math.exp(validation(10))
    assert panel.perplexity_text() == f"{before:.3g} → {after:.3g}" == shown["perplexity"]
    # text samples to read: grouped by step, the prompt then the text, the end's repeat once
    assert panel.sample_stack.currentWidget() is panel.text_samples
    assert list(panel.text_samples.entries) == [(5, 0), (10, 0)]
    page = panel.text_samples.toPlainText()
    assert "Step 5" in page and "Step 10" in page
    assert "The sea rolls in at step 10·\n\nand goes out" in page
    assert page.count("Step 10") == 1
    # the notes, the warning counted in the tab's title
    notes = [panel.notes.item(i).text() for i in range(panel.notes.count())]
    assert notes[0] == "validation loss before training: 2.0000"
    assert "skipped notes.doc: not a text file" in notes
    assert panel.tabs.tabText(panel.tabs.indexOf(panel.notes)) == "Notes (3, 1 warning)"
    assert "tides" in panel.status.text()
    # shown again from what was stored (as after a restart): curve, notes, samples
    from studio.ui.training_panel import TrainingPanel

    again = TrainingPanel(window.session)
    qtbot.addWidget(again)
    again._show_job(studio.job(job_id))
    assert again.plot.train == panel.plot.train and again.plot.valid == panel.plot.valid
    assert again.notes.count() == panel.notes.count()
    assert again.text_samples.toPlainText() == panel.text_samples.toPlainText()
    # Use this adapter: the generator it was made for (not the first text generator that takes
    # adapters), on the adapter's base model
    window.generate.select_generator(AnotherWriter.id)
    panel.use_button.click()
    assert window.current_panel() == "generate"
    gen = window.generate
    assert gen.generator is not None and gen.generator.id == "fake-verse-writer"
    assert gen.model_picker.effective_ref() == BASE
    assert [row.ref() for row in gen.adapter_list.rows] == ["tides"]
    assert gen.adapter_list.rows[0].problem() is None


def test_an_image_trainer_keeps_its_thumbnail_grid(
    window: Any, studio: Any, qtbot: Any, dataset: Path
) -> None:
    panel = window.training
    panel.set_dataset(dataset)
    assert panel.form is not None
    panel.form.set_values({"steps": 4, "sample_every": 2})
    job_id = panel.start()
    assert job_id is not None
    qtbot.waitUntil(lambda: panel.use_button.isVisibleTo(panel), timeout=WAIT)
    assert panel.sample_stack.currentWidget() is panel.samples
    assert panel.samples.count() == 2 and not panel.text_samples.entries
    assert panel.stats.shown()["validation"] == "—"  # none measured
    assert panel.perplexity_text() is None  # the fake trainer reports no perplexity
    assert panel.plot.legend() == [f"training loss {fake_loss(4, 'my-pictures'):.4g}"]


# --- resume after a restart -----------------------------------------------------------------------


def _open(home: Path) -> Studio:
    app = Studio.open(home, load_plugins=False, start_workers=False)
    app.plugins.register(
        fake_plugin, PluginInfo(fake_plugin.PLUGIN_NAME, "1", fake_plugin.__name__, False)
    )
    app.start()
    return app


def test_a_training_interrupted_by_closing_the_studio_resumes_from_the_panel(
    studio_home: Path, dataset: Path, qtbot: Any
) -> None:
    from studio.ui.main_window import MainWindow

    first = _open(studio_home)
    try:
        job_id = first.submit_training(
            TrainingRequest(
                trainer="fake-lora",
                dataset=dataset,
                name="night",
                options={"steps": 30, "checkpoint_every": 3, "sample_every": 4, "delay": 0.02},
            )
        )
        qtbot.waitUntil(lambda: first.job(job_id).step >= 8, timeout=WAIT)
    finally:
        first.close()  # the studio is closed while the training runs
    second = _open(studio_home)
    try:
        assert second.job(job_id).state == JobState.INTERRUPTED
        win = MainWindow(second)
        qtbot.addWidget(win)
        win.show()
        qtbot.waitUntil(lambda: win.session is not None and win.session.models_loaded, timeout=WAIT)
        panel = win.training
        # the panel shows it again: its curve so far, and Resume
        assert panel.job_id == job_id
        shown = [p[0] for p in panel.plot.train]
        assert shown and shown == list(range(1, len(shown) + 1))
        # and the samples it saved in the library
        saved = [a for a in second.artifacts(job_id=job_id) if a.is_sample]
        assert saved and panel.samples.count() == len(saved)
        assert (
            panel.samples.item(0).text() == "step 4" and not panel.samples.item(0).icon().isNull()
        )
        assert panel.status.text().startswith("Interrupted")
        assert panel.pause_button.text() == "Resume" and panel.pause_button.isEnabled()
        assert not panel.cancel_button.isEnabled()
        panel.pause_button.click()
        qtbot.waitUntil(lambda: panel.use_button.isVisibleTo(panel), timeout=WAIT)
        assert second.job(job_id).state == JobState.SUCCEEDED
        # from the checkpoint on, without a step twice: the whole curve once
        assert [p[0] for p in panel.plot.train] == list(range(1, 31))
        assert panel.plot.train[-1][1] == fake_loss(30, "night")
        assert [panel.samples.item(i).text() for i in range(panel.samples.count())] == [
            f"step {s}" for s in range(4, 31, 4)
        ]
        assert panel.pause_button.text() == "Pause" and not panel.pause_button.isEnabled()
        win.close()
    finally:
        second.close()


def test_sample_prompts_are_one_per_line(qtbot: Any) -> None:
    """A multiline list (the text trainer's sample prompts) keeps commas inside its items."""
    from studio.ui.options_form import OptionsForm
    from studio_text import TextLoraOptions

    form = OptionsForm(TextLoraOptions)
    qtbot.addWidget(form)
    prompts = ["The sea, at night,", "Music is"]
    form.set_values({"sample_prompts": prompts})
    assert form.values()["sample_prompts"] == prompts
    assert form.validate() is not None
