"""What registration checks on a generator or trainer class: uses_model, Options and typing."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import Field

from studio import BaseOptions, GenerationRun, Generator, Trainer, TrainingRun, hookimpl
from studio.core.plugins import PluginHost

ROOT = Path(__file__).resolve().parents[2]


class Strokes(BaseOptions):
    strokes: int = Field(3, ge=1, le=10, description="Strokes to draw.")


class Other(BaseOptions):
    colour: str = Field("red", description="Colour.")


def register(*classes: type) -> tuple[PluginHost, str | None]:
    """Register ``classes`` from one plugin; return the host and the plugin's error."""
    module = types.ModuleType("classes")
    module.studio_api = ">=1.0,<2"  # type: ignore[attr-defined]
    generators = [c for c in classes if issubclass(c, Generator)]
    trainers = [c for c in classes if issubclass(c, Trainer)]

    def register_generators(register: Any) -> None:
        for cls in generators:
            register(cls)

    def register_trainers(register: Any) -> None:
        for cls in trainers:
            register(cls)

    module.register_generators = hookimpl(register_generators)  # type: ignore[attr-defined]
    module.register_trainers = hookimpl(register_trainers)  # type: ignore[attr-defined]
    host = PluginHost()
    return host, host.register(module).error


def generator(gid: str = "sketch", **attrs: Any) -> type[Generator[Any]]:
    body = {"id": gid, "name": "Sketch", "modality": "image", "task": "sketching", **attrs}
    return type("Sketch", (Generator,), body)


def trainer(tid: str = "palette", **attrs: Any) -> type[Trainer[Any]]:
    return type("Palette", (Trainer,), {"id": tid, "name": "Palette", "modality": "image", **attrs})


# -- uses_model ----------------------------------------------------------------------------------


def test_uses_model_defaults_to_true() -> None:
    assert Generator.uses_model is True and Trainer.uses_model is True


def test_a_model_free_trainer_registers_without_a_default_model() -> None:
    host, error = register(trainer(uses_model=False))
    assert error is None and host.trainers["palette"].uses_model is False


def test_a_model_free_trainer_may_not_name_a_default_model() -> None:
    host, error = register(trainer(uses_model=False, default_model="some/model"))
    assert error is not None
    assert "trainer 'palette' sets uses_model = False and default_model = 'some/model'" in error
    assert "Remove default_model" in error
    assert not host.trainers


def test_a_model_free_generator_registers_without_a_default_model() -> None:
    host, error = register(generator(uses_model=False))
    assert error is None and host.generators["sketch"].uses_model is False


def test_a_model_free_generator_may_not_name_a_default_model() -> None:
    host, error = register(generator(uses_model=False, default_model="some/model"))
    assert error is not None
    assert "generator 'sketch' sets uses_model = False and default_model = 'some/model'" in error
    assert "Remove default_model" in error
    assert not host.generators


def test_a_model_using_generator_may_leave_the_model_to_the_user() -> None:
    host, error = register(generator(default_model=None))
    assert error is None and host.generators["sketch"].uses_model is True


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"uses_model": "no"}, "uses_model must be True or False"),
        ({"default_model": ""}, "default_model must be a model reference or None"),
        ({"default_model": 3}, "default_model must be a model reference or None"),
        ({"id": "two words"}, "id must be a string without spaces"),
        ({"modality": "video"}, "modality must be one of"),
        ({"Options": dict}, "Options must be a studio.BaseOptions subclass"),
        ({"task": " "}, "task must be a non-empty string"),
    ],
)
def test_bad_class_metadata_is_refused_with_the_reason(attrs: dict[str, Any], message: str) -> None:
    host, error = register(generator(**attrs))
    assert error is not None and message in error
    assert not host.generators


def test_a_trainer_needs_its_metadata() -> None:
    _, error = register(type("Bare", (Trainer,), {"id": "bare"}))
    assert error is not None and "trainer Bare lacks class attribute(s) ['name', 'modality']" in (
        error
    )


