"""What the three built-in plugins share: they are written against the public API alone, their
model calls on helper threads use the worker's CPU thread count, and their default models are
the catalog's for their task (so the window can offer to download them)."""

from __future__ import annotations

import ast
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import studio_audio
import studio_image
import studio_text
from studio import Generator, Note, RunContext
from studio.core.cache import ModelCache
from studio.core.catalog import catalog_entry
from studio.core.settings import Settings

PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
BUILTIN_GENERATORS: list[type[Generator]] = [
    studio_image.TextToImage,
    studio_image.ImageToImage,
    studio_image.Inpainting,
    studio_audio.TextToMusic,
    studio_audio.TextToAudio,
    studio_audio.TextToSpeech,
    studio_text.TextGenerator,
]


def _studio_imports(path: Path) -> list[str]:
    """Modules of the ``studio`` package that ``path`` imports (at any depth in the file)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found += [n for n in names if n == "studio" or n.startswith("studio.")]
    return found


def test_plugins_import_only_the_public_api() -> None:
    files = sorted(PLUGINS.rglob("*.py"))
    assert len(files) > 20  # the scan sees the plugins
    internal = {
        f"{path.relative_to(PLUGINS)}: {name}"
        for path in files
        for name in _studio_imports(path)
        if name != "studio"
    }
    assert not internal, "plugins import studio internals: " + ", ".join(sorted(internal))


@pytest.mark.parametrize("cls", BUILTIN_GENERATORS, ids=lambda c: c.id)
def test_default_model_is_a_catalog_model_for_the_task(cls: type[Generator]) -> None:
    assert cls.default_model is not None
    entry = catalog_entry(cls.default_model)
    assert entry is not None, f"{cls.id}: {cls.default_model} is not in the catalog"
    assert cls.task in entry.tasks and entry.modality == cls.modality


# --- helper threads take the caller's torch thread count --------------------------------------


@pytest.fixture
def threads_differ() -> Iterator[int]:
    """This thread runs with 1 torch CPU thread, while the count set last, on another thread,
    is 2: a new thread that sets nothing would take 2. Yields this thread's count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    other = threading.Thread(target=torch.set_num_threads, args=(2,))
    other.start()
    other.join()
    yield 1
    torch.set_num_threads(before)


def _counting_threads(seen: list[int]) -> None:
    import torch

    seen.append(torch.get_num_threads())


def test_image_pipeline_thread_uses_the_workers_thread_count(
    threads_differ: int, tmp_path: Path
) -> None:
    from studio_image.running import run_pipeline

    seen: list[int] = []

    class Pipeline:  # a pipeline call without step callbacks
        def __call__(self, **kwargs: Any) -> Any:
            _counting_threads(seen)
            return SimpleNamespace(images=["image"])

    def make_kwargs(emit: Any) -> dict[str, Any]:
        _counting_threads(seen)
        return {}

    ctx = RunContext(
        job_id="threads",
        device="cpu",
        cache=ModelCache(),
        settings=Settings(),
        scratch=tmp_path,
        log=logging.getLogger("test.threads"),
    )
    run = run_pipeline(Pipeline(), make_kwargs, ctx, preview_every=0, latent_format="sd")
    events: list[Any] = []
    with pytest.raises(StopIteration) as done:
        while True:
            events.append(next(run))
    assert done.value.value == ["image"]
    assert [type(e) for e in events] == [Note]  # "this pipeline reports no steps"
    assert seen == [threads_differ, threads_differ]
