"""The training panel runs the real text LoRA trainer on a tiny GPT-2 (built offline by the testing
kit): the ingest report, the loss and validation curves (the validation before training read from
the shared loop's note), perplexity before -> after, text samples, and "Use this adapter" in the
text generator on the adapter's base model, which then generates with it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import studio_text
from studio.core.events import JobState
from studio.core.plugins import PluginInfo
from studio.testing.models_text import make_tiny_causal_lm, write_text_corpus

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

WAIT = 120_000  # a few dozen tiny steps, on a busy machine too
OPTIONS: dict[str, Any] = {
    "steps": 12,
    "batch_size": 2,
    "sequence_length": 32,
    "overlap": 8,
    "rank": 4,
    "alpha": 8,
    "learning_rate": 0.01,
    "validate_every": 4,
    "checkpoint_every": 6,
    "sample_every": 6,
    "sample_prompts": ["The painter"],
    "sample_max_tokens": 6,
}


@pytest.fixture(scope="module", autouse=True)
def no_tqdm_monitor() -> Iterator[None]:
    """transformers' progress bars (saving, loading weights) would start tqdm's monitor thread,
    which outlives the test (the window tests fail on a thread left running)."""
    from tqdm import std

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(std.tqdm, "monitor_interval", 0)
        yield


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_causal_lm(tmp_path_factory.mktemp("models") / "gpt2", "gpt2", seed=0)


@pytest.fixture
def text_window(studio: Any, qtbot: Any) -> Any:
    """The window with the built-in text plugin (its generator and trainer) installed."""
    from studio.ui.main_window import MainWindow

    info = PluginInfo("text", studio_text.__version__, studio_text.__name__, True)
    assert studio.plugins.register(studio_text, info).error is None
    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.session is not None and win.session.models_loaded, timeout=10_000)
    return win


def test_the_text_trainer_in_the_panel_and_its_adapter_in_the_text_generator(
    text_window: Any, studio: Any, qtbot: Any, tiny_gpt2: Path, tmp_path: Path
) -> None:
    window = text_window
    corpus = write_text_corpus(tmp_path / "my-prose", files=3, repeats=4)
    (corpus / "cover.png").write_bytes(b"\x89PNG not a picture")
    panel = window.training
    window.show_panel("training")
    assert panel.select_trainer("text-lora")
    assert panel.basics.isRowVisible(panel.base_model)
    panel.base_model.setEditText(str(tiny_gpt2))
    panel.set_dataset(corpus)
    qtbot.waitUntil(lambda: panel.ingest.report is not None, timeout=10_000)
    ingest = panel.ingest.text()
    assert "3 usable files" in ingest and "cover.png" in ingest
    panel.name.setText("my prose")
    assert panel.form is not None
    panel.form.set_values(OPTIONS)
    job_id = panel.start()
    assert job_id is not None, panel.error.text()
    qtbot.waitUntil(lambda: studio.job(job_id).state.finished, timeout=WAIT)
    assert studio.job(job_id).state == JobState.SUCCEEDED, studio.job(job_id).error
    qtbot.waitUntil(lambda: panel.use_button.isVisibleTo(panel), timeout=10_000)

    # the curves: every step's loss; the validation before training at step 0, then every 4th
    assert [p[0] for p in panel.plot.train] == list(range(1, 13))
    assert [p[0] for p in panel.plot.valid] == [0, 4, 8, 12]
    assert len(panel.plot.legend()) == 2
    # perplexity before -> after, as the trainer recorded it on the adapter
    [adapter] = [a for a in studio.adapters() if a.job_id == job_id]
    before, after = adapter.extra["perplexity_before"], adapter.extra["perplexity_after"]
    assert panel.perplexity_text() == f"{before:.3g} → {after:.3g}"
    shown = panel.stats.shown()
    assert shown["step"] == "12 / 12" and shown["validation"] != "—" and shown["lr"] != "—"
    # text samples with their prompt, at steps 6 and 12
    assert panel.sample_stack.currentWidget() is panel.text_samples
    assert [step for step, _ in panel.text_samples.entries] == [6, 12]
    assert panel.text_samples.toPlainText().count("The painter") == 2
    notes = [panel.notes.item(i).text() for i in range(panel.notes.count())]
    assert any(n.startswith("perplexity on the held-out text") for n in notes)

    # Use this adapter: the text generator, on the tiny model, with the adapter; it generates
    panel.use_button.click()
    gen = window.generate
    assert window.current_panel() == "generate"
    assert gen.generator is not None and gen.generator.id == "text-generation"
    assert gen.model_picker.effective_ref() == str(tiny_gpt2)
    assert [row.ref() for row in gen.adapter_list.rows] == ["my prose"]
    gen.prompt.setPlainText("The painter")
    assert gen.form is not None
    gen.form.set_values({"max_new_tokens": 8})
    text_job = gen.generate()
    assert text_job is not None, gen.error.text()
    studio.wait(text_job, timeout=60)
    [art] = studio.artifacts(job_id=text_job)
    assert [a["ref"] for a in art.recipe["adapters"]] == [str(adapter.path)]