# -- Options and the type parameter --------------------------------------------------------------


class TypedSketch(Generator[Strokes]):
    id = "typed"
    name = "Typed"
    modality = "image"
    task = "sketching"
    uses_model = False
    Options = Strokes

    def run(self, request: GenerationRun[Strokes], ctx: Any) -> Iterator[Any]:
        yield request.options.strokes


class TypedPalette(Trainer[Strokes]):
    id = "typed-palette"
    name = "Typed palette"
    modality = "image"
    Options = Strokes


def test_a_typed_generator_and_trainer_register() -> None:
    host, error = register(TypedSketch, TypedPalette)
    assert error is None
    assert (
        host.generators["typed"] is TypedSketch and host.trainers["typed-palette"] is TypedPalette
    )


def test_options_must_match_the_type_parameter() -> None:
    class Mismatch(Generator[Strokes]):
        id = "mismatch"
        name = "Mismatch"
        modality = "image"
        task = "sketching"
        Options = Other

    _, error = register(Mismatch)
    assert error is not None
    assert "declared Generator[Strokes] but its Options is Other: set Options = Strokes" in error


def test_a_subclass_of_a_typed_generator_keeps_the_check() -> None:
    class Child(TypedSketch):
        id = "child"
        Options = Other

    _, error = register(Child)
    assert error is not None and "Generator[Strokes]" in error


def test_the_runs_are_generic_at_runtime_too() -> None:
    run = GenerationRun[Strokes](
        generator="typed", prompt="", model="m", seed=1, options=Strokes(strokes=4)
    )
    assert run.options.strokes == 4
    fit = TrainingRun[Strokes](
        trainer="t",
        base_model="m",
        dataset=Path("."),
        name="n",
        options=Strokes(),
        output_dir=Path("."),
    )
    assert fit.options.strokes == 3


def test_check_is_an_instance_method() -> None:
    assert "instance method" in (Generator.check.__doc__ or "")


MYPY_SNIPPET = textwrap.dedent(
    """
    from collections.abc import Callable, Iterator
    from typing import Any

    from pydantic import Field

    from studio import BaseOptions, GenerationRun, Generator, PluginEvent, RunContext
    from studio import Trainer, TrainingRun, TrainContext


    class Strokes(BaseOptions):
        strokes: int = Field(3, description="Strokes.")


    class Sketch(Generator[Strokes]):
        Options = Strokes

        def run(self, request: GenerationRun[Strokes], ctx: RunContext) -> Iterator[PluginEvent]:
            count: int = request.options.strokes
            request.options.colour  # error: no such option
            yield from ()


    class Palette(Trainer[Strokes]):
        Options = Strokes

        def run(self, request: TrainingRun[Strokes], ctx: TrainContext) -> Iterator[PluginEvent]:
            request.options.size  # error: no such option
            yield from ()


    def register_generators(register: Callable[[type[Generator[Any]]], None]) -> None:
        register(Sketch)
        register(Palette)  # error: not a generator
    """
)


def test_a_type_checker_sees_the_options_type(tmp_path: Path) -> None:
    """``Generator[MyOptions]`` types ``request.options`` and the register callbacks' argument."""
    pytest.importorskip("mypy")
    source = tmp_path / "typed_plugin.py"
    source.write_text(MYPY_SNIPPET, encoding="utf-8")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--no-error-summary",
            "--follow-imports=silent",
            "--cache-dir",
            str(tmp_path / "mypy-cache"),
            str(source),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    errors = sorted(
        int(line.split(":")[1]) for line in result.stdout.splitlines() if ": error:" in line
    )
    expected = [n for n, line in enumerate(MYPY_SNIPPET.splitlines(), 1) if "# error:" in line]
    assert len(expected) == 3 and errors == expected, result.stdout + result.stderr
    assert '"Strokes" has no attribute "colour"' in result.stdout
