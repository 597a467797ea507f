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


def class_attributes(cls: type) -> list[str]:
    """The class-level metadata the studio reads from a component class (its ClassVar fields)."""
    return [name for name in cls.__annotations__ if not name.startswith("_")]


@pytest.mark.parametrize(
    ("hook", "base"), [("register_generators", "Generator"), ("register_trainers", "Trainer")]
)
def test_every_class_attribute_is_described_in_its_hook(hook: str, base: str) -> None:
    import studio

    cls = getattr(studio, base)
    section = doc_sections()[hook]
    missing = [name for name in class_attributes(cls) if f"`{name}`" not in section]
    assert class_attributes(cls)
    assert not missing, f"docs/hooks.md '### {hook}' does not describe {missing} of {base}"


def test_the_documented_api_version_is_the_real_one() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert f"**{hookspecs.API_VERSION}**" in text
    assert 'studio_api = ">=1.0,<2"' in text


def test_the_plugin_hosts_rules_are_documented() -> None:
    """Every environment variable of the host, the setting it reads and what the CLI gets back."""
    from dataclasses import fields

    from studio.core import plugins
    from studio.core.settings import Settings

    text = DOC.read_text(encoding="utf-8")
    env = set(re.findall(r"STUDIO_[A-Z_]+", plugins.__doc__ or ""))
    assert env and all(f"`{name}" in text for name in env), sorted(env)
    assert "preferred_generators" in Settings.model_fields
    for word in ("`preferred_generators`", "`studio_api`", "pm.check_pending()", "uses_model"):
        assert word in text, word
    for name in plugins.HOOK_ORDER:
        assert f"`{name}`" in text
    for item in fields(plugins.GeneratorChoice):
        assert f"`{item.name}`" in text, f"GeneratorChoice.{item.name} undocumented"
