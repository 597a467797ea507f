"""A trainer that uses no model in the window: no base-model picker, no base model submitted; its
adapters (no base model, made for named generators) listed first for those generators, with a
label and tooltip saying what each adapter is for."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from PySide6.QtCore import Qt

from studio import AdapterOutput, hookimpl
from studio.core.events import JobState
from studio.core.records import AdapterRecord
from studio.testing.fakes import FakeTrainer
from studio.ui.adapter_list import AdapterList

WAIT = 10_000


class FakePalette(FakeTrainer):
    """The fake trainer, learning from its dataset alone: its adapter is for fake-image."""

    id = "fake-palette"
    name = "A palette"  # sorted first in the trainer list
    uses_model = False
    default_model = None  # type: ignore[assignment]

    @staticmethod
    def _write_adapter(request: Any) -> AdapterOutput:
        output = FakeTrainer._write_adapter(request)
        output.generators = ("fake-image",)
        return output


class PalettePlugin:
    studio_api = ">=1.0,<2"

    @hookimpl
    def register_trainers(self, register: Callable[[type], None]) -> None:
        register(FakePalette)


@pytest.fixture
def palette_window(studio: Any, qtbot: Any) -> Any:
    """The main window with the model-free trainer installed next to the fake one."""
    from studio.ui.main_window import MainWindow

    info = studio.plugins.register(PalettePlugin(), None)
    assert info.error is None, info.error
    win = MainWindow(studio)
    qtbot.addWidget(win)
    win.show()
    qtbot.waitUntil(lambda: win.session is not None and win.session.models_loaded, timeout=WAIT)
    return win


def test_a_model_free_trainer_has_no_base_model_picker(
    palette_window: Any, studio: Any, qtbot: Any, dataset: Path
) -> None:
    panel = palette_window.training
    palette_window.show_panel("training")
    assert panel.select_trainer("fake-palette")
    assert not panel.basics.isRowVisible(panel.base_model)
    panel.set_dataset(dataset)
    panel.name.setText("reds")
    panel.form.set_values({"steps": 3})
    request = panel.build_request()
    assert request is not None and request.base_model is None
    job_id = panel.start()
    assert job_id is not None, panel.error.text()
    qtbot.waitUntil(lambda: studio.job(job_id).state.finished, timeout=WAIT)
    assert studio.job(job_id).state == JobState.SUCCEEDED
    [adapter] = [a for a in studio.adapters() if a.job_id == job_id]
    assert adapter.base_model is None and adapter.generators == ("fake-image",)
    # a trainer that uses a model shows the picker again
    assert panel.select_trainer("fake-lora")
    assert panel.basics.isRowVisible(panel.base_model)
    assert panel.base_model.effective_ref() == FakeTrainer.default_model
    panel.base_model.setEditText("org/base")
    request = panel.build_request()
    assert request is not None and request.base_model == "org/base"


def adapter(
    name: str, base_model: str | None, generators: tuple[str, ...] = (), age: float = 0
) -> AdapterRecord:
    return AdapterRecord(
        id=uuid.uuid4().hex,
        name=name,
        path=Path(f"/library/{name}.safetensors"),
        modality="image",
        base_model=base_model,
        sha256=None,
        created=time.time() - age,
        generators=generators,
    )


def test_adapters_made_for_the_chosen_generator_or_model_come_first(qtbot: Any) -> None:
    library = [
        adapter("tiny style", "fake/tiny-model", age=30),
        adapter("sea", None, ("test-pattern",), age=20),
        adapter("other style", "other/model", age=10),
    ]
    box = AdapterList()
    qtbot.addWidget(box)
    box.set_modality("image")

    def labels() -> list[str]:
        row = box.add_row()
        texts = [row.combo.itemText(i) for i in range(len(library))]
        box.remove_row(row)
        return texts

    box.set_library(library, "fake/tiny-model", "fake-image")
    assert labels() == ["tiny style", "other style (for other/model)", "sea (for test-pattern)"]
    box.set_library(library, None, "test-pattern")  # a model-free generator
    assert labels() == ["sea", "other style (for other/model)", "tiny style (for fake/tiny-model)"]
    row = box.add_row("sea")
    tip = row.combo.toolTip()
    assert "base model: none (trained from no model)" in tip and "for: test-pattern" in tip
    assert row.combo.itemData(0, Qt.ItemDataRole.ToolTipRole) == tip
