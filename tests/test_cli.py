"""The command line: generate / regenerate / plugins / models / jobs, errors, streaming, Ctrl-C.

Most tests call ``studio.cli.main`` in-process; a few run the installed ``aigc-studio`` script in
a subprocess. Either way the testing kit's fake plugin is found the way a third-party plugin is:
a distribution with a ``studio.plugins`` entry point on the path.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest

from studio.cli import EventPrinter, main
from studio.testing.contract import artifact_content
from studio.testing.dists import make_distribution, pythonpath_with
from studio.testing.fakes import FakeImageGenerator, fake_text

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(sys.executable).with_name("aigc-studio")


@pytest.fixture
def fakes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, studio_home: Path) -> dict[str, str]:
    """The fake plugin installed as distribution ``studio-fakes`` (entry point ``fakes``).

    Returns the environment for a subprocess; in-process, sys.path has it already. Only this
    plugin is loaded (``STUDIO_LOAD_PLUGINS``), so the built-ins' state cannot change the results.
    """
    site = make_distribution(
        tmp_path / "site", "studio-fakes", {"fakes": "studio.testing.fake_plugin"}
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "fakes")
    return pythonpath_with(site)


def outputs(home: Path) -> list[Path]:
    folder = home / "outputs"
    return sorted(folder.rglob("*")) if folder.exists() else []


def stored_jobs(home: Path) -> list:
    from studio.core.store import Store

    if not (home / "studio.sqlite3").exists():
        return []
    store = Store(home / "studio.sqlite3")
    try:
        return store.list_jobs()
    finally:
        store.close()


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("aigc-studio: error: "), err
    return lines[0]


# --- generate -------------------------------------------------------------------------------


def test_generate_streams_text_on_stderr_and_prints_the_path(
    fakes: dict, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["generate", "fake-text", "--prompt", "hello", "--seed", "3", "--set", "max_tokens=6"]
    )
    out, err = capsys.readouterr()
    assert code == 0, err
    expected = "".join(fake_text("hello", 3, 6))
    paths = out.splitlines()
    assert len(paths) == 1
    path = Path(paths[0])
    assert path.is_file() and path.parent == studio_home / "outputs"
    assert path.read_text(encoding="utf-8") == expected
    assert err.startswith(expected + "\n")  # streamed, as produced, before the summary
    assert "succeeded" in err and "1 artifact saved" in err


def test_generate_by_task_name_and_json_schema(
    fakes: dict, studio_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "elsewhere"
    code = main(
        [
            "generate",
            "text-to-image",
            "--prompt",
            "a fox",
            "--seed",
            "42",
            "--set",
            "steps=2",
            "--set",
            "batch-size=2",
            "--out",
            str(out_dir),
            "--json",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert err == ""  # --json keeps stderr quiet
    doc = json.loads(out)
    assert set(doc) == {"schema", "job", "artifacts", "notes"}
    assert doc["schema"] == 1
    job = doc["job"]
    assert job["state"] == "succeeded" and job["kind"] == "generate"
    assert job["component"] == "fake-image"  # the task resolved to the generator
    assert job["request"]["seed"] == 42 and job["request"]["options"]["batch_size"] == 2
    assert job["error"] is None and job["step"] == job["total"] == 4
    assert [a["id"] for a in doc["artifacts"]] == job["artifacts"]
    assert len(doc["artifacts"]) == 2
    for index, artifact in enumerate(doc["artifacts"]):
        assert set(artifact) == {"id", "path", "kind", "modality", "recipe"}
        assert artifact["kind"] == artifact["modality"] == "image"
        path = Path(artifact["path"])
        assert path.parent == out_dir.resolve() and path.suffix == ".png"
        recipe = artifact["recipe"]
        assert recipe["generator"] == "fake-image"
        assert recipe["seed"] == 42 + index and recipe["index"] == index
        assert recipe["options"]["steps"] == 2
    assert doc["notes"] == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--set", "width=13"], "'width'"),
        (["--set", "steps=0"], "'steps'"),
        (["--set", "steps=many"], "'steps'"),
        (["--set", "colour=red"], "'colour'"),
        (["--set", "width"], "KEY=VALUE"),
        (["--seed", "-1"], "seed"),
        (["--seed", "x"], "--seed"),
        (["--lora", "style.safetensors:9"], "weight"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    fakes: dict, studio_home: Path, capsys: pytest.CaptureFixture[str], args: list, named: str
) -> None:
    code = main(["generate", "fake-image", "--prompt", "fox", *args])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert named in one_error_line(err)
    assert outputs(studio_home) == []
    assert stored_jobs(studio_home) == []


def test_option_error_says_what_is_allowed(
    fakes: dict, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "fake-image", "--prompt", "fox", "--set", "width=4000"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "option 'width'" in line and "allowed: an integer >= 8 and <= 1024" in line
    assert main(["generate", "fake-image", "--prompt", "fox", "--set", "colour=red"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "allowed: width, height, steps" in line


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["generate", "no-such", "--prompt", "x"], "no generator or task named 'no-such'"),
        (["generate", "fake-image"], "needs a prompt"),
        (["generate", "fake-text", "--prompt", "x", "--lora", "a/b"], "does not support LoRA"),
        (
            ["generate", "fake-image", "--prompt", "x", "--lora", "missing.safetensors"],
            "LoRA 'missing.safetensors' not found",
        ),
        (["generate", "fake-text", "--prompt", "x", "--parent", "nope"], "--parent 'nope'"),
        (["generate"], "required: TASK_OR_GENERATOR_ID"),
        (["regenerate", "nope"], "neither an artifact id nor a file"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_unusable_requests_are_refused(
    fakes: dict, studio_home: Path, capsys: pytest.CaptureFixture[str], argv: list, message: str
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in one_error_line(err)
    assert stored_jobs(studio_home) == [] and outputs(studio_home) == []


def test_unknown_generator_lists_the_available_ones(
    fakes: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "no-such", "--prompt", "x", "--json"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "available:" in line and "fake-image" in line and "text-to-image" in line


def test_out_must_be_a_folder(
    fakes: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = tmp_path / "a-file"
    file.write_text("x")
    assert main(["generate", "fake-text", "--prompt", "x", "--out", str(file)]) == 2
    assert "not a folder" in one_error_line(capsys.readouterr().err)


def test_failed_job_exits_1_with_its_error(fakes: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "fake-fail", "--set", "error=value"]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert "failed: ValueError: fake failure requested" in one_error_line(err)
    assert main(["generate", "fake-fail", "--set", "after_steps=2", "--json"]) == 1
    out, err = capsys.readouterr()
    doc = json.loads(out)
    assert doc["job"]["state"] == "failed" and "ValueError" in doc["job"]["error"]
    assert doc["artifacts"] == []
    assert "failed" in one_error_line(err)


def test_parent_by_file_or_id(fakes: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate", "fake-text", "--prompt", "one", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)["artifacts"][0]
    assert (
        main(["generate", "fake-text", "--prompt", "two", "--parent", first["path"], "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["job"]["request"]["parent"] == first["id"]
    assert (
        main(["generate", "fake-text", "--prompt", "two", "--parent", first["id"], "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["job"]["request"]["parent"] == first["id"]


# --- options help ---------------------------------------------------------------------------


def test_help_options_is_derived_from_the_options_model(
    fakes: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.core.options import allowed_text, field_specs

    assert main(["generate", "fake-image", "--help-options"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("fake-image: Fake image (text-to-image, image)")
    flat = " ".join(text.split())  # descriptions are wrapped to the terminal
    for spec in field_specs(FakeImageGenerator.Options):
        assert f"\n  {spec.name}  ({spec.kind}, default {spec.default!r})\n" in text
        assert spec.description in flat
        assert f"allowed: {allowed_text(spec)}" in flat
    # also at the end of `generate X --help`
    assert main(["generate", "fake-image", "--help"]) == 0
    text = capsys.readouterr().out
    flat = " ".join(text.split())
    assert "--prompt" in flat and "allowed: an integer >= 8 and <= 1024, a multiple of 8" in flat
    assert main(["generate", "no-such", "--help-options"]) == 2
    assert "no generator or task" in one_error_line(capsys.readouterr().err)


# --- regenerate -----------------------------------------------------------------------------


def test_regenerate_by_file_and_by_id_gives_the_same_image(
    fakes: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "generate",
                "fake-image",
                "--prompt",
                "fox",
                "--set",
                "steps=2",
                "--set",
                "batch_size=3",
                "--json",
            ]
        )
        == 0
    )
    original = json.loads(capsys.readouterr().out)["artifacts"][1]  # the 2nd image of a batch
    assert main(["regenerate", original["path"], "--out", str(tmp_path / "again")]) == 0
    out, _ = capsys.readouterr()
    [path] = out.splitlines()
    assert Path(path).parent == (tmp_path / "again").resolve()
    digest = artifact_content(Path(original["path"]), "image")
    assert artifact_content(Path(path), "image") == digest
    assert main(["regenerate", original["id"], "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1 and doc["job"]["state"] == "succeeded"
    [again] = doc["artifacts"]
    assert again["recipe"]["seed"] == original["recipe"]["seed"]
    assert artifact_content(Path(again["path"]), "image") == digest


def _set_installed_version(site: Path, name: str, old: str, new: str) -> None:
    """Make the distribution in ``site`` look upgraded from ``old`` to ``new``."""
    folder = site / f"{name.replace('-', '_')}-{old}.dist-info"
    metadata = folder / "METADATA"
    metadata.write_text(metadata.read_text().replace(f"Version: {old}", f"Version: {new}"))
    folder.rename(site / f"{name.replace('-', '_')}-{new}.dist-info")
    importlib.invalidate_caches()


def test_regenerate_refuses_another_plugin_version_unless_allowed(
    fakes: dict[str, str], studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["generate", "fake-image", "--prompt", "fox", "--seed", "7", "--set", "steps=1"]
    assert main([*argv, "--json"]) == 0
    original = json.loads(capsys.readouterr().out)["artifacts"][0]
    assert original["recipe"]["plugin"] == {"name": "fakes", "version": "0.1.0"}
    site = Path(fakes["PYTHONPATH"].split(os.pathsep)[0])
    _set_installed_version(site, "studio-fakes", "0.1.0", "0.2.0")
    before = len(stored_jobs(studio_home))

    assert main(["regenerate", original["path"]]) == 2
    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert out == "" and "0.1.0" in line and "0.2.0" in line and "fakes" in line
    assert len(stored_jobs(studio_home)) == before  # refused before anything was queued

    assert main(["regenerate", original["path"], "--allow-other-version", "--json"]) == 0
    [again] = json.loads(capsys.readouterr().out)["artifacts"]
    assert again["recipe"]["plugin"]["version"] == "0.2.0"
    assert artifact_content(Path(again["path"]), "image") == artifact_content(
        Path(original["path"]), "image"
    )


def test_regenerate_refuses_when_the_plugin_is_missing(
    fakes: dict[str, str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "fake-text", "--prompt", "x", "--json"]) == 0
    original = json.loads(capsys.readouterr().out)["artifacts"][0]
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "some-other-plugin")  # fakes is not loaded
    for extra in ([], ["--allow-other-version"]):
        assert main(["regenerate", original["id"], *extra]) == 2
        out, err = capsys.readouterr()
        assert out == "" and "fakes" in one_error_line(err)


def test_a_model_folder_that_does_not_exist_is_refused_before_any_job(
    fakes: dict[str, str], studio_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nonexistent" / "folder"
    assert main(["generate", "fake-text", "--prompt", "x", "--model", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == "" and str(missing) in one_error_line(err)
    assert stored_jobs(studio_home) == [] and outputs(studio_home) == []


# --- listings -------------------------------------------------------------------------------


def test_plugins_listing(fakes: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1
    [plugin] = doc["plugins"]  # STUDIO_LOAD_PLUGINS=fakes
    assert plugin["name"] == "fakes" and plugin["builtin"] is False and plugin["enabled"]
    assert plugin["error"] is None and plugin["module"] == "studio.testing.fake_plugin"
    image = next(g for g in plugin["generators"] if g["id"] == "fake-image")
    assert image == {
        "id": "fake-image",
        "name": "Fake image",
        "task": "text-to-image",
        "modality": "image",
        "default_model": "fake/tiny-model",
        "uses_model": True,
        "supports_lora": True,
        "description": FakeImageGenerator.description,
    }
    assert [t["id"] for t in plugin["trainers"]] == ["fake-lora"]
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("fakes 0.1.0 (third-party, studio.testing.fake_plugin)")
    assert "fake-image  text-to-image    image     fake/tiny-model" in text
    assert "trainers:" in text and "fake-lora" in text


def test_plugins_listing_with_the_builtins(
    studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "--json"]) == 0
    names = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    assert {"image", "text", "audio"} <= set(names)
    assert all(names[n]["builtin"] for n in ("image", "text", "audio"))


def test_models_listing_sees_the_hub_cache_and_the_catalog(
    studio_home: Path, hub_cache: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.core.catalog import catalog
    from studio.testing.hub import save_to_hub_cache

    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(
        '{"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]}'
    )
    (folder / "model.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    save_to_hub_cache(folder, "tester/tiny-model", hub_cache)
    assert main(["models", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1
    by_ref = {m["ref"]: m for m in doc["models"]}
    tiny = by_ref["tester/tiny-model"]
    assert tiny["source"] == "hub" and tiny["downloaded"] is True
    assert tiny["kind"] == "transformers" and tiny["size_bytes"] > 0
    for entry in catalog():
        assert by_ref[entry.id]["source"] == "catalog"
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split() == [
        "ref",
        "source",
        "kind",
        "modality",
        "size",
        "downloaded",
    ]
    assert "tester/tiny-model" in text
    assert "724.0 MB" in text  # the catalog's SmolLM2 360M, in decimal units like the hub


def test_jobs_listing(fakes: dict, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["jobs"]) == 0
    assert capsys.readouterr().out == "no jobs\n"
    assert main(["generate", "fake-text", "--prompt", "x", "--json"]) == 0
    job_id = json.loads(capsys.readouterr().out)["job"]["id"]
    assert main(["generate", "fake-fail"]) == 1
    capsys.readouterr()
    assert main(["jobs", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1
    states = [(j["component"], j["state"]) for j in doc["jobs"]]
    assert states == [("fake-fail", "failed"), ("fake-text", "succeeded")]  # newest first
    assert doc["jobs"][1]["id"] == job_id and len(doc["jobs"][1]["artifacts"]) == 1
    assert main(["jobs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:3] == ["id", "kind", "state"]
    assert "failed" in lines[1] and "ValueError" in lines[1]
    assert job_id in lines[2] and "succeeded" in lines[2]


# --- the window -----------------------------------------------------------------------------


def test_no_display_explains_and_shows_help(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "platform", "linux")
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert main([]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    first, *rest = err.splitlines()
    assert first.startswith("aigc-studio: no display available")
    assert any(line.startswith("usage: aigc-studio") for line in rest)
    assert "generate" in err and "plugins" in err


def test_window_options_reach_run_gui(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[Path | None, str | None]] = []

    def run_gui(screenshot: Path | None = None, panel: str | None = None) -> int:
        calls.append((screenshot, panel))
        return 0

    fake_app = types.ModuleType("studio.ui.app")
    fake_app.run_gui = run_gui  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "studio.ui.app", fake_app)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")
    shot = tmp_path / "shot.png"
    assert main(["--screenshot", str(shot), "--panel", "gallery"]) == 0
    assert calls == [(shot, "gallery")]
    # a screenshot needs no display: it switches to offscreen rendering itself
    monkeypatch.delenv("QT_QPA_PLATFORM")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["--screenshot", str(shot)]) == 0
    assert calls[-1] == (shot, None) and os.environ["QT_QPA_PLATFORM"] == "offscreen"


# --- progress rendering ---------------------------------------------------------------------


def test_progress_bar_on_a_terminal_is_redrawn_in_place() -> None:
    stream = io.StringIO()
    printer = EventPrinter(stream, tty=True, tty_interval=0, width=10)
    printer.progress(1, 4, "denoising")
    printer.progress(2, 4)
    printer.progress(4, 4)
    text = stream.getvalue()
    assert text == (
        "\r[##........]  25% 1/4 denoising"
        "\r[#####.....]  50% 2/4          "  # padded over the longer line before
        "\r[##########] 100% 4/4\n"
    )


def test_progress_lines_are_throttled_off_a_terminal() -> None:
    stream = io.StringIO()
    printer = EventPrinter(stream, tty=False, line_interval=60)
    for step in range(1, 101):
        printer.progress(step, 100)
    assert stream.getvalue().splitlines() == [
        "[............................]   1% 1/100",
        "[############################] 100% 100/100",
    ]
    printer.progress(3, 0, "loading")
    assert stream.getvalue().splitlines()[-1] == "[############################] 100% 100/100"


def test_streamed_text_replaces_the_bar_and_candidates_are_separated() -> None:
    from studio.core.events import Note, Partial, Progress

    stream = io.StringIO()
    printer = EventPrinter(stream, tty=True, tty_interval=0, width=4)
    printer.handle(Progress(1, 3))
    printer.handle(Partial("Hello"))
    printer.handle(Progress(2, 3))  # no bar over streamed text
    printer.handle(Partial(" world"))
    printer.handle(Note("prompt truncated", "warning"))
    printer.handle(Partial("Bye", index=1))
    printer.close()
    assert stream.getvalue() == (
        "\r[#...]  33% 1/3\r               \rHello world\nwarning: prompt truncated\n"
        "--- candidate 2 ---\nBye\n"
    )
    quiet = io.StringIO()
    EventPrinter(quiet, quiet=True).handle(Partial("x"))
    assert quiet.getvalue() == ""


# --- as a user runs it ----------------------------------------------------------------------


def run_script(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "studio"]
    return subprocess.run(
        [*command, *args], env=env, capture_output=True, text=True, timeout=180, cwd=ROOT
    )


def test_console_script_generate_json(fakes: dict[str, str], studio_home: Path) -> None:
    result = run_script(["generate", "fake-text", "--prompt", "hi", "--seed", "5", "--json"], fakes)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    [artifact] = doc["artifacts"]
    assert Path(artifact["path"]).read_text(encoding="utf-8") == "".join(fake_text("hi", 5, 16))
    assert Path(artifact["path"]).is_relative_to(studio_home)
    bad = run_script(["generate", "fake-text", "--prompt", "hi", "--set", "max_tokens=0"], fakes)
    assert bad.returncode == 2 and bad.stdout == ""
    assert "option 'max_tokens'" in one_error_line(bad.stderr)


def test_python_dash_m_studio_lists_the_plugin(fakes: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "studio", "plugins"],
        env=fakes,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    assert "fake-image" in result.stdout


@pytest.mark.skipif(sys.platform == "win32", reason="SIGINT delivery differs on Windows")
def test_ctrl_c_cancels_the_running_job(fakes: dict[str, str], studio_home: Path) -> None:
    command = [str(SCRIPT)] if SCRIPT.is_file() else [sys.executable, "-m", "studio"]
    proc = subprocess.Popen(
        [
            *command,
            "generate",
            "fake-text",
            "--prompt",
            "slow",
            "--set",
            "delay=0.2",
            "--set",
            "max_tokens=300",
        ],
        env=fakes,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stderr is not None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # wait until text streams: the job is running
            chunk = proc.stderr.read(1)
            if chunk and not chunk.isspace():
                break
            assert proc.poll() is None, "the CLI ended before the job ran"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "cancelling job" in err and "cancelled" in err
    assert out == ""
    [job] = stored_jobs(studio_home)
    assert str(job.state) == "cancelled"


def test_options_help_covers_required_optional_and_choices() -> None:
    from typing import Literal

    from pydantic import Field

    from studio import BaseOptions, Generator
    from studio.cli import options_help

    class Opts(BaseOptions):
        image: str = Field(..., description="The picture to start from.")
        strength: float | None = Field(None, gt=0, le=1, description="How much to change. " * 8)
        mode: Literal["fast", "fine"] = Field("fast", description="Speed or quality.")

    class Gen(Generator):
        id = "g"
        name = "G"
        modality = "image"
        task = "image-to-image"
        Options = Opts

    text = options_help(Gen, width=60)
    assert text.startswith("g: G (image-to-image, image)\ndefault model: (none)\n")
    assert "\n  image  (str, required)\n" in text
    assert "\n  strength  (float, default none)\n" in text
    assert "allowed: a number > 0 and <= 1, or none" in " ".join(text.split())
    assert "allowed: one of 'fast', 'fine'" in text
    assert max(len(line) for line in text.splitlines()) <= 60


def test_disabled_plugins_are_listed_as_disabled(
    fakes: dict, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.core.settings import Settings
    from studio.core.store import Store

    studio_home.mkdir(parents=True, exist_ok=True)
    store = Store(studio_home / "studio.sqlite3")
    store.save_settings(Settings(disabled_plugins=["fakes"]))
    store.close()
    assert main(["plugins", "--json"]) == 0
    [plugin] = json.loads(capsys.readouterr().out)["plugins"]
    assert plugin["enabled"] is False and plugin["generators"] == []
    assert main(["plugins"]) == 0
    assert "[disabled]" in capsys.readouterr().out
    assert main(["generate", "fake-text", "--prompt", "x"]) == 2
    assert "no generator or task named 'fake-text'" in capsys.readouterr().err


def test_docs_cli_reference_covers_every_command_flag_and_variable() -> None:
    import argparse

    from studio.cli import build_parser

    doc = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    parser = build_parser()
    flags = {s for a in parser._actions for s in a.option_strings if s.startswith("--")}
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    commands = [(name, command) for name, command in sub.choices.items()]
    while commands:  # commands, and their own subcommands (`plugins new`)
        name, command = commands.pop()
        assert f"## {name}\n" in doc, f"docs/cli.md has no section for {name}"
        flags |= {s for a in command._actions for s in a.option_strings if s.startswith("--")}
        for action in command._actions:
            if isinstance(action, argparse._SubParsersAction):
                commands.extend((f"{name} {n}", c) for n, c in action.choices.items())
    missing = sorted(f for f in flags - {"--help"} if f"`{f}" not in doc)
    assert not missing, f"flags missing from docs/cli.md: {missing}"
    for variable in (
        "STUDIO_HOME",
        "STUDIO_STRICT_PLUGINS",
        "STUDIO_LOAD_PLUGINS",
        "STUDIO_DISABLE_PLUGIN_AUTOLOAD",
        "HF_HOME",
        "HF_HUB_CACHE",
        "HF_HUB_OFFLINE",
    ):
        assert f"`{variable}" in doc, variable
