"""The layering of docs/architecture.md ("Layers"), enforced.

* every first-party import (absolute or relative, at module level, in a function or under
  ``TYPE_CHECKING``) in studio/, plugins/, docs/example_plugin/ and benchmarks/ follows the table
  of allowed edges, :data:`ALLOWED`; docs/architecture.md shows the same table (checked here);
* nothing under studio/core, studio/testing or plugins/ imports Qt (or the GUI package);
* no module of studio/ or plugins/ imports a model library at module level (only inside
  functions, or under ``TYPE_CHECKING``);
* importing every ``studio.core`` module, listing plugins, ``aigc-studio plugins --json`` and the
  pytest plugin import no torch, diffusers or transformers (checked in fresh interpreters).

The test suite itself (tests/) may import anything.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
HEAVY = ("torch", "diffusers", "transformers")
LAZY_ONLY = (*HEAVY, "peft", "accelerate")
QT = ("PySide6", "shiboken6", "PyQt5", "PyQt6", "studio.ui")
ARCHITECTURE = ROOT / "docs" / "architecture.md"

# --- the table of allowed edges ----------------------------------------------------------------

#: The columns: what can be imported. ``own package`` is the importing plugin's own package;
#: ``built-in plugins`` are the packages under plugins/.
TARGETS = (
    "studio",
    "studio.core",
    "studio.testing",
    "studio.ui",
    "studio.cli",
    "own package",
    "built-in plugins",
    "benchmarks",
)
YES = "yes"

#: Who may import what. A row is an importer; a target is allowed with ``YES``, or with a name
#: (``"__version__"``): only ``from <target> import <that name>``. Anything not listed is refused.
#: The same table is in docs/architecture.md, "Layers".
ALLOWED: dict[str, dict[str, str]] = {
    "studio": {"studio.core": YES},
    "studio.core": {"studio": "__version__", "studio.core": YES},
    "studio.testing": {"studio": YES, "studio.core": YES, "studio.testing": YES},
    "studio.ui": {"studio": YES, "studio.core": YES, "studio.testing": YES, "studio.ui": YES},
    "studio.cli": {"studio": YES, "studio.core": YES, "studio.ui": YES, "studio.cli": YES},
    "plugin": {"studio": YES, "own package": YES},
    "plugin tests": {"studio": YES, "studio.testing": YES, "own package": YES},
    "benchmarks": {
        "studio": YES,
        "studio.core": YES,
        "studio.testing": YES,
        "built-in plugins": YES,
        "benchmarks": YES,
    },
}

#: The packages under plugins/ and the example plugin's (folders with an ``__init__.py``).
BUILTIN_PLUGINS = tuple(sorted(p.parent.name for p in (ROOT / "plugins").glob("*/__init__.py")))
EXAMPLE = ROOT / "docs" / "example_plugin"
EXAMPLE_PACKAGES = tuple(sorted(p.parent.name for p in EXAMPLE.glob("*/__init__.py")))
#: ``studio`` subpackages and modules that are layers of their own (others are the public API).
STUDIO_UNITS = {
    "core": "studio.core",
    "testing": "studio.testing",
    "ui": "studio.ui",
    "cli": "studio.cli",
    "__main__": "studio.cli",
}


@dataclass(frozen=True)
class Source:
    """A scanned file: its layer (a row of the table), its module name, its own packages."""

    path: Path
    layer: str
    module: str
    is_package: bool
    own: tuple[str, ...] = ()  # top-level packages that are "own package" for it

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()


def _module_name(path: Path, base: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(base).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    if is_package:
        parts = parts[:-1]
    return ".".join(parts), is_package


def _is_test_file(path: Path, base: Path) -> bool:
    rel = path.relative_to(base)
    return "tests" in rel.parts[:-1] or rel.name.startswith("test_") or rel.name == "conftest.py"


def source(path: Path) -> Source:
    """Which layer of the table a file of the repository belongs to."""
    rel = path.relative_to(ROOT)
    top = rel.parts[0]
    if top == "studio":
        module, is_package = _module_name(path, ROOT)
        if module == "studio":
            return Source(path, "studio", module, is_package)
        layer = STUDIO_UNITS.get(module.split(".")[1])
        assert layer is not None, f"{rel} is in no layer of the table: add one (here and docs)"
        return Source(path, layer, module, is_package)
    if top == "plugins":
        module, is_package = _module_name(path, ROOT / "plugins")
        layer = "plugin tests" if _is_test_file(path, ROOT / "plugins" / rel.parts[1]) else "plugin"
        return Source(path, layer, module, is_package, own=(rel.parts[1],))
    if rel.parts[:2] == ("docs", "example_plugin"):
        module, is_package = _module_name(path, EXAMPLE)
        if _is_test_file(path, EXAMPLE):
            return Source(
                path, "plugin tests", module, is_package, own=(*EXAMPLE_PACKAGES, "tests")
            )
        return Source(path, "plugin", module, is_package, own=(module.split(".")[0],))
    if top == "benchmarks":
        module, is_package = _module_name(path, ROOT)
        return Source(path, "benchmarks", module, is_package)
    raise AssertionError(f"{rel} is in no layer of the table: add one (here and docs)")


def python_files(*folders: str) -> list[Path]:
    files: list[Path] = []
    for folder in folders:
        files.extend(sorted((ROOT / folder).rglob("*.py")))
    return files


SCANNED = python_files("studio", "plugins", "docs/example_plugin", "benchmarks")


def absolute_module(node: ast.ImportFrom, src: Source) -> str:
    """The absolute module a ``from ... import`` names, relative ones (``from .x``) resolved."""
    if node.level == 0:
        return node.module or ""
    package = src.module.split(".") if src.is_package else src.module.split(".")[:-1]
    up = node.level - 1
    assert up < len(package), f"{src.rel} line {node.lineno}: relative import beyond the top"
    base = package[: len(package) - up]
    return ".".join([*base, node.module] if node.module else base)


def imports_of(node: ast.AST, src: Source) -> Iterator[tuple[str, str | None]]:
    """``(module, name)`` for what an import statement brings in: ``import a.b`` gives
    ``("a.b", None)``, ``from a import b, c`` gives ``("a", "b")`` and ``("a", "c")``."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            yield alias.name, None
    elif isinstance(node, ast.ImportFrom):
        module = absolute_module(node, src)
        for alias in node.names:
            yield module, alias.name


