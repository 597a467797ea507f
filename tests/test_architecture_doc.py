"""docs/architecture.md describes every module of studio/core: a new module gets its row."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "architecture.md"


def documented_modules() -> set[str]:
    """Module names in the first cell of the core table's rows (a cell may list several)."""
    names: set[str] = set()
    for line in DOC.read_text(encoding="utf-8").splitlines():
        if line.startswith("| `") and ".py`" in line:
            first_cell = line.split("|")[1]
            names.update(re.findall(r"`([a-z_]+)\.py`", first_cell))
    return names


def test_every_core_module_has_a_row() -> None:
    modules = {p.stem for p in (ROOT / "studio" / "core").glob("*.py") if p.stem != "__init__"}
    missing = sorted(modules - documented_modules())
    assert not missing, f"docs/architecture.md has no row for studio/core/{missing}"


def test_no_row_for_a_module_that_is_gone() -> None:
    modules = {p.stem for p in (ROOT / "studio" / "core").glob("*.py")}
    stale = sorted(documented_modules() - modules)
    assert not stale, f"docs/architecture.md describes modules that no longer exist: {stale}"
