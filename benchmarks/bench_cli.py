"""``aigc-studio plugins`` wall time, against a bare ``python -c pass`` start-up.

Both are run as fresh processes, as a user would run them, on a temporary empty studio home; the
median of several runs is reported. A separate run with ``-X importtime`` checks that listing
plugins imports no torch, diffusers or transformers (part of the goal).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("torch", "diffusers", "transformers")
GOAL_SECONDS = 0.5


def cli_command() -> list[str]:
    """The installed console script next to this interpreter, else ``python -m studio``."""
    script = Path(sys.executable).with_name("aigc-studio")
    if script.is_file():
        return [str(script)]
    found = shutil.which("aigc-studio")
    return [found] if found else [sys.executable, "-m", "studio"]


def wall_time(command: list[str], env: dict[str, str], repeats: int) -> float:
    """Median wall time of ``command`` (seconds); raises if it fails."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run(
            command,
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=120,
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def import_profile(env: dict[str, str]) -> tuple[list[str], list[tuple[str, float]]]:
    """What ``aigc-studio plugins --json`` imports (``-X importtime``): the model libraries among
    them, and the slowest top-level imports (name, cumulative seconds), slowest first."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "studio", "plugins", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modules: set[str] = set()
    top: list[tuple[str, float]] = []
    for line in result.stderr.splitlines():
        if not line.startswith("import time:") or line.count("|") < 2:
            continue
        _, cumulative, raw = line.split("|", 2)
        name = raw.strip()
        modules.add(name)
        if raw.startswith(" ") and not raw.startswith("  ") and cumulative.strip().isdigit():
            top.append((name, int(cumulative) / 1e6))  # depth 0: imported by the CLI itself
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    top.sort(key=lambda item: -item[1])
    return heavy, top


def run(quick: bool = False) -> list[dict]:
    """One row: the CLI's plugin listing vs bare interpreter start-up."""
    repeats = 3 if quick else 10
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as home:
        env = dict(os.environ, STUDIO_HOME=home, HF_HUB_OFFLINE="1")
        command = [*cli_command(), "plugins", "--json"]
        wall_time(command, env, 1)  # warm the file-system cache and .pyc files
        studio = wall_time(command, env, repeats)
        bare = wall_time([sys.executable, "-c", "pass"], env, repeats)
        heavy, top = import_profile(env)
    return [
        {
            "name": "cli: aigc-studio plugins",
            "studio": studio,
            "bare": bare,
            "unit": "s",
            "ratio": studio / bare if bare else float("nan"),
            "goal": f"< {GOAL_SECONDS} s, no torch import",
            "met": studio < GOAL_SECONDS and not heavy,
            "notes": f"median of {repeats}; bare = python -c pass; "
            + (f"imported {', '.join(heavy)}" if heavy else "no torch/diffusers/transformers")
            + "; slowest imports: "
            + ", ".join(f"{name} {seconds:.3f} s" for name, seconds in top[:4]),
        }
    ]
