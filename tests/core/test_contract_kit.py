"""The testing kit: the generator contract mixin, run_generator and the pytest fixtures.

The fake generators pass the contract (the mixin's tests are collected here, as a plugin author's
would be); deliberately sloppy generators fail exactly the checks they break; and an outside test
suite gets the fixtures through the installed ``pytest11`` entry point.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from studio import BaseOptions, Generator, Result, TextOutput, hookimpl
from studio.core.errors import OptionsError
from studio.core.plugins import PluginHost
from studio.testing.contract import (
    GeneratorContract,
    GeneratorRunFailed,
    invalid_value,
    run_generator,
)
from studio.testing.fakes import FailingGenerator, FakeImageGenerator, FakeTextGenerator, fake_text

# --- the fakes pass the contract --------------------------------------------------------------


class TestFakeImageContract(GeneratorContract):
    generator_cls = FakeImageGenerator
    options = {"steps": 2, "batch_size": 2}


class TestFakeTextContract(GeneratorContract):
    generator_cls = FakeTextGenerator
    options = {"max_tokens": 4}
    model_ref = "fake/another-model"  # a plain attribute works as well as a fixture

    def test_model_ref_attribute_is_used(self, contract_model: str | None) -> None:
        assert contract_model == "fake/another-model"


class TestModelRefFixture(GeneratorContract):
    generator_cls = FakeTextGenerator
    options = {"max_tokens": 2}

    @pytest.fixture
    def model_ref(self, tmp_path: Path) -> str:
        return str(tmp_path / "made-by-a-fixture")

    def test_model_ref_fixture_is_used(self, contract_model: str | None, tmp_path: Path) -> None:
        assert contract_model == str(tmp_path / "made-by-a-fixture")


# --- sloppy generators fail the checks they break --------------------------------------------


class SloppyOptions(BaseOptions):
    count: int = Field(0, ge=1, le=5, description="The default (0) is out of range.")
    undocumented: int = 3


class Sloppy(Generator):
    """Ignores the seed and the cancel flag, documents an option poorly, has a bad default."""

    id = "sloppy"
    name = "Sloppy"
    modality = "text"
    task = "text-generation"
    default_model = "fake/tiny-model"
    Options = SloppyOptions

    def run(self, request: Any, ctx: Any) -> Iterator[Any]:
        yield Result(TextOutput(f"{random.random()}", seed=request.seed))


class WrongModality(Generator):
    id = "wrong-modality"
    name = "Wrong modality"
    modality = "image"  # but yields text
    task = "text-to-image"
    default_model = "fake/tiny-model"

    def run(self, request: Any, ctx: Any) -> Iterator[Any]:
        ctx.check_cancelled()
        yield Result(TextOutput("not an image", seed=request.seed))


class SloppyContract(GeneratorContract):
    generator_cls = Sloppy
    options = {"count": 2}


def test_undocumented_option_fails_the_metadata_check() -> None:
    with pytest.raises(AssertionError, match=r"options without a description: \['undocumented'\]"):
        SloppyContract().test_contract_metadata()


def test_default_out_of_range_fails_the_defaults_check() -> None:
    with pytest.raises(OptionsError, match="'count'"):
        SloppyContract().test_contract_option_defaults_validate()


def test_nondeterminism_fails(studio_app: Any) -> None:
    with pytest.raises(AssertionError, match="same request and seed gave different outputs"):
        SloppyContract().test_contract_same_seed_same_output(studio_app, None)


def test_ignoring_cancel_fails(studio_app: Any, tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="produced a result although cancelled"):
        SloppyContract().test_contract_cancel_before_start(studio_app, None, tmp_path)
    assert "sloppy" not in studio_app.plugins.generators  # registered only for the check


def test_wrong_modality_fails(studio_app: Any) -> None:
    contract = type("C", (GeneratorContract,), {"generator_cls": WrongModality})()
    with pytest.raises(AssertionError, match="wrong modality"):
        contract.test_contract_run_yields_a_result(studio_app, None)


def test_the_sloppy_generator_still_passes_what_it_does_right(studio_app: Any) -> None:
    contract = SloppyContract()
    contract.test_contract_invalid_options_are_rejected()
    contract.test_contract_run_yields_a_result(studio_app, None)


def test_invalid_value_covers_each_kind() -> None:
    from studio.core.options import field_specs

    specs = {s.name: s for s in field_specs(FakeImageGenerator.Options)}
    assert invalid_value(specs["width"]) == 7
    assert invalid_value(specs["guidance_scale"]) == -1.0
    assert invalid_value(specs["negative_prompt"]) is None
    fail_specs = {s.name: s for s in field_specs(FailingGenerator.Options)}
    assert invalid_value(fail_specs["error"]) == "__not_one_of_the_choices__"


# --- run_generator ----------------------------------------------------------------------------


def test_run_generator_returns_events_and_artifacts(studio_app: Any) -> None:
    from studio.core.events import ArtifactSaved, JobState, JobStateChanged, Partial, Progress

    events, artifacts = run_generator(
        FakeTextGenerator, "hello", None, {"max_tokens": 3}, 9, studio_app
    )
    text = "".join(fake_text("hello", 9, 3))
    assert "".join(e.text for e in events if isinstance(e, Partial)) == text
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3]
    states = [e.state for e in events if isinstance(e, JobStateChanged)]
    assert states[0] == JobState.QUEUED and states[-1] == JobState.SUCCEEDED
    [saved] = [e for e in events if isinstance(e, ArtifactSaved)]
    [artifact] = artifacts
    assert saved.artifact_id == artifact.id
    assert Path(artifact.path).read_text(encoding="utf-8") == text
    assert artifact.recipe["seed"] == 9 and artifact.recipe["model"]["ref"] == "fake/tiny-model"


def test_run_generator_registers_an_unknown_class_for_the_call(studio_app: Any) -> None:
    assert "sloppy" not in studio_app.plugins.generators
    _, artifacts = run_generator(Sloppy, "x", None, {"count": 1}, 1, studio_app)
    assert artifacts[0].generator == "sloppy"
    assert "sloppy" not in studio_app.plugins.generators


def test_run_generator_raises_when_the_job_fails(studio_app: Any) -> None:
    with pytest.raises(GeneratorRunFailed, match="failed: ValueError: fake failure"):
        run_generator(FailingGenerator, "", None, {"error": "value"}, 1, studio_app)


def test_run_generator_refuses_an_id_taken_by_another_class(studio_app: Any) -> None:
    impostor = type("Impostor", (FakeTextGenerator,), {})
    with pytest.raises(ValueError, match="already registered for another class"):
        run_generator(impostor, "x", None, {}, 1, studio_app)


# --- the fixtures -----------------------------------------------------------------------------


def test_studio_home_isolates_the_environment(
    studio_home: Path, hub_cache: Path, tmp_path: Path
) -> None:
    assert studio_home.is_relative_to(tmp_path) and hub_cache.is_relative_to(tmp_path)
    assert os.environ["STUDIO_HOME"] == str(studio_home)
    assert os.environ["HF_HUB_CACHE"] == str(hub_cache)
    assert Path(os.environ["HF_HOME"]) == hub_cache.parent
    assert os.environ["HF_HUB_OFFLINE"] == "1"
    assert hub_cache.is_dir()
    from studio.core.paths import default_home
    from studio.core.hub import hub_cache_dir

    assert default_home() == studio_home
    assert hub_cache_dir() == hub_cache
    # huggingface_hub reads these at import: imported before or after, it sees the test's values
    import huggingface_hub.constants as hub_constants

    assert str(hub_cache) == hub_constants.HF_HUB_CACHE
    assert hub_constants.is_offline_mode()


def test_studio_app_is_open_on_studio_home_with_the_fakes(
    studio_app: Any, studio_home: Path
) -> None:
    from studio.testing import fake_plugin

    assert studio_app.paths.home == studio_home
    assert fake_plugin.PLUGIN_NAME in studio_app.plugins.plugins
    assert studio_app.find_generator("fake-image") is FakeImageGenerator
    assert {"image", "text", "audio"}.isdisjoint(studio_app.plugins.plugins)  # built-ins not loaded


class TestStudioAppWithTheInstalledPlugins:
    @pytest.fixture
    def studio_load_plugins(self) -> bool:
        return True

    def test_builtins_are_loaded(self, studio_app: Any) -> None:
        assert {"image", "text", "audio"} <= set(studio_app.plugins.plugins)
        assert "fake-image" in studio_app.plugins.generators  # and the fakes still


class _Echo(Generator):
    id = "kit.echo"
    name = "Echo"
    modality = "text"
    task = "text-generation"
    default_model = "fake/tiny-model"

    def run(self, request: Any, ctx: Any) -> Iterator[Any]:
        ctx.check_cancelled()
        yield Result(TextOutput(request.prompt, seed=request.seed))


class _EchoPlugin:
    studio_api = ">=1.0,<2"

    @hookimpl
    def register_generators(self, register: Any) -> None:
        register(_Echo)


def test_register_plugin_defaults_to_studio_app(register_plugin: Any, studio_app: Any) -> None:
    info = register_plugin(_EchoPlugin(), name="echo-plugin")
    assert info.error is None and info.generators == ["kit.echo"]
    _, artifacts = run_generator(_Echo, "said back", None, {}, 1, studio_app)
    assert Path(artifacts[0].path).read_text(encoding="utf-8") == "said back"
    with pytest.raises(ValueError, match="already registered"):
        register_plugin(_EchoPlugin(), name="echo-plugin")


def test_register_plugin_in_a_given_host(register_plugin: Any) -> None:
    host = PluginHost()
    info = register_plugin(_EchoPlugin(), host=host)
    assert info.name == "_EchoPlugin" and "kit.echo" in host.generators


# --- an outside test suite (as a plugin author's) gets the kit through the entry point --------

OUTSIDE = textwrap.dedent(
    """
    import os
    import pytest
    from studio.core.plugins import PluginHost
    from studio.testing.contract import GeneratorContract
    from studio.testing.fakes import FakeTextGenerator

    from sloppy_mod import Sloppy

    class TestGood(GeneratorContract):
        generator_cls = FakeTextGenerator
        options = {"max_tokens": 2}

    class TestSloppy(GeneratorContract):
        generator_cls = Sloppy
        options = {"count": 2}

    HOST = PluginHost()

    class Plugin:
        pass

    def test_a_register(register_plugin):
        register_plugin(Plugin(), host=HOST, name="temporary")
        assert "temporary" in HOST.plugins

    def test_b_unregistered_after(studio_home):
        assert "temporary" not in HOST.plugins
        assert os.environ["STUDIO_HOME"] == str(studio_home)
    """
)


def test_the_kit_works_in_an_outside_test_suite(tmp_path: Path) -> None:
    project = tmp_path / "author"
    project.mkdir()
    (project / "test_outside.py").write_text(OUTSIDE, encoding="utf-8")
    source = Path(__file__).read_text(encoding="utf-8")
    start, end = source.index("class SloppyOptions"), source.index("class WrongModality")
    header = "import random\nfrom typing import Any\nfrom collections.abc import Iterator\n"
    header += "from pydantic import Field\nfrom studio import BaseOptions, Generator, Result, "
    header += "TextOutput\n"
    (project / "sloppy_mod.py").write_text(header + source[start:end], encoding="utf-8")
    env = dict(os.environ, PYTHONPATH=str(project))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-rA",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(project),
            str(project / "test_outside.py"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=project,
        env=env,
    )
    outcomes = {
        line.split()[1].split("::", 1)[1]: line.split()[0]
        for line in result.stdout.splitlines()
        if line.startswith(("PASSED ", "FAILED ", "ERROR "))
    }
    good = {
        f"TestGood::{name}": "PASSED"
        for name in (
            "test_contract_metadata",
            "test_contract_option_defaults_validate",
            "test_contract_invalid_options_are_rejected",
            "test_contract_run_yields_a_result",
            "test_contract_same_seed_same_output",
            "test_contract_cancel_before_start",
        )
    }
    sloppy = {
        "TestSloppy::test_contract_metadata": "FAILED",
        "TestSloppy::test_contract_option_defaults_validate": "FAILED",
        "TestSloppy::test_contract_invalid_options_are_rejected": "PASSED",
        "TestSloppy::test_contract_run_yields_a_result": "PASSED",
        "TestSloppy::test_contract_same_seed_same_output": "FAILED",
        "TestSloppy::test_contract_cancel_before_start": "FAILED",
    }
    expected = {
        **good,
        **sloppy,
        "test_a_register": "PASSED",
        "test_b_unregistered_after": "PASSED",
    }
    assert outcomes == expected, result.stdout[-4000:]
