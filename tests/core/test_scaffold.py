"""``plugins new``: the package it writes installs, is found through its entry point, imports only
the public API, and passes its own tests as generated (run the way its author runs them)."""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet

import studio
from studio.core.errors import InvalidRequest
from studio.core.scaffold import KINDS, create_plugin, plugin_names, render
from studio.testing.dists import pythonpath_with


@pytest.mark.parametrize(
    ("name", "module", "cls", "title"),
    [
        ("palette", "studio_palette", "Palette", "Palette"),
        ("noise-shapes", "studio_noise_shapes", "NoiseShapes", "Noise shapes"),
        ("studio-noise2", "studio_noise2", "Noise2", "Noise2"),
    ],
)
def test_names_derived_from_the_plugin_name(name: str, module: str, cls: str, title: str) -> None:
    names = plugin_names(name)
    assert names.module == module and names.class_prefix == cls and names.title == title
    assert names.distribution == "studio-" + names.name
    assert not names.name.startswith("studio-")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Palette",
        "my plugin",
        "my_plugin",
        "-x",
        "x-",
        "a--b",
        "9lives",
        "studio",
        "studio-",
        "x" * 41,
        "café",
        "a.b",
    ],
)
def test_invalid_names_are_refused_saying_what_is_allowed(name: str, tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as info:
        create_plugin(name, target=tmp_path / "out")
    assert f"invalid plugin name {name!r}" in str(info.value)
    assert "lowercase letters, digits and single hyphens" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_a_name_an_installed_plugin_uses_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="a plugin named 'image' is installed already"):
        create_plugin("image", target=tmp_path / "out")  # the built-in image plugin
    assert not (tmp_path / "out").exists()


def test_invalid_kind_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="invalid kind 'model': one of generator, trainer"):
        create_plugin("palette", kind="model", target=tmp_path / "out")


def test_a_non_empty_folder_is_refused_and_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "mine.txt").write_text("keep me", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="exists and is not empty"):
        create_plugin("palette", target=target)
    assert [p.name for p in target.iterdir()] == ["mine.txt"]
    file = tmp_path / "a-file"
    file.write_text("x", encoding="utf-8")
    with pytest.raises(InvalidRequest, match="is a file"):
        create_plugin("palette", target=file)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert create_plugin("palette", target=empty).folder == empty.resolve()


def test_default_folder_is_studio_name_in_the_working_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    created = create_plugin("palette")
    assert created.folder == (tmp_path / "studio-palette").resolve()
    assert {p.relative_to(created.folder).as_posix() for p in created.files} == {
        "pyproject.toml",
        "README.md",
        ".gitignore",
        "studio_palette/__init__.py",
        "studio_palette/generator.py",
        "tests/test_generator.py",
    }


@pytest.mark.parametrize("kind", KINDS)
def test_pyproject_entry_point_and_api_range(kind: str) -> None:
    files = render(kind, plugin_names("palette"))
    project = tomllib.loads(files["pyproject.toml"])["project"]
    assert project["name"] == "studio-palette"
    assert project["entry-points"]["studio.plugins"] == {"palette": "studio_palette"}
    assert any(d.startswith("aigc-studio>=") for d in project["dependencies"])
    module = ast.parse(files["studio_palette/__init__.py"])
    declared = {
        t.id: n.value.value
        for n in module.body
        if isinstance(n, ast.Assign) and isinstance(n.value, ast.Constant)
        for t in n.targets
        if isinstance(t, ast.Name)
    }
    assert studio.API_VERSION in SpecifierSet(declared["studio_api"])
    assert declared["__version__"] == project["version"]


@pytest.mark.parametrize("kind", KINDS)
def test_generated_code_imports_only_the_public_api(kind: str) -> None:
    for path, text in render(kind, plugin_names("palette")).items():
        if not path.endswith(".py"):
            continue
        for node in ast.walk(ast.parse(text)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                assert node.level == 0, f"{path}: relative import"
                names = [node.module or ""]
            for name in names:
                top = name.split(".")[0]
                if top == "studio":
                    assert name in ("studio", "studio.testing"), f"{path} imports {name}"
                else:
                    assert top in {
                        *sys.stdlib_module_names,
                        "studio_palette",
                        "pydantic",
                        "PIL",
                        "pytest",
                    }, f"{path} imports {name}"


def _ruff() -> str | None:
    beside = Path(sys.executable).with_name("ruff")
    return str(beside) if beside.is_file() else shutil.which("ruff")


@pytest.mark.parametrize(("kind", "name"), [("generator", "noise-shapes"), ("trainer", "mean")])
def test_generated_package_passes_its_own_tests(kind: str, name: str, tmp_path: Path) -> None:
    """As its author runs them: pytest in the package folder, the package importable."""
    created = create_plugin(name, kind=kind, target=tmp_path / "pkg")
    env = pythonpath_with(created.folder)
    env["QT_QPA_PLATFORM"] = "offscreen"
    for variable in ("STUDIO_LOAD_PLUGINS", "STUDIO_STRICT_PLUGINS", "PYTEST_ADDOPTS"):
        env.pop(variable, None)
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly"],
        cwd=created.folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("name", ["ab", "noise-shapes", "a" * 40])
def test_generated_code_is_clean_whatever_the_name(kind: str, name: str, tmp_path: Path) -> None:
    """By the studio's own style (ruff, as the generated pyproject configures it), for the
    shortest and the longest names alike."""
    ruff = _ruff()
    if ruff is None:
        pytest.skip("ruff is not installed (it comes with aigc-studio[dev])")
    created = create_plugin(name, kind=kind, target=tmp_path / "pkg")
    for command in (["check"], ["format", "--check"]):
        lint = subprocess.run(
            [ruff, *command, "--no-cache", "."],
            cwd=created.folder,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr


def test_generated_package_installs_and_the_studio_finds_it(
    tmp_path: Path, studio_home: Path
) -> None:
    """pip builds and installs it (offline, into a throw-away folder): its entry point is found
    and ``aigc-studio plugins`` lists its generator, loaded without error."""
    pytest.importorskip("setuptools", reason="the generated pyproject builds with setuptools")
    created = create_plugin("noise-shapes", target=tmp_path / "pkg")
    target = tmp_path / "site"
    env = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(target),
            str(created.folder),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    assert (target / "studio_noise_shapes" / "generator.py").is_file()
    env = pythonpath_with(target)
    env["STUDIO_LOAD_PLUGINS"] = "noise-shapes"
    listed = subprocess.run(
        [sys.executable, "-m", "studio", "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert listed.returncode == 0, listed.stderr
    [plugin] = json.loads(listed.stdout)["plugins"]
    assert plugin["name"] == "noise-shapes" and plugin["error"] is None, plugin
    assert plugin["version"] == "0.1.0" and not plugin["builtin"]
    assert [g["id"] for g in plugin["generators"]] == ["noise-shapes"]