def imported_names(node: ast.AST, src: Source) -> Iterator[str]:
    """Module names an import statement brings in (``from studio import ui`` -> ``studio`` and
    ``studio.ui``), relative imports resolved."""
    for module, name in imports_of(node, src):
        yield module
        if name is not None:
            yield f"{module}.{name}"


def target_of(module: str, name: str | None, src: Source) -> str | None:
    """The column of the table an import falls in; ``None`` for what is not ours (stdlib,
    third-party packages)."""
    parts = module.split(".")
    top = parts[0]
    if top in src.own:
        return "own package"
    if top == "studio":
        sub = parts[1] if len(parts) > 1 else name  # `from studio import ui` names a layer too
        return STUDIO_UNITS.get(sub or "", "studio")
    if top in BUILTIN_PLUGINS:
        return "built-in plugins"
    if top == "benchmarks":
        return "benchmarks"
    if top in EXAMPLE_PACKAGES:
        return "the example plugin"  # in no column: nothing may import it
    return None


def layering_violations(src: Source, tree: ast.Module) -> list[str]:
    allowed = ALLOWED[src.layer]
    found = []
    for node in ast.walk(tree):
        for module, name in imports_of(node, src):
            target = target_of(module, name, src)
            if target is None:
                continue
            rule = allowed.get(target)
            if rule == YES or (rule is not None and name == rule):
                continue
            what = f"from {module} import {name}" if name is not None else f"import {module}"
            found.append(f"line {getattr(node, 'lineno', '?')}: {what} ({src.layer} -> {target})")
    return found


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


def parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


# --- the table -------------------------------------------------------------------------------


