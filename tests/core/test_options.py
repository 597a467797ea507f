"""Options are the one source for CLI validation and GUI forms (field_specs, validate_options)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field

from studio.core.errors import OptionsError, UsageError
from studio.core.options import (
    BaseOptions,
    allowed_text,
    field_specs,
    parse_set_pairs,
    validate_options,
)


class Demo(BaseOptions):
    steps: int = Field(20, ge=1, le=150, description="Denoising steps.")
    width: int = Field(512, ge=64, le=2048, multiple_of=8, description="Width in pixels.")
    guidance: float = Field(7.5, ge=0, le=30, description="How strongly to follow the prompt.")
    sampler: Literal["euler", "ddim"] = Field("euler", description="Scheduler.")
    tiled: bool = Field(False, description="Tile the VAE.")
    init_image: Path | None = Field(
        None, description="Start image.", json_schema_extra={"widget": "image"}
    )
    stop: list[str] = Field(default_factory=list, description="Stop strings.")
    negative: str = Field("", description="What to avoid.")


def test_field_specs_describe_every_field_in_order() -> None:
    specs = {s.name: s for s in field_specs(Demo)}
    assert list(specs) == list(Demo.model_fields)
    assert specs["steps"].kind == "int" and (specs["steps"].minimum, specs["steps"].maximum) == (
        1,
        150,
    )
    assert specs["width"].multiple_of == 8
    assert specs["guidance"].kind == "float"
    assert specs["sampler"].kind == "choice" and specs["sampler"].choices == ("euler", "ddim")
    assert specs["tiled"].kind == "bool" and specs["tiled"].default is False
    assert specs["init_image"].kind == "path" and specs["init_image"].optional
    assert specs["init_image"].widget == "image"
    assert specs["stop"].kind == "list" and specs["stop"].default == []
    assert specs["negative"].description == "What to avoid."


def test_cli_strings_are_coerced_and_validated() -> None:
    opts = validate_options(
        Demo,
        {"steps": "30", "guidance": "4.5", "tiled": "true", "stop": "a, b", "init_image": "none"},
    )
    assert (opts.steps, opts.guidance, opts.tiled, opts.stop, opts.init_image) == (
        30,
        4.5,
        True,
        ["a", "b"],
        None,
    )


@pytest.mark.parametrize(
    ("values", "field", "words"),
    [
        ({"steps": "0"}, "steps", "an integer >= 1 and <= 150"),
        ({"width": "500"}, "width", "multiple of 8"),
        ({"sampler": "heun"}, "sampler", "one of 'euler', 'ddim'"),
        ({"steps": "many"}, "steps", "got 'many'"),
    ],
)
def test_errors_name_the_field_and_what_is_allowed(values, field, words) -> None:
    with pytest.raises(OptionsError) as info:
        validate_options(Demo, values)
    assert info.value.field == field
    assert field in str(info.value) and words in str(info.value)


def test_unknown_option_lists_the_allowed_ones() -> None:
    with pytest.raises(OptionsError, match="unknown option 'stepz'; allowed: steps, width"):
        validate_options(Demo, {"stepz": "3"})


def test_parse_set_pairs() -> None:
    assert parse_set_pairs(["steps=3", "negative-prompt=a=b"]) == {
        "steps": "3",
        "negative_prompt": "a=b",
    }
    with pytest.raises(UsageError, match="KEY=VALUE"):
        parse_set_pairs(["steps"])


def test_allowed_text_for_each_kind() -> None:
    specs = {s.name: s for s in field_specs(Demo)}
    assert allowed_text(specs["tiled"]) == "true or false"
    assert allowed_text(specs["guidance"]) == "a number >= 0 and <= 30"
    assert allowed_text(specs["init_image"]) == "a file path"
