"""The plugin host: entry-point discovery, failure isolation, strict mode and the env switches.

Plugins here are real distributions as importlib.metadata sees them: a ``*.dist-info`` folder with
an ``entry_points.txt`` in a temporary folder put on ``sys.path``, the same way pip installs one.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.cli import main
from studio.core.errors import PluginError
from studio.core.plugins import PluginHost
from studio.testing.dists import forget_modules, make_distribution

GOOD = textwrap.dedent(
    """
    from studio import Generator, Result, TextOutput, hookimpl

    __version__ = "1.2.3"
    studio_api = ">=1.0,<2"

    class Echo(Generator):
        id = "good.echo"
        name = "Echo"
        modality = "text"
        task = "text-generation"
        description = "Says the prompt back."

        def run(self, request, ctx):
            yield Result(TextOutput(request.prompt, seed=request.seed))

    @hookimpl
    def register_generators(register):
        register(Echo)
    """
)

BROKEN_IMPORT = "raise RuntimeError('broken at import on purpose')\n"

BROKEN_REGISTER = textwrap.dedent(
    """
    from studio import hookimpl

    studio_api = ">=1.0,<2"

    @hookimpl
    def register_generators(register):
        raise ValueError('broken at registration on purpose')
    """
)

BAD_GENERATOR = textwrap.dedent(
    """
    from studio import Generator, hookimpl

    studio_api = ">=1.0,<2"

    class NoMetadata(Generator):
        pass  # no id, name, modality, task

    class NotAGenerator:
        id = "bad.plain"

    @hookimpl
    def register_generators(register):
        register(NotAGenerator)

    @hookimpl
    def register_trainers(register):
        pass
    """
)

NO_METADATA = textwrap.dedent(
    """
    from studio import Generator, hookimpl

    studio_api = ">=1.0,<2"

    class NoMetadata(Generator):
        pass

    @hookimpl
    def register_generators(register):
        register(NoMetadata)
    """
)

MODULES = {
    "goodplug_mod.py": GOOD,
    "brokenimport_mod.py": BROKEN_IMPORT,
    "brokenregister_mod.py": BROKEN_REGISTER,
    "badgenerator_mod.py": BAD_GENERATOR,
    "nometadata_mod.py": NO_METADATA,
}
OURS = {"goodplug", "brokenimport", "brokenregister", "badgenerator", "nometadata"}


@pytest.fixture
def dists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, studio_home: Path) -> Iterator[Path]:
    """Five third-party plugin distributions (one good, four broken) on sys.path."""
    folder = tmp_path / "site"
    for name in OURS:
        make_distribution(
            folder,
            f"studio-{name}",
            {name: f"{name}_mod"},
            version="1.2.3" if name == "goodplug" else "0.0.1",
            modules={f"{name}_mod.py": MODULES[f"{name}_mod.py"]},
        )
    monkeypatch.syspath_prepend(str(folder))
    yield folder
    forget_modules(*(f"{n}_mod" for n in OURS))


def loaded() -> PluginHost:
    host = PluginHost()
    host.load_entry_points()
    return host


def test_good_plugin_loads_through_its_entry_point(dists: Path) -> None:
    host = loaded()
    info = host.plugins["goodplug"]
    assert info.error is None
    assert info.version == "1.2.3"
    assert not info.builtin
    assert info.generators == ["good.echo"]
    assert host.find_generator("good.echo").name == "Echo"
    assert host.plugin_of("good.echo") is info


def test_plugin_failing_at_import_is_isolated_and_reported(dists: Path) -> None:
    host = loaded()
    info = host.plugins["brokenimport"]
    assert info.error is not None
    assert "import" in info.error and "broken at import on purpose" in info.error
    assert info.traceback and "RuntimeError" in info.traceback
    assert info.generators == []
    assert "good.echo" in host.generators  # the others still load


def test_plugin_failing_at_registration_is_isolated_and_reported(dists: Path) -> None:
    host = loaded()
    info = host.plugins["brokenregister"]
    assert info.error is not None
    assert "register_generators" in info.error and "ValueError" in info.error
    assert "good.echo" in host.generators


def test_bad_generator_classes_are_refused_with_the_reason(dists: Path) -> None:
    host = loaded()
    bad = host.plugins["badgenerator"]
    assert bad.error is not None and "not a studio.Generator subclass" in bad.error
    assert "bad.plain" not in host.generators
    nometa = host.plugins["nometadata"]
    assert nometa.error is not None and "lacks class attribute" in nometa.error
    assert "id" in nometa.error and "modality" in nometa.error
    assert nometa.generators == []


def test_strict_mode_raises_for_plugin_authors(
    dists: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STUDIO_STRICT_PLUGINS", "1")
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "brokenimport")
    with pytest.raises(PluginError, match=r"brokenimport.*import"):
        loaded()
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "brokenregister")
    with pytest.raises(PluginError, match="brokenregister"):
        loaded()
    # strict mode does not mind good plugins
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "goodplug")
    assert "good.echo" in loaded().generators


def test_load_plugins_restricts_loading(dists: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "goodplug, brokenregister")
    host = loaded()
    assert set(host.plugins) == {"goodplug", "brokenregister"}
    assert "brokenimport_mod" not in __import__("sys").modules  # not even imported


def test_disable_autoload_loads_only_builtins(dists: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STUDIO_DISABLE_PLUGIN_AUTOLOAD", "1")
    host = loaded()
    assert not OURS & set(host.plugins)
    assert {"image", "text", "audio"} <= set(host.plugins)
    assert all(info.builtin for info in host.plugins.values())


def test_disabled_plugin_is_listed_but_not_imported(dists: Path) -> None:
    host = PluginHost(disabled=["goodplug"])
    host.load_entry_points()
    assert host.plugins["goodplug"].enabled is False
    assert "good.echo" not in host.generators


def test_register_and_unregister_directly() -> None:
    from studio.testing import fake_plugin, fakes

    host = PluginHost()
    info = host.register(fake_plugin)
    assert info.error is None
    assert set(info.generators) == {g.id for g in fakes.GENERATORS}
    assert info.trainers == [t.id for t in fakes.TRAINERS]
    assert host.find_generator("text-to-image") is fakes.FakeImageGenerator  # by task
    host.unregister(info.name)
    assert not host.generators and not host.trainers


def test_duplicate_generator_id_is_refused(dists: Path) -> None:
    import types

    from studio import hookimpl

    host = loaded()
    echo = host.generators["good.echo"]
    copycat = types.ModuleType("copycat")
    copycat.studio_api = ">=1.0,<2"  # type: ignore[attr-defined]
    copycat.register_generators = hookimpl(lambda register: register(echo))  # type: ignore[attr-defined]
    info = host.register(copycat)
    assert info.error is not None and "already registered by plugin 'goodplug'" in info.error
    assert host.plugin_of("good.echo").name == "goodplug"
    assert info.generators == []


def test_unknown_generator_names_the_available_ones(dists: Path) -> None:
    from studio.core.errors import InvalidRequest

    with pytest.raises(InvalidRequest, match=r"no-such.*available:.*good\.echo"):
        loaded().find_generator("no-such")


def test_plugins_listing_shows_the_broken_plugin_with_its_error(
    dists: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["plugins", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == 1
    by_name = {p["name"]: p for p in doc["plugins"]}
    broken = by_name["brokenimport"]
    assert "broken at import on purpose" in broken["error"]
    assert "Traceback" in broken["traceback"]
    good = by_name["goodplug"]
    assert good["error"] is None and good["version"] == "1.2.3" and good["builtin"] is False
    assert good["generators"] == [
        {
            "id": "good.echo",
            "name": "Echo",
            "task": "text-generation",
            "modality": "text",
            "default_model": None,
            "uses_model": True,
            "supports_lora": False,
            "description": "Says the prompt back.",
        }
    ]
    assert main(["plugins"]) == 0
    text = capsys.readouterr().out
    assert "brokenimport 0.0.1 (third-party" in text
    assert "failed at import: RuntimeError: broken at import on purpose" in text
    assert "good.echo" in text and "text-generation" in text
