"""Load order, duplicate ids and the choice among generators serving one task.

The order never depends on names: built-ins first, then third-party distributions in the order
they were installed (their ``*.dist-info`` folder's mtime, set explicitly here). The distributions
below are named so that sorting by name would give the opposite answer.
"""

from __future__ import annotations

import logging
import os
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from studio.core.errors import InvalidRequest
from studio.core.plugins import PluginHost, PluginInfo
from studio.testing.dists import forget_modules, make_distribution

MODULES = ("aaa_mod", "zzz_mod", "third_mod", "img_mod", "late_mod", "early_mod")


def generator_source(gid: str, task: str = "text-generation", trainer: str | None = None) -> str:
    trainer_code = (
        textwrap.dedent(
            f"""
            class Tune(Trainer):
                id = {trainer!r}
                name = "Tune"
                modality = "text"

            @hookimpl
            def register_trainers(register):
                register(Tune)
            """
        )
        if trainer
        else ""
    )
    return (
        textwrap.dedent(
            f"""
            from studio import Generator, Result, TextOutput, Trainer, hookimpl

            studio_api = ">=1.0,<2"

            class Echo(Generator):
                id = {gid!r}
                name = "Echo " + {gid!r}
                modality = "text"
                task = {task!r}
                uses_model = False

                def run(self, request, ctx):
                    yield Result(TextOutput(request.prompt, seed=request.seed))

            @hookimpl
            def register_generators(register):
                register(Echo)
            """
        )
        + trainer_code
    )


