"""Installing and removing plugin packages with pip, under the studio's policy.

One implementation for the command line (``aigc-studio install`` / ``uninstall``) and the window's
Plugins panel. The policy:

- pip runs in the studio's own environment (``python -m pip`` of the interpreter running the
  studio), as ``llm install`` does;
- every install is constrained (``pip install --constraint FILE``) to the installed versions of the
  studio's core distributions (:data:`CORE_DISTRIBUTIONS`: the studio, torch, PySide6, the model
  libraries, ...), so that a plugin can never upgrade or downgrade them; pip fails instead;
- a core distribution is never installed over nor uninstalled;
- only plugin packages are uninstalled: a name is a plugin's entry-point name (as
  ``aigc-studio plugins`` lists it) or a distribution that declares a ``studio.plugins`` entry
  point.

Every check raises :class:`~studio.core.errors.InvalidRequest` with one line naming the problem and
what is allowed, before pip runs. This module only builds and checks pip's arguments (and runs pip
in a subprocess for the command line); the panel runs the same arguments in a ``QProcess``.
"""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
import tomllib
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import IO

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from studio.core.errors import InvalidRequest
from studio.core.plugins import ENTRY_POINT_GROUP

__all__ = [
    "CORE_DISTRIBUTIONS",
    "distribution_of",
    "install_arguments",
    "installed_version",
    "is_core",
    "pip_command",
    "plugin_distributions",
    "resolve_uninstall",
    "run_pip",
    "spec_distribution",
    "uninstall_arguments",
    "write_constraints",
]

#: Distributions a plugin install must never change (pinned to their installed versions).
CORE_DISTRIBUTIONS = (
    "aigc-studio",
    "torch",
    "PySide6",
    "PySide6_Essentials",
    "PySide6_Addons",
    "shiboken6",
    "diffusers",
    "transformers",
    "peft",
    "accelerate",
    "safetensors",
    "huggingface_hub",
    "tokenizers",
    "pluggy",
    "pydantic",
    "pydantic_core",
    "numpy",
    "Pillow",
    "soundfile",
    "platformdirs",
)

_CORE = frozenset(canonicalize_name(name) for name in CORE_DISTRIBUTIONS)
_ARCHIVE_SUFFIXES = (".whl", ".tar.gz", ".zip", ".tar.bz2", ".tgz")
_CONSTRAINTS_HEADER = (
    "# Written by aigc-studio: plugin installs must not change the studio's own packages."
)


# --- names -----------------------------------------------------------------------------------


def is_core(name: str) -> bool:
    """Whether ``name`` (any spelling: ``PySide6``, ``pyside6``, ``huggingface-hub``) is a core
    distribution that plugin installs must not change."""
    return canonicalize_name(name.strip()) in _CORE


