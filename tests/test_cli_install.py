"""``aigc-studio install`` / ``uninstall``: pip with the core pinned, as the Plugins panel does.

The end-to-end test runs the real pip, offline, in a throw-away environment that sees the studio's
packages (so the command runs there exactly as a user runs it, and nothing changes the environment
running the tests); the refusals run in-process and never reach pip.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from studio.cli import main

ROOT = Path(__file__).resolve().parent.parent


def one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("aigc-studio: error: "), err
    return lines[0]


def plugin_wheel(folder: Path, *, version: str = "0.1", requires: tuple[str, ...] = ()) -> Path:
    """A minimal third-party plugin wheel: ``studio-demo-plugin`` with entry point ``demo``."""
    info = f"studio_demo_plugin-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: studio-demo-plugin\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        "studio_demo_plugin/__init__.py": b'"""A plugin that registers nothing."""\n'
        b'studio_api = ">=1.0,<2"\n',
        f"{info}/METADATA": metadata.encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": b"[studio.plugins]\ndemo = studio_demo_plugin\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"studio_demo_plugin-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
        archive.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return wheel


@pytest.fixture
def throwaway_python(tmp_path: Path) -> Path:
    """A new virtual environment (its own pip and site-packages) that also sees the packages of
    the environment running the tests, the studio included, after its own."""
    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True, timeout=180)
    python = env_dir / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.strip()
    hook = "; ".join(f"site.addsitedir({p!r})" for p in site.getsitepackages())
    (Path(purelib) / "zz_studio_under_test.pth").write_text(f"import site; {hook}\n")
    return python


def run_cli(python: Path, args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(python), "-m", "studio", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
    )


def test_install_list_and_uninstall_a_plugin_wheel(
    throwaway_python: Path, tmp_path: Path, studio_home: Path
) -> None:
    env = {
        **os.environ,
        "PIP_NO_INDEX": "1",  # nothing may reach the network
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "STUDIO_LOAD_PLUGINS": "demo",
    }
    env.pop("PYTHONPATH", None)
    wheel = plugin_wheel(tmp_path / "wheels")

    installed = run_cli(throwaway_python, ["install", str(wheel)], env)
    assert installed.returncode == 0, installed.stderr
    assert installed.stdout == "studio-demo-plugin 0.1: plugin demo\n"
    assert "Successfully installed studio-demo-plugin-0.1" in installed.stderr  # pip, on stderr

    listed = run_cli(throwaway_python, ["plugins", "--json"], env)
    assert listed.returncode == 0, listed.stderr
    [plugin] = json.loads(listed.stdout)["plugins"]
    assert plugin["name"] == "demo" and plugin["version"] == "0.1" and plugin["error"] is None

    # asked before anything is removed; with no terminal to ask on, --yes is required
    unconfirmed = run_cli(throwaway_python, ["uninstall", "demo"], env)
    assert unconfirmed.returncode == 2
    assert "confirm with --yes" in one_error_line(unconfirmed.stderr)

    removed = run_cli(throwaway_python, ["uninstall", "demo", "--yes"], env)
    assert removed.returncode == 0, removed.stderr
    assert removed.stdout == "uninstalled studio-demo-plugin 0.1 (plugin demo)\n"
    listed = run_cli(throwaway_python, ["plugins", "--json"], env)
    assert json.loads(listed.stdout)["plugins"] == []

    # a plugin that needs another version of a core package is refused by pip: the core stays
    conflicting = plugin_wheel(tmp_path / "conflict", version="0.2", requires=("numpy<1",))
    refused = run_cli(throwaway_python, ["install", str(conflicting)], env)
    assert refused.returncode == 1
    assert refused.stdout == ""
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("aigc-studio: error: pip install failed") and "pinned" in last
    listed = run_cli(throwaway_python, ["plugins", "--json"], env)
    assert json.loads(listed.stdout)["plugins"] == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["install", "torch==2.0"], "torch is one of the studio's core packages"),
        (["install", "studio-ok", "PySide6"], "PySide6 is one of the studio's core packages"),
        (["install", "./no-such.whl"], "no such file or folder"),
        (["install", "not a package!"], "is not a package requirement"),
        (["install", "--editable", "studio-x"], "--editable needs a project folder"),
        (["install"], "required: SPEC"),
        (["uninstall", "image", "--yes"], "built-in plugins cannot be uninstalled"),
        (["uninstall", "numpy", "--yes"], "core packages: it is never uninstalled"),
        (["uninstall", "studio-nothing", "--yes"], "no installed plugin named 'studio-nothing'"),
    ],
)
def test_refused_before_pip_runs(
    studio_home: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert message in one_error_line(err)
