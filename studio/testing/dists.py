"""Fake installed distributions, so that entry-point discovery can be tested without pip.

:func:`make_distribution` writes ``<name>-<version>.dist-info`` (``METADATA`` +
``entry_points.txt``) and, optionally, module files into a folder. Put that folder on
``sys.path`` (and on ``PYTHONPATH`` for a subprocess) and :mod:`importlib.metadata` finds the
distribution and its ``studio.plugins`` entry points exactly as it finds a pip-installed plugin.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from pathlib import Path

from studio.core.plugins import ENTRY_POINT_GROUP


def make_distribution(
    folder: Path,
    name: str,
    entry_points: dict[str, str],
    *,
    version: str = "0.1.0",
    modules: dict[str, str] | None = None,
    group: str = ENTRY_POINT_GROUP,
) -> Path:
    """Write a distribution ``name`` into ``folder``; return ``folder`` (the sys.path entry).

    :param entry_points: entry-point name -> ``module`` or ``module:attribute``.
    :param modules: extra source files, relative path -> text (e.g. ``{"my_plugin.py": "..."}``).
    """
    folder = Path(folder)
    normalized = re.sub(r"[-_.]+", "_", name)
    info = folder / f"{normalized}-{version}.dist-info"
    info.mkdir(parents=True, exist_ok=True)
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    lines = [f"[{group}]", *(f"{key} = {value}" for key, value in entry_points.items()), ""]
    (info / "entry_points.txt").write_text("\n".join(lines), encoding="utf-8")
    (info / "RECORD").write_text("", encoding="utf-8")
    for relative, text in (modules or {}).items():
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    importlib.invalidate_caches()  # importlib.metadata caches folder listings by mtime
    return folder


def pythonpath_with(*folders: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` (default ``os.environ``) with ``folders`` first on ``PYTHONPATH``."""
    result = dict(os.environ if env is None else env)
    parts = [str(f) for f in folders]
    if result.get("PYTHONPATH"):
        parts.append(result["PYTHONPATH"])
    result["PYTHONPATH"] = os.pathsep.join(parts)
    return result


def forget_modules(*prefixes: str) -> None:
    """Drop imported modules (and submodules) so a later import runs the files again."""
    for name in list(sys.modules):
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            del sys.modules[name]
