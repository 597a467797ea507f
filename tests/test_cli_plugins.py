"""The command line and plugins: ``plugins new``, where load errors are printed, strict mode, which
generator serves a task, and model-free generators.

The plugins are installed the way a third-party plugin is: distributions with a
``studio.plugins`` entry point on the path (:func:`studio.testing.dists.make_distribution`).
"""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from studio.cli import main
from studio.testing.dists import make_distribution

BROKEN = "raise RuntimeError('broken on purpose')\n"

#: A model-free generator serving the same task as the fake plugin's fake-image.
SKETCH = textwrap.dedent(
    '''
    """A model-free image generator, for the command line tests."""

    from studio import Generator, ImageOutput, Result, hookimpl

    studio_api = ">=1.0,<2"


    class Sketch(Generator):
        id = "sketch"
        name = "Sketch"
        modality = "image"
        task = "text-to-image"
        uses_model = False

        def run(self, request, ctx):
            from PIL import Image

            ctx.check_cancelled()
            yield Result(ImageOutput(Image.new("RGB", (8, 8), (request.seed % 256, 0, 0))))


    @hookimpl
    def register_generators(register):
        register(Sketch)
    '''
)


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def one_error_line(err: str) -> str:
    [line] = lines(err)
    assert line.startswith("aigc-studio: error: "), err
    return line


@pytest.fixture
def plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, studio_home: Path) -> dict[str, Path]:
    """Three installed plugins: the fake plugin, a broken one and a model-free ``sketch``."""
    sites = {
        "fakes": make_distribution(
            tmp_path / "site-fakes", "studio-fakes", {"fakes": "studio.testing.fake_plugin"}
        ),
        "broken": make_distribution(
            tmp_path / "site-broken",
            "studio-broken",
            {"broken": "studio_broken_demo"},
            modules={"studio_broken_demo.py": BROKEN},
        ),
        "sketch": make_distribution(
            tmp_path / "site-sketch",
            "studio-sketch",
            {"sketch": "studio_sketch_demo"},
            modules={"studio_sketch_demo.py": SKETCH},
        ),
    }
    for site in sites.values():
        monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "fakes,broken,sketch")
    return sites


# --- plugins new ----------------------------------------------------------------------------