def install(site: Path, dist: str, ep: str, module: str, source: str, installed: int) -> None:
    """Write a distribution whose dist-info folder says it was installed at ``installed`` (s)."""
    make_distribution(site, dist, {ep: module}, modules={f"{module}.py": source})
    (info,) = site.glob(f"{dist.replace('-', '_')}-*.dist-info")
    os.utime(info, ns=(installed * 10**9, installed * 10**9))


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, studio_home: Path) -> Iterator[Path]:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delenv("STUDIO_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    monkeypatch.delenv("STUDIO_STRICT_PLUGINS", raising=False)
    yield folder
    forget_modules(*MODULES)


def load(monkeypatch: pytest.MonkeyPatch, *names: str) -> PluginHost:
    monkeypatch.setenv("STUDIO_LOAD_PLUGINS", ",".join(names))
    host = PluginHost()
    host.load_entry_points()
    return host


# -- duplicate ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("squatter_first_by_name", [True, False])
def test_the_later_install_is_refused_and_blamed_whatever_the_names(
    site: Path, monkeypatch: pytest.MonkeyPatch, squatter_first_by_name: bool
) -> None:
    # "aaa" sorts first by name; it is the newer install in one case, the older in the other
    older, newer = ("zzz", "aaa") if squatter_first_by_name else ("aaa", "zzz")
    install(site, f"studio-{older}", older, f"{older}_mod", generator_source("shared.echo"), 1000)
    install(site, f"studio-{newer}", newer, f"{newer}_mod", generator_source("shared.echo"), 2000)
    host = load(monkeypatch, "aaa", "zzz")
    assert list(host.plugins) == [older, newer]  # load order: install order
    owner, squatter = host.plugins[older], host.plugins[newer]
    assert host.plugin_of("shared.echo") is owner
    assert owner.error is None and owner.generators == ["shared.echo"]
    assert squatter.error is not None and squatter.generators == []
    assert f"'shared.echo' is already registered by plugin {older!r}" in squatter.error
    assert squatter.error.startswith("refused at register_generators: ")


def test_a_plugin_installed_before_the_studio_still_comes_after_the_built_ins(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "studio-img", "img", "img_mod", generator_source("text-to-image"), 1)
    host = load(monkeypatch, "image", "img")
    assert list(host.plugins) == ["image", "img"]
    assert host.plugin_of("text-to-image").name == "image"
    img = host.plugins["img"]
    assert img.error is not None and "already registered by plugin 'image'" in img.error


def test_equal_install_times_fall_back_to_the_distribution_name(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "studio-zzz", "zzz", "zzz_mod", generator_source("shared.echo"), 1000)
    install(site, "studio-aaa", "aaa", "aaa_mod", generator_source("shared.echo"), 1000)
    host = load(monkeypatch, "aaa", "zzz")
    assert list(host.plugins) == ["aaa", "zzz"]
    assert host.plugin_of("shared.echo").name == "aaa"


def test_a_trainer_cannot_take_a_generator_id(site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install(site, "studio-early", "early", "early_mod", generator_source("early.echo"), 1000)
    source = generator_source("late.echo", trainer="early.echo")
    install(site, "studio-late", "late", "late_mod", source, 2000)
    host = load(monkeypatch, "early", "late")
    late = host.plugins["late"]
    assert late.generators == ["late.echo"]  # what it registered before the refusal stays
    assert late.trainers == [] and "early.echo" not in host.trainers
    assert late.error is not None
    assert "trainer id 'early.echo' is already registered by plugin 'early'" in late.error


def test_an_entry_point_name_taken_by_an_older_install_is_not_loaded(
    site: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    install(site, "studio-zzz", "shared", "zzz_mod", generator_source("zzz.echo"), 1000)
    install(site, "studio-aaa", "shared", "aaa_mod", generator_source("aaa.echo"), 2000)
    with caplog.at_level(logging.WARNING, logger="studio.core.plugins"):
        host = load(monkeypatch, "shared")
    assert host.plugins["shared"].generators == ["zzz.echo"]
    assert "aaa.echo" not in host.generators
    assert "plugin name 'shared' of studio-aaa is taken" in caplog.text


# -- ids and task names --------------------------------------------------------------------------


def module_plugin(name: str, gid: str, task: str = "text-generation") -> types.ModuleType:
    module = types.ModuleType(name)
    exec(generator_source(gid, task), module.__dict__)
    return module


def registered(*specs: tuple[str, str, str, bool]) -> PluginHost:
    """A host with one plugin per (plugin name, generator id, task, built-in), in that order."""
    host = PluginHost()
    for name, gid, task, builtin in specs:
        info = host.register(module_plugin(name, gid, task), PluginInfo(name, "1", name, builtin))
        assert info.error is None, info.error
    return host


def test_an_id_may_not_be_another_generators_task() -> None:
    host = registered(("painter", "paint", "text-to-image", False))
    info = host.register(module_plugin("thief", "text-to-image", "text-generation"))
    assert info.error is not None
    assert "id 'text-to-image' is the name of a task (served by paint)" in info.error


def test_a_task_may_not_be_another_generators_id() -> None:
    host = registered(("painter", "paint", "text-to-image", False))
    info = host.register(module_plugin("thief", "mine", "paint"))
    assert info.error is not None
    assert "task 'paint' is the id of generator 'paint'" in info.error


def test_an_id_may_equal_its_own_task() -> None:
    host = registered(
        ("builtin", "text-to-image", "text-to-image", True),
        ("other", "other.paint", "text-to-image", False),
    )
    assert host.find_generator("text-to-image").id == "text-to-image"


# -- choosing among generators of one task -------------------------------------------------------


def test_built_ins_come_first_whatever_the_registration_order() -> None:
    host = registered(
        ("early", "early.paint", "text-to-image", False),
        ("builtin", "builtin.paint", "text-to-image", True),
    )
    choice = host.choose_generator("text-to-image")
    assert choice.generator.id == "builtin.paint"
    assert choice.candidates == ("builtin.paint", "early.paint")
    assert choice.reason.startswith("built-in; also serving 'text-to-image': early.paint")
    assert "aigc-studio plugins prefer" in choice.reason and choice.warning is None
    assert host.find_generator("text-to-image").id == "builtin.paint"


def test_among_third_party_plugins_the_first_installed_serves(
    site: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install(site, "studio-zzz", "zzz", "zzz_mod", generator_source("zzz.paint", "sketch"), 1000)
    install(site, "studio-aaa", "aaa", "aaa_mod", generator_source("aaa.paint", "sketch"), 2000)
    choice = load(monkeypatch, "aaa", "zzz").choose_generator("sketch")
    assert choice.generator.id == "zzz.paint"
    assert choice.candidates == ("zzz.paint", "aaa.paint")
    assert choice.reason.startswith("installed first; also serving 'sketch': aaa.paint")


def test_the_users_preference_wins() -> None:
    host = registered(
        ("builtin", "text-to-image", "text-to-image", True),
        ("mine", "mine.paint", "text-to-image", False),
    )
    preferred = {"text-to-image": "mine.paint"}
    choice = host.choose_generator("text-to-image", preferred)
    assert choice.generator.id == "mine.paint" and choice.warning is None
    assert "your preferred generator for 'text-to-image'" in choice.reason
    assert choice.candidates == ("text-to-image", "mine.paint")
    # an id resolves exactly, preference or not: a stored request or recipe names the id
    assert host.find_generator("text-to-image").id == "text-to-image"
    assert host.choose_generator("mine.paint", preferred).generator.id == "mine.paint"


@pytest.mark.parametrize(
    ("wanted", "problem"),
    [
        (
            "gone.paint",
            "'gone.paint' for 'text-to-image' (setting preferred_generators) is not "
            "installed or failed to load",
        ),
        (
            "words",
            "'words' (setting preferred_generators) serves 'text-generation', not 'text-to-image'",
        ),
    ],
)
def test_a_preference_that_cannot_be_honoured_warns_and_falls_back(
    wanted: str, problem: str, caplog: pytest.LogCaptureFixture
) -> None:
    host = registered(
        ("builtin", "builtin.paint", "text-to-image", True),
        ("other", "other.paint", "text-to-image", False),
        ("writer", "words", "text-generation", False),
    )
    with caplog.at_level(logging.WARNING, logger="studio.core.plugins"):
        choice = host.choose_generator("text-to-image", {"text-to-image": wanted})
    assert choice.generator.id == "builtin.paint"
    assert choice.warning is not None and problem in choice.warning
    assert "your preference was not used" in choice.reason
    assert problem in caplog.text


def test_the_only_generator_and_an_id_say_so() -> None:
    host = registered(("one", "one.paint", "sketch", False))
    only = host.choose_generator("sketch")
    assert only.generator.id == "one.paint" and only.reason == "the only generator for 'sketch'"
    by_id = host.choose_generator("one.paint")
    assert by_id.reason.startswith("asked for by id") and by_id.candidates == ("one.paint",)


def test_an_unknown_name_lists_ids_and_tasks() -> None:
    host = registered(("one", "one.paint", "sketch", False))
    with pytest.raises(
        InvalidRequest, match=r"no generator or task named 'nope'.*one\.paint.*sketch"
    ):
        host.choose_generator("nope", {"nope": "one.paint"})


def test_unregistering_the_first_lets_the_next_serve() -> None:
    host = registered(
        ("first", "first.paint", "sketch", False),
        ("second", "second.paint", "sketch", False),
    )
    host.unregister("first")
    assert host.choose_generator("sketch").generator.id == "second.paint"
