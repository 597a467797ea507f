"""End to end: the command line shows the studio's progress, never the model libraries' own.

Each command runs in a fresh ``aigc-studio`` process (as an artist runs it), with stderr piped:
the libraries' loggers and bars write to the real stderr of the process, which an in-process
capture would not see reliably. A bare transformers load in the same conditions shows what the
check looks for.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from studio.testing import models_audio
from studio.testing.models_text import make_tiny_causal_lm, make_tiny_lora

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

ROOT = Path(__file__).resolve().parents[2]

#: What the libraries print while loading: tqdm bars ("Loading weights:  50%|█    | 58/116
#: [00:00<00:00, 5784.28it/s]"), their "Loading ..." descriptions, transformers' log prefix,
#: Python warnings about their internals ("modeling_utils.py:3303: FutureWarning: ...").
THIRD_PARTY = re.compile(
    r"Loading|\d+%\|.*\|\s*\d+/\d+|it/s\]|s/it\]|\[transformers\]|[A-Z]\w*Warning: "
)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("quiet-models")
    gpt2 = make_tiny_causal_lm(root / "gpt2", "gpt2", seed=0)
    return {
        "gpt2": gpt2,
        "lora": make_tiny_lora(gpt2, root / "lora-gpt2", seed=3),
        "vits": models_audio.tiny_vits(root / "vits"),
    }


def run(args: list[str]) -> subprocess.CompletedProcess[str]:
    """Run ``args`` in a fresh interpreter with the test's (offline, temporary) environment."""
    env = dict(os.environ)
    env.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)  # the default: the libraries would show bars
    env.pop("TRANSFORMERS_VERBOSITY", None)
    env["STUDIO_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    env["STUDIO_LOAD_PLUGINS"] = "text,audio"
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        errors="replace",
        timeout=240,
        cwd=ROOT,
        env=env,
    )


def third_party_lines(stderr: str) -> list[str]:
    """Lines of ``stderr`` (bars redraw with carriage returns) that the libraries printed."""
    lines = re.split(r"[\r\n]+", stderr)
    return [line for line in lines if THIRD_PARTY.search(line)]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return run(["-m", "studio", "generate", *args])


def test_bare_transformers_load_prints_a_bar(studio_home: Path, tiny: dict[str, Path]) -> None:
    """The baseline: without the studio, the same load prints what the checks below look for."""
    code = (
        "import torch\n"
        "from transformers import VitsModel\n"
        f"VitsModel.from_pretrained({str(tiny['vits'])!r}, dtype=torch.float32)\n"
    )
    result = run(["-c", code])
    assert result.returncode == 0, result.stderr
    assert any("Loading weights" in line for line in third_party_lines(result.stderr))


def test_text_generation_shows_only_the_studio_progress(
    studio_home: Path, tiny: dict[str, Path]
) -> None:
    result = cli(
        "text-generation",
        "--prompt",
        "Once upon a time",
        "--model",
        str(tiny["gpt2"]),
        "--lora",
        f"{tiny['lora']}:0.5",
        "--seed",
        "9",
        "--set",
        "max_new_tokens=8",
        "--set",
        "temperature=0",
    )
    assert result.returncode == 0, result.stderr
    assert "succeeded" in result.stderr and "%" in result.stderr  # the studio's own progress
    assert third_party_lines(result.stderr) == [], result.stderr


def test_text_to_speech_shows_only_the_studio_progress(
    studio_home: Path, tiny: dict[str, Path]
) -> None:
    result = cli("text-to-speech", "--prompt", "Hello there.", "--model", str(tiny["vits"]))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(".wav")
    assert "loading the voice" in result.stderr  # the studio's own stage, not the library's
    assert third_party_lines(result.stderr) == [], result.stderr