def test_plugins_new_writes_the_package(
    tmp_path: Path, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "mine"
    assert main(["plugins", "new", "palette", "--kind", "trainer", "--dir", str(target)]) == 0
    out, err = capsys.readouterr()
    assert out == f"{target.resolve()}\n"
    assert "created plugin 'palette' (trainer 'palette', package studio-palette)" in err
    assert "aigc-studio install --editable" in err
    assert (target / "studio_palette" / "trainer.py").is_file()
    assert (target / "tests" / "test_trainer.py").is_file()
    # the same folder again: refused, nothing changed
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    assert main(["plugins", "new", "palette", "--dir", str(target)]) == 2
    assert "exists and is not empty" in one_error_line(capsys.readouterr().err)
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before


def test_plugins_new_default_folder_and_kind(
    tmp_path: Path,
    studio_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["plugins", "new", "noise-shapes"]) == 0
    out, _ = capsys.readouterr()
    assert Path(out.strip()) == (tmp_path / "studio-noise-shapes").resolve()
    assert (tmp_path / "studio-noise-shapes" / "studio_noise_shapes" / "generator.py").is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plugins", "new", "My Plugin"], "invalid plugin name 'My Plugin': use lowercase"),
        (["plugins", "new", "x", "--kind", "model"], "argument --kind: invalid choice: 'model'"),
        (["plugins", "new"], "required: NAME"),
        (["plugins", "old"], "invalid choice: 'old'"),
    ],
)
def test_plugins_new_refusals(
    tmp_path: Path,
    studio_home: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    assert message in one_error_line(capsys.readouterr().err)
    assert not list(tmp_path.glob("studio-*"))  # nothing written


# --- load errors ----------------------------------------------------------------------------


def test_plugins_prints_load_errors_with_the_error_prefix(
    plugins: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins"]) == 0  # the listing worked; the failure is reported
    out, err = capsys.readouterr()
    assert "broken 0.1.0 (third-party, studio_broken_demo)  [failed to load]" in out
    assert "sketch" in out and "fake-image" in out
    first, *rest = lines(err)
    assert first == (
        "aigc-studio: error: plugin 'broken' failed at import: RuntimeError: broken on purpose"
    )
    assert len(rest) == 1 and "plugins --json" in rest[0] and "STUDIO_STRICT_PLUGINS" in rest[0]
    assert "Traceback" not in err
    assert main(["plugins", "--json"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    broken = next(p for p in json.loads(out)["plugins"] if p["name"] == "broken")
    assert "RuntimeError: broken on purpose" in broken["traceback"]


def test_other_commands_give_a_one_line_hint(
    plugins: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "fake-text", "--prompt", "x", "--set", "max_tokens=2"]) == 0
    _, err = capsys.readouterr()
    mentions = [line for line in err.splitlines() if "broken" in line or "plugin" in line]
    assert mentions == [
        "aigc-studio: warning: 1 plugin failed to load (broken); see 'aigc-studio plugins'"
    ]
    assert "Traceback" not in err and "RuntimeError" not in err
    # --json keeps stderr quiet; commands that load no plugin say nothing about them
    assert main(["generate", "fake-text", "--prompt", "x", "--json"]) == 0
    assert capsys.readouterr().err == ""
    assert main(["jobs"]) == 0
    assert capsys.readouterr().err == ""
    # a refused request stays one error line, with the hint in it
    assert main(["generate", "no-such", "--prompt", "x"]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "no generator or task named 'no-such'" in line and "failed to load (broken)" in line
    assert main(["generate", "fake-text", "--help-options"]) == 0
    assert "1 plugin failed to load (broken)" in capsys.readouterr().err


def test_strict_mode_prints_the_traceback_and_the_exception_type(
    plugins: dict, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STUDIO_STRICT_PLUGINS", "1")
    for argv in (["plugins"], ["generate", "fake-text", "--prompt", "x"]):
        assert main(argv) == 1
        out, err = capsys.readouterr()
        assert out == ""
        assert "Traceback (most recent call last)" in err
        assert "studio_broken_demo.py" in err  # where the plugin failed
        assert "RuntimeError: broken on purpose" in err
        last = err.strip().splitlines()[-1]
        assert last.startswith("aigc-studio: error: PluginError: ") and "broken" in last
        assert "STUDIO_STRICT_PLUGINS" in last


# --- which generator, which model -----------------------------------------------------------


def test_a_model_free_generator_is_listed_as_such(
    plugins: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "--json"]) == 0
    documents = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    [sketch] = documents["sketch"]["generators"]
    assert sketch["uses_model"] is False and sketch["default_model"] is None
    assert all(g["uses_model"] for g in documents["fakes"]["generators"])
    assert main(["plugins"]) == 0
    assert "sketch  text-to-image  image     (uses none)" in capsys.readouterr().out
    assert main(["generate", "sketch", "--help-options"]) == 0
    assert "\nuses no model (--model is refused)\n" in capsys.readouterr().out


def test_the_cli_says_which_generator_serves_a_task(
    plugins: dict, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "text-to-image", "--prompt", "fox", "--set", "steps=1"]) == 0
    out, err = capsys.readouterr()
    [said] = [line for line in err.splitlines() if "using generator" in line]
    match = re.match(r"aigc-studio: text-to-image: using generator '([\w-]+)' \((.+)\)", said)
    assert match, said
    chosen, reason = match.groups()
    other = {"fake-image": "sketch", "sketch": "fake-image"}[chosen]
    assert other in reason and "aigc-studio plugins prefer" in reason
    [path] = out.splitlines()
    from studio.core.artifacts import read_recipe

    assert read_recipe(Path(path))["generator"] == chosen
    # asked for by id: nothing to say
    assert main(["generate", "sketch", "--prompt", "fox"]) == 0
    assert "using generator" not in capsys.readouterr().err


def test_model_free_generator_refuses_model_and_records_none(
    plugins: dict, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["generate", "sketch", "--prompt", "fox", "--model", "org/model"]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    line = one_error_line(err)  # bad input: one line, which mentions the broken plugin too
    assert "generator 'sketch' uses no model: remove --model org/model" in line
    assert line.endswith("; note: 1 plugin failed to load (broken); see 'aigc-studio plugins'")
    assert main(["generate", "sketch", "--prompt", "fox", "--seed", "5", "--json"]) == 0
    [artifact] = json.loads(capsys.readouterr().out)["artifacts"]
    assert artifact["recipe"]["model"] is None
    assert main(["regenerate", artifact["path"], "--json"]) == 0
    [again] = json.loads(capsys.readouterr().out)["artifacts"]
    assert again["recipe"]["model"] is None and again["recipe"]["seed"] == 5


# --- plugins prefer -------------------------------------------------------------------------


def stored_preferences(home: Path) -> dict[str, str]:
    from studio.core.studio import Studio

    return Studio.saved_settings(home).preferred_generators


def test_plugins_prefer_sets_shows_and_clears_the_generator_of_a_task(
    plugins: dict, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # without a preference: the one installed first of the two serving text-to-image (both
    # distributions are written within the test: either may be first)
    assert main(["plugins", "prefer", "text-to-image", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert sorted(first["generators"]) == ["fake-image", "sketch"]
    assert first["chosen"] == first["generators"][0] and first["rule"] == "install-order"
    assert first["preferred"] is None and first["warning"] is None
    serving = ", ".join(first["generators"])
    default, other = first["generators"]
    assert main(["plugins", "prefer", "text-to-image", other]) == 0
    out, _ = capsys.readouterr()
    assert out == f"text-to-image: {other} (your preference; serving: {serving})\n"
    assert stored_preferences(studio_home) == {"text-to-image": other}
    # the listing shows it, and generating by task name follows it
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    assert "prefer TASK GENERATOR_ID' chooses):\n" in out
    [row] = [line for line in out.splitlines() if line.startswith("  text-to-image ")]
    assert row.split()[:2] == ["text-to-image", other] and "your preference" in row
    assert main(["plugins", "--json"]) == 0
    [task] = json.loads(capsys.readouterr().out)["tasks"]
    assert task["task"] == "text-to-image" and task["chosen"] == other
    assert task["rule"] == "preferred" and task["preferred"] == other
    assert main(["generate", "text-to-image", "--prompt", "fox", "--json"]) == 0
    [artifact] = json.loads(capsys.readouterr().out)["artifacts"]
    assert artifact["recipe"]["generator"] == other
    # cleared: back to the rule; clearing again changes nothing
    for _ in range(2):
        assert main(["plugins", "prefer", "text-to-image", "--clear"]) == 0
        out, _ = capsys.readouterr()
        assert out == f"text-to-image: {default} (installed first; serving: {serving})\n"
        assert stored_preferences(studio_home) == {}


def test_plugins_prefer_refuses_what_cannot_serve_the_task(
    plugins: dict, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    refusals = {
        ("text-to-image", "fake-text"): "generator 'fake-text' serves 'text-generation', not "
        "'text-to-image'; serving 'text-to-image': fake-image, sketch",
        ("text-to-image", "nope"): "no generator has the id 'nope'; serving 'text-to-image': "
        "fake-image, sketch",
        ("text-to-svg", "sketch"): "no installed generator serves the task 'text-to-svg'; "
        "tasks: fail, noop, text-generation, text-to-image",
        ("fake-image", "sketch"): "'fake-image' is a generator id; its task is 'text-to-image'",
    }
    for (task, generator), expected in refusals.items():
        assert main(["plugins", "prefer", task, generator]) == 2
        out, err = capsys.readouterr()
        assert out == "" and expected in one_error_line(err), err
    assert main(["plugins", "prefer", "text-to-svg"]) == 2  # showing an unknown task too
    assert "no installed generator serves the task 'text-to-svg'" in capsys.readouterr().err
    assert main(["plugins", "prefer", "text-to-image", "sketch", "--clear"]) == 2
    assert "give GENERATOR_ID or --clear, not both" in capsys.readouterr().err
    assert stored_preferences(studio_home) == {}


def test_a_preference_that_cannot_be_used_is_shown_and_can_be_cleared(
    plugins: dict, studio_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from studio.core.settings import Settings
    from studio.core.store import Store

    studio_home.mkdir(parents=True, exist_ok=True)
    store = Store(studio_home / "studio.sqlite3")
    # an uninstalled plugin's generator, and a task nothing serves any more
    store.save_settings(
        Settings(preferred_generators={"text-to-image": "gone", "text-to-svg": "gone.svg"})
    )
    store.close()
    assert main(["plugins"]) == 0
    out, err = capsys.readouterr()
    rows = {
        line.split()[0]: line.split()[1] for line in out.splitlines() if line.startswith("  text-")
    }
    assert rows == {"text-to-image": "fake-image", "text-to-svg": "-"}
    warnings = [line for line in err.splitlines() if line.startswith("aigc-studio: warning: ")]
    assert len(warnings) == 2
    assert "preferred generator 'gone' for 'text-to-image'" in warnings[0]
    assert "no installed generator serves 'text-to-svg'" in warnings[1]
    assert "plugins prefer text-to-svg --clear" in warnings[1]
    assert main(["plugins", "prefer", "text-to-svg", "--clear"]) == 0
    assert capsys.readouterr().out == "text-to-svg: no installed generator serves it\n"
    assert stored_preferences(studio_home) == {"text-to-image": "gone"}
