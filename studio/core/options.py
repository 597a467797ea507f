"""Options: the one description of a generator's (or trainer's) settings.

Every generator declares an ``Options`` pydantic model derived from :class:`BaseOptions`. The CLI's
``--set KEY=VALUE`` validation and the GUI's form are both derived from it through
:func:`field_specs`; nothing else restates a type, range, default or description.

Hints for the GUI go in ``json_schema_extra``: ``{"widget": "image" | "mask" | "audio" | "file" |
"multiline" | "slider"}``. Choices are ``Literal[...]`` types.
"""

from __future__ import annotations

import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from studio.core.errors import OptionsError, UsageError


class BaseOptions(BaseModel):
    """Base for every Options model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False)


@dataclass(frozen=True)
class FieldSpec:
    """A form/CLI-ready view of one option."""

    name: str
    kind: Literal["bool", "int", "float", "str", "choice", "path", "list"]
    default: Any
    description: str
    title: str
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    multiple_of: float | None = None
    choices: tuple[Any, ...] = ()
    optional: bool = False
    widget: str | None = None


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def field_specs(options_cls: type[BaseModel]) -> list[FieldSpec]:
    """Describe each field of ``options_cls`` (in declaration order) for a CLI or a form."""
    specs = []
    for name, info in options_cls.model_fields.items():
        annotation, optional = _unwrap_optional(info.annotation)
        origin = typing.get_origin(annotation)
        choices: tuple[Any, ...] = ()
        if origin is Literal:
            kind = "choice"
            choices = typing.get_args(annotation)
        elif annotation is bool:
            kind = "bool"
        elif annotation is int:
            kind = "int"
        elif annotation is float:
            kind = "float"
        elif annotation is Path:
            kind = "path"
        elif origin in (list, tuple):
            kind = "list"
        else:
            kind = "str"
        lo = hi = step = None
        ex_lo = ex_hi = False
        for meta in info.metadata:
            if getattr(meta, "ge", None) is not None:
                lo = meta.ge
            if getattr(meta, "gt", None) is not None:
                lo, ex_lo = meta.gt, True
            if getattr(meta, "le", None) is not None:
                hi = meta.le
            if getattr(meta, "lt", None) is not None:
                hi, ex_hi = meta.lt, True
            if getattr(meta, "multiple_of", None) is not None:
                step = meta.multiple_of
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        widget = extra.get("widget")
        if kind == "path" and widget is None:
            widget = "file"
        specs.append(
            FieldSpec(
                name=name,
                kind=kind,  # type: ignore[arg-type]
                default=None if info.is_required() else info.get_default(call_default_factory=True),
                description=info.description or "",
                title=info.title or name.replace("_", " ").capitalize(),
                required=info.is_required(),
                minimum=lo,
                maximum=hi,
                exclusive_minimum=ex_lo,
                exclusive_maximum=ex_hi,
                multiple_of=step,
                choices=choices,
                optional=optional,
                widget=widget if isinstance(widget, str) else None,
            )
        )
    return specs


def allowed_text(spec: FieldSpec) -> str:
    """What a field accepts, in words (used in error messages and CLI help)."""
    if spec.kind == "choice":
        return "one of " + ", ".join(repr(c) for c in spec.choices)
    if spec.kind in ("int", "float"):
        lo = (
            ""
            if spec.minimum is None
            else f"{'>' if spec.exclusive_minimum else '>='} {spec.minimum}"
        )
        hi = (
            ""
            if spec.maximum is None
            else f"{'<' if spec.exclusive_maximum else '<='} {spec.maximum}"
        )
        rng = " and ".join(p for p in (lo, hi) if p)
        mult = f", a multiple of {spec.multiple_of}" if spec.multiple_of else ""
        return (
            f"{'an integer' if spec.kind == 'int' else 'a number'}{' ' + rng if rng else ''}{mult}"
        )
    if spec.kind == "bool":
        return "true or false"
    if spec.kind == "path":
        return "a file path"
    if spec.kind == "list":
        return "a comma-separated list"
    return "text"


def parse_set_pairs(pairs: list[str]) -> dict[str, str]:
    """Turn ``["steps=20", "width=512"]`` into a dict; a pair without ``=`` is a usage error."""
    values: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--set expects KEY=VALUE, got {pair!r}")
        values[key.strip().replace("-", "_")] = value
    return values


def _coerce_cli_value(spec: FieldSpec, raw: str) -> Any:
    """Strings from the command line, shaped so pydantic can validate them (lists split on ',')."""
    if spec.optional and raw.strip().lower() in ("", "none", "null"):
        return None
    if spec.kind == "list":
        return [part.strip() for part in raw.split(",") if part.strip()]
    return raw


_ModelT = TypeVar("_ModelT", bound=BaseModel)


def validate_options(options_cls: type[_ModelT], values: dict[str, Any]) -> _ModelT:
    """Build ``options_cls`` from user values; raise :class:`OptionsError` naming field + allowed.

    String values (from ``--set``) are coerced the way the CLI documents: lists split on commas,
    ``none`` clears an optional field.
    """
    specs = {s.name: s for s in field_specs(options_cls)}
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise OptionsError(
            f"unknown option {unknown[0]!r}; allowed: {', '.join(specs) or '(none)'}", unknown[0]
        )
    prepared = {
        k: _coerce_cli_value(specs[k], v) if isinstance(v, str) else v for k, v in values.items()
    }
    try:
        return options_cls.model_validate(prepared)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        name = str(loc[0]) if loc else None
        spec = specs.get(name) if name else None
        got = prepared.get(name) if name else None
        if spec is not None:
            problem = err["msg"].lower()
            raise OptionsError(
                f"option {name!r}: {problem} (got {got!r}; allowed: {allowed_text(spec)})", name
            ) from None
        raise OptionsError(f"invalid options: {err['msg']}") from None
