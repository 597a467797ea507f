"""The generate form's LoRA adapter list: several adapters with weights, in order; remove; recipes
with several adapters loaded back (unknown ones kept, marked); hidden for generators without LoRA;
the training panel's hand-off; window state."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from studio.core.events import JobState
from studio.core.generator import GenerationRequest, LoraSpec
from studio.core.records import AdapterRecord
from studio.ui import adapter_list as adapter_list_module
from studio.ui.adapter_list import BROWSE_FILE

WAIT = 10_000


def add_adapter(studio: Any, tmp_path: Path, name: str, age: float = 0.0) -> AdapterRecord:
    """A library adapter with a real (tiny) file, ``age`` seconds old."""
    path = tmp_path / "adapters" / f"{name.replace(' ', '-')}.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not really weights")
    record = AdapterRecord(
        id=uuid.uuid4().hex,
        name=name,
        path=path,
        modality="image",
        base_model="fake/tiny-model",
        sha256=None,
        created=time.time() - age,
    )
    studio.store.add_adapter(record)
    return record


@pytest.fixture
def panel(window: Any, studio: Any, tmp_path: Path) -> Any:
    """The generate panel on the fake image generator, two adapters in the library."""
    add_adapter(studio, tmp_path, "fox style", age=10)  # older: listed second
    add_adapter(studio, tmp_path, "ink lines", age=0)
    gen = window.generate
    gen.session.refresh_adapters()
    assert gen.select_generator("fake-image")
    gen.prompt.setPlainText("a fox")
    gen.seed.set_value(3)
    gen.form.set_values({"steps": 1, "width": 16, "height": 16})
    return gen


def submit(studio: Any, panel: Any, qtbot: Any) -> dict[str, Any]:
    job_id = panel.generate()
    assert job_id is not None, panel.error.text()
    qtbot.waitUntil(lambda: studio.job(job_id).state.finished, timeout=WAIT)
    assert studio.job(job_id).state == JobState.SUCCEEDED
    [artifact] = studio.artifacts(job_id=job_id)
    return artifact.recipe


def test_two_adapters_with_weights_reach_the_request_in_order(
    panel: Any, studio: Any, qtbot: Any
) -> None:
    adapters = panel.adapter_list
    assert adapters.isVisibleTo(panel) and adapters.rows == []
    assert adapters.hint.isVisibleTo(adapters)
    adapters.add_button.click()
    adapters.add_button.click()  # the next library adapter not used yet
    first, second = adapters.rows
    assert (first.ref(), second.ref()) == ("ink lines", "fox style")
    assert not adapters.hint.isVisibleTo(adapters)
    first.slider.setValue(-150)  # the slider drives the spin box and back
    assert first.weight.value() == -1.5
    second.weight.setValue(0.35)
    assert second.slider.value() == 35
    request = panel.build_request()
    assert request.loras == [
        LoraSpec(ref="ink lines", weight=-1.5),
        LoraSpec(ref="fox style", weight=0.35),
    ]
    recipe = submit(studio, panel, qtbot)
    # the core resolved the library names to their files, in the same order
    by_name = {a.name: str(a.path) for a in studio.adapters()}
    assert [(a["ref"], a["weight"]) for a in recipe["adapters"]] == [
        (by_name["ink lines"], -1.5),
        (by_name["fox style"], 0.35),
    ]


def test_remove_a_row(panel: Any, qtbot: Any) -> None:
    adapters = panel.adapter_list
    for ref, weight in (("ink lines", 1.0), ("org/some-lora", 0.5), ("fox style", 2.0)):
        adapters.add_row(ref, weight)
    middle = adapters.rows[1]
    with qtbot.waitSignal(middle.destroyed, timeout=WAIT):
        middle.remove_button.click()
    assert [(r.ref(), r.weight_value()) for r in adapters.rows] == [
        ("ink lines", 1.0),
        ("fox style", 2.0),
    ]
    assert [s.ref for s in panel.build_request().loras] == ["ink lines", "fox style"]
    for row in list(adapters.rows):
        row.remove_button.click()
    assert adapters.rows == [] and panel.build_request().loras == []
    assert adapters.hint.isVisibleTo(adapters)


def test_a_recipe_with_two_adapters_round_trips(
    window: Any, panel: Any, studio: Any, qtbot: Any
) -> None:
    adapters = panel.adapter_list
    adapters.add_row("fox style", 0.8)
    adapters.add_row("org/hub-lora", -0.25)  # a hub id: the fake generator records it as it is
    recipe = submit(studio, panel, qtbot)
    # somewhere else, with other adapters
    adapters.clear()
    adapters.add_row("ink lines", 3.0)
    panel.select_generator("fake-text")
    # the gallery's "Use these settings"
    gallery = window.gallery
    window.show_panel("gallery")
    gallery.reload()
    qtbot.waitUntil(lambda: gallery.loaded, timeout=WAIT)
    [artifact] = studio.artifacts(job_id=studio.jobs()[0].id)
    assert gallery.select(artifact.id)
    gallery.details.use_button.click()
    assert window.current_panel() == "generate"
    assert panel.generator.id == "fake-image"
    rows = adapters.rows
    # the recorded file path is shown as its library adapter again; the hub id as written
    assert [(r.ref(), r.weight_value()) for r in rows] == [
        ("fox style", 0.8),
        ("org/hub-lora", -0.25),
    ]
    assert rows[0].combo.currentText() == "fox style"
    assert not any(r.warning.isVisible() for r in rows)
    again = submit(studio, panel, qtbot)
    assert again["adapters"] == recipe["adapters"]


def test_an_unknown_adapter_is_kept_with_a_warning(
    panel: Any, studio: Any, qtbot: Any, tmp_path: Path
) -> None:
    gone = str(tmp_path / "deleted" / "old-style.safetensors")
    request = GenerationRequest(
        generator="fake-image",
        prompt="a fox",
        loras=[
            LoraSpec(ref=gone, weight=0.7),
            LoraSpec(ref="fox style", weight=1.0),
            LoraSpec(ref="forgotten", weight=0.5),  # a library name no longer in the library
        ],
    )
    panel.load_request(request)
    rows = panel.adapter_list.rows
    assert [(r.ref(), r.weight_value()) for r in rows] == [
        (gone, 0.7),
        ("fox style", 1.0),
        ("forgotten", 0.5),
    ]
    assert [r.warning.isVisible() for r in rows] == [True, False, True]
    assert "No such file" in rows[0].warning.toolTip() and gone in rows[0].combo.toolTip()
    assert "No adapter in the library" in rows[2].warning.toolTip()
    # generating says what is wrong, and nothing is submitted
    before = len(studio.jobs())
    assert panel.generate() is None
    assert panel.error.isVisibleTo(panel) and "not found" in panel.error.text()
    assert len(studio.jobs()) == before
    # once the file is back, the warning goes at the next look
    Path(gone).parent.mkdir()
    Path(gone).write_bytes(b"x")
    panel.session.refresh_adapters()
    assert not rows[0].warning.isVisible()


def test_an_empty_row_is_shown_not_submitted(panel: Any, studio: Any) -> None:
    row = panel.adapter_list.add_row(None)
    assert panel.generate() is None
    assert "adapter row 1 is empty" in panel.error.text()
    assert row.combo.property("invalid") is True
    assert studio.jobs() == []
    row.set_ref("fox style")
    assert row.combo.property("invalid") is False


def test_any_file_through_the_file_dialog(
    panel: Any, qtbot: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    weights = tmp_path / "downloaded.safetensors"
    weights.write_bytes(b"x")
    monkeypatch.setattr(
        adapter_list_module.QFileDialog,
        "getOpenFileName",
        staticmethod(lambda *a, **k: (str(weights), "")),
    )
    row = panel.adapter_list.add_row("ink lines")
    index = row.combo.findData(BROWSE_FILE)
    assert index >= 0
    row.combo.setCurrentIndex(index)
    row.combo.activated.emit(index)
    assert row.ref() == "ink lines"  # the "Choose a file…" entry is an action, not a choice
    qtbot.waitUntil(lambda: row.ref() == str(weights), timeout=WAIT)
    assert not row.warning.isVisible()
    assert panel.build_request().loras == [LoraSpec(ref=str(weights), weight=1.0)]


def test_hidden_for_a_generator_without_lora(panel: Any) -> None:
    adapters = panel.adapter_list
    adapters.add_row("fox style", 0.5)
    for generator in ("fake-text", "test-tone"):
        panel.select_generator(generator)
        assert not panel.generator.supports_lora
        assert not adapters.isVisibleTo(panel)
        panel.prompt.setPlainText("hello")
        assert panel.build_request().loras == []
    # back to an image generator: the image adapters are still there
    panel.select_generator("test-variation")
    assert not adapters.isVisibleTo(panel)  # the test image-to-image generator takes none either
    panel.select_generator("fake-image")
    assert adapters.isVisibleTo(panel)
    assert [(r.ref(), r.weight_value()) for r in adapters.rows] == [("fox style", 0.5)]


def test_the_rows_are_kept_in_the_window_state(panel: Any) -> None:
    panel.adapter_list.add_row("ink lines", 1.25)
    panel.adapter_list.add_row("org/hub-lora", 0.5)
    state = panel.state()
    panel.adapter_list.clear()
    panel.restore_state(state)
    rows = panel.adapter_list.rows
    assert [(r.ref(), r.weight_value()) for r in rows] == [
        ("ink lines", 1.25),
        ("org/hub-lora", 0.5),
    ]


def test_the_training_hand_off_adds_a_row(
    window: Any, studio: Any, qtbot: Any, dataset: Path, tmp_path: Path
) -> None:
    add_adapter(studio, tmp_path, "ink lines")
    gen = window.generate
    gen.session.refresh_adapters()
    gen.select_generator("fake-image")
    gen.adapter_list.add_row("ink lines", 0.5)
    gen.select_generator("fake-text")  # the hand-off switches to a generator that takes it
    training = window.training
    window.show_panel("training")
    training.set_dataset(dataset)
    training.name.setText("fox style")
    training.form.set_values({"steps": 2, "checkpoint_every": 2})
    job_id = training.start()
    assert job_id is not None
    qtbot.waitUntil(lambda: studio.job(job_id).state.finished, timeout=WAIT)
    qtbot.waitUntil(lambda: training.use_button.isVisibleTo(training), timeout=WAIT)
    training.use_button.click()
    assert window.current_panel() == "generate"
    assert gen.generator.id == "fake-image"
    rows = gen.adapter_list.rows
    assert [(r.ref(), r.weight_value()) for r in rows] == [("ink lines", 0.5), ("fox style", 1.0)]
    assert not rows[1].warning.isVisible()
    # a second click selects the row that is there rather than adding another
    rows[1].weight.setValue(0.6)
    training.use_button.click()
    assert len(gen.adapter_list.rows) == 2 and rows[1].weight_value() == 0.6
