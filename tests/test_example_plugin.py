"""The plugin guide's example (docs/example_plugin) is installed, discovered and shown as it is.

* ``make test`` builds the example into a wheel and pip-installs it (not editable, no index) into
  the test environment, then pytest runs its own tests (``docs/example_plugin/tests`` is in
  ``testpaths``) against that installed copy. Here: the installed distribution is that wheel and
  holds today's files (``STUDIO_REQUIRE_EXAMPLE_PLUGIN=1``, which ``make test`` sets, makes a
  missing install a failure instead of a skip);
* the studio discovers it through its entry point and runs it: the CLI lists it, generates with
  it (no model), and refuses ``--model`` for it;
* the guide (docs/plugins.md) quotes the example verbatim: whole files (``<!-- file: ... -->``)
  or one class/function of a file (``<!-- quote: FILE::NAME -->``).
"""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import textwrap
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "example_plugin"
GUIDE = ROOT / "docs" / "plugins.md"
DISTRIBUTION = "studio-patterns"
PACKAGE = "studio_patterns"

_QUOTE = re.compile(
    r"<!-- (file|quote): example_plugin/(\S+?)(?:::([\w.]+))? -->\n"
    r"(?:[^\n`]*`[^`\n]+`[^\n]*\n\n)?"  # an optional caption line naming the file
    r"```\w*\n(.*?)```\n",
    re.DOTALL,
)


def _installed() -> metadata.Distribution | None:
    try:
        return metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None


def _require_installed() -> metadata.Distribution:
    dist = _installed()
    if dist is None:
        message = (
            f"{DISTRIBUTION} is not installed: `make test` builds docs/example_plugin into a "
            "wheel and installs it"
        )
        if os.environ.get("STUDIO_REQUIRE_EXAMPLE_PLUGIN"):
            pytest.fail(message)
        pytest.skip(message)
    return dist


# --- the installed distribution ------------------------------------------------------------------


def test_pyproject_declares_the_entry_point_and_version() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert project["name"] == DISTRIBUTION
    assert project["entry-points"]["studio.plugins"] == {"patterns": PACKAGE}
    init = (EXAMPLE / PACKAGE / "__init__.py").read_text(encoding="utf-8")
    assert f'__version__ = "{project["version"]}"' in init
    assert 'studio_api = ">=1.0,<2"' in init


def test_the_example_is_installed_as_a_wheel_of_todays_files() -> None:
    dist = _require_installed()
    direct_url = dist.read_text("direct_url.json")
    if direct_url:  # pip writes it for an install from a file or folder
        assert not json.loads(direct_url).get("dir_info", {}).get("editable"), "editable install"
    assert dist.read_text("WHEEL"), "not installed from a wheel"
    [entry_point] = [ep for ep in dist.entry_points if ep.group == "studio.plugins"]
    assert (entry_point.name, entry_point.value) == ("patterns", PACKAGE)
    installed = {
        Path(str(f)).as_posix(): f for f in dist.files or [] if str(f).startswith(PACKAGE + "/")
    }
    sources = sorted(p.relative_to(EXAMPLE).as_posix() for p in (EXAMPLE / PACKAGE).glob("*.py"))
    assert sorted(n for n in installed if n.endswith(".py")) == sources
    stale = [
        name
        for name in sources
        if Path(str(dist.locate_file(installed[name]))).read_bytes()
        != (EXAMPLE / name).read_bytes()
    ]
    assert not stale, (
        f"the installed example is older than docs/example_plugin: {stale} (make test)"
    )


def test_its_tests_run_against_the_installed_copy() -> None:
    dist = _require_installed()
    import studio_patterns

    module_file = Path(studio_patterns.__file__).resolve()
    assert module_file == Path(str(dist.locate_file(f"{PACKAGE}/__init__.py"))).resolve()
    assert not module_file.is_relative_to(EXAMPLE), "imported from the source folder"


# --- discovered and run through the entry point ------------------------------------------------


def _cli_env(tmp_path: Path) -> dict[str, str]:
    """The environment for the CLI: the installed example, or (not installed) the sources
    behind a stand-in distribution with the same entry point."""
    if _installed() is not None:
        env = dict(os.environ)
    else:
        from studio.testing import make_distribution, pythonpath_with

        site = make_distribution(tmp_path / "site", DISTRIBUTION, {"patterns": PACKAGE})
        env = pythonpath_with(site, EXAMPLE)
    env["STUDIO_LOAD_PLUGINS"] = "patterns"
    return env


