"""The preferred generator of each task several generators serve: the Settings dialog's section,
and the generator the Generate panel shows first."""

from __future__ import annotations

from typing import Any

from studio.core.studio import Studio
from studio.testing.demo import DemoPlugin
from studio.ui.generate_panel import GeneratePanel
from studio.ui.settings_dialog import SettingsDialog


def items(combo: Any) -> list[tuple[str, str | None]]:
    return [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())]


def test_settings_list_each_shared_task_and_save_the_choice(
    studio: Studio, register_plugin: Any, qtbot: Any
) -> None:
    # the demo plugin is registered after the fake one: both serve text-to-image and
    # text-generation, so the fake plugin's come first (installed first)
    register_plugin(DemoPlugin(), name="demo")
    # a preference for a task nothing serves any more (its plugin was uninstalled)
    studio.save_settings(
        studio.settings.model_copy(update={"preferred_generators": {"text-to-svg": "gone"}})
    )
    dialog = SettingsDialog(studio)
    qtbot.addWidget(dialog)
    section = dialog.body.preferred
    assert not section.isHidden()
    assert list(section.combos) == ["text-generation", "text-to-image"]  # one generator: none
    combo = section.combos["text-to-image"]
    assert items(combo) == [
        ("Automatic: Fake image (installed first)", None),
        ("Fake image (fake-image)", "fake-image"),
        ("Demo landscapes (demo-pictures)", "demo-pictures"),
    ]
    assert combo.currentData() is None
    combo.setCurrentIndex(combo.findData("demo-pictures"))
    assert dialog.save()
    stored = studio.store.load_settings().preferred_generators
    assert stored == {"text-to-image": "demo-pictures", "text-to-svg": "gone"}
    chosen = studio.plugins.choose_generator("text-to-image", studio.settings.preferred_generators)
    assert chosen.generator.id == "demo-pictures"  # applies at once
    # a new dialog shows it; back to automatic clears it, the other preference stays
    again = SettingsDialog(studio)
    qtbot.addWidget(again)
    combo = again.body.preferred.combos["text-to-image"]
    assert combo.currentData() == "demo-pictures"
    assert again.body.preferred.combos["text-generation"].currentData() is None
    combo.setCurrentIndex(0)
    assert again.save()
    assert studio.store.load_settings().preferred_generators == {"text-to-svg": "gone"}


def test_a_preference_that_cannot_be_used_is_shown_and_kept(
    studio: Studio, register_plugin: Any, qtbot: Any
) -> None:
    register_plugin(DemoPlugin(), name="demo")
    studio.save_settings(
        studio.settings.model_copy(
            update={
                "preferred_generators": {"text-to-image": "gone", "text-generation": "test-tone"}
            }
        )
    )
    dialog = SettingsDialog(studio)
    qtbot.addWidget(dialog)
    image = dialog.body.preferred.combos["text-to-image"]
    assert image.currentText() == "gone (not installed: automatic is used)"
    text = dialog.body.preferred.combos["text-generation"]
    assert text.currentText() == "test-tone (serves text-to-speech: automatic is used)"
    assert dialog.save()  # kept as it is until the user picks another
    assert studio.store.load_settings().preferred_generators == {
        "text-to-image": "gone",
        "text-generation": "test-tone",
    }


def test_no_section_when_every_task_has_one_generator(studio: Studio, qtbot: Any) -> None:
    dialog = SettingsDialog(studio)
    qtbot.addWidget(dialog)
    assert dialog.body.preferred.isHidden() and dialog.body.preferred.combos == {}


def test_the_generate_panel_first_shows_the_preferred_text_to_image_generator(
    studio: Studio, register_plugin: Any, qtbot: Any
) -> None:
    from studio.ui.session import Session

    register_plugin(DemoPlugin(), name="demo")
    session = Session(studio)
    try:
        panel = GeneratePanel(session)
        qtbot.addWidget(panel)
        assert panel.picker.generator_id() == "fake-image"  # the rule: installed first
        studio.save_settings(
            studio.settings.model_copy(
                update={"preferred_generators": {"text-to-image": "demo-pictures"}}
            )
        )
        fresh = GeneratePanel(session)
        qtbot.addWidget(fresh)
        assert fresh.picker.generator_id() == "demo-pictures"
        # what the user chose last time wins over the preference
        kept = GeneratePanel(session, state={"generator": "fake-image"})
        qtbot.addWidget(kept)
        assert kept.picker.generator_id() == "fake-image"
    finally:
        session.close()