def test_scan_covers_the_packages() -> None:
    layers = {p.relative_to(ROOT).as_posix(): source(p).layer for p in SCANNED}
    assert layers["studio/core/plugins.py"] == "studio.core"
    assert layers["studio/__init__.py"] == "studio"
    assert layers["studio/__main__.py"] == layers["studio/cli/__init__.py"] == "studio.cli"
    cli_modules = [n for n in layers if n.startswith("studio/cli/")]
    assert len(cli_modules) > 1 and {layers[n] for n in cli_modules} == {"studio.cli"}
    assert any(n.startswith("plugins/studio_image/") for n in layers)
    assert set(layers.values()) == set(ALLOWED)  # every row is used, none is missing
    assert BUILTIN_PLUGINS and EXAMPLE_PACKAGES


@pytest.mark.parametrize("path", SCANNED, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_imports_follow_the_table_of_allowed_edges(path: Path) -> None:
    src = source(path)
    found = layering_violations(src, parse(path))
    assert not found, (
        f"{src.rel} ({src.layer}) imports what the table in docs/architecture.md (Layers) does "
        f"not allow it: {found}"
        + (
            "; a plugin imports only the public API, `studio` (and `studio.testing` in its tests)"
            if src.layer.startswith("plugin")
            else ""
        )
    )


def test_the_check_sees_relative_imports_and_names() -> None:
    """The checker itself, on made-up files: relative imports are resolved, not skipped."""
    image = source(ROOT / "plugins" / "studio_image" / "generators.py")
    code = (
        "from . import loading\n"
        "from .options import X\n"
        "from studio import Generator\n"
        "from studio import core\n"
        "from studio_text import generator\n"
        "import studio.testing\n"
    )
    found = layering_violations(image, ast.parse(code))
    assert [f.split(" (")[1] for f in found] == [
        "plugin -> studio.core)",
        "plugin -> built-in plugins)",
        "plugin -> studio.testing)",
    ]
    core = source(ROOT / "studio" / "core" / "refs.py")
    assert not layering_violations(core, ast.parse("from .. import __version__\nfrom . import hub"))
    assert layering_violations(core, ast.parse("from .. import Generator"))  # the API is above
    assert layering_violations(core, ast.parse("from ..ui import app"))[0].endswith(
        "(studio.core -> studio.ui)"
    )


def table_in_the_docs() -> dict[str, dict[str, str]]:
    """The table under "## Layers" in docs/architecture.md, as :data:`ALLOWED` holds it."""
    text = ARCHITECTURE.read_text(encoding="utf-8")
    assert "\n## Layers\n" in text, "docs/architecture.md has no '## Layers' section"
    section = text.split("\n## Layers\n", 1)[1].split("\n## ", 1)[0]
    rows = [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in section.splitlines()
        if line.startswith("|")
    ]
    header, rule, *body = rows
    assert set("".join(rule)) <= set("-: "), "the second row of the table is its rule"

    def plain(cell: str) -> str:
        return cell.replace("`", "").strip()

    columns = [plain(c) for c in header[1:]]
    table: dict[str, dict[str, str]] = {}
    for row in body:
        cells = {col: plain(c) for col, c in zip(columns, row[1:], strict=True) if plain(c)}
        table[plain(row[0])] = {
            col: YES if cell == YES else cell.removesuffix(" only") for col, cell in cells.items()
        }
    assert columns == list(TARGETS), f"the columns in the docs: {columns}"
    return table


def test_the_docs_show_the_same_table() -> None:
    assert table_in_the_docs() == ALLOWED


# --- Qt and the model libraries ---------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    python_files("studio/core", "studio/testing", "plugins"),
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_no_qt_below_the_ui(path: Path) -> None:
    src = source(path)
    offending = [
        f"line {getattr(node, 'lineno', '?')}: {name}"
        for node in ast.walk(parse(path))
        for name in imported_names(node, src)
        if matches(name, QT)
    ]
    assert not offending, f"{src.rel} imports Qt/GUI code: {offending}"


@pytest.mark.parametrize(
    "path",
    python_files("studio", "plugins"),
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_model_libraries_are_imported_lazily(path: Path) -> None:
    src = source(path)
    offending = [
        f"line {node.lineno}: {name}"
        for node in module_level_imports(parse(path))
        for name in imported_names(node, src)
        if matches(name, LAZY_ONLY)
    ]
    assert not offending, (
        f"{src.rel} imports a model library at module level "
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
