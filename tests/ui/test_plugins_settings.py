"""The plugins panel (a broken plugin's error, enable/disable, pip), the settings dialog and the
window state kept between runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QComboBox, QLineEdit, QMessageBox, QProgressBar

from studio import hookimpl
from studio.core.studio import Studio
from studio.ui import models_panel
from studio.ui.main_window import MainWindow
from studio.ui.plugins_panel import NAME_ROLE
from studio.ui.settings_dialog import SettingsDialog

WAIT = 10_000


T = TypeVar("T")


def child(widget: Any, cls: type[T]) -> T:
    """The first child of ``widget`` of type ``cls`` (the test fails if there is none)."""
    found = widget.findChild(cls)
    assert found is not None, f"no {cls.__name__} in {widget!r}"
    return found


class BrokenPlugin:
    studio_api = ">=1.0,<2"

    @hookimpl
    def register_generators(self, register: Callable[[type], None]) -> None:
        raise RuntimeError("this plugin is broken on purpose")


def row_of(panel: Any, name: str) -> Any:
    for i in range(panel.tree.topLevelItemCount()):
        item = panel.tree.topLevelItem(i)
        if item.data(0, NAME_ROLE) == name:
            return item
    raise AssertionError(f"{name} not listed")


def test_broken_plugin_error_and_traceback(window: Any, register_plugin: Any, qtbot: Any) -> None:
    info = register_plugin(BrokenPlugin(), name="broken-demo")
    assert info.error
    panel = window.plugins
    panel.populate()
    item = row_of(panel, "broken-demo")
    assert "this plugin is broken on purpose" in item.text(5)
    fake = row_of(panel, "studio-fakes")
    assert "fake-image" in fake.text(3) and fake.text(4) == "fake-lora"
    assert fake.text(5).startswith("loaded")
    assert panel.select("broken-demo")
    assert panel.traceback_button.isVisibleTo(panel)
    dialog = panel.show_traceback()
    assert dialog is not None
    assert "Traceback" in dialog.text.toPlainText()
    assert "RuntimeError: this plugin is broken on purpose" in dialog.text.toPlainText()
    dialog.close()


def test_disable_plugin_is_persisted(window: Any, studio: Studio, qtbot: Any) -> None:
    panel = window.plugins
    restarts: list[str] = []
    window.session.restart_needed.connect(restarts.append)
    item = row_of(panel, "studio-fakes")
    item.setCheckState(2, Qt.CheckState.Unchecked)
    assert studio.settings.disabled_plugins == ["studio-fakes"]
    assert studio.store.load_settings().disabled_plugins == ["studio-fakes"]
    assert restarts and "restart" in window.restart_text.text().lower()
    assert window.restart_banner.isVisibleTo(window)
    assert row_of(panel, "studio-fakes").text(5) == "loaded · disabled on restart"
    row_of(panel, "studio-fakes").setCheckState(2, Qt.CheckState.Checked)
    assert studio.store.load_settings().disabled_plugins == []


def test_pip_runs_in_a_process_with_live_output(window: Any, qtbot: Any, tmp_path: Path) -> None:
    pip = window.plugins.pip
    codes: list[int] = []
    pip.finished.connect(codes.append)
    assert pip.run_pip(["--version"])
    qtbot.waitUntil(lambda: bool(codes), timeout=30_000)
    assert codes == [0]
    assert "pip " in pip.output.toPlainText()
    assert "[pip exited with code 0]" in pip.output.toPlainText()


def _plugin_wheel(folder: Path) -> Path:
    """A minimal third-party plugin wheel (the entry point is all the studio needs)."""
    import base64
    import hashlib
    import zipfile

    files = {
        "studio_demo_plugin/__init__.py": b'"""A plugin that registers nothing."""\n',
        "studio_demo_plugin-0.1.dist-info/METADATA": (
            b"Metadata-Version: 2.1\nName: studio-demo-plugin\nVersion: 0.1\n"
        ),
        "studio_demo_plugin-0.1.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        "studio_demo_plugin-0.1.dist-info/entry_points.txt": (
            b"[studio.plugins]\ndemo = studio_demo_plugin\n"
        ),
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("studio_demo_plugin-0.1.dist-info/RECORD,,")
    wheel = folder / "studio_demo_plugin-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr("studio_demo_plugin-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return wheel


def test_install_a_plugin_wheel_with_pip_then_uninstall(
    window: Any, qtbot: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    """The real pip, in a throw-away environment (not the one running the tests), offline."""
    import subprocess
    import sys

    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=120)
    python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # nothing may reach the network
    monkeypatch.setenv("PIP_DISABLE_PIP_VERSION_CHECK", "1")
    panel = window.plugins
    panel.pip.python = str(python)
    codes: list[int] = []
    panel.pip.finished.connect(codes.append)
    panel.spec.setText(str(_plugin_wheel(tmp_path)))

    assert panel.install()
    assert not panel.install_button.isEnabled() and not panel.uninstall_button.isEnabled()
    assert not panel.install()  # one pip at a time
    assert "pip is still running" in panel.pip.output.toPlainText()
    qtbot.waitUntil(lambda: bool(codes), timeout=120_000)

    output = panel.pip.output.toPlainText()
    assert codes == [0], output
    assert f"--constraint {panel.pip.constraints}" in output  # the core stays pinned
    assert "Successfully installed studio-demo-plugin-0.1" in output
    assert panel.install_button.isEnabled()
    assert window.restart_banner.isVisibleTo(window)
    assert "Installed" in window.restart_text.text() and "Restart" in window.restart_text.text()
    listed = subprocess.run(
        [
            str(python),
            "-c",
            "from importlib.metadata import entry_points as e; "
            "print([p.value for p in e(group='studio.plugins')])",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    assert "studio_demo_plugin" in listed

    assert panel.pip.uninstall("studio-demo-plugin")
    qtbot.waitUntil(lambda: len(codes) == 2, timeout=120_000)
    assert codes[1] == 0
    assert "Successfully uninstalled studio-demo-plugin-0.1" in panel.pip.output.toPlainText()


def test_core_packages_cannot_be_installed_over(window: Any) -> None:
    panel = window.plugins
    panel.spec.setText("torch==2.0")
    assert panel.install() is False
    assert "core packages" in panel.pip.output.toPlainText()
    assert not panel.pip.running()


def test_settings_saved_and_loaded_again(
    window: Any, studio: Studio, qtbot: Any, tmp_path: Path
) -> None:
    dialog = window.open_settings()
    assert isinstance(dialog, SettingsDialog)
    form = dialog.body.form
    assert "disabled_plugins" not in form.rows
    theme = child(form.editor("theme"), QComboBox)
    theme.setCurrentIndex(theme.findText("dark"))
    form.rows["host_budget_gb"].set_value(3.5)
    form.rows["output_dir"].set_value(str(tmp_path / "outs"))
    form.rows["cpu_threads"].set_value(2)
    assert dialog.save()
    assert not dialog.isVisible()
    stored = studio.store.load_settings()
    assert stored.theme == "dark" and stored.host_budget_gb == 3.5 and stored.cpu_threads == 2
    assert stored.output_dir == tmp_path / "outs"
    assert studio.cache.host_budget == int(3.5 * 10**9)  # budgets apply at once
    # the CPU threads are set when the worker starts: the window offers a restart
    assert window.restart_banner.isVisibleTo(window)
    assert "CPU threads changed" in window.restart_text.text()
    # a new dialog shows what was saved
    again = window.open_settings()
    assert again.body.form.values()["theme"] == "dark"
    assert again.body.form.values()["host_budget_gb"] == 3.5
    again.reject()


def test_settings_choose_another_studio_home(
    window: Any, studio: Studio, tmp_path: Path, monkeypatch: Any
) -> None:
    from studio.core.paths import chosen_home
    from studio.ui import settings_dialog

    dialog = window.open_settings()
    # STUDIO_HOME (set by the test environment) wins, and the dialog says so
    assert not dialog.body.home_button.isEnabled()
    assert "STUDIO_HOME" in dialog.body.home_note.text()
    dialog.reject()
    monkeypatch.delenv("STUDIO_HOME")
    dialog = window.open_settings()
    assert dialog.body.home.text() == str(studio.paths.home)
    # a folder with someone's files in it is refused, next to the form; nothing is saved
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "cat.jpg").write_bytes(b"\xff\xd8")
    picked = [str(photos)]
    monkeypatch.setattr(settings_dialog.QFileDialog, "getExistingDirectory", lambda *_: picked[0])
    dialog.body.home_button.click()
    assert dialog.body.home.text() == str(photos)
    assert dialog.save() is False
    assert "not a studio home" in dialog.body.error.text() and chosen_home() is None
    # an empty folder is taken, from the next start (the window offers the restart)
    picked[0] = str(tmp_path / "new-home")
    dialog.body.home_button.click()
    assert dialog.save() is True
    assert chosen_home() == (tmp_path / "new-home").resolve()
    assert "studio home is now" in window.restart_text.text()
    assert window.restart_banner.isVisibleTo(window)
    # and "Default" goes back to the platform's folder
    dialog = window.open_settings()
    assert (
        f"From the next start: {(tmp_path / 'new-home').resolve()}" in dialog.body.home_note.text()
    )
    dialog.body.home_default.click()
    assert dialog.save() is True
    assert chosen_home() is None


def test_settings_validation_and_pickle_warning(window: Any, studio: Studio) -> None:
    asked: list[list[str]] = []
    answer = [False]

    def confirm(_parent: Any, refs: list[str]) -> bool:
        asked.append(refs)
        return answer[0]

    dialog = SettingsDialog(studio, window, confirm_pickle=confirm)
    device = child(dialog.body.form.editor("device"), QLineEdit)
    device.setText("gpu9")
    assert dialog.save() is False
    assert "device" in (dialog.body.form.error_of("device") or "")
    device.setText("cpu")
    pickle = child(dialog.body.form.editor("allow_pickle"), QLineEdit)
    pickle.setText("org/old-model")
    assert dialog.save() is False  # the warning was declined
    assert asked == [["org/old-model"]]
    assert studio.store.load_settings().allow_pickle == []
    assert dialog.body.form.error_of("allow_pickle")
    answer[0] = True
    assert dialog.save() is True
    assert studio.store.load_settings().allow_pickle == ["org/old-model"]
    dialog.close()


def test_window_state_restored(studio: Studio, qtbot: Any) -> None:
    first: Any = MainWindow(studio)
    qtbot.addWidget(first)
    first.show()
    first.resize(1000, 700)
    first.generate.select_generator("fake-text")
    first.generate.prompt.setPlainText("remember me")
    first.generate.form.set_values({"max_tokens": 42})
    first.generate.seed.set_value(99)
    first.show_panel("gallery")
    first.gallery.splitter.setSizes([300, 600])
    sizes = first.gallery.splitter.sizes()
    first.close()

    second: Any = MainWindow(studio)
    qtbot.addWidget(second)
    second.show()
    assert second.current_panel() == "gallery"
    # the offscreen screen is 800 px wide: the width is clamped to it (then to the minimum)
    assert second.height() == 700
    assert second.gallery.splitter.sizes()[0] == sizes[0]  # the rest follows the window width
    gen = second.generate
    assert gen.generator.id == "fake-text"
    assert gen.prompt.toPlainText() == "remember me"
    assert gen.form.values()["max_tokens"] == 42
    assert gen.seed.value() == 99
    second.close()
    assert (studio.paths.home / "ui.ini").is_file()


def test_first_run_offline_offers_the_catalog(window: Any, qtbot: Any) -> None:
    models = window.models
    assert window.session.models_loaded
    assert not window.session.any_model_downloaded()
    assert "No model is downloaded yet" in models.summary.text()
    catalog = [e for e in window.session.models if e.source == "catalog"]
    assert catalog and models.tree.topLevelItemCount() == len(window.session.models)
    # a generator whose model is in the catalog but not downloaded shows the banner
    gen = window.generate
    gen.select_generator("fake-image")
    assert not gen.banner.isVisibleTo(gen)  # its model is no download: nothing to offer
    gen.model_picker.set_ref(catalog[0].ref)
    assert gen.banner.isVisibleTo(gen)
    assert "No model is downloaded yet" in gen.banner_text.text()
    gen.banner_button.click()
    # the models panel, with that model selected and ready to download
    assert window.current_panel() == "models"
    assert models.selected() is not None and models.selected().ref == catalog[0].ref
    assert models.download_button.isEnabled()


def test_models_panel_fits_and_cache(window: Any, studio: Studio) -> None:
    from studio.ui.models_panel import fits_text

    assert fits_text((False, 10**12, 8 * 10**9), "cpu")[0] == "no"
    assert fits_text((True, 10**6, 8 * 10**9), "cpu")[0] == "yes"
    assert fits_text(None, "cpu")[0] == "?"
    # the catalog's sizes were checked against the cache budget, off the GUI thread
    catalog = [e for e in window.session.models if e.source == "catalog"]
    assert all(e.ref in window.session.fits for e in catalog)
    view = window.models.cache_view
    view.refresh()
    assert "0 loaded" in view.counters.text()
    assert "of" in view.host_bar.format()


def _tiny_hub_model(hub_cache: Path, repo_id: str) -> None:
    import json

    import numpy as np
    from safetensors.numpy import save_file

    from studio.testing.hub import save_to_hub_cache

    folder = hub_cache.parent / "src"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    save_file({"w": np.zeros((4, 4), dtype="float32")}, str(folder / "model.safetensors"))
    save_to_hub_cache(folder, repo_id, hub_cache)


def test_delete_a_hub_model_after_asking(
    window: Any, studio: Studio, hub_cache: Path, qtbot: Any, monkeypatch: Any
) -> None:
    _tiny_hub_model(hub_cache, "test-org/tiny")
    panel = window.models
    window.session.refresh_models()
    qtbot.waitUntil(
        lambda: any(m.ref == "test-org/tiny" for m in window.session.models), timeout=WAIT
    )
    entry = next(m for m in window.session.models if m.ref == "test-org/tiny")
    assert entry.downloaded and entry.source == "hub"
    row = row_of_model(panel, "test-org/tiny")
    assert row.text(4) == "downloaded"
    panel.tree.setCurrentItem(row)
    assert panel.delete_button.isEnabled() and panel.delete_button.text() == "Delete"
    asked: list[str] = []

    def answer(reply: Any) -> Callable[..., Any]:
        def question(_parent: Any, _title: str, text: str, *_: Any) -> Any:
            asked.append(text)
            return reply

        return question

    # asked first; Cancel keeps the model
    monkeypatch.setattr(
        models_panel.QMessageBox, "question", answer(QMessageBox.StandardButton.Cancel)
    )
    assert not panel.delete_selected()
    assert "Delete test-org/tiny" in asked[-1] and "Hugging Face cache" in asked[-1]
    assert (hub_cache / "models--test-org--tiny" / "snapshots").is_dir()
    monkeypatch.setattr(
        models_panel.QMessageBox, "question", answer(QMessageBox.StandardButton.Yes)
    )
    assert panel.delete_selected()
    qtbot.waitUntil(
        lambda: all(m.ref != "test-org/tiny" for m in window.session.models), timeout=WAIT
    )
    assert not (hub_cache / "models--test-org--tiny" / "snapshots").exists() or not any(
        (hub_cache / "models--test-org--tiny" / "snapshots").iterdir()
    )


def row_of_model(panel: Any, ref: str) -> Any:
    for i in range(panel.tree.topLevelItemCount()):
        item = panel.tree.topLevelItem(i)
        if item.data(0, Qt.ItemDataRole.UserRole + 1).ref == ref:
            return item
    raise AssertionError(f"{ref} not listed")


def test_download_a_typed_hub_id_with_a_progress_bar_cancel_and_resume(
    window: Any, studio: Studio, fake_hub: Any, qtbot: Any
) -> None:
    from studio.testing.fake_hub import Gate, tiny_repo

    fake_hub.add("artist/voice", tiny_repo(size=4000))
    gate = Gate("model.safetensors", after=1000)
    fake_hub.on_chunk = gate
    panel = window.models
    window.show_panel("models")
    panel.hub_id.setText("artist/voice")
    job = panel.download_typed()
    assert job is not None
    assert gate.reached.wait(10)
    # listed at once (it is in no list yet), with a progress bar in its Status cell
    row = row_of_model(panel, "artist/voice")
    qtbot.waitUntil(lambda: row.text(4).startswith("downloading "), timeout=WAIT)
    bar = panel.tree.itemWidget(row, 4)
    assert isinstance(bar, QProgressBar) and bar.isVisible()
    qtbot.waitUntil(lambda: bar.value() > 0, timeout=WAIT)
    assert "%" in bar.format()
    # cancel from the row
    panel.tree.setCurrentItem(row)
    assert panel.cancel_button.isVisibleTo(panel) and not panel.delete_button.isEnabled()
    assert panel.cancel_selected()
    gate.proceed.set()
    qtbot.waitUntil(lambda: "artist/voice" not in panel.downloads, timeout=WAIT)
    assert studio.job(job).state.value == "cancelled"
    # again: it finishes and the row says so
    fake_hub.on_chunk = None
    panel.hub_id.setText("artist/voice")
    again = panel.download_typed()
    assert again is not None
    qtbot.waitUntil(lambda: studio.job(again).state.finished, timeout=WAIT)
    assert studio.job(again).state.value == "succeeded"
    qtbot.waitUntil(
        lambda: row_of_model(panel, "artist/voice").text(4) == "downloaded", timeout=WAIT
    )
    row = row_of_model(panel, "artist/voice")
    assert row.data(0, Qt.ItemDataRole.UserRole + 1).downloaded
    assert panel.tree.itemWidget(row, 4) is None  # the bar is gone with the download


def test_download_refused_offline_says_why(window: Any, studio: Studio) -> None:
    panel = window.models
    panel.hub_id.setText("nobody/not-there")
    assert panel.download_typed() is None  # the test environment is offline (HF_HUB_OFFLINE)
    assert "Cannot download" in panel.detail.text()
    assert "nobody/not-there" not in panel.downloads


def test_restart_closes_and_frees_the_queue_before_starting_the_new_studio(
    studio_home: Path, qtbot: Any, monkeypatch: Any
) -> None:
    """Otherwise the new process finds the home locked and never takes over the queue."""
    from studio.core.studio import HomeLock
    from studio.ui import main_window

    window = MainWindow(home=studio_home, owns_studio=True)
    qtbot.addWidget(window)
    window.show()
    qtbot.waitUntil(lambda: window.studio is not None, timeout=WAIT)
    started: list[tuple[str, list[str], bool]] = []

    def start_detached(program: str, arguments: list[str]) -> tuple[bool, int]:
        lock = HomeLock(studio_home / "studio.lock")
        free = lock.acquire()  # what the new process would find
        if free:
            lock.release()
        started.append((program, arguments, free))
        return True, 4242

    monkeypatch.setattr(main_window.QProcess, "startDetached", start_detached)
    assert window.restart()
    assert not window.isVisible() and window.studio is None
    assert len(started) == 1 and started[0][2], "the lock was still held at the new start"
