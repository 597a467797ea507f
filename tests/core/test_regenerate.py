"""Recipes and regenerate: what a recipe records, and that a regenerate replays it faithfully.

The recipe keeps the request as validated before the run (plus the values the run chose through
``ctx.record_options``) and torch's CPU thread count; ``regenerate`` runs with that thread count
and only with the generator of the plugin (and version) that made the artifact. Generators that
use no model run with ``model = None``. All plugins here are small fakes registered in the test.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Literal

import pytest
from PIL import Image
from pydantic import Field, ValidationError

from studio import (
    BaseOptions,
    GenerationRequest,
    GenerationRun,
    Generator,
    ImageOutput,
    InvalidRequest,
    PluginEvent,
    Result,
    RunContext,
    TextOutput,
    hookimpl,
)
from studio.core.artifacts import RECIPE_SCHEMA, read_recipe
from studio.core.errors import PluginVersionMismatch
from studio.core.events import JobState
from studio.core.studio import Studio
from studio.testing import fake_plugin
from studio.testing.fakes import FAKE_MODEL, FakeImageGenerator

pytestmark = pytest.mark.timeout(120)

WAIT = 20.0


def plugin(name: str, *generators: type[Generator], version: str = "1.0.0") -> ModuleType:
    """A plugin module ``name`` (at ``version``) that registers ``generators``."""
    module = ModuleType(name)

    @hookimpl
    def register_generators(register: Callable[[type[Generator]], None]) -> None:
        for cls in generators:
            register(cls)

    module.__version__ = version  # type: ignore[attr-defined]
    module.studio_api = ">=1.0,<2"  # type: ignore[attr-defined]
    module.register_generators = register_generators  # type: ignore[attr-defined]
    return module


def register(app: Studio, module: ModuleType) -> None:
    info = app.plugins.register(module)
    assert info.error is None, info.error


def saved(app: Studio, job_id: str) -> list[Path]:
    record = app.wait(job_id, WAIT)
    assert record.state == JobState.SUCCEEDED, record.error
    return [app.artifact(a).path for a in record.artifact_ids]


def pixels(path: Path) -> bytes:
    with Image.open(path) as img:
        return img.convert("RGB").tobytes()


# --- fake generators -----------------------------------------------------------------------------


class MeddlerOptions(BaseOptions):
    size: int = Field(8, ge=1, le=64)
    quality: Literal["auto", "low", "high"] = "auto"


class Meddler(Generator[MeddlerOptions]):
    """Changes its own request (which must not reach the recipe) and records a value it chose."""

    id = "meddler"
    name = "Meddler"
    modality = "text"
    task = "meddle"
    default_model = FAKE_MODEL
    Options = MeddlerOptions
    prompt_required = False

    def run(self, request: GenerationRun[MeddlerOptions], ctx: RunContext) -> Iterator[PluginEvent]:
        request.options.size = 64
        request.prompt = "changed by the plugin"
        quality = request.options.quality
        if quality == "auto":  # the run chooses, and records its choice
            quality = "high"
            ctx.record_options(quality=quality)
        yield Result(TextOutput(f"{quality} {request.seed}", seed=request.seed))


class ThreadProbe(Generator):
    """Writes the CPU thread count torch uses while it runs; uses no model."""

    id = "thread-probe"
    name = "Thread probe"
    modality = "text"
    task = "probe"
    uses_model = False
    prompt_required = False

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        import torch

        yield Result(TextOutput(str(torch.get_num_threads()), seed=request.seed))


class Stripes(Generator):
    """A procedural image from the seed alone: a generator that uses no model."""

    id = "stripes"
    name = "Stripes"
    modality = "image"
    task = "stripes"
    uses_model = False
    prompt_required = False

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        assert request.model is None
        shade = request.seed % 256
        image = Image.new("RGB", (16, 8), (shade, 255 - shade, 128))
        yield Result(ImageOutput(image, seed=request.seed))


class NeedsAModel(Generator):
    """Uses a model and has no default: every request must name one."""

    id = "needs-a-model"
    name = "Needs a model"
    modality = "text"
    task = "needs"
    prompt_required = False

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        yield Result(TextOutput(str(request.model), seed=request.seed))


class Squatter(FakeImageGenerator):
    """Another plugin's generator under the fake image generator's id."""

    def run(self, request: GenerationRun, ctx: RunContext) -> Iterator[PluginEvent]:
        yield Result(ImageOutput(Image.new("RGB", (8, 8), "black"), seed=request.seed))


# --- the recipe ----------------------------------------------------------------------------------


def test_the_recipe_keeps_the_request_as_validated_plus_the_values_the_run_chose(
    app: Studio,
) -> None:
    register(app, plugin("meddling", Meddler))
    (path,) = saved(app, app.submit(GenerationRequest(generator="meddler", seed=5)))
    recipe = read_recipe(path)
    assert recipe["schema"] == RECIPE_SCHEMA == 2
    # size: as requested, whatever the plugin did to its request; quality: what the run chose
    assert recipe["options"] == {"size": 8, "quality": "high"}
    assert recipe["prompt"] == ""
    artifact = app.artifact_at(path)
    assert artifact is not None and artifact.job_id is not None
    assert app.job(artifact.job_id).request["options"]["size"] == 8
    # the recorded choice replays: regenerate asks for quality "high" and gets the same text
    (again,) = saved(app, app.regenerate(path))
    assert again.read_text() == path.read_text() == "high 5"
    assert read_recipe(again)["options"] == recipe["options"]


def test_the_recipe_records_the_device_and_the_cpu_threads(app: Studio) -> None:
    pytest.importorskip("torch")
    register(app, plugin("probes", ThreadProbe))
    (path,) = saved(app, app.submit(GenerationRequest(generator="thread-probe")))
    recipe = read_recipe(path)
    assert recipe["device"] == app.device
    # what torch used on the worker thread during the run, as the probe saw it
    assert recipe["threads"] == int(path.read_text()) >= 1
    assert recipe["device_name"] is None or isinstance(recipe["device_name"], str)


def test_a_request_runs_with_its_thread_count_and_regenerate_with_the_recorded_one(
    app: Studio,
) -> None:
    pytest.importorskip("torch")
    register(app, plugin("probes", ThreadProbe))
    (plain,) = saved(app, app.submit(GenerationRequest(generator="thread-probe")))
    default = int(plain.read_text())
    wanted = 2 if default == 1 else 1
    (pinned,) = saved(app, app.submit(GenerationRequest(generator="thread-probe", threads=wanted)))
    assert int(pinned.read_text()) == wanted and read_recipe(pinned)["threads"] == wanted
    (again,) = saved(app, app.regenerate(pinned))  # the setting still says `default`
    assert int(again.read_text()) == wanted and read_recipe(again)["threads"] == wanted
    (after,) = saved(app, app.submit(GenerationRequest(generator="thread-probe")))
    assert int(after.read_text()) == default  # the worker put its own count back


def test_thread_counts_are_validated() -> None:
    with pytest.raises(ValidationError, match="threads"):
        GenerationRequest(generator="thread-probe", threads=0)


def test_recipes_of_schema_1_still_replay(app: Studio) -> None:
    old = {
        "schema": 1,
        "plugin": {"name": fake_plugin.__name__, "version": fake_plugin.__version__},
        "generator": "fake-image",
        "model": {"ref": FAKE_MODEL, "source": None, "revision": None, "sha256": None},
        "adapters": [],
        "prompt": "a red fox",
        "options": {"steps": 2},
        "seed": 7,
        "index": 0,
        "device": "cpu",
    }
    request = app.request_from_recipe(old)
    assert (request.threads, request.model, request.seed) == (None, FAKE_MODEL, 7)
    sidecar = app.paths.home / "old.png.json"
    sidecar.write_text(json.dumps(old), encoding="utf-8")
    (path,) = saved(app, app.regenerate(sidecar))
    assert read_recipe(path)["schema"] == RECIPE_SCHEMA


def test_a_recipe_with_a_bad_thread_count_is_refused(app: Studio) -> None:
    with pytest.raises(InvalidRequest, match="cannot be replayed"):
        app.request_from_recipe({"generator": "fake-image", "threads": 0})


# --- regenerate runs the recorded plugin's generator or refuses ----------------------------------


@pytest.fixture
def fox(app: Studio) -> Path:
    """An image made by the testing kit's fake plugin."""
    (path,) = saved(
        app, app.submit(GenerationRequest(generator="fake-image", prompt="a fox", seed=3))
    )
    return path


