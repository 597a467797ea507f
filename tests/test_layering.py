"""The layering of docs/architecture.md, enforced.

* nothing under studio/core, studio/testing or plugins/ imports Qt (or the GUI package);
* no module of studio/ or plugins/ imports a model library at module level (only inside
  functions, or under ``TYPE_CHECKING``);
* importing every ``studio.core`` module, listing plugins, ``aigc-studio plugins --json`` and the
  pytest plugin import no torch, diffusers or transformers (checked in fresh interpreters).
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "diffusers", "transformers")
LAZY_ONLY = (*HEAVY, "peft", "accelerate")
QT = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "studio.ui")


def python_files(*folders: str) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        files.extend(sorted((ROOT / folder).rglob("*.py")))
    return files


def imported_names(node: ast.AST) -> Iterator[str]:
    """Module names an ``import`` / ``from ... import`` statement brings in."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name
    elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
        yield node.module
        for alias in node.names:  # `from studio import ui`
            yield f"{node.module}.{alias.name}"


def matches(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def module_level_imports(tree: ast.Module) -> Iterator[ast.stmt]:
    """Import statements that run at import time: not in functions, not under TYPE_CHECKING."""
    stack: list[ast.stmt] = list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if "TYPE_CHECKING" not in test:
                stack.extend(node.body)
            stack.extend(node.orelse)
        elif isinstance(node, ast.Try):
            stack.extend([*node.body, *node.orelse, *node.finalbody])
            for handler in node.handlers:
                stack.extend(handler.body)
        elif isinstance(node, ast.With):
            stack.extend(node.body)
        elif isinstance(node, ast.ClassDef):
            stack.extend(node.body)  # a class body runs at import time too


def test_scan_covers_the_packages() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in python_files("studio/core", "plugins")}
    assert "studio/core/plugins.py" in names and "studio/core/options.py" in names
    assert any(n.startswith("plugins/studio_image/") for n in names)


@pytest.mark.parametrize(
    "path",
    python_files("studio/core", "studio/testing", "plugins"),
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_no_qt_below_the_ui(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offending = [
        f"line {getattr(node, 'lineno', '?')}: {name}"
        for node in ast.walk(tree)
        for name in imported_names(node)
        if matches(name, QT)
    ]
    assert not offending, f"{path.relative_to(ROOT)} imports Qt/GUI code: {offending}"


@pytest.mark.parametrize(
    "path",
    python_files("studio", "plugins"),
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_model_libraries_are_imported_lazily(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    offending = [
        f"line {node.lineno}: {name}"
        for node in module_level_imports(tree)
        for name in imported_names(node)
        if matches(name, LAZY_ONLY)
    ]
    assert not offending, (
        f"{path.relative_to(ROOT)} imports a model library at module level "
        f"(import it inside the function that needs it): {offending}"
    )


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


REPORT_HEAVY = (
    "import json, sys; "
    "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
    f"{HEAVY!r} or m.split('.')[0] in ('PySide6', 'shiboken6'))))"
)


def core_modules() -> list[str]:
    return sorted(
        f"studio.core.{p.stem}"
        for p in (ROOT / "studio" / "core").glob("*.py")
        if p.stem != "__init__"
    )


def test_importing_studio_core_imports_no_model_library() -> None:
    modules = ["studio", "studio.core", *core_modules()]
    code = "".join(f"import {m}; " for m in modules) + REPORT_HEAVY
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == [], modules


def test_listing_plugins_imports_no_model_library(studio_home: Path) -> None:
    code = (
        "from studio.core.plugins import PluginHost; h = PluginHost(); h.load_entry_points(); "
        "print(sorted(h.plugins)); " + REPORT_HEAVY
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert "image" in result.stdout.splitlines()[0]  # the built-ins were really loaded
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_opening_a_studio_imports_no_model_library_until_a_job_runs(studio_home: Path) -> None:
    """The window opens a studio at start-up: torch must not load (and hold the GIL) then."""
    code = (
        "import time; from studio.core.studio import Studio; s = Studio.open(); "
        "time.sleep(0.5); " + REPORT_HEAVY.replace("print(", "r = (") + "; s.close(); print(r)"
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_pytest_plugin_and_cli_import_nothing_heavy() -> None:
    code = (
        "import studio.testing.pytest_plugin, studio.cli, studio.testing.contract; "
        "import sys; assert 'studio.core.studio' not in sys.modules, 'facade imported'; "
        + REPORT_HEAVY
    )
    result = run_python(code)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


def test_cli_plugins_command_imports_no_model_library(studio_home: Path) -> None:
    """``aigc-studio plugins --json`` as a user runs it, with Python's import tracing on."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "studio", "plugins", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["schema"] == 1
    imported = {
        line.rsplit("|", 1)[-1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    assert "studio.cli" in imported  # the trace works
    heavy = sorted(m for m in imported if m.split(".")[0] in (*HEAVY, "PySide6"))
    assert heavy == []
