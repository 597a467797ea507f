"""The pip policy shared by ``aigc-studio install`` / ``uninstall`` and the Plugins panel.

pip itself runs in tests/test_cli_install.py and tests/ui/test_plugins_settings.py (a real wheel
into a throw-away environment); here, what is allowed, refused, and the arguments pip gets.
"""

from __future__ import annotations

import io
from importlib import metadata
from pathlib import Path

import pytest

from studio.core import installer
from studio.core.errors import InvalidRequest
from studio.testing.dists import make_distribution


@pytest.fixture
def demo_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """An installed third-party plugin: distribution ``studio-demo``, entry point ``demo``."""
    site = make_distribution(tmp_path / "site", "studio-demo", {"demo": "studio_demo"})
    monkeypatch.syspath_prepend(str(site))
    return "studio-demo"


def test_constraints_pin_the_installed_core_packages(tmp_path: Path) -> None:
    path = installer.write_constraints(tmp_path / "deep" / "c.txt")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#")
    assert f"torch=={metadata.version('torch')}" in lines
    assert f"PySide6=={metadata.version('PySide6')}" in lines
    assert f"aigc-studio=={metadata.version('aigc-studio')}" in lines
    assert f"pydantic=={metadata.version('pydantic')}" in lines
    pinned = {line.split("==")[0] for line in lines[1:]}
    assert pinned <= set(installer.CORE_DISTRIBUTIONS)


@pytest.mark.parametrize(
    ("name", "core"),
    [
        ("torch", True),
        ("PySide6", True),
        ("pyside6", True),
        ("huggingface-hub", True),
        ("Huggingface_Hub", True),
        ("aigc_studio", True),
        ("studio-palette", False),
        ("torchvision", False),
    ],
)
def test_core_names_in_any_spelling(name: str, core: bool) -> None:
    assert installer.is_core(name) is core


def test_the_distribution_a_spec_names(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "studio-x"\n', encoding="utf-8")
    assert installer.spec_distribution("studio-palette>=1.0") == "studio-palette"
    assert installer.spec_distribution("studio-palette[extra]") == "studio-palette"
    assert installer.spec_distribution("pal @ https://example.org/p.whl") == "pal"
    assert installer.spec_distribution("/x/studio_demo-0.1-py3-none-any.whl") == "studio_demo"
    assert installer.spec_distribution("/x/studio-demo-0.1.tar.gz") == "studio-demo"
    assert installer.spec_distribution(str(project)) == "studio-x"
    assert installer.spec_distribution("not a requirement!") is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "nothing to install"),
        ("   ", "nothing to install"),
        ("--index-url=https://evil.example", "is a pip option"),
        ("-r requirements.txt", "is a pip option"),
        ("torch==2.0", "torch is one of the studio's core packages"),
        ("PySide6", "PySide6 is one of the studio's core packages"),
        ("./missing-folder", "no such file or folder"),
        ("/nowhere/studio_x-0.1-py3-none-any.whl", "no such file or folder"),
        ("studio palette!", "is not a package requirement"),
    ],
)
def test_install_specs_refused_before_pip(spec: str, message: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        installer.check_install_spec(spec)
    assert message in str(info.value)


def test_a_core_wheel_file_is_refused(tmp_path: Path) -> None:
    wheel = tmp_path / "torch-9.0-py3-none-any.whl"
    wheel.write_bytes(b"")
    with pytest.raises(InvalidRequest, match="torch is one of the studio's core packages"):
        installer.check_install_spec(str(wheel))


def test_allowed_specs(tmp_path: Path) -> None:
    wheel = tmp_path / "studio_x-0.1-py3-none-any.whl"
    wheel.write_bytes(b"")
    for spec in (
        "studio-palette",
        "studio-palette>=1.0,<2",
        str(wheel),
        "git+https://example.org/studio-x.git",
    ):
        assert installer.check_install_spec(f" {spec} ") == spec


def test_editable_needs_a_project_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest, match="--editable needs a project folder"):
        installer.check_install_spec(str(tmp_path), editable=True)
    with pytest.raises(InvalidRequest, match="--editable needs a project folder"):
        installer.check_install_spec("studio-palette", editable=True)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n', encoding="utf-8")
    assert installer.check_install_spec(str(tmp_path), editable=True) == str(tmp_path)


def test_install_arguments_pin_the_core(tmp_path: Path) -> None:
    constraints = tmp_path / "c.txt"
    args = installer.install_arguments(["studio-a", "studio-b>=2"], constraints)
    assert args == ["install", "--constraint", str(constraints), "studio-a", "studio-b>=2"]
    assert "torch==" in constraints.read_text(encoding="utf-8")
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "pyproject.toml").write_text("[project]\nname='x'\n", encoding="utf-8")
    args = installer.install_arguments(
        [str(tmp_path / "p")], constraints, upgrade=True, editable=True
    )
    assert args[3:] == ["--upgrade", "--editable", str(tmp_path / "p")]
    with pytest.raises(InvalidRequest, match="nothing to install"):
        installer.install_arguments([], constraints)
    assert installer.pip_command(args, "/py")[:3] == ["/py", "-m", "pip"]


def test_uninstall_by_plugin_or_package_name(demo_plugin: str) -> None:
    assert installer.distribution_of("demo") == "studio-demo"
    assert installer.plugin_distributions()["demo"] == "studio-demo"
    assert installer.resolve_uninstall("demo") == "studio-demo"
    assert installer.resolve_uninstall("studio-demo") == "studio-demo"
    assert installer.resolve_uninstall("Studio_Demo") == "studio-demo"
    assert installer.uninstall_arguments(["studio-demo"]) == ["uninstall", "--yes", "studio-demo"]


def test_uninstall_refusals(demo_plugin: str) -> None:
    with pytest.raises(InvalidRequest, match="built-in plugins cannot be uninstalled"):
        installer.resolve_uninstall("image")  # a built-in plugin: part of aigc-studio
    with pytest.raises(InvalidRequest, match="core packages: it is never uninstalled"):
        installer.resolve_uninstall("torch")
    with pytest.raises(InvalidRequest) as info:
        installer.resolve_uninstall("studio-nothing")
    assert "no installed plugin named 'studio-nothing'" in str(info.value)
    assert "studio-demo (demo)" in str(info.value)  # what could be meant
    with pytest.raises(InvalidRequest, match="never uninstalled"):
        installer.uninstall_arguments(["numpy"])


def test_run_pip_reports_its_output_and_code() -> None:
    output = io.StringIO()
    assert installer.run_pip(["--version"], output=output) == 0
    assert output.getvalue().startswith("pip ")
    assert installer.run_pip(["no-such-pip-command"], output=output) != 0