def test_regenerate_refuses_when_the_plugin_is_missing(app: Studio, fox: Path) -> None:
    app.plugins.unregister(fake_plugin.__name__)
    jobs = len(app.jobs())
    with pytest.raises(InvalidRequest) as info:
        app.regenerate(fox)
    message = str(info.value)
    assert f"plugin {fake_plugin.__name__!r} {fake_plugin.__version__}" in message
    assert "is not installed" in message and "no installed plugin provides 'fake-image'" in message
    assert len(app.jobs()) == jobs  # nothing queued


def test_regenerate_refuses_a_generator_id_now_owned_by_another_plugin(
    app: Studio, fox: Path
) -> None:
    app.plugins.unregister(fake_plugin.__name__)
    register(app, plugin("squatter", Squatter, version="6.6.6"))
    with pytest.raises(InvalidRequest) as info:
        app.regenerate(fox)
    message = str(info.value)
    assert f"plugin {fake_plugin.__name__!r} {fake_plugin.__version__}" in message
    assert "now provided by plugin 'squatter' 6.6.6" in message
    assert not isinstance(info.value, PluginVersionMismatch)  # no flag lets a squatter run it
    with pytest.raises(InvalidRequest, match="squatter"):
        app.regenerate(fox, allow_other_version=True)


def test_regenerate_refuses_when_the_plugin_no_longer_has_the_generator(
    app: Studio, fox: Path
) -> None:
    app.plugins.unregister(fake_plugin.__name__)
    register(app, plugin(fake_plugin.__name__, ThreadProbe, version=fake_plugin.__version__))
    with pytest.raises(InvalidRequest, match="provides no 'fake-image'"):
        app.regenerate(fox)


