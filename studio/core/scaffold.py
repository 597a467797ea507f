"""``aigc-studio plugins new``: write a plugin package that is ready to install and test.

The package has a ``pyproject.toml`` with the ``studio.plugins`` entry point, a module declaring
the plugin API range it supports (``studio_api``) and its hook implementation, one class (a
seeded generator that needs no model weights, or a small trainer that learns from a folder with
no base model; both declare ``uses_model = False``) and tests built on the studio's testing kit,
which pass as generated. The generated code imports only the public API (``studio``,
``studio.testing``) besides the standard library, pydantic and Pillow (both installed with the
studio).

The templates are files under ``studio/core/templates/plugin`` (shipped in the wheel), with
``$placeholders`` (:class:`string.Template`).
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from studio.core.errors import InvalidRequest

__all__ = ["KINDS", "NAME_RULE", "CreatedPlugin", "create_plugin", "plugin_names"]

#: What ``--kind`` allows; the first is the default.
KINDS = ("generator", "trainer")
#: What a plugin name may be, in words (the error messages and ``--help`` say it).
NAME_RULE = (
    "lowercase letters, digits and single hyphens, starting with a letter, at most 40 "
    "characters (e.g. 'palette' or 'noise-shapes'); a leading 'studio-' is allowed"
)
_NAME = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")
_MAX_LENGTH = 40

#: Output path (with ``$module``) -> template file, per kind.
_FILES = {
    "generator": {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        ".gitignore": "gitignore.tmpl",
        "$module/__init__.py": "generator/__init__.py.tmpl",
        "$module/generator.py": "generator/generator.py.tmpl",
        "tests/test_generator.py": "generator/test_generator.py.tmpl",
    },
    "trainer": {
        "pyproject.toml": "pyproject.toml.tmpl",
        "README.md": "README.md.tmpl",
        ".gitignore": "gitignore.tmpl",
        "$module/__init__.py": "trainer/__init__.py.tmpl",
        "$module/trainer.py": "trainer/trainer.py.tmpl",
        "tests/test_trainer.py": "trainer/test_trainer.py.tmpl",
    },
}


@dataclass(frozen=True)
class PluginNames:
    """Every name derived from the plugin name ``noise-shapes``."""

    name: str  # noise-shapes: the entry-point name, the component's id
    distribution: str  # studio-noise-shapes
    module: str  # studio_noise_shapes
    class_prefix: str  # NoiseShapes
    title: str  # Noise shapes


@dataclass(frozen=True)
class CreatedPlugin:
    """What :func:`create_plugin` wrote."""

    folder: Path
    name: str
    distribution: str
    module: str
    component_id: str
    files: tuple[Path, ...]


def plugin_names(name: str) -> PluginNames:
    """Check a plugin name and derive the others; :class:`InvalidRequest` saying what is allowed."""
    text = name.strip()
    base = text.removeprefix("studio-")
    if not base or len(text) > _MAX_LENGTH or not _NAME.fullmatch(text) or text == "studio":
        raise InvalidRequest(f"invalid plugin name {name!r}: use {NAME_RULE}")
    if not _NAME.fullmatch(base):
        raise InvalidRequest(f"invalid plugin name {name!r}: use {NAME_RULE}")
    words = base.split("-")
    return PluginNames(
        name=base,
        distribution=f"studio-{base}",
        module="studio_" + base.replace("-", "_"),
        class_prefix="".join(w[:1].upper() + w[1:] for w in words),
        title=" ".join(words).capitalize(),
    )


def _check_not_installed(names: PluginNames) -> None:
    """Refuse a name an installed plugin uses: the studio would load only one of the two."""
    from studio.core.installer import plugin_distributions

    owner = plugin_distributions().get(names.name)
    if owner is not None:
        raise InvalidRequest(
            f"a plugin named {names.name!r} is installed already (package {owner}); "
            "choose another name"
        )


def _check_target(folder: Path) -> None:
    if folder.exists() and not folder.is_dir():
        raise InvalidRequest(f"{folder} is a file: give a folder that does not exist or is empty")
    if folder.is_dir() and any(folder.iterdir()):
        raise InvalidRequest(
            f"{folder} exists and is not empty: give a new or empty folder (--dir DIR), "
            "nothing was written"
        )


def _studio_requirement() -> str:
    """``aigc-studio>=MAJOR.MINOR`` of the running studio."""
    from studio import __version__

    major_minor = ".".join(__version__.split(".")[:2])
    return f"aigc-studio>={major_minor}"


def _api_range() -> str:
    """The API range a new plugin declares: this API's major version (``>=1.0,<2``)."""
    from studio.core.hookspecs import API_VERSION

    major = int(API_VERSION.split(".")[0])
    return f">={major}.0,<{major + 1}"


def render(kind: str, names: PluginNames) -> dict[str, str]:
    """The package's files (relative path -> text) for ``kind``, without writing anything."""
    if kind not in KINDS:
        raise InvalidRequest(f"invalid kind {kind!r}: one of {', '.join(KINDS)}")
    values = {
        "name": names.name,
        "distribution": names.distribution,
        "module": names.module,
        "Class": names.class_prefix,
        "title": names.title,
        "kind": kind,
        "studio_requirement": _studio_requirement(),
        "api_range": _api_range(),
    }
    root = resources.files("studio.core").joinpath("templates", "plugin")
    files: dict[str, str] = {}
    for relative, template in _FILES[kind].items():
        text = root.joinpath(*template.split("/")).read_text(encoding="utf-8")
        path = string.Template(relative).substitute(values)
        files[path] = string.Template(text).substitute(values)
    return files


def create_plugin(
    name: str, *, kind: str = "generator", target: Path | None = None
) -> CreatedPlugin:
    """Write a new plugin package for ``name`` into ``target`` (default ``./studio-NAME``).

    Refuses (:class:`InvalidRequest`, nothing written) an invalid name or kind, a name an
    installed plugin uses, and a target that exists and is not an empty folder.
    """
    names = plugin_names(name)
    files = render(kind, names)
    _check_not_installed(names)
    folder = (Path(target) if target is not None else Path.cwd() / names.distribution).expanduser()
    folder = folder.resolve()
    _check_target(folder)
    written = []
    for relative, text in files.items():
        path = folder / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return CreatedPlugin(
        folder=folder,
        name=names.name,
        distribution=names.distribution,
        module=names.module,
        component_id=names.name,
        files=tuple(written),
    )
