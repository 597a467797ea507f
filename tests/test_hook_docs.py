"""docs/hooks.md documents every hookspec, with its exact signature and each of its arguments."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from studio.core import hookspecs

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "hooks.md"
SPEC_FILE = Path(hookspecs.__file__)


def hookspec_signatures() -> dict[str, tuple[str, list[str]]]:
    """name -> (signature text as in the source, argument names) for each ``@hookspec``."""
    tree = ast.parse(SPEC_FILE.read_text(encoding="utf-8"))
    specs: dict[str, tuple[str, list[str]]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        decorators = [ast.unparse(d).split("(")[0] for d in node.decorator_list]
        if "hookspec" not in decorators:
            continue
        returns = f" -> {ast.unparse(node.returns)}" if node.returns else ""
        signature = f"def {node.name}({ast.unparse(node.args)}){returns}"
        names = [a.arg for a in (*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs)]
        specs[node.name] = (signature, names)
    return specs


def normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text).replace("( ", "(").replace(" )", ")").strip().rstrip(":")


def doc_sections() -> dict[str, str]:
    """``### name`` section bodies of docs/hooks.md."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r"^### +`?([A-Za-z_][A-Za-z0-9_]*)`? *$", text, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def test_every_pluggy_hookspec_is_seen_by_the_scan() -> None:
    """The AST scan finds exactly the functions pluggy treats as hookspecs."""
    marked = {
        name
        for name in dir(hookspecs)
        if getattr(getattr(hookspecs, name), f"{hookspecs.PROJECT}_spec", None) is not None
    }
    assert marked == set(hookspec_signatures())
    assert marked  # there are hooks to document


@pytest.mark.parametrize("name", sorted(hookspec_signatures()))
def test_hook_is_documented_with_its_signature(name: str) -> None:
    sections = doc_sections()
    assert name in sections, f"docs/hooks.md has no '### {name}' section"
    signature, arguments = hookspec_signatures()[name]
    documented = [
        normalize(m.group(0))
        for m in re.finditer(r"^def +" + re.escape(name) + r"\b.*$", sections[name], re.MULTILINE)
    ]
    assert documented, f"the '### {name}' section shows no 'def {name}(...)' signature"
    assert normalize(signature) in documented, (
        f"docs/hooks.md shows {documented[0]!r} for {name}, the hookspec is {signature!r}"
    )
    for argument in arguments:
        assert f"`{argument}`" in sections[name], f"argument {argument!r} of {name} undocumented"


def test_no_stale_hook_in_the_docs() -> None:
    stale = set(doc_sections()) - set(hookspec_signatures())
    assert not stale, f"docs/hooks.md documents hooks that do not exist: {sorted(stale)}"