def test_regenerate_with_another_plugin_version_needs_consent(app: Studio, fox: Path) -> None:
    app.plugins.unregister(fake_plugin.__name__)
    register(app, plugin(fake_plugin.__name__, FakeImageGenerator, version="99.0"))
    with pytest.raises(PluginVersionMismatch) as info:
        app.regenerate(fox)
    assert isinstance(info.value, InvalidRequest)  # the command line's exit 2
    assert f"{fake_plugin.__version__}, but 99.0 is installed" in str(info.value)
    assert (info.value.recorded, info.value.installed) == (fake_plugin.__version__, "99.0")
    (again,) = saved(app, app.regenerate(fox, allow_other_version=True))
    assert pixels(again) == pixels(fox)
    assert read_recipe(again)["plugin"]["version"] == "99.0"


# --- generators that use no model; model references checked before the job -----------------------


def test_a_model_free_generator_runs_end_to_end_without_a_model(app: Studio) -> None:
    register(app, plugin("procedural", Stripes))
    assert app.prepare(GenerationRequest(generator="stripes")).model is None
    job = app.submit(GenerationRequest(generator="stripes", seed=40))
    assert app.job(job).request["model"] is None
    (path,) = saved(app, job)
    recipe = read_recipe(path)
    assert recipe["model"] is None and recipe["generator"] == "stripes"
    artifact = app.artifact_at(path)
    assert artifact is not None and artifact.model is None
    (again,) = saved(app, app.regenerate(path))
    assert pixels(again) == pixels(path)


def test_a_model_for_a_model_free_generator_is_refused(app: Studio) -> None:
    register(app, plugin("procedural", Stripes))
    with pytest.raises(InvalidRequest, match="'stripes' uses no model: remove --model 'org/x'"):
        app.submit(GenerationRequest(generator="stripes", model="org/x"))
    assert app.jobs() == []


def test_a_generator_without_a_default_model_needs_one(app: Studio) -> None:
    register(app, plugin("needy", NeedsAModel))
    with pytest.raises(InvalidRequest, match="'needs-a-model' has no default model: name one"):
        app.submit(GenerationRequest(generator="needs-a-model"))
    assert app.prepare(GenerationRequest(generator="needs-a-model", model="org/x")).model == "org/x"
    assert app.jobs() == []


@pytest.mark.parametrize("ref", ["/nonexistent/folder", "./missing.safetensors", "~/no/such/dir"])
def test_a_local_model_path_that_does_not_exist_is_refused_before_the_job(
    app: Studio, ref: str
) -> None:
    with pytest.raises(InvalidRequest, match="no such file or folder"):
        app.submit(GenerationRequest(generator="fake-image", prompt="x", model=ref))
    assert app.jobs() == []


def test_an_existing_local_model_folder_is_accepted(app: Studio, tmp_path: Path) -> None:
    run = app.prepare(GenerationRequest(generator="fake-image", prompt="x", model=str(tmp_path)))
    assert run.model == str(tmp_path)