def test_the_cli_lists_and_runs_it(tmp_path: Path, studio_home: Path) -> None:
    env = _cli_env(tmp_path)

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "studio", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=180,
        )

    listing = cli("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    [plugin] = json.loads(listing.stdout)["plugins"]
    assert plugin["error"] is None, plugin["traceback"]
    assert (plugin["name"], plugin["version"], plugin["builtin"]) == ("patterns", "0.1.0", False)
    assert [g["id"] for g in plugin["generators"]] == ["patterns"]
    assert [t["id"] for t in plugin["trainers"]] == ["patterns-palette"]
    made = cli(
        "generate",
        "patterns",
        "--seed",
        "3",
        "--set",
        "width=32",
        "--set",
        "height=24",
        "--set",
        "pattern=marble",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    [artifact] = json.loads(made.stdout)["artifacts"]
    from PIL import Image

    with Image.open(artifact["path"]) as image:
        assert image.size == (32, 24)
    recipe = artifact["recipe"]
    assert recipe["plugin"] == {"name": "patterns", "version": "0.1.0"}
    assert recipe["model"] is None  # it uses no model, and says so
    assert recipe["options"]["palette"] != "auto"  # the palette the seed chose is recorded
    refused = cli("generate", "patterns", "--model", "some/model")
    assert refused.returncode == 2 and "model" in refused.stderr


# --- the guide quotes the example verbatim ------------------------------------------------------


def _symbol_source(path: Path, name: str) -> str:
    """The source of a top-level class, function or assignment (``Class.method`` too)."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines(keepends=True)
    body: list[ast.stmt] = ast.parse(source).body
    node: ast.stmt | None = None
    for part in name.split("."):
        node = next((n for n in body if _defines(n, part)), None)
        assert node is not None, f"{path.name} defines no {name}"
        body = getattr(node, "body", [])
    assert node is not None and node.end_lineno is not None
    decorators = getattr(node, "decorator_list", [])
    first = min([node.lineno, *(d.lineno for d in decorators)])
    return textwrap.dedent("".join(lines[first - 1 : node.end_lineno]))


def _defines(node: ast.stmt, name: str) -> bool:
    if isinstance(node, ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
        return node.name == name
    if isinstance(node, ast.Assign):
        return any(isinstance(t, ast.Name) and t.id == name for t in node.targets)
    if isinstance(node, ast.AnnAssign):
        return isinstance(node.target, ast.Name) and node.target.id == name
    return False


def test_the_guide_quotes_the_example_verbatim() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    quotes = _QUOTE.findall(guide)
    assert len(quotes) == guide.count("<!-- file: ") + guide.count("<!-- quote: "), (
        "a file/quote marker is not followed by a caption line and a code block"
    )
    for kind, name, symbol, text in quotes:
        path = EXAMPLE / name
        assert path.is_file(), f"the guide quotes {name}, which the example does not have"
        if kind == "file":
            assert not symbol
            assert text == path.read_text(encoding="utf-8"), f"{name} differs in the guide"
        else:
            assert symbol, f"quote of {name} names no class or function (FILE::NAME)"
            assert text == _symbol_source(path, symbol), f"{name}::{symbol} differs in the guide"
    quoted = {name for _, name, _, _ in quotes}
    assert {
        "pyproject.toml",
        f"{PACKAGE}/__init__.py",
        f"{PACKAGE}/generator.py",
        f"{PACKAGE}/trainer.py",
        "tests/test_patterns.py",
    } <= quoted


def test_the_symbol_quotes_are_checked_against_the_source() -> None:
    """The checker finds classes, methods and assignments, and sees a difference."""
    generator = EXAMPLE / PACKAGE / "generator.py"
    options = _symbol_source(generator, "PatternOptions")
    assert options.startswith("class PatternOptions(BaseOptions):")
    run = _symbol_source(generator, "PatternGenerator.run")
    assert run.startswith("def run(self") and run.endswith("\n")
    hook = _symbol_source(EXAMPLE / PACKAGE / "__init__.py", "register_generators")
    assert hook.startswith("@hookimpl\ndef register_generators(")
    with pytest.raises(AssertionError, match="defines no Nothing"):
        _symbol_source(generator, "Nothing")
