"""Hooks are called through pluggy, one plugin at a time; misspelt and unmarked hooks are refused.

Also the plugin API range (``studio_api``) and strict mode, which both act before any hook runs.
"""

from __future__ import annotations

import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from studio import API_VERSION, hookimpl
from studio.core.errors import PluginError
from studio.core.plugins import HOOK_ORDER, PluginHost, PluginInfo
from studio.testing.dists import forget_modules, make_distribution

API = 'studio_api = ">=1.0,<2"\n'

ECHO = textwrap.dedent(
    """
    from studio import Generator, Result, TextOutput, Trainer, hookimpl

    class Echo(Generator):
        id = "{id}"
        name = "Echo"
        modality = "text"
        task = "text-generation"
        uses_model = False

        def run(self, request, ctx):
            yield Result(TextOutput(request.prompt, seed=request.seed))

    class Tune(Trainer):
        id = "{id}.tune"
        name = "Tune"
        modality = "text"
    """
)


def plugin_module(name: str, body: str, *, api: str | None = API, gid: str = "") -> Any:
    """A plugin module made from source: ``Echo`` (id ``gid``) and ``Tune`` are defined in it."""
    module = types.ModuleType(name)
    source = (api or "") + ECHO.format(id=gid or f"{name}.echo") + textwrap.dedent(body)
    exec(compile(source, f"<{name}>", "exec"), module.__dict__)
    return module


GOOD_HOOKS = """
@hookimpl
def register_generators(register):
    register(Echo)

@hookimpl
def register_trainers(register):
    register(Tune)
"""


# -- through pluggy, per plugin ------------------------------------------------------------------


def test_every_hookspec_is_called_by_the_host() -> None:
    from studio.core import hookspecs

    specs = {n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), "studio_spec")}
    assert set(HOOK_ORDER) == specs


def test_hooks_are_called_through_pluggy_for_that_plugin_only() -> None:
    host = PluginHost()
    calls: list[tuple[str, list[str]]] = []

    def before(hook_name: str, impls: list[Any], kwargs: dict[str, Any]) -> None:
        calls.append((hook_name, [impl.plugin_name for impl in impls]))

    host.pm.add_hookcall_monitoring(before, lambda *a: None)
    first = host.register(plugin_module("first", GOOD_HOOKS))
    second = host.register(plugin_module("second", GOOD_HOOKS))
    assert first.error is None and second.error is None
    assert calls == [
        ("register_generators", ["first"]),
        ("register_trainers", ["first"]),
        ("register_generators", ["second"]),  # "first" is not called again
        ("register_trainers", ["second"]),
    ]
    assert host.plugin_of("first.echo") is first and host.plugin_of("second.echo") is second
    assert second.generators == ["second.echo"] and second.trainers == ["second.echo.tune"]


def test_a_hookimpl_may_take_no_arguments() -> None:
    """pluggy passes only the arguments an implementation names."""
    seen: list[str] = []
    module = plugin_module("quiet", "")
    module.register_generators = hookimpl(lambda: seen.append("called"))
    info = PluginHost().register(module)
    assert info.error is None and seen == ["called"]


def test_a_hookimpl_with_an_argument_not_in_the_spec_is_refused() -> None:
    host = PluginHost()
    module = plugin_module(
        "typo_arg",
        """
        @hookimpl
        def register_generators(registr):
            registr(Echo)
        """,
    )
    info = host.register(module)
    assert info.error is not None and "failed at register" in info.error
    assert "registr" in info.error
    assert not host.pm.has_plugin("typo_arg") and not host.generators


@pytest.mark.parametrize(
    ("misspelt", "suggestion"),
    [("register_generator", "register_generators"), ("register_trainer", "register_trainers")],
)
def test_a_misspelt_hook_refuses_that_plugin_only(misspelt: str, suggestion: str) -> None:
    host = PluginHost()
    good = host.register(plugin_module("good", GOOD_HOOKS))
    bad = host.register(
        plugin_module(
            "misspelt",
            f"""
            @hookimpl
            def {misspelt}(register):
                register(Echo)

            @hookimpl
            def register_trainers(register):
                register(Tune)  # a correct hook of a refused plugin is not called either
            """,
        )
    )
    assert bad.error is not None
    assert f"unknown hook {misspelt!r}" in bad.error
    assert f"did you mean {suggestion!r}" in bad.error
    assert bad.generators == [] and bad.trainers == []
    assert not host.pm.has_plugin("misspelt")
    assert getattr(host.pm.hook, misspelt).get_hookimpls() == []  # nothing left behind
    host.pm.check_pending()  # and the host stays consistent for the next plugin
    assert good.error is None and "good.echo" in host.generators
    later = host.register(plugin_module("later", GOOD_HOOKS))
    assert later.error is None and "later.echo" in host.generators