def installed_version(distribution: str) -> str | None:
    """The installed version of ``distribution`` in this environment, or ``None``."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def write_constraints(path: Path) -> Path:
    """Pin every installed core distribution to its exact version (a pip ``--constraint`` file).

    A core distribution that is not installed is left out (pip may then install it, which
    changes nothing the studio runs with).
    """
    lines = [_CONSTRAINTS_HEADER]
    for name in CORE_DISTRIBUTIONS:
        version = installed_version(name)
        if version is not None:
            lines.append(f"{name}=={version}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def plugin_distributions() -> dict[str, str]:
    """Entry-point name -> distribution, for every installed ``studio.plugins`` entry point.

    Read afresh on every call (the installed packages change under a running studio).
    """
    importlib.invalidate_caches()
    found: dict[str, str] = {}
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.dist is not None and ep.name not in found:
            found[ep.name] = str(ep.dist.metadata["Name"])
    return found


def distribution_of(plugin_name: str) -> str | None:
    """The distribution declaring entry point ``plugin_name`` (``None``: registered in code)."""
    return plugin_distributions().get(plugin_name)


def spec_distribution(spec: str) -> str | None:
    """The distribution an install ``spec`` names, when it can be told without running pip.

    A requirement (``studio-palette>=1.0``, ``name @ URL``) names it; so does a wheel's file name
    (``studio_palette-0.1-py3-none-any.whl``) and a project folder's ``pyproject.toml``.
    """
    text = spec.strip()
    path = Path(text).expanduser()
    if path.is_dir():
        pyproject = path / "pyproject.toml"
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, tomllib.TOMLDecodeError):
            return None
        name = data.get("project", {}).get("name")
        return str(name) if isinstance(name, str) else None
    if " @ " in text or (text.count("@") == 1 and "://" in text.split("@")[1]):
        try:
            return Requirement(text).name  # name @ URL
        except InvalidRequirement:
            return None
    if path.name.endswith(".whl"):
        return path.name.split("-")[0]
    if path.name.endswith(_ARCHIVE_SUFFIXES):
        match = re.match(r"(.+?)-\d", path.name)  # sdist: NAME-VERSION.tar.gz
        return match.group(1) if match else None
    try:
        return Requirement(text).name
    except InvalidRequirement:
        return None


# --- install ---------------------------------------------------------------------------------


def _looks_like_path(text: str) -> bool:
    return (
        text.startswith((".", "/", "~"))
        or "\\" in text
        or (("/" in text) and "://" not in text and "@" not in text)
        or text.endswith(_ARCHIVE_SUFFIXES)
    )


def check_install_spec(spec: str, *, editable: bool = False) -> str:
    """Check one thing to install; return it stripped. :class:`InvalidRequest` when refused.

    Allowed: a package requirement (``studio-palette``, ``studio-palette>=1.0``), a wheel, an
    sdist or a project folder that exists, or a URL (``https://...``, ``git+https://...``); with
    ``editable``, only a project folder. Refused: pip options, core distributions.
    """
    text = spec.strip()
    if not text:
        raise InvalidRequest(
            "nothing to install: give a package name (e.g. studio-palette), a wheel file "
            "or a project folder"
        )
    if text.startswith("-"):
        raise InvalidRequest(
            f"{text!r} is a pip option, not a package: give a package name, a wheel file or a "
            "project folder (pip's options are set by the studio)"
        )
    path = Path(text).expanduser()
    is_url = "://" in text and not path.exists()
    if editable:
        if not path.is_dir() or not (
            (path / "pyproject.toml").is_file() or (path / "setup.py").is_file()
        ):
            raise InvalidRequest(
                f"--editable needs a project folder (with a pyproject.toml); {text!r} is not one"
            )
    elif not is_url and not path.exists():
        if _looks_like_path(text):
            raise InvalidRequest(
                f"{text!r}: no such file or folder (give a wheel, an sdist or a project folder "
                "that exists, or a package name)"
            )
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise InvalidRequest(
                f"{text!r} is not a package requirement ({exc}); give a package name such as "
                "studio-palette or studio-palette>=1.0, a wheel file or a project folder"
            ) from None
    name = spec_distribution(text)
    if name is not None and is_core(name):
        raise InvalidRequest(
            f"{name} is one of the studio's core packages: plugin installs never change it "
            "(update the studio itself instead)"
        )
    return text


def install_arguments(
    specs: Sequence[str],
    constraints: Path,
    *,
    upgrade: bool = False,
    editable: bool = False,
) -> list[str]:
    """pip's arguments (after ``python -m pip``) to install ``specs`` with the core pinned.

    Checks every spec (:func:`check_install_spec`) and writes the constraints file first.
    """
    if not specs:
        raise InvalidRequest(
            "nothing to install: give a package name (e.g. studio-palette), a wheel file "
            "or a project folder"
        )
    checked = [check_install_spec(spec, editable=editable) for spec in specs]
    write_constraints(constraints)
    args = ["install", "--constraint", str(constraints)]
    if upgrade:
        args.append("--upgrade")
    for spec in checked:
        args.extend(["--editable", spec] if editable else [spec])
    return args


# --- uninstall -------------------------------------------------------------------------------


def resolve_uninstall(name: str) -> str:
    """The plugin distribution to uninstall for ``name``: a plugin (entry-point) name as
    ``aigc-studio plugins`` lists it, or the name of a distribution declaring one.

    :class:`InvalidRequest` for a core distribution, or a name that is no installed plugin (the
    message lists the installed plugin packages).
    """
    text = name.strip()
    plugins = plugin_distributions()
    if text in plugins:
        dist = plugins[text]
    else:
        matches = {d for d in plugins.values() if canonicalize_name(d) == canonicalize_name(text)}
        dist = next(iter(matches), "") if text else ""
    if dist and is_core(dist):
        raise InvalidRequest(
            f"{text!r} is part of the studio ({dist}): built-in plugins cannot be uninstalled; "
            "disable it in the Plugins panel instead"
        )
    if not dist:
        if text and is_core(text):
            raise InvalidRequest(
                f"{text} is one of the studio's core packages: it is never uninstalled here"
            )
        third_party = sorted(
            {f"{d} ({n})" for n, d in plugins.items() if not is_core(d)}, key=str.lower
        )
        raise InvalidRequest(
            f"no installed plugin named {text!r}; installed plugin packages: "
            f"{', '.join(third_party) or '(none)'}"
        )
    return dist


def uninstall_arguments(distributions: Iterable[str]) -> list[str]:
    """pip's arguments to uninstall ``distributions`` without asking (the caller asked)."""
    names = list(distributions)
    for name in names:
        if is_core(name):
            raise InvalidRequest(f"{name} is one of the studio's core packages: never uninstalled")
    return ["uninstall", "--yes", *names]


# --- running pip -----------------------------------------------------------------------------


def pip_command(args: Sequence[str], python: str | None = None) -> list[str]:
    """The full command line: ``PYTHON -m pip ARGS`` (default: this interpreter)."""
    return [python or sys.executable, "-m", "pip", *args]


def run_pip(
    args: Sequence[str],
    *,
    python: str | None = None,
    output: IO[str] | None = None,
) -> int:
    """Run pip in a subprocess, its output (stdout and stderr) going to ``output``
    (default: this process's stderr); return pip's exit code."""
    stream = sys.stderr if output is None else output
    stream.flush()
    try:
        fileno = stream.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (tests capture to memory)
        fileno = None
    command = pip_command(args, python)
    if fileno is not None:
        return subprocess.run(command, stdout=fileno, stderr=fileno, check=False).returncode
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    stream.write(result.stdout + result.stderr)
    stream.flush()
    return result.returncode
