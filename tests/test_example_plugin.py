"""The plugin guide's example (docs/example_plugin) works, and the guide shows it as it is.

* its own test module (the contract mixin on a tiny model) runs here, as its author runs it;
* the guide (docs/plugins.md) quotes every file of the example verbatim;
* installed through its entry point, the CLI lists it and generates with it.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "docs" / "example_plugin"
GUIDE = ROOT / "docs" / "plugins.md"

if str(EXAMPLE) not in sys.path:
    sys.path.insert(0, str(EXAMPLE))  # as `pip install -e docs/example_plugin` would


def _load_example_tests() -> ModuleType:
    """The example's own test module, loaded from its file (its folder is no package here)."""
    path = EXAMPLE / "tests" / "test_bigram.py"
    spec = importlib.util.spec_from_file_location("studio_bigram_example_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_example_tests = _load_example_tests()
# collected here exactly as the plugin's author collects them
TestBigramGenerator = _example_tests.TestBigramGenerator
test_streams_known_words = _example_tests.test_streams_known_words


def test_pyproject_declares_the_entry_point() -> None:
    project = tomllib.loads((EXAMPLE / "pyproject.toml").read_text(encoding="utf-8"))
    entry_points = project["project"]["entry-points"]["studio.plugins"]
    assert entry_points == {"bigram": "studio_bigram"}
    import studio_bigram

    assert callable(studio_bigram.register_generators)
    assert project["project"]["version"] == studio_bigram.__version__


def test_the_guide_quotes_the_example_files_verbatim() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    quoted = re.findall(
        r"<!-- file: example_plugin/(\S+) -->\n`[^`]+`:\n\n```\w*\n(.*?)```\n", guide, re.DOTALL
    )
    shown = {name for name, _ in quoted}
    assert shown == {
        "pyproject.toml",
        "studio_bigram/__init__.py",
        "studio_bigram/generator.py",
        "studio_bigram/tiny.py",
        "tests/test_bigram.py",
    }
    for name, text in quoted:
        assert text == (EXAMPLE / name).read_text(encoding="utf-8"), f"{name} differs in the guide"


def test_installed_example_works_through_the_cli(tmp_path: Path, studio_home: Path) -> None:
    from studio_bigram.tiny import make_tiny_model

    from studio.testing.dists import make_distribution, pythonpath_with

    site = make_distribution(tmp_path / "site", "studio-bigram", {"bigram": "studio_bigram"})
    env = pythonpath_with(site, EXAMPLE)
    env["STUDIO_LOAD_PLUGINS"] = "bigram"
    model = make_tiny_model(tmp_path / "tiny-bigram")

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
    assert plugin["name"] == "bigram" and plugin["version"] == "0.1.0"
    assert [g["id"] for g in plugin["generators"]] == ["bigram-text"]
    made = cli(
        "generate",
        "bigram-text",
        "--model",
        str(model),
        "--prompt",
        "the moon",
        "--seed",
        "3",
        "--set",
        "max_words=6",
        "--json",
    )
    assert made.returncode == 0, made.stderr
    [artifact] = json.loads(made.stdout)["artifacts"]
    assert len(Path(artifact["path"]).read_text(encoding="utf-8").split()) == 6
    assert artifact["recipe"]["plugin"] == {"name": "bigram", "version": "0.1.0"}
    assert artifact["recipe"]["model"]["sha256"]  # the weights are identified in the recipe
    no_model = cli("generate", "bigram-text", "--prompt", "x")
    assert no_model.returncode == 2 and "no default model" in no_model.stderr


@pytest.fixture(scope="module", autouse=True)
def _forget_example_modules() -> object:
    yield
    for name in list(sys.modules):
        if name == "studio_bigram" or name.startswith("studio_bigram."):
            del sys.modules[name]