def test_an_unmarked_hook_is_reported_not_silently_registered() -> None:
    host = PluginHost()
    calls: list[str] = []
    module = plugin_module(
        "unmarked",
        """
        def register_generators(register):
            CALLS.append("called")
            register(Echo)
        """,
    )
    module.CALLS = calls
    info = host.register(module)
    assert info.error is not None
    assert "register_generators()" in info.error
    assert "decorate it with @studio.hookimpl" in info.error
    assert calls == [] and host.generators == {}
    assert not host.pm.has_plugin("unmarked")


def test_an_unmarked_misspelt_hook_says_both() -> None:
    info = PluginHost().register(
        plugin_module(
            "both",
            """
            def register_generator(register):
                register(Echo)
            """,
        )
    )
    assert info.error is not None
    assert "'register_generator' is not a studio hook (did you mean 'register_generators'?)" in (
        info.error
    )
    assert "@studio.hookimpl" in info.error


def test_unmarked_hook_methods_of_a_plugin_object_are_reported() -> None:
    class Plugin:
        studio_api = ">=1.0,<2"

        def register_trainers(self, register: Any) -> None:
            raise AssertionError("never called")

    info = PluginHost().register(Plugin(), PluginInfo("object", "1", "tests", False))
    assert info.error is not None and "register_trainers()" in info.error


def test_helpers_and_classes_that_are_not_hooks_are_left_alone() -> None:
    module = plugin_module(
        "helpers",
        GOOD_HOOKS
        + textwrap.dedent(
            """
            def _register_helper():
                pass

            class register_thing:  # a class, not a hook function
                pass

            def make_things():
                pass
            """
        ),
    )
    assert PluginHost().register(module).error is None


def test_an_unhashable_plugin_is_refused_without_breaking_the_others() -> None:
    host = PluginHost()
    plugin = types.SimpleNamespace(
        studio_api=">=1.0,<2", register_generators=hookimpl(lambda register: None)
    )
    info = host.register(plugin, PluginInfo("namespace", "1", "tests", False))
    assert info.error is not None and "hashable" in info.error
    assert host.register(plugin_module("after", GOOD_HOOKS)).error is None


def test_a_plugin_name_is_registered_once() -> None:
    host = PluginHost()
    first = host.register(plugin_module("same", GOOD_HOOKS))
    again = host.register(plugin_module("same", GOOD_HOOKS, gid="other.echo"))
    assert again.error is not None and "already registered" in again.error
    assert host.plugins["same"] is first and first.error is None
    assert "other.echo" not in host.generators


# -- plugin API range ----------------------------------------------------------------------------

RAISES_IF_CALLED = """
@hookimpl
def register_generators(register):
    raise AssertionError("a hook ran")
"""


@pytest.mark.parametrize("declared", [">=1.0,<2", ">=1", "~=1.0", "==1.*", ">=0.9, <1.1"])
def test_a_range_including_the_api_version_is_accepted(declared: str) -> None:
    info = PluginHost().register(
        plugin_module("ok", GOOD_HOOKS, api=f"studio_api = {declared!r}\n")
    )
    assert info.error is None, info.error


@pytest.mark.parametrize("declared", [">=2,<3", "<1", "==0.9"])
def test_a_range_excluding_the_api_version_is_refused_before_any_hook(declared: str) -> None:
    host = PluginHost()
    info = host.register(plugin_module("old", RAISES_IF_CALLED, api=f"studio_api = {declared!r}\n"))
    assert info.error is not None
    assert f"supports plugin API {declared}" in info.error
    assert f"this studio's plugin API is {API_VERSION}" in info.error
    assert "a hook ran" not in info.error and not host.pm.has_plugin("old")


def test_a_plugin_declaring_no_range_is_told_what_to_write() -> None:
    info = PluginHost().register(plugin_module("bare", RAISES_IF_CALLED, api=None))
    assert info.error is not None
    assert "declares no supported plugin API" in info.error
    assert 'studio_api = ">=1.0,<2"' in info.error and API_VERSION in info.error


@pytest.mark.parametrize("declared", ["'one point oh'", "''", "1.0", "['>=1']"])
def test_an_unparsable_range_is_refused(declared: str) -> None:
    info = PluginHost().register(
        plugin_module("garbled", RAISES_IF_CALLED, api=f"studio_api = {declared}\n")
    )
    assert info.error is not None and "is not a version range" in info.error
    assert "PEP 440" in info.error and 'studio_api = ">=1.0,<2"' in info.error


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, studio_home: Path) -> Iterator[Path]:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("STUDIO_DISABLE_PLUGIN_AUTOLOAD", "")
    yield folder
    forget_modules("apiold_mod", "objplug_mod", "strictplug_mod")


def test_an_installed_plugin_with_another_api_is_refused_at_load(site: Path) -> None:
    make_distribution(
        site,
        "studio-apiold",
        {"apiold": "apiold_mod"},
        modules={"apiold_mod.py": 'studio_api = ">=2"\n' + ECHO.format(id="x") + RAISES_IF_CALLED},
    )
    host = PluginHost()
    host.load_entry_points()
    info = host.plugins["apiold"]
    assert info.error is not None and info.error.startswith("refused at API check: ")
    assert ">=2" in info.error and API_VERSION in info.error
    assert info.generators == []


def test_an_object_entry_point_may_declare_the_range_in_its_module(site: Path) -> None:
    body = (
        API
        + ECHO.format(id="obj")
        + textwrap.dedent(
            """
        class Plugin:
            @hookimpl
            def register_generators(self, register):
                register(Echo)

        plugin = Plugin()
        """
        )
    )
    make_distribution(
        site, "studio-objplug", {"objplug": "objplug_mod:plugin"}, modules={"objplug_mod.py": body}
    )
    host = PluginHost()
    host.load_entry_points()
    assert host.plugins["objplug"].error is None
    assert host.plugins["objplug"].generators == ["obj"]


# -- strict mode ---------------------------------------------------------------------------------


def test_strict_mode_raises_chained_with_the_traceback(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_distribution(
        site,
        "studio-strictplug",
        {"strictplug": "strictplug_mod"},
        modules={
            "strictplug_mod.py": API
            + "from studio import hookimpl\n\n"
            + "@hookimpl\ndef register_generators(register):\n"
            + "    raise KeyError('deep inside the plugin')\n"
        },
    )
    monkeypatch.setenv("STUDIO_STRICT_PLUGINS", "1")
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", "strictplug")
    with pytest.raises(PluginError) as caught:
        PluginHost().load_entry_points()
    err = caught.value
    assert isinstance(err.__cause__, KeyError)
    assert err.plugin == "strictplug"
    assert "strictplug" in str(err) and "register_generators" in str(err)
    assert err.traceback is not None
    assert "Traceback (most recent call last)" in err.traceback
    assert "strictplug_mod.py" in err.traceback and "KeyError: 'deep inside the plugin'" in (
        err.traceback
    )


@pytest.mark.parametrize(
    ("body", "api", "message"),
    [
        (RAISES_IF_CALLED, 'studio_api = ">=2"\n', "supports plugin API >=2"),
        ("@hookimpl\ndef register_generator(register):\n    pass\n", API, "unknown hook"),
        ("def register_generators(register):\n    pass\n", API, "@studio.hookimpl"),
    ],
)
def test_strict_mode_raises_for_refusals_too(
    monkeypatch: pytest.MonkeyPatch, body: str, api: str, message: str
) -> None:
    monkeypatch.setenv("STUDIO_STRICT_PLUGINS", "1")
    with pytest.raises(PluginError, match="refused") as caught:
        PluginHost().register(plugin_module("strict", body, api=api))
    assert message in str(caught.value)
    assert isinstance(caught.value.__cause__, PluginError)
